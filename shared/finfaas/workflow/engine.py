"""The durable engine: runs executions from wake-ups, checkpointing every transition as its next task starts.

Protocol (docs/workflows.md, "Durability"):

* A drive re-reads the execution and does nothing unless something is due (a wake-up is a hint).
* Pure states (Pass, Choice, Succeed, Fail, an elapsed Wait) run in memory; before a Task's attempt
  starts, one conditional write (version + 1, history events in the same transaction) records
  everything since the last checkpoint and takes a lease on the attempt. The Task runs only if
  that write won, so two drives of one execution never both start it.
* Overlap: a drive that continues after its own call (it holds that attempt's lease) sends the next
  HTTP task's request first and writes the checkpoint while it is in flight. The request carries its
  `<execution>#<state>#<visit>` key and every function answers a repeated key with its first answer, so
  whatever replaces this drive (a lost checkpoint, a crash before it) asks again under the same key
  and gets the same answer; a drive whose checkpoint lost applies nothing of what its call returned.
* A crash anywhere leaves the last checkpoint: READY (run again), TASK (after the lease, the same
  attempt is invoked again with the same Idempotency-Key, so its effect is applied once), or a
  parked phase with its timer. Timers are sent before the checkpoint that needs them, so none is
  missing after a crash; the sweeper re-drives whatever is overdue anyway.
* The engine goes back to the queue only where the execution must wait: a Wait, a retry backoff,
  a callback, a busy resource, or when one drive has run long enough.
* Drives run on in-process slots (workflow/inline.py): a start's first checkpoint is the write
  that creates the execution, and a queue wake-up is handed to a slot (or sent back, delayed).
"""

from __future__ import annotations

import hmac
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from finfaas.platform.leases import LeaseRenewal
from finfaas.platform.logging import get_logger
from finfaas.platform.retry import SAVE_RACE_POLICY, Change, Unchanged, read_change_save
from finfaas.workflow import errors, iterations
from finfaas.workflow.asl import (
    HTTP_INVOKE,
    Definition,
    DefinitionRegistry,
    MapState,
    ParallelState,
    TaskState,
    WaitState,
)
from finfaas.workflow.errors import StatesError
from finfaas.workflow.inline import InlineDrives, InlineSlot
from finfaas.workflow.interpreter import (
    MS_PER_SECOND,
    Step,
    apply_result,
    begin_attempt,
    callback_deadline_ms,
    callback_timeout,
    catch,
    check_size,
    enter,
    finish,
    leave_wait,
    parse_task_token,
    task_parameters,
    task_token,
)
from finfaas.workflow.iterations import IterationLimits
from finfaas.workflow.model import (
    EXECUTION_NAME_PATTERN,
    NEVER_MS,
    REFERENCE_PATTERN,
    Execution,
    HistoryEvent,
    Phase,
    Status,
    TaskResult,
    execution_id,
    idempotency_key,
    input_digest,
)
from finfaas.workflow.store import ExecutionRepository, ExecutionStoreError
from finfaas.workflow.tasks import (
    HTTP_TIMEOUT_SECONDS_DEFAULT,
    TaskBusy,
    TaskCall,
    TaskFailed,
    TaskOutcome,
    TaskRunner,
    TaskSubmitted,
    TaskSucceeded,
)
from finfaas.workflow.wakeups import WAKE, Waker, Wakeup, WakeupError, delay_seconds

_log = get_logger("workflow.engine")
task_secret_bytes = 16  # 128 bits: a callback token cannot be guessed
callback_save_attempts_max = 3
CALLBACK_SAVE_POLICY = SAVE_RACE_POLICY.with_attempts(callback_save_attempts_max)
# A stop or redrive races the execution's own drive: it tries again on a fresh read.
operator_save_attempts_max = 5
OPERATOR_SAVE_POLICY = SAVE_RACE_POLICY.with_attempts(operator_save_attempts_max)
stop_reason_chars_max = 1024
# HTTP statuses whose answer the suite's functions do not keep under an Idempotency-Key
# (platform/idempotency.py): a failure with one of them may be asked again under the same key.
HTTP_STATUSES_NOT_KEPT = frozenset({408, 425, 429})
HTTP_SERVER_ERROR_MIN = 500


@dataclass(frozen=True)
class EngineLimits:
    """Every bound of the engine, in one place."""

    ready_grace_seconds: float = 30.0  # a READY execution whose wake-up was lost is swept after this
    # An attempt's lease: short, so a drive that died is re-driven within seconds (with the sweep's
    # 2 s interval, within 6 s), and renewed every lease_renew_seconds while its call runs.
    lease_seconds: float = 4.0
    lease_renew_seconds: float = 1.0  # four renewals per lease: one slow write does not lose it
    # Renewals stop this long after the call's own timeout, so a wedged drive lets its lease lapse.
    lease_grace_seconds: float = 15.0
    drive_seconds_max: float = 20.0  # one drive, then a checkpoint and a wake-up to continue
    tasks_per_drive_max: int = 100
    pure_states_per_checkpoint_max: int = 25  # keeps a checkpoint's events within one transaction
    inline_backoff_seconds_max: float = 1.0  # shorter retry delays are slept, not queued
    redrives_max: int = 3  # lease takeovers of one attempt before it fails with States.Timeout
    history_events_max: int = 25_000  # as Step Functions: an execution that loops forever fails
    # When a start or callback is driven in process, its queue wake-up is delayed by this much: it
    # matters only if the process dies mid-drive, and arriving early it finds nothing due.
    inline_backup_wake_seconds: int = 5
    # A start driven in process waits this long at most for its first checkpoint to be decided.
    start_decision_seconds_max: float = 60.0
    # A queue wake-up that finds every in-process slot taken goes back to the queue this much later.
    busy_wake_delay_seconds: int = 1
    # Send the next HTTP task's request while its checkpoint is written (module docstring, "Overlap").
    overlap_checkpoints: bool = True


class WorkflowError(Exception):
    """Base of the errors the orchestrator's API maps to problems; `errors` names the fields at fault."""

    code = "workflow_error"

    def __init__(self, message: str, *, errors: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors


class StateMachineNotFound(WorkflowError):
    code = "state_machine_not_found"


class InvalidExecutionName(WorkflowError):
    code = "invalid_execution_name"


class InvalidExecutionInput(WorkflowError):
    code = "invalid_execution_input"


class ExecutionAlreadyExists(WorkflowError):
    code = "execution_already_exists"


class InvalidTaskToken(WorkflowError):
    code = "invalid_task_token"


class TaskNotFound(WorkflowError):
    code = "task_not_found"


class TaskTokenUsed(WorkflowError):
    code = "task_token_used"


class ExecutionNotFound(WorkflowError):
    code = "execution_not_found"


class ExecutionNotRedrivable(WorkflowError):
    """Only a FAILED, TIMED_OUT or ABORTED execution can be redriven (running or succeeded: 409)."""

    code = "execution_not_redrivable"


class ExecutionNotRunning(WorkflowError):
    """Only a RUNNING execution can be stopped."""

    code = "execution_not_running"


class ExecutionBusy(WorkflowError):
    """Concurrent changes kept a callback from being recorded; the caller retries."""

    code = "execution_busy"


@dataclass(frozen=True)
class StartResult:
    execution: Execution
    created: bool


CrashHook = Callable[[str], None]


def _no_crash(point: str) -> None:
    return None


class Engine:
    """Starts, drives and resumes executions of the registry's state machines."""

    def __init__(
        self,
        definitions: DefinitionRegistry,
        store: ExecutionRepository,
        tasks: TaskRunner,
        waker: Waker,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        limits: EngineLimits = EngineLimits(),
        owner: str | None = None,
        new_secret: Callable[[], str] = lambda: secrets.token_hex(task_secret_bytes),
        unit_random: Callable[[], float] = random.random,
        crash_hook: CrashHook = _no_crash,
        inline: InlineDrives | None = None,
        renewal_crash_hook: CrashHook = _no_crash,
        iteration_limits: IterationLimits = IterationLimits(),
    ) -> None:
        self.definitions = definitions
        self.store = store
        self._tasks = tasks
        self._waker = waker
        self._clock = clock
        self._sleep = sleep
        self.limits = limits
        self.iteration_limits = iteration_limits
        self._owner = owner or uuid.uuid4().hex
        self._new_secret = new_secret
        self._unit_random = unit_random
        # Tests inject a hook that raises at a chosen point to simulate a crash there.
        self._crash_hook = crash_hook
        # Renewals run on their own thread at real-time intervals, so their crash points are a hook of
        # their own: the systematic crash matrices enumerate the drive's points and stay deterministic.
        self._renewal_crash_hook = renewal_crash_hook
        # None: every drive comes from the queue (one process per wake-up, as in tests of the protocol).
        self._inline = inline

    def _now_ms(self) -> int:
        return int(self._clock() * MS_PER_SECOND)

    # -- start -----------------------------------------------------------------------------------

    def start(
        self, state_machine: str, name: str, input_value: Any, reference: str | None = None
    ) -> StartResult:
        """Create the execution (idempotent by name) and wake it; an equal restart returns the first.
        reference: the business object it works on (a transfer id), for operators' lists."""
        definition = self.definitions.get(state_machine)
        if definition is None:
            raise StateMachineNotFound(f"no state machine {state_machine!r}")
        if not isinstance(name, str) or not EXECUTION_NAME_PATTERN.match(name):
            raise InvalidExecutionName("an execution name is 1-80 of A-Z a-z 0-9 _ - .")
        try:
            check_size(input_value, "the input")
        except StatesError as error:
            raise InvalidExecutionInput(error.cause) from None
        if reference is not None and not REFERENCE_PATTERN.match(reference):
            raise InvalidExecutionInput(
                "a reference is 1-128 printable ASCII characters", errors=(("reference", "malformed"),)
            )
        execution = replace(self._new_execution(definition, name, input_value), reference=reference)
        slot = self._inline.reserve() if self._inline is not None else None
        if slot is not None:
            in_process = self._start_in_process(definition, execution, slot)
            if in_process is not None:
                return in_process
        started = HistoryEvent(
            1,
            "ExecutionStarted",
            execution.started_at_ms,
            None,
            {"state_machine": state_machine, "input": input_value},
        )
        self._crash_hook("start:before_save")
        created = self.store.create(execution, [started])
        self._crash_hook("start:after_save")
        if not created:
            return self._existing_start(execution, input_value)
        self._kick(execution, "start")
        return StartResult(execution, True)

    def _start_in_process(
        self, definition: Definition, execution: Execution, slot: InlineSlot
    ) -> StartResult | None:
        """Drive a new execution in this process; its first checkpoint is the write that creates it.

        The start waits until that write is decided, so it still answers created or existing. What it
        stores is already the lease on the first task (or a parked or final state), so no wake-up is
        needed: a crash after it leaves what a crash mid-drive leaves, a lease the sweeper re-drives
        once it lapses. None: no thread for the drive, the caller starts through the queue.
        """
        handoff = _StartHandoff()
        step = Step(replace(execution, history_seq=0), on_create=handoff.decide)
        started = {"state_machine": execution.state_machine, "input": execution.input}
        step.events.append(("ExecutionStarted", None, started))
        if not slot.run(handoff.reporting_failure(lambda: _Drive(self, definition, step).run())):
            return None
        created, stored = handoff.wait(self.limits.start_decision_seconds_max)
        if not created:
            return self._existing_start(execution, execution.input)
        return StartResult(stored, True)

    def _new_execution(self, definition: Definition, name: str, input_value: Any) -> Execution:
        now = self._now_ms()
        deadline = now + definition.timeout_seconds * MS_PER_SECOND if definition.timeout_seconds else None
        return Execution(
            execution_id=execution_id(definition.name, name),
            state_machine=definition.name,
            name=name,
            definition_digest=definition.digest,
            input=input_value,
            status=Status.RUNNING,
            version=1,
            started_at_ms=now,
            next_run_at_ms=now + int(self.limits.ready_grace_seconds * MS_PER_SECOND),
            deadline_ms=deadline,
            state=definition.start_at,
            phase=Phase.READY,
            state_input=input_value,
            history_seq=1,
        )

    def _existing_start(self, requested: Execution, input_value: Any) -> StartResult:
        existing = self.store.get(requested.execution_id)
        if existing is None:  # created and gone: not something this store does
            raise ExecutionBusy("the execution changed while starting; retry")
        if input_digest(existing.input) != input_digest(input_value):
            raise ExecutionAlreadyExists(
                f"execution {requested.name!r} of {requested.state_machine!r} exists with a different input"
            )
        if existing.status is Status.RUNNING and existing.phase in (Phase.READY, Phase.RESULT):
            # The first start may have crashed before its wake-up: a repeated start sends it again.
            self._wake(Wakeup(WAKE, existing.execution_id, "start"))
        return StartResult(existing, False)

    # -- drive -----------------------------------------------------------------------------------

    def wake(self, execution_id_: str, reason: str = "start", due_at_ms: int | None = None) -> str:
        """A wake-up from the queue: drive the execution on an in-process slot and be done with the
        message at once; with every slot taken, send the wake-up back to the queue, delayed.

        A delivery is a request to this function, and its request threads must stay free for
        starts and callbacks: the functions a drive calls may themselves be waiting on one (a
        transfer's POST waits for its start), so a drive held on a request thread can wait on
        itself until a timeout. A process that dies mid-drive leaves a lease or a READY
        execution, which the sweeper re-drives. Without in-process drives (tests of the protocol)
        the drive runs here.
        """
        if self._inline is None:
            return self.drive(execution_id_, reason, due_at_ms)
        slot = self._inline.reserve()
        if slot is None:
            wakeup = Wakeup(WAKE, execution_id_, reason, due_at_ms)
            self._wake(wakeup, self.limits.busy_wake_delay_seconds)
            return "requeued"
        if not slot.run(lambda: self.drive(execution_id_, reason, due_at_ms)):
            return self.drive(execution_id_, reason, due_at_ms)
        return "driving"

    def drive(self, execution_id_: str, reason: str = "start", due_at_ms: int | None = None) -> str:
        """Run an execution as far as it can go now; returns what happened (for logs and tests)."""
        execution = self.store.get(execution_id_)
        if execution is None:
            return "nothing_to_do"
        return self._drive_execution(execution, reason, due_at_ms)

    def _drive_execution(self, execution: Execution, reason: str, due_at_ms: int | None = None) -> str:
        execution_id_ = execution.execution_id
        if execution.status.terminal:
            return "nothing_to_do"
        now = self._now_ms()
        if not self._is_due(execution, now):
            self._rearm_early_timer(execution, reason, due_at_ms, now)
            return "not_due"
        definition = self.definitions.get(execution.state_machine)
        step = Step(execution, stored=execution)
        if definition is None or execution.state not in definition.states:
            finish(
                step,
                Status.FAILED,
                now,
                error=errors.RUNTIME,
                cause=f"state machine {execution.state_machine!r} no longer has state {execution.state!r}",
            )
            return "stopped" if self._checkpoint(step) else "conflict"
        if definition.digest != execution.definition_digest:
            _log.warning("definition changed since the execution started", execution_id=execution_id_)
        return _Drive(self, definition, step).run()

    def _is_due(self, execution: Execution, now_ms: int) -> bool:
        if execution.phase in (Phase.READY, Phase.RESULT):
            return True
        if execution.phase in (Phase.TASK, Phase.ITERATING):
            return execution.lease_until_ms <= now_ms
        return execution.next_run_at_ms <= now_ms

    def _rearm_early_timer(
        self, execution: Execution, reason: str, due_at_ms: int | None, now_ms: int
    ) -> None:
        """A timer that arrived early (a long wait hops 15 minutes at a time) is sent on once."""
        leased = execution.phase in (Phase.TASK, Phase.ITERATING)
        wake_at = execution.lease_until_ms if leased else execution.next_run_at_ms
        if reason == "timer" and due_at_ms == wake_at and wake_at < NEVER_MS:
            self._wake(Wakeup(WAKE, execution.execution_id, "timer", wake_at), delay_seconds(wake_at, now_ms))

    def _checkpoint(self, step: Step) -> bool:
        """Write the step's execution as the next version with its events; False if another drive won."""
        execution = step.execution
        seq = execution.history_seq
        events = []
        for kind, state, detail in step.events:
            seq += 1
            events.append(HistoryEvent(seq, kind, self._now_ms(), state, detail))
        saved = replace(execution, version=execution.version + 1, history_seq=seq)
        if step.on_create is not None:
            return self._create(step, saved, events)
        self._crash_hook("checkpoint:before_save")
        written = self.store.save(saved, events, step.stored)
        self._crash_hook("checkpoint:after_save")
        if written:
            step.execution, step.events, step.stored = saved, [], saved
        return written

    def _create(self, step: Step, saved: Execution, events: list[HistoryEvent]) -> bool:
        """The first checkpoint of a start driven in process: create the execution, tell the start."""
        decide, step.on_create = step.on_create, None
        assert decide is not None
        self._crash_hook("start:before_save")
        created = self.store.create(saved, events)
        self._crash_hook("start:after_save")
        if created:
            step.execution, step.events, step.stored = saved, [], saved
        decide(created, saved)
        return created

    def _wake(self, wakeup: Wakeup, delay: int = 0) -> None:
        self._crash_hook("wake:before_send")
        try:
            self._waker.send(wakeup, delay)
        except WakeupError:
            _log.exception("wake-up not sent; the sweeper will re-drive", execution_id=wakeup.execution_id)
        self._crash_hook("wake:after_send")

    def _kick(self, saved: Execution, reason: str) -> None:
        """Drive a just-checkpointed execution in this process when there is room, else from the queue."""
        wakeup = Wakeup(WAKE, saved.execution_id, reason)
        slot = self._inline.reserve() if self._inline is not None else None
        if slot is None:
            self._wake(wakeup)
            return
        # The drive starts from the version just written (no re-read: a stale one loses its checkpoint).
        # The wake-up is sent meanwhile, delayed: a crash before it is sent leaves what a crash before
        # a queue-only start's wake-up leaves (the sweeper finds it), one after it is resumed from it.
        if not slot.run(lambda: self._drive_execution(saved, reason)):
            self._wake(wakeup)
            return
        self._wake(wakeup, self.limits.inline_backup_wake_seconds)

    def _run_task(self, call: TaskCall) -> TaskOutcome:
        self._crash_hook("task:before_call")
        outcome = self._call_task(call)
        self._crash_hook("task:after_call")
        return outcome

    def _call_task(self, call: TaskCall) -> TaskOutcome:
        try:
            return self._tasks.run(call)
        except Exception as error:  # a runner bug must fail the task, not wedge the execution
            _log.exception("task runner raised", state=call.state)
            return TaskFailed(errors.TASK_FAILED, f"{type(error).__name__} in the task runner")

    def _send_task(self, call: TaskCall) -> _SentCall:
        """Send the call on a thread of its own; its answer is taken with `_answer`."""
        self._crash_hook("task:before_call")
        return _SentCall(lambda: self._call_task(call))

    def _answer(self, sent: _SentCall) -> TaskOutcome:
        outcome = sent.answer()
        self._crash_hook("task:after_call")
        return outcome

    # -- callbacks -------------------------------------------------------------------------------

    def report(self, token: str, result: TaskResult) -> str:
        """Record a callback task's result; 'accepted', or 'duplicate' for a repeated equal report."""
        execution_id_, secret = self._parsed_token(token)
        reported = f"{secret}:{result.digest()}"

        def recorded(
            execution: Execution | None,
        ) -> Unchanged[Execution | None] | Change[_Checkpoint, Execution | None]:
            """Unchanged: reported already (the caller tells a repeat from a conflicting report)."""
            if execution is None:
                raise TaskNotFound("no task is waiting for this token")
            if _reported_with(execution, secret):
                return Unchanged(execution)
            if not _waits_for(execution, secret):
                raise TaskNotFound("no task is waiting for this token")
            now = self._now_ms()
            updated = execution.bumped(
                phase=Phase.RESULT,
                task_result=result,
                callback_reported=reported,
                lease_owner=None,
                lease_until_ms=0,
                next_run_at_ms=now + int(self.limits.ready_grace_seconds * MS_PER_SECOND),
                history_seq=execution.history_seq + 1,
            )
            event = HistoryEvent(
                updated.history_seq,
                "CallbackReceived",
                now,
                execution.state,
                {"ok": result.ok, "error": result.error} if not result.ok else {"ok": True},
            )
            return Change(_Checkpoint(updated, (event,), execution), None)

        def saved(checkpoint: _Checkpoint) -> bool:
            if not self.store.save(checkpoint.updated, checkpoint.events, checkpoint.expected):
                return False
            self._kick(checkpoint.updated, "callback")
            return True

        repeated = read_change_save(
            lambda: self.store.get(execution_id_), recorded, saved, policy=CALLBACK_SAVE_POLICY,
            sleep=self._sleep,
            exhausted=lambda: ExecutionBusy("the execution kept changing; retry the report"),
        )
        if repeated is not None:
            return self._repeated_report(repeated, reported)
        return "accepted"

    def heartbeat(self, token: str) -> None:
        """Extend a callback task's HeartbeatSeconds."""
        execution_id_, secret = self._parsed_token(token)
        execution = self.store.get(execution_id_)
        if execution is None or not _waits_for(execution, secret):
            raise TaskNotFound("no task is waiting for this token")
        if not self.store.record_heartbeat(execution_id_, secret, self._now_ms()):
            raise TaskNotFound("no task is waiting for this token")

    # -- operators -------------------------------------------------------------------------------

    def stop(self, execution_id_: str, reason: str) -> Execution:
        """Stop a RUNNING execution: a Catch of its current Task that matches Execution.Stopped runs
        its compensation; otherwise it ends ABORTED. A repeated stop while compensating changes nothing."""

        def stopped(execution: Execution | None) -> Unchanged[Execution] | Change[_Checkpoint, Execution]:
            if execution is None:
                raise _not_found(execution_id_)
            if execution.status.terminal:
                status = execution.status.value
                raise ExecutionNotRunning(f"the execution is {status}", errors=(("status", f"is {status}"),))
            if execution.stop_reason is not None:
                return Unchanged(execution)
            checkpoint = self._stop_checkpoint(execution, reason[:stop_reason_chars_max])
            return Change(checkpoint, checkpoint.updated)

        def saved(checkpoint: _Checkpoint) -> bool:
            self._crash_hook("operator:before_save")
            written = self.store.save(checkpoint.updated, checkpoint.events, checkpoint.expected)
            self._crash_hook("operator:after_save")
            if not written:
                return False
            if not checkpoint.updated.status.terminal:
                self._kick(checkpoint.updated, "stop")  # the compensation runs at once
            return True

        return read_change_save(
            lambda: self.store.get(execution_id_), stopped, saved, policy=OPERATOR_SAVE_POLICY,
            sleep=self._sleep,
            exhausted=lambda: ExecutionBusy("the execution kept changing; retry the stop"),
        )

    def _stop_checkpoint(self, execution: Execution, reason: str) -> _Checkpoint:
        now = self._now_ms()
        step = Step(execution, stored=execution)
        step.event("ExecutionStopRequested", {"reason": reason})
        definition = self.definitions.get(execution.state_machine)
        state = definition.states.get(execution.state or "") if definition is not None else None
        # Whatever the Task's attempt was doing, its lease and token end here: a drive still calling
        # it loses its next checkpoint (the version moved) and a late callback is refused.
        step.change(lease_owner=None, lease_until_ms=0, task_token=None, task_result=None)
        caught = isinstance(state, TaskState | MapState | ParallelState) and catch(
            step, state, errors.EXECUTION_STOPPED, reason, now
        )
        if caught and not step.execution.status.terminal:
            grace_ms = int(self.limits.ready_grace_seconds * MS_PER_SECOND)
            step.change(stop_reason=reason, next_run_at_ms=now + grace_ms)
        elif not caught:
            finish(step, Status.ABORTED, now, error=errors.EXECUTION_STOPPED, cause=reason)
        return self._operator_checkpoint(step, now)

    def redrive(self, execution_id_: str) -> Execution:
        """Resume a FAILED, TIMED_OUT or ABORTED execution from the state where it stopped, with the
        same id and input; states that succeeded are not run again (Step Functions' RedriveExecution)."""

        def reopened(execution: Execution | None) -> Unchanged[Execution] | Change[_Checkpoint, Execution]:
            if execution is None:
                raise _not_found(execution_id_)
            if not execution.status.redrivable:
                status = execution.status.value
                raise ExecutionNotRedrivable(
                    f"the execution is {status}; only FAILED, TIMED_OUT or ABORTED ones are redriven",
                    errors=(("status", f"is {status}"),),
                )
            definition = self.definitions.get(execution.state_machine)
            if definition is None or execution.state not in definition.states:
                raise ExecutionNotRedrivable(
                    f"state machine {execution.state_machine!r} no longer has state {execution.state!r}",
                    errors=(("state", "is no longer in the state machine"),),
                )
            checkpoint = self._redrive_checkpoint(execution, definition)
            return Change(checkpoint, checkpoint.updated)

        def saved(checkpoint: _Checkpoint) -> bool:
            self._crash_hook("operator:before_save")
            written = self.store.save(
                checkpoint.updated, checkpoint.events, checkpoint.expected, reopening=True
            )
            self._crash_hook("operator:after_save")
            if not written:
                return False
            self._kick(checkpoint.updated, "redrive")
            return True

        return read_change_save(
            lambda: self.store.get(execution_id_), reopened, saved, policy=OPERATOR_SAVE_POLICY,
            sleep=self._sleep,
            exhausted=lambda: ExecutionBusy("the execution kept changing; retry the redrive"),
        )

    def _redrive_checkpoint(self, execution: Execution, definition: Definition) -> _Checkpoint:
        now = self._now_ms()
        state = execution.state or definition.start_at
        visits = dict(execution.visits)
        # A visit's key is spent only by an answer the function keeps (a refusal): then the redrive is
        # a new visit, so the refusal is not replayed. Otherwise (no answer, a timeout, a 5xx, a stop
        # during the call) it keeps the key, so an effect already applied is replayed, not repeated.
        # A Map or Parallel always keeps its key: its iterations that succeeded replay their effects.
        iterating = iterations.is_iteration_state(definition.states[state])
        keeps_key = not _answered_under_key(execution) or iterating
        same_key = keeps_key and visits.get(state, 0) > 0
        if same_key:
            visits[state] -= 1  # entering the state counts the visit again
        redrive_count = execution.redrive_count + 1
        deadline = now + definition.timeout_seconds * MS_PER_SECOND if definition.timeout_seconds else None
        step = Step(execution, stored=execution)
        step.change(
            status=Status.RUNNING,
            phase=Phase.READY,
            state=state,
            visits=visits,
            output=None,
            error=None,
            cause=None,
            stop_reason=None,
            redrive_count=redrive_count,
            deadline_ms=deadline,
            next_run_at_ms=now + int(self.limits.ready_grace_seconds * MS_PER_SECOND),
            lease_owner=None,
            lease_until_ms=0,
            task_token=None,
            task_result=None,
        )
        detail = {"redrive_count": redrive_count, "status": execution.status.value, "error": execution.error,
                  "same_key": same_key}
        step.event("ExecutionRedriven", detail)
        return self._operator_checkpoint(step, now)

    def _operator_checkpoint(self, step: Step, now: int) -> _Checkpoint:
        seq = step.execution.history_seq
        events = []
        for kind, state, detail in step.events:
            seq += 1
            events.append(HistoryEvent(seq, kind, now, state, detail))
        assert step.stored is not None
        updated = replace(step.execution, version=step.stored.version + 1, history_seq=seq)
        return _Checkpoint(updated, tuple(events), step.stored)

    def _parsed_token(self, token: str) -> tuple[str, str]:
        parsed = parse_task_token(token) if isinstance(token, str) else None
        if parsed is None:
            raise InvalidTaskToken("the task token is malformed")
        return parsed

    def _repeated_report(self, execution: Execution, reported: str) -> str:
        if not hmac.compare_digest(execution.callback_reported or "", reported):
            raise TaskTokenUsed("this task token was already reported with a different outcome")
        if execution.phase is Phase.RESULT:
            self._wake(Wakeup(WAKE, execution.execution_id, "callback"))
        return "duplicate"


@dataclass(frozen=True)
class _Checkpoint:
    """A change made outside a drive (a callback's result, a stop, a redrive) to save over `expected`."""

    updated: Execution
    events: tuple[HistoryEvent, ...]
    expected: Execution


def _not_found(execution_id_: str) -> ExecutionNotFound:
    return ExecutionNotFound(f"no execution {execution_id_}", errors=(("execution_id", "no such execution"),))


def _answered_under_key(execution: Execution) -> bool:
    """Whether the error that stopped the execution is an answer its Task's function keeps under the
    Idempotency-Key (a 4xx refusal, or a failure of the caller's own naming), so asking again with
    that key would only replay it."""
    error = execution.error or ""
    if execution.status is not Status.FAILED:
        return False  # timed out or stopped: the attempt in flight may have had its effect
    if error.startswith(errors.HTTP_STATUS_PREFIX):
        code = error[len(errors.HTTP_STATUS_PREFIX):]
        if not code.isdigit():
            return False
        status = int(code)
        return status < HTTP_SERVER_ERROR_MIN and status not in HTTP_STATUSES_NOT_KEPT
    return not error.startswith(errors.STATES_PREFIX)


def _reported_with(execution: Execution, secret: str) -> bool:
    reported_secret = (execution.callback_reported or "").split(":")[0]
    return bool(reported_secret) and hmac.compare_digest(reported_secret, secret)


def _waits_for(execution: Execution, secret: str) -> bool:
    return (
        execution.status is Status.RUNNING
        and execution.task_token is not None
        and hmac.compare_digest(execution.task_token, secret)
        and execution.phase in (Phase.TASK, Phase.CALLBACK, Phase.BACKOFF)
    )


class _StartHandoff:
    """Carries the outcome of an in-process start's first checkpoint from the drive to the start."""

    def __init__(self) -> None:
        self._decided = threading.Event()
        self._outcome: tuple[bool, Execution] | None = None
        self._failure: BaseException | None = None

    def decide(self, created: bool, stored: Execution) -> None:
        self._outcome = (created, stored)
        self._decided.set()

    def reporting_failure(self, drive: Callable[[], object]) -> Callable[[], object]:
        """drive, passing on to the start a failure that comes before the execution is created."""

        def run() -> object:
            try:
                return drive()
            except BaseException as error:
                if not self._decided.is_set():
                    self._failure = error
                    self._decided.set()
                raise
            finally:
                if not self._decided.is_set():  # a drive must create or refuse; anything else is a bug
                    self._failure = RuntimeError("the start's drive ended without creating the execution")
                    self._decided.set()

        return run

    def wait(self, seconds_max: float) -> tuple[bool, Execution]:
        if not self._decided.wait(seconds_max):
            raise ExecutionBusy("the start was not decided in time; retry with the same name")
        if self._failure is not None:
            raise self._failure
        assert self._outcome is not None
        return self._outcome


class _Drive:
    """One drive of one execution: the loop from its last checkpoint to where it must wait."""

    def __init__(self, engine: Engine, definition: Definition, step: Step) -> None:
        self.engine = engine
        self.definition = definition
        self.step = step
        self.limits = engine.limits
        self.started_ms = engine._now_ms()
        self.tasks_run = 0
        # The version this drive stored with a lease on an attempt it called: while it is still the
        # stored one, no other drive can be running this execution (module docstring, "Overlap").
        self._leased_version: int | None = None

    def run(self) -> str:
        while True:
            now = self.engine._now_ms()
            execution = self.step.execution
            if execution.status.terminal:
                return self._save_or("stopped")
            if self._stop_for_limits(execution, now):
                return self._save_or("stopped")
            if self._over_budget(now) and execution.phase is Phase.READY:
                return self._continue_later(now)
            outcome = self._advance(execution, now)
            if outcome is not None:
                return outcome

    def _advance(self, execution: Execution, now: int) -> str | None:
        """One move from the current phase; a string ends the drive."""
        phase = execution.phase
        if phase is Phase.READY:
            return self._enter(now)
        if phase is Phase.ITERATING or (
            phase is Phase.BACKOFF and iterations.is_iteration_state(self.definition.state(execution.state))
        ):
            return iterations.advance(self, execution, now)
        if phase is Phase.TASK:
            return self._redrive(execution, now)
        if phase is Phase.BACKOFF:
            return self._next_attempt(now)
        if phase is Phase.WAIT:
            state = self.definition.state(execution.state)
            assert isinstance(state, WaitState)  # the WAIT phase is only entered at a Wait state
            leave_wait(self.step, state, now)
            return None
        if phase is Phase.CALLBACK:
            return self._callback_due(execution, now)
        if phase is Phase.RESULT:
            assert execution.task_result is not None
            return self._applied(execution.task_result, now)
        raise AssertionError(f"unexpected phase {phase}")

    def _stop_for_limits(self, execution: Execution, now: int) -> bool:
        if execution.deadline_ms is not None and now >= execution.deadline_ms:
            finish(self.step, Status.TIMED_OUT, now, error=errors.TIMEOUT, cause="the execution timed out")
            return True
        if execution.history_seq + len(self.step.events) >= self.limits.history_events_max:
            finish(
                self.step,
                Status.FAILED,
                now,
                error=errors.RUNTIME,
                cause=f"more than {self.limits.history_events_max} history events",
            )
            return True
        return False

    def _over_budget(self, now: int) -> bool:
        return (
            now - self.started_ms >= self.limits.drive_seconds_max * MS_PER_SECOND
            or self.tasks_run >= self.limits.tasks_per_drive_max
        )

    def _continue_later(self, now: int) -> str:
        self.step.change(next_run_at_ms=now + int(self.limits.ready_grace_seconds * MS_PER_SECOND))
        if not self.engine._checkpoint(self.step):
            return "conflict"
        self.engine._wake(Wakeup(WAKE, self.step.execution.execution_id, "continue"))
        return "continued"

    def _save_or(self, outcome: str) -> str:
        return outcome if self.engine._checkpoint(self.step) else "conflict"

    # -- states ----------------------------------------------------------------------------------

    def _enter(self, now: int) -> str | None:
        entered = enter(
            self.step,
            self.definition,
            now,
            self.engine._new_secret,
            self.limits.pure_states_per_checkpoint_max,
        )
        if entered.kind == "task":
            return self._next_attempt(now)
        if entered.kind == "iterate":
            return iterations.begin(self, now)
        if entered.kind == "wait":
            return self._park(self.step.execution.next_run_at_ms, now)
        if entered.kind == "stopped":
            return self._save_or("stopped")
        return None if self.engine._checkpoint(self.step) else "conflict"  # "budget": flush and go on

    def _next_attempt(self, now: int) -> str | None:
        """Checkpoint everything so far together with a lease on a new attempt, then run it."""
        execution = self.step.execution
        if execution.phase is Phase.BACKOFF and execution.next_run_at_ms > now:
            return self._park(execution.next_run_at_ms, now)
        state = self._task_state()
        key = idempotency_key(execution.execution_id, state.name, execution.visit)
        overlap = self._may_overlap(state)
        begin_attempt(self.step, state, now, self.engine._owner, self._lease_until(state, now), key)
        if overlap:
            return self._invoke(state, now, overlapped=True)
        if not self.engine._checkpoint(self.step):
            return "conflict"
        return self._invoke(state, now)

    def _may_overlap(self, state: TaskState) -> bool:
        """Whether the next attempt's request may go out before its checkpoint is written: an HTTP task
        (its key makes a repeated request harmless; a callback's token must be stored before anyone
        sees it), in a drive that holds the stored version's lease, so that no other drive runs it."""
        stored = self.step.stored
        return (
            self.limits.overlap_checkpoints
            and state.resource == HTTP_INVOKE
            and self.step.on_create is None
            and stored is not None
            and stored.version == self._leased_version
            and stored.phase is Phase.TASK
            and stored.lease_owner == self.engine._owner
        )

    def _redrive(self, execution: Execution, now: int) -> str | None:
        """The attempt's lease lapsed (its drive died, or the resource was busy): run it again."""
        state = self._task_state()
        lost = execution.lease_owner is not None
        redrives = execution.redrives + (1 if lost else 0)
        if redrives > self.limits.redrives_max:
            cause = f"the attempt was lost {execution.redrives} times without a result"
            return self._applied(TaskResult(False, error=errors.TIMEOUT, cause=cause), now)
        lease_until = self._lease_until(state, now)
        self.step.change(
            redrives=redrives,
            lease_owner=self.engine._owner,
            lease_until_ms=lease_until,
            next_run_at_ms=lease_until,
        )
        if lost:
            self.step.event("TaskRedriven", {"attempt": execution.attempt, "redrive": redrives})
        if not self.engine._checkpoint(self.step):
            return "conflict"
        return self._invoke(state, now)

    def _invoke(self, state: TaskState, now: int, overlapped: bool = False) -> str | None:
        """Call the attempt the step holds (checkpointed already, or with `overlapped` while its request
        is in flight) and apply its outcome."""
        execution = self.step.execution
        self.tasks_run += 1
        try:
            parameters = task_parameters(state, execution)
            check_size(parameters, f"the request of {state.name!r}")
        except StatesError as failure:
            return self._applied(TaskResult(False, error=failure.error, cause=failure.cause), now)
        call = TaskCall(
            resource=state.resource,
            parameters=parameters,
            idempotency_key=idempotency_key(execution.execution_id, state.name, execution.visit),
            execution_id=execution.execution_id,
            state=state.name,
            attempt=execution.attempt,
            timeout_seconds=float(_call_timeout_seconds(state)),
        )
        began = time.perf_counter()
        if overlapped:
            sent = self.engine._send_task(call)
            try:
                written = self.engine._checkpoint(self.step)
            except BaseException:
                sent.answer()  # a crash while the request is in flight: it still reaches the function
                raise
            if not written:
                sent.answer()  # whoever won asks again under the same key; this answer is not applied
                return "conflict"
            execution = self.step.execution
        self._leased_version = execution.version
        renewal = _LeaseRenewal(self.engine, execution, self._renewals_end_ms(state, execution))
        with renewal:
            outcome = self.engine._answer(sent) if overlapped else self.engine._run_task(call)
        call_ms = round((time.perf_counter() - began) * MS_PER_SECOND, 2)
        if renewal.crashed is not None:
            raise renewal.crashed  # the process died while renewing: it saves nothing after the call
        if renewal.lost:
            # Another drive took the attempt over: its checkpoint, not this one's, decides what follows.
            return "lease_lost"
        if renewal.renewed_until_ms is not None:
            self._renewed(renewal.renewed_until_ms)
        now = self.engine._now_ms()
        if isinstance(outcome, TaskSucceeded):
            return self._applied(TaskResult(True, outcome.output), now, _timing(call_ms, outcome.function_ms))
        if isinstance(outcome, TaskFailed):
            result = TaskResult(False, error=outcome.error, cause=outcome.cause)
            return self._applied(result, now, _timing(call_ms, outcome.function_ms))
        if isinstance(outcome, TaskSubmitted):
            return self._await_callback(state, now)
        assert isinstance(outcome, TaskBusy)
        return self._busy(outcome, now)

    def _applied(self, result: TaskResult, now: int, timing: dict[str, float] | None = None) -> str | None:
        apply_result(self.step, self.definition, result, now, self.engine._unit_random, timing)
        execution = self.step.execution
        if execution.phase is Phase.BACKOFF:
            delay_ms = execution.next_run_at_ms - now
            if delay_ms <= self.limits.inline_backoff_seconds_max * MS_PER_SECOND:
                # A short backoff costs less asleep than as a queue round trip (crash: the lease redrives).
                self.engine._sleep(max(delay_ms, 0) / MS_PER_SECOND)
                return self._next_attempt(self.engine._now_ms())
            return self._park(execution.next_run_at_ms, now)
        return None

    def _await_callback(self, state: TaskState, now: int) -> str:
        self.step.event("TaskSubmitted", {"attempt": self.step.execution.attempt})
        self.step.change(phase=Phase.CALLBACK, lease_owner=None, lease_until_ms=0)
        deadline = callback_deadline_ms(state, self.step.execution)
        return self._park(deadline if deadline is not None else NEVER_MS, now)

    def _callback_due(self, execution: Execution, now: int) -> str | None:
        state = self._task_state()
        timeout = callback_timeout(state, execution, now)
        if timeout is not None:
            return self._applied(timeout, now)
        deadline = callback_deadline_ms(state, execution)  # a heartbeat moved it
        return self._park(deadline if deadline is not None else NEVER_MS, now)

    def _busy(self, outcome: TaskBusy, now: int) -> str:
        until = now + int(outcome.retry_after_seconds * MS_PER_SECOND)
        self.step.event(
            "TaskBusy", {"attempt": self.step.execution.attempt, "retry_after_s": outcome.retry_after_seconds}
        )
        self.step.change(lease_owner=None, lease_until_ms=until, next_run_at_ms=until)
        return self._park(until, now)

    def _park(self, until_ms: int, now: int) -> str:
        """Wait in the queue until until_ms: the timer is sent first, then the checkpoint."""
        execution = self.step.execution
        if execution.deadline_ms is not None:
            until_ms = min(until_ms, execution.deadline_ms)
        if execution.phase is Phase.TASK:
            self.step.change(lease_until_ms=until_ms, next_run_at_ms=until_ms)
        else:
            self.step.change(next_run_at_ms=until_ms)
        if until_ms < NEVER_MS:
            timer = Wakeup(WAKE, execution.execution_id, "timer", until_ms)
            self.engine._wake(timer, delay_seconds(until_ms, now))
        return self._save_or("parked")

    # -- helpers ---------------------------------------------------------------------------------

    def _task_state(self) -> TaskState:
        state = self.definition.state(self.step.execution.state)
        assert isinstance(state, TaskState)
        return state

    def _lease_until(self, state: TaskState, now: int) -> int:
        return now + int(self.limits.lease_seconds * MS_PER_SECOND)

    def _renewals_end_ms(self, state: TaskState, execution: Execution) -> int:
        seconds = _call_timeout_seconds(state) + self.limits.lease_grace_seconds
        return execution.attempt_started_at_ms + int(seconds * MS_PER_SECOND)

    def _renewed(self, lease_until_ms: int) -> None:
        """What the renewals wrote is now the stored version the next checkpoint replaces."""
        if self.step.stored is not None:
            self.step.stored = replace(
                self.step.stored, lease_until_ms=lease_until_ms, next_run_at_ms=lease_until_ms
            )
        self.step.change(lease_until_ms=lease_until_ms, next_run_at_ms=lease_until_ms)


class _SentCall:
    """A task call running on a thread of its own while the drive writes the checkpoint."""

    def __init__(self, call: Callable[[], TaskOutcome]) -> None:
        self._outcome: TaskOutcome | None = None
        self._thread = threading.Thread(
            target=self._run, args=(call,), name="workflow-task-call", daemon=True
        )
        self._thread.start()

    def _run(self, call: Callable[[], TaskOutcome]) -> None:
        self._outcome = call()

    def answer(self) -> TaskOutcome:
        """The call's outcome once it has returned (it is bounded by its own timeout)."""
        self._thread.join()
        assert self._outcome is not None  # _call_task turns every exception into TaskFailed
        return self._outcome


class _LeaseRenewal(LeaseRenewal):
    """Renews the lease of the attempt a drive holds, on a thread of its own, while the call runs.

    Each renewal is one conditional write on the attempt's version and owner, so a drive whose lease
    was taken over learns it (`lost`) and stops without writing. A crash hook raising here stands for
    the process dying: the drive re-raises it once the call returns (`crashed`).
    """

    def __init__(self, engine: Engine, execution: Execution, renewals_end_ms: int) -> None:
        super().__init__(engine.limits.lease_renew_seconds, thread_name="workflow-lease-renewal")
        self._engine = engine
        self._execution = execution
        self._renewals_end_ms = renewals_end_ms
        self._lease_ms = int(engine.limits.lease_seconds * MS_PER_SECOND)
        self.renewed_until_ms: int | None = None
        self.lost = False
        self.crashed: BaseException | None = None

    def _renew_once(self) -> bool:
        engine = self._engine
        execution = self._execution
        now = engine._now_ms()
        if now >= self._renewals_end_ms:
            return False
        until_ms = now + self._lease_ms
        try:
            engine._renewal_crash_hook("lease:before_renew")
            renewed = engine.store.renew_lease(
                execution.execution_id, execution.version, engine._owner, until_ms
            )
            engine._renewal_crash_hook("lease:after_renew")
        except ExecutionStoreError:
            _log.warning("lease not renewed; trying again", execution_id=execution.execution_id)
            return True
        except BaseException as crash:
            self.crashed = crash
            return False
        if not renewed:
            self.lost = True
            return False
        self.renewed_until_ms = until_ms
        return True


def _timing(call_ms: float, function_ms: float | None) -> dict[str, float]:
    """How long a task's call took as the orchestrator timed it, and the function's part of it as
    the gateway reported it: the difference is the hop (gateway, network, HTTP clients)."""
    return {"call_ms": call_ms} if function_ms is None else {"call_ms": call_ms, "function_ms": function_ms}


def _call_timeout_seconds(state: TaskState) -> int:
    """How long one call to the resource may take; a callback's whole wait is bounded separately."""
    if state.is_callback:
        return HTTP_TIMEOUT_SECONDS_DEFAULT
    return state.timeout_seconds or HTTP_TIMEOUT_SECONDS_DEFAULT


__all__ = [
    "Engine",
    "EngineLimits",
    "StartResult",
    "WorkflowError",
    "StateMachineNotFound",
    "InvalidExecutionName",
    "InvalidExecutionInput",
    "ExecutionAlreadyExists",
    "InvalidTaskToken",
    "TaskNotFound",
    "TaskTokenUsed",
    "ExecutionBusy",
    "ExecutionNotFound",
    "ExecutionNotRedrivable",
    "ExecutionNotRunning",
    "task_token",
]
