"""Map and Parallel states: their iterations run under the execution's lease, and their results are
recorded in chunks beside the execution, never in it (docs/workflows.md, "Map and Parallel").

* Entering the state is one checkpoint: phase ITERATING, a lease, the attempt. No iteration runs
  before it is written.
* Each iteration runs its processor (or branch) to the end in memory. Its tasks are called with
  the state's key extended by the item's index and the inner state and visit
  (`<execution>#<Map>#<visit>#<index>#<inner state>#<inner visit>`), so an iteration run again
  after a crash replays every effect it had, and its outcome is the same.
* Finished iterations are recorded a chunk at a time (one conditional write on the execution's
  version and lease, plus the chunk item), in the history table under a key of their own: a drive
  that takes over reads the chunks and runs only the iterations no chunk holds. The execution item
  grows by a few events per visit, whatever the number of items.
* A drive iterates at most EngineLimits.drive_seconds_max, then gives the lease up and continues
  from the queue, like any long drive.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from finfaas.workflow import errors
from finfaas.workflow.asl import Definition, MapState, ParallelState, TaskState
from finfaas.workflow.errors import StatesError
from finfaas.workflow.interpreter import (
    MS_PER_SECOND,
    Step,
    apply_result,
    begin_attempt,
    cause_chars_max,
    check_size,
    context_object,
    enter,
    handle_error,
    leave,
    state_output,
    task_parameters,
)
from finfaas.workflow.model import (
    IDEMPOTENCY_KEY_CHARS_MAX,
    IDEMPOTENCY_KEY_SEPARATOR,
    Execution,
    Phase,
    Status,
    TaskResult,
    idempotency_key,
)
from finfaas.workflow.tasks import HTTP_TIMEOUT_SECONDS_DEFAULT, TaskBusy, TaskCall, TaskFailed, TaskSucceeded

if TYPE_CHECKING:
    from finfaas.workflow.engine import _Drive

IterationState = MapState | ParallelState
# The history table keys an iteration run's chunks by this partition: never an execution id (those
# hold no '#'), so chunks and history events never share a partition.
RUN_KEY_SEPARATOR = "#"


@dataclass(frozen=True)
class IterationLimits:
    """Every bound of Map and Parallel iterations, in one place."""

    # Iterations running at once in one drive when MaxConcurrency is 0 or larger: each holds a thread
    # and, through its task, a connection to a function.
    concurrency_max: int = 16
    # A chunk of results is recorded once it holds this many, this many bytes of JSON (a DynamoDB item
    # holds 400 KB), or its oldest result has waited this long: what a crash can make run again.
    chunk_items_max: int = 250
    chunk_bytes_max: int = 256 * 1024
    chunk_seconds_max: float = 2.0
    # As many items as 64 KiB of JSON input can list ("0," is two bytes).
    items_max: int = 32 * 1024
    # States one iteration may pass through (a loop inside a processor ends as States.Runtime).
    transitions_per_iteration_max: int = 1000
    # Times one iteration asks again a function still busy with its key (409 idempotency_key_in_use).
    busy_retries_max: int = 30


@dataclass(frozen=True)
class IterationResult:
    """One iteration's outcome: its output, or the error and cause it failed with."""

    index: int
    ok: bool
    output: Any = None
    error: str | None = None
    cause: str | None = None

    def row(self) -> list[Any]:
        if self.ok:
            return [self.index, 1, self.output]
        return [self.index, 0, self.error, self.cause]

    @classmethod
    def from_row(cls, row: list[Any]) -> IterationResult:
        if row[1]:
            return cls(int(row[0]), True, row[2])
        return cls(int(row[0]), False, error=row[2], cause=row[3])

    def as_output(self) -> Any:
        """What the state's result array holds for it: the output, or the error of a tolerated failure."""
        return self.output if self.ok else {"Error": self.error, "Cause": self.cause}


def is_iteration_state(state: object) -> bool:
    return isinstance(state, MapState | ParallelState)


def run_key(execution: Execution, state: str) -> str:
    """Where one attempt of one visit's iterations records its chunks; a redrive starts a new run."""
    prefix = idempotency_key(execution.execution_id, state, execution.visits.get(state, 0))
    return f"{prefix}{RUN_KEY_SEPARATOR}{execution.redrive_count}.{execution.attempt}"


def iteration_key(parent_key: str, index: int, state: str, visit: int) -> str:
    """The Idempotency-Key of a task inside an iteration: the state's key, the item's index, the
    inner state and its visit in that iteration; hashed like idempotency_key when not printable."""
    readable = IDEMPOTENCY_KEY_SEPARATOR.join((parent_key, str(index), state, str(visit)))
    printable = all(0x21 <= ord(char) <= 0x7E for char in readable)
    if printable and len(readable) <= IDEMPOTENCY_KEY_CHARS_MAX and IDEMPOTENCY_KEY_SEPARATOR not in state:
        return readable
    digest = hashlib.sha256(json.dumps([parent_key, index, state, visit]).encode()).hexdigest()
    return f"wf:{digest}"


# --- what the iterations are --------------------------------------------------------------------


@dataclass(frozen=True)
class Iterations:
    """The processor and input of each iteration of one visit, computed from its checkpointed input."""

    state: IterationState
    count: int
    input_of: Callable[[int], Any]
    processor_of: Callable[[int], Definition]


def iterations_of(state: IterationState, execution: Execution, items_max: int) -> Iterations:
    """Map: one per item of ItemsPath (through ItemSelector); Parallel: one per branch."""
    raw_input = execution.state_input
    effective = {} if state.input_path is None else state.input_path.read(raw_input, error=errors.RUNTIME)
    context = context_object(execution)
    if isinstance(state, ParallelState):
        value = effective if state.parameters is None else state.parameters.evaluate(effective, context)
        branches = state.branches
        return Iterations(state, len(branches), lambda _: value, lambda index: branches[index])
    items = state.items_path.read(effective, error=errors.RUNTIME)
    if not isinstance(items, list):
        raise StatesError(errors.RUNTIME, f"{state.name}: ItemsPath must name an array")
    if len(items) > items_max:
        raise StatesError(errors.RUNTIME, f"{state.name}: {len(items)} items; at most {items_max}")
    selector, processor = state.item_selector, state.processor
    assert processor is not None  # asl.py: a Map always has an ItemProcessor

    def input_of(index: int) -> Any:
        if selector is None:
            return items[index]
        item_context = {**context, "Map": {"Item": {"Index": index, "Value": items[index]}}}
        return selector.evaluate(effective, item_context)

    return Iterations(state, len(items), input_of, lambda _: processor)


def _kind(state: IterationState) -> str:
    return "Map" if isinstance(state, MapState) else "Parallel"


def _keeps_results(state: IterationState) -> bool:
    """A Map whose result is dropped (ResultPath null, no ResultSelector) records outcomes only, so a
    Map of any size fits the execution's limits."""
    return state.result_path is not None or state.result_selector is not None


# --- the drive's side ---------------------------------------------------------------------------


def begin(drive: _Drive, now: int) -> str | None:
    """The state was just entered: checkpoint its first attempt under a lease, then iterate."""
    state = _state(drive)
    try:
        iterations = iterations_of(state, drive.step.execution, drive.engine.iteration_limits.items_max)
    except StatesError as failure:
        return _failed(drive, state, failure.error, failure.cause, now)
    return _start_attempt(drive, iterations, now)


def advance(drive: _Drive, execution: Execution, now: int) -> str | None:
    """ITERATING: take the lease over (its drive died, or gave it up) and go on where the chunks end;
    BACKOFF: the next attempt once it is due."""
    state = _state(drive)
    items_max = drive.engine.iteration_limits.items_max
    if execution.phase is Phase.BACKOFF:
        if execution.next_run_at_ms > now:
            return drive._park(execution.next_run_at_ms, now)
        try:
            return _start_attempt(drive, iterations_of(state, execution, items_max), now)
        except StatesError as failure:
            return _failed(drive, state, failure.error, failure.cause, now)
    lost = execution.lease_owner is not None
    lease_until = now + int(drive.limits.lease_seconds * MS_PER_SECOND)
    drive.step.change(
        redrives=execution.redrives + (1 if lost else 0),
        lease_owner=drive.engine._owner,
        lease_until_ms=lease_until,
        next_run_at_ms=lease_until,
    )
    if lost:
        drive.step.event(f"{_kind(state)}StateResumed", {"attempt": execution.attempt, "lease_lost": True})
    if not drive.engine._checkpoint(drive.step):
        return "conflict"
    try:  # the same input as when the state began; it fails only if the definition changed since
        iterations = iterations_of(state, drive.step.execution, items_max)
    except StatesError as failure:
        return _failed(drive, state, failure.error, failure.cause, now)
    return _iterate(drive, iterations, now)


def _state(drive: _Drive) -> IterationState:
    state = drive.definition.state(drive.step.execution.state)
    assert isinstance(state, MapState | ParallelState)
    return state


def _start_attempt(drive: _Drive, iterations: Iterations, now: int) -> str | None:
    step = drive.step
    attempt = step.execution.attempt + 1
    lease_until = now + int(drive.limits.lease_seconds * MS_PER_SECOND)
    step.change(
        phase=Phase.ITERATING,
        attempt=attempt,
        attempt_started_at_ms=now,
        redrives=0,
        lease_owner=drive.engine._owner,
        lease_until_ms=lease_until,
        next_run_at_ms=lease_until,
    )
    run = run_key(step.execution, iterations.state.name)
    detail = {"attempt": attempt, "iterations": iterations.count, "run": run}
    step.event(f"{_kind(iterations.state)}StateStarted", detail)
    if not drive.engine._checkpoint(step):
        return "conflict"
    return _iterate(drive, iterations, now)


def _iterate(drive: _Drive, iterations: Iterations, now: int) -> str | None:
    """Run the iterations no chunk holds yet, recording them, until all are done, too many failed,
    the drive's time is up, or the lease is lost."""
    from finfaas.workflow.engine import _LeaseRenewal  # the engine imports this module

    engine, execution, state = drive.engine, drive.step.execution, iterations.state
    run = run_key(execution, state.name)
    chunks = engine.store.iteration_chunks(run)
    done: dict[int, IterationResult] = {}
    for chunk in chunks:
        for row in json.loads(chunk):
            result = IterationResult.from_row(row)
            done.setdefault(result.index, result)
    recorder = _Recorder(drive, run, len(chunks), _keeps_results(state))
    end_ms = drive.started_ms + int(drive.limits.drive_seconds_max * MS_PER_SECOND)
    if execution.deadline_ms is not None:
        end_ms = min(end_ms, execution.deadline_ms)
    renewals_end_ms = end_ms + int(drive.limits.lease_grace_seconds * MS_PER_SECOND)
    renewal = _LeaseRenewal(engine, execution, renewals_end_ms)
    # A refused renewal (a stop, a takeover) ends the iterations before the next record would.
    runner = _Runner(drive, iterations, done, recorder, end_ms, lambda: renewal.lost)
    with renewal:
        outcome = runner.run()
    if renewal.crashed is not None:
        raise renewal.crashed
    if renewal.lost or outcome == "lost":
        return "lease_lost"
    if renewal.renewed_until_ms is not None:
        drive._renewed(renewal.renewed_until_ms)
    now = engine._now_ms()
    drive.step.change(lease_owner=None, lease_until_ms=0)
    failure = _failure(state, [r for r in done.values() if not r.ok], iterations.count)
    if failure is not None:
        return _failed(drive, state, *failure, now)
    if len(done) < iterations.count:
        if execution.deadline_ms is not None and now >= execution.deadline_ms:
            return None  # the drive's loop times the execution out
        return drive._continue_later(now)
    return _succeeded(drive, state, done, iterations.count, now)


def _succeeded(
    drive: _Drive, state: IterationState, done: dict[int, IterationResult], count: int, now: int
) -> str | None:
    step = drive.step
    failed = sum(1 for result in done.values() if not result.ok)
    gathered = [done[index].as_output() for index in range(count)] if _keeps_results(state) else None
    try:
        output = state_output(state, step.execution, gathered)
    except StatesError as failure:
        return _failed(drive, state, failure.error, failure.cause, now)
    detail = {"attempt": step.execution.attempt, "iterations": count, "failed": failed}
    step.event(f"{_kind(state)}StateSucceeded", detail)
    leave(step, state, output, now)
    return None


def _failed(drive: _Drive, state: IterationState, error: str, cause: str, now: int) -> str | None:
    """The state failed: its Retry (a whole new attempt), its Catch, or the execution fails."""
    step = drive.step
    step.change(lease_owner=None, lease_until_ms=0)
    handle_error(
        step,
        state,
        error,
        cause[:cause_chars_max],
        now,
        drive.engine._unit_random,
        None,
        failed_event=f"{_kind(state)}StateFailed",
    )
    execution = step.execution
    if execution.phase is not Phase.BACKOFF:
        return None
    delay_ms = execution.next_run_at_ms - now
    if delay_ms <= drive.limits.inline_backoff_seconds_max * MS_PER_SECOND:
        drive.engine._sleep(max(delay_ms, 0) / MS_PER_SECOND)
        return advance(drive, step.execution, drive.engine._now_ms())
    return drive._park(execution.next_run_at_ms, now)


def _failure(state: IterationState, failed: list[IterationResult], count: int) -> tuple[str, str] | None:
    """(error, cause) when these failed iterations fail the state; None while they are tolerated.

    As in Step Functions: without a tolerated threshold the first failure fails the state with its own
    error (the lowest index among those recorded); past a threshold the error is
    States.ExceedToleratedFailureThreshold."""
    if not failed:
        return None
    failures = sorted(failed, key=lambda r: r.index)
    if not (isinstance(state, MapState) and state.tolerates_failures):
        first = failures[0]
        return first.error or errors.TASK_FAILED, first.cause or ""
    exceeded = (
        state.tolerated_failure_count is not None and len(failures) > state.tolerated_failure_count
    ) or (
        state.tolerated_failure_percentage is not None
        and len(failures) * 100 > state.tolerated_failure_percentage * count
    )
    if not exceeded:
        return None
    cause = f"{len(failures)} of {count} iterations failed; the first: {failures[0].error}"
    return "States.ExceedToleratedFailureThreshold", cause


# --- running iterations -------------------------------------------------------------------------


class _Recorder:
    """Collects finished iterations and records them a chunk at a time, on the drive's thread."""

    def __init__(self, drive: _Drive, run: str, next_chunk: int, keep_outputs: bool) -> None:
        self._drive = drive
        self._run = run
        self._next_chunk = next_chunk
        self._keep_outputs = keep_outputs
        self._limits = drive.engine.iteration_limits
        self._rows: list[str] = []
        self._bytes = 0
        self._oldest_ms: int | None = None

    def add(self, result: IterationResult) -> bool:
        """Hold a result; records a chunk when one is due. False: the lease is lost."""
        if not self._keep_outputs and result.ok:
            result = replace(result, output=None)
        row = json.dumps(result.row(), separators=(",", ":"), ensure_ascii=False)
        size = len(row.encode())
        if self._rows and self._bytes + size > self._limits.chunk_bytes_max and not self.flush():
            return False
        self._rows.append(row)
        self._bytes += size
        now = self._drive.engine._now_ms()
        self._oldest_ms = now if self._oldest_ms is None else self._oldest_ms
        if len(self._rows) >= self._limits.chunk_items_max or self.overdue(now):
            return self.flush()
        return True

    def overdue(self, now: int) -> bool:
        waited_ms = now - self._oldest_ms if self._oldest_ms is not None else 0
        return bool(self._rows) and waited_ms >= self._limits.chunk_seconds_max * MS_PER_SECOND

    def flush(self) -> bool:
        """Record what is held as the next chunk; False: the execution moved on (lease lost, stopped)."""
        if not self._rows:
            return True
        engine = self._drive.engine
        execution = self._drive.step.execution
        engine._crash_hook("iterations:before_record")
        written = engine.store.record_iterations(
            execution.execution_id,
            execution.version,
            engine._owner,
            self._run,
            self._next_chunk,
            "[" + ",".join(self._rows) + "]",
        )
        engine._crash_hook("iterations:after_record")
        if not written:
            return False
        self._next_chunk += 1
        self._rows, self._bytes, self._oldest_ms = [], 0, None
        return True


class _Runner:
    """Runs the pending iterations of one drive, MaxConcurrency at a time, and records them."""

    def __init__(
        self,
        drive: _Drive,
        iterations: Iterations,
        done: dict[int, IterationResult],
        recorder: _Recorder,
        end_ms: int,
        lease_lost: Callable[[], bool],
    ) -> None:
        self._drive = drive
        self._iterations = iterations
        self._done = done
        self._failed = [result for result in done.values() if not result.ok]
        self._recorder = recorder
        self._end_ms = end_ms
        self._lease_lost = lease_lost
        limits = drive.engine.iteration_limits
        concurrency = iterations.state.max_concurrency if isinstance(iterations.state, MapState) else 0
        self._workers = min(concurrency or limits.concurrency_max, limits.concurrency_max)
        self._parent_key = idempotency_key(
            drive.step.execution.execution_id, iterations.state.name, drive.step.execution.visit
        )

    def run(self) -> str:
        """'done' (what ran is recorded: all of it, or until time ran out or a failure failed the
        state) or 'lost' (the lease moved on: nothing more may be recorded)."""
        pending = [index for index in range(self._iterations.count) if index not in self._done]
        if self._workers <= 1:
            for index in pending:
                if self._stopping():
                    break
                if not self._finished(self._run_one(index)):
                    return "lost"
        elif not self._run_concurrently(pending):
            return "lost"
        return "done" if self._recorder.flush() else "lost"

    def _run_concurrently(self, pending: list[int]) -> bool:
        remaining = iter(pending)
        in_flight: set[Future[IterationResult]] = set()
        pool = ThreadPoolExecutor(self._workers, thread_name_prefix="workflow-iteration")
        try:
            while True:
                while len(in_flight) < self._workers and not self._stopping():
                    index = next(remaining, None)
                    if index is None:
                        break
                    in_flight.add(pool.submit(self._run_one, index))
                if not in_flight:
                    return True
                finished, in_flight = wait(
                    in_flight, timeout=self._drive.engine.iteration_limits.chunk_seconds_max,
                    return_when=FIRST_COMPLETED,
                )
                for future in finished:
                    if not self._finished(future.result()):
                        return False
                if self._recorder.overdue(self._drive.engine._now_ms()) and not self._recorder.flush():
                    return False
        finally:
            # A crash or a lost lease abandons what has not started; what runs finishes its call.
            pool.shutdown(wait=True, cancel_futures=True)

    def _finished(self, result: IterationResult) -> bool:
        self._done[result.index] = result
        if not result.ok:
            self._failed.append(result)
        return self._recorder.add(result)

    def _stopping(self) -> bool:
        if self._lease_lost() or self._drive.engine._now_ms() >= self._end_ms:
            return True
        failure = _failure(self._iterations.state, self._failed, self._iterations.count)
        return failure is not None

    def _run_one(self, index: int) -> IterationResult:
        try:
            value = self._iterations.input_of(index)
        except StatesError as failure:
            return IterationResult(index, False, error=failure.error, cause=failure.cause)
        processor = self._iterations.processor_of(index)
        return run_iteration(self._drive, processor, value, index, self._parent_key)


def run_iteration(
    drive: _Drive, processor: Definition, value: Any, index: int, parent_key: str
) -> IterationResult:
    """One iteration to its end, in memory: its tasks are called with keys derived from parent_key and
    index, so running it again replays the same answers. Its history events are not kept."""
    engine = drive.engine
    limits = engine.iteration_limits
    parent = drive.step.execution
    step = Step(
        replace(
            parent,
            state=processor.start_at,
            phase=Phase.READY,
            state_input=value,
            visits={},
            retries=(),
            attempt=0,
            task_token=None,
            task_result=None,
            deadline_ms=None,
            output=None,
            error=None,
            cause=None,
        )
    )
    for _ in range(limits.transitions_per_iteration_max):
        execution = step.execution
        step.events.clear()
        if execution.status.terminal:
            break
        now = engine._now_ms()
        if execution.phase is Phase.BACKOFF:
            engine._sleep(max(execution.next_run_at_ms - now, 0) / MS_PER_SECOND)
            _call(drive, step, processor, index, parent_key)
            continue
        entered = enter(step, processor, now, engine._new_secret, drive.limits.pure_states_per_checkpoint_max)
        if entered.kind == "task":
            _call(drive, step, processor, index, parent_key)
    else:
        cause = f"more than {limits.transitions_per_iteration_max} states in one iteration"
        return IterationResult(index, False, error=errors.RUNTIME, cause=cause)
    execution = step.execution
    if execution.status is Status.SUCCEEDED:
        return IterationResult(index, True, execution.output)
    return IterationResult(index, False, error=execution.error or errors.TASK_FAILED, cause=execution.cause)


def _call(drive: _Drive, step: Step, processor: Definition, index: int, parent_key: str) -> None:
    """One attempt of the iteration's current Task, applied to the iteration (Retry and Catch included)."""
    engine = drive.engine
    state = processor.state(step.execution.state)
    assert isinstance(state, TaskState)  # asl.py: iterations hold no other kind of task state
    key = iteration_key(parent_key, index, state.name, step.execution.visit)
    now = engine._now_ms()
    begin_attempt(step, state, now, engine._owner, 0, key)
    result = _invoke(drive, state, step.execution, key)
    apply_result(step, processor, result, engine._now_ms(), engine._unit_random)


def _invoke(drive: _Drive, state: TaskState, execution: Execution, key: str) -> TaskResult:
    engine = drive.engine
    try:
        parameters = task_parameters(state, execution)
        check_size(parameters, f"the request of {state.name!r}")
    except StatesError as failure:
        return TaskResult(False, error=failure.error, cause=failure.cause)
    call = TaskCall(
        resource=state.resource,
        parameters=parameters,
        idempotency_key=key,
        execution_id=execution.execution_id,
        state=state.name,
        attempt=execution.attempt,
        timeout_seconds=float(state.timeout_seconds or HTTP_TIMEOUT_SECONDS_DEFAULT),
    )
    for _ in range(engine.iteration_limits.busy_retries_max):
        outcome = engine._run_task(call)
        if isinstance(outcome, TaskSucceeded):
            return TaskResult(True, outcome.output)
        if isinstance(outcome, TaskFailed):
            return TaskResult(False, error=outcome.error, cause=outcome.cause)
        if not isinstance(outcome, TaskBusy):  # a callback cannot run in an iteration (asl.py)
            cause = "a task in an iteration waited for a callback"
            return TaskResult(False, error=errors.RUNTIME, cause=cause)
        engine._sleep(outcome.retry_after_seconds)
    return TaskResult(False, error=errors.TIMEOUT, cause="the function stayed busy with this key")
