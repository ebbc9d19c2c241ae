"""What each state does to an execution, as pure functions: no I/O, no clock, no randomness of its own.

The engine (engine.py) owns durability: it calls these to compute the next Execution and the
history events that go with it, and checkpoints the result before any task runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from finfaas.workflow import errors
from finfaas.workflow.asl import (
    CatchingState,
    ChoiceRule,
    ChoiceState,
    Definition,
    FailState,
    MapState,
    ParallelState,
    PassState,
    State,
    SucceedState,
    TaskState,
    WaitState,
    parse_timestamp,
)
from finfaas.workflow.errors import StatesError
from finfaas.workflow.model import Execution, Phase, Status, TaskResult, is_execution_id
from finfaas.workflow.paths import Path, write_result

MS_PER_SECOND = 1000
payload_bytes_max = 64 * 1024  # per JSON value kept in an execution item (DynamoDB items are <= 400 KB)
cause_chars_max = 32 * 1024
# A state's output is kept in its StateExited event for operators (Step Functions' console shows each
# state's input and output); larger ones are named by size only, so the history stays small enough to
# ride in the execution item (store: TAIL_BYTES_MAX).
exited_output_bytes_max = 1024
TOKEN_SEPARATOR = "."  # noqa: S105 - a separator, not a credential


@dataclass
class Step:
    """The execution as it changes in memory, and the history events to write with it."""

    execution: Execution
    events: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)
    # A start driven in process: the execution is not stored yet. The first checkpoint creates it
    # and reports whether it did (False: that name exists) together with what it wrote.
    on_create: Callable[[bool, Execution], None] | None = None
    # The execution as last stored, which the next checkpoint replaces (None: not stored yet).
    stored: Execution | None = None

    def event(self, kind: str, detail: dict[str, Any] | None = None, state: str | None = None) -> None:
        self.events.append((kind, state if state is not None else self.execution.state, detail or {}))

    def change(self, **changes: Any) -> None:
        from dataclasses import replace

        self.execution = replace(self.execution, **changes)


# --- task tokens ------------------------------------------------------------------------------


def task_token(execution_id: str, secret: str) -> str:
    """The token a callback party reports with: which execution, and the visit's secret."""
    encoded = base64.urlsafe_b64encode(execution_id.encode()).decode().rstrip("=")
    return f"{encoded}{TOKEN_SEPARATOR}{secret}"


def parse_task_token(token: str) -> tuple[str, str] | None:
    """(execution_id, secret), or None when the token is malformed."""
    encoded, separator, secret = token.partition(TOKEN_SEPARATOR)
    if not separator or not secret or not encoded:
        return None
    try:
        execution_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not is_execution_id(execution_id):
        return None
    return execution_id, secret


# --- context and payload helpers ---------------------------------------------------------------


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / MS_PER_SECOND, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def context_object(execution: Execution) -> dict[str, Any]:
    """The `$$` object: stable within one visit of a state, so a Task's request never changes."""
    token = task_token(execution.execution_id, execution.task_token) if execution.task_token else None
    return {
        "Execution": {
            "Id": execution.execution_id,
            "Name": execution.name,
            "Input": execution.input,
            "StartTime": iso(execution.started_at_ms),
        },
        "StateMachine": {"Name": execution.state_machine},
        "State": {
            "Name": execution.state,
            "EnteredTime": iso(execution.state_entered_at_ms),
            "RetryCount": max(execution.attempt - 1, 0),
        },
        "Task": {"Token": token},
    }


def json_bytes(value: Any) -> int:
    """The size of a JSON value as an execution item keeps it (compact, UTF-8)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def check_size(value: Any, what: str) -> int:
    """The value's size in bytes; States.DataLimitExceeded past payload_bytes_max."""
    size = json_bytes(value)
    if size > payload_bytes_max:
        raise StatesError(
            errors.DATA_LIMIT_EXCEEDED, f"{what} is {size} bytes; the limit is {payload_bytes_max}"
        )
    return size


def _read(path: Path | None, data: Any, error: str = errors.RUNTIME) -> Any:
    """InputPath/OutputPath: None (null) gives {}, a missing field is an error."""
    if path is None:
        return {}
    return path.read(data, error=error)


def _apply_result_path(path: Path | None, raw_input: Any, result: Any) -> Any:
    return raw_input if path is None else write_result(raw_input, path, result)


def task_parameters(state: TaskState, execution: Execution) -> Any:
    """The request a Task sends: InputPath then Parameters, from the visit's checkpointed input."""
    effective = _read(state.input_path, execution.state_input, errors.PARAMETER_PATH_FAILURE)
    if state.parameters is None:
        return effective
    return state.parameters.evaluate(effective, context_object(execution))


# --- entering states ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Entered:
    """Where running the pure states stopped."""

    # "task" (a Task is ready to start), "iterate" (a Map or Parallel is ready to start its
    # iterations), "wait" (parked), "stopped", "budget"
    kind: str


def enter(
    step: Step, definition: Definition, now_ms: int, new_secret: Callable[[], str], pure_states_max: int
) -> Entered:
    """Run from a READY execution through Pass/Choice/Wait(0)/Succeed/Fail until a Task, a Wait or the end."""
    for _ in range(pure_states_max):
        execution = step.execution
        state = definition.state(execution.state)
        visits = dict(execution.visits)
        visits[state.name] = visits.get(state.name, 0) + 1
        step.change(
            visits=visits,
            state_entered_at_ms=now_ms,
            retries=(),
            attempt=0,
            redrives=0,
            task_token=None,
            task_result=None,
        )
        step.event("StateEntered", {"type": state.type, "visit": visits[state.name]})
        try:
            if isinstance(state, TaskState):
                if state.is_callback:
                    step.change(task_token=new_secret())
                return Entered("task")
            if isinstance(state, MapState | ParallelState):
                return Entered("iterate")
            if isinstance(state, WaitState):
                due_ms = _wait_due_ms(state, execution.state_input, now_ms)
                if due_ms > now_ms:
                    step.change(phase=Phase.WAIT, next_run_at_ms=due_ms)
                    step.event("WaitStarted", {"until": iso(due_ms)})
                    return Entered("wait")
                leave_wait(step, state, now_ms)
            elif isinstance(state, PassState):
                leave(step, state, _pass_output(definition, state, step.execution), now_ms)
            elif isinstance(state, ChoiceState):
                _choose(step, state)
            elif isinstance(state, SucceedState):
                output = _read(state.output_path, _read(state.input_path, execution.state_input))
                finish(step, Status.SUCCEEDED, now_ms, output=output)
            elif isinstance(state, FailState):
                error, cause = _fail_fields(state, execution.state_input)
                finish(step, Status.FAILED, now_ms, error=error, cause=cause)
        except StatesError as failure:
            finish(step, Status.FAILED, now_ms, error=failure.error, cause=failure.cause[:cause_chars_max])
        if step.execution.status.terminal:
            return Entered("stopped")
    return Entered("budget")


def exited_detail(output: Any, size: int, detail: dict[str, Any]) -> dict[str, Any]:
    """A StateExited event's detail with the state's output, or only its `size` (check_size's answer)
    when it is large (the next state's input is this output, so the history shows both without storing
    either twice)."""
    if size <= exited_output_bytes_max:
        return {**detail, "output": output}
    return {**detail, "output_bytes": size}


def leave(step: Step, state: State, output: Any, now_ms: int) -> None:
    """Exit a state with its output: to Next, or end the execution successfully."""
    size = check_size(output, f"the output of {state.name!r}")
    step.event("StateExited", exited_detail(output, size, {"next": state.next} if state.next else {}))
    if state.end:
        finish(step, Status.SUCCEEDED, now_ms, output=output)
        return
    step.change(state=state.next, state_input=output, phase=Phase.READY, task_token=None, task_result=None)


def leave_wait(step: Step, state: WaitState, now_ms: int) -> None:
    """A Wait is over: its input (after InputPath and OutputPath) goes to Next."""
    try:
        output = _read(state.output_path, _read(state.input_path, step.execution.state_input))
        leave(step, state, output, now_ms)
    except StatesError as failure:
        finish(step, Status.FAILED, now_ms, error=failure.error, cause=failure.cause[:cause_chars_max])


def finish(
    step: Step,
    status: Status,
    now_ms: int,
    *,
    output: Any = None,
    error: str | None = None,
    cause: str | None = None,
) -> None:
    """Stop the execution; the stop time is kept in next_run_at_ms (the by-status index's order)."""
    kind = {
        Status.SUCCEEDED: "ExecutionSucceeded",
        Status.FAILED: "ExecutionFailed",
        Status.TIMED_OUT: "ExecutionTimedOut",
        Status.ABORTED: "ExecutionAborted",
    }[status]
    step.event(kind, {"error": error, "cause": cause} if error else {})
    step.change(
        status=status,
        phase=Phase.DONE,
        output=output,
        error=error,
        cause=cause,
        next_run_at_ms=now_ms,
        lease_owner=None,
        lease_until_ms=0,
        task_token=None,
        task_result=None,
    )


def _pass_output(definition: Definition, state: PassState, execution: Execution) -> Any:
    effective = _read(state.input_path, execution.state_input)
    if state.parameters is not None:
        effective = state.parameters.evaluate(effective, context_object(execution))
    result = state.result if definition.has_result(state) else effective
    combined = _apply_result_path(state.result_path, execution.state_input, result)
    return _read(state.output_path, combined)


def _fail_fields(state: FailState, raw_input: Any) -> tuple[str, str | None]:
    error = state.error_path.read(raw_input, error=errors.RUNTIME) if state.error_path else state.error
    cause = state.cause_path.read(raw_input, error=errors.RUNTIME) if state.cause_path else state.cause
    if not isinstance(error or "", str) or not isinstance(cause or "", str):
        raise StatesError(errors.RUNTIME, f"{state.name}: ErrorPath and CausePath must name strings")
    return error or "States.Fail", cause


def _wait_due_ms(state: WaitState, raw_input: Any, now_ms: int) -> int:
    effective = _read(state.input_path, raw_input)
    if state.seconds is not None:
        return now_ms + state.seconds * MS_PER_SECOND
    if state.seconds_path is not None:
        seconds = state.seconds_path.read(effective, error=errors.RUNTIME)
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            raise StatesError(errors.RUNTIME, f"{state.name}: SecondsPath must name a non-negative integer")
        return now_ms + seconds * MS_PER_SECOND
    if state.timestamp is not None:
        text = state.timestamp
    else:
        assert state.timestamp_path is not None  # asl.py: a Wait names exactly one of its four fields
        text = state.timestamp_path.read(effective)
    moment = parse_timestamp(text)
    if moment is None:
        raise StatesError(errors.RUNTIME, f"{state.name}: {text!r} is not an RFC 3339 timestamp")
    return int(moment.timestamp() * MS_PER_SECOND)


# --- Choice -----------------------------------------------------------------------------------


def _choose(step: Step, state: ChoiceState) -> None:
    raw_input = step.execution.state_input
    effective = _read(state.input_path, raw_input)
    target = next((rule.next for rule in state.choices if evaluate_rule(rule, effective)), state.default)
    if target is None:
        raise StatesError(errors.NO_CHOICE_MATCHED, f"{state.name}: no rule matched and there is no Default")
    output = _read(state.output_path, effective)
    size = check_size(output, f"the output of {state.name!r}")
    step.event("StateExited", exited_detail(output, size, {"next": target}))
    step.change(state=target, state_input=output, phase=Phase.READY)


def evaluate_rule(rule: ChoiceRule, data: Any) -> bool:
    """A choice rule against the Choice state's effective input."""
    if rule.operator == "And":
        return all(evaluate_rule(child, data) for child in rule.operand)
    if rule.operator == "Or":
        return any(evaluate_rule(child, data) for child in rule.operand)
    if rule.operator == "Not":
        return not evaluate_rule(rule.operand[0], data)
    assert rule.variable is not None
    if rule.operator == "IsPresent":
        return rule.variable.exists(data) == rule.operand
    value = rule.variable.read(data, error=errors.RUNTIME)
    operator, operand = rule.operator, rule.operand
    if operator.endswith("Path"):
        operator, operand = operator[: -len("Path")], operand.read(data, error=errors.RUNTIME)
    return _compare(operator, value, operand)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "IsNull": lambda v: v is None,
    "IsNumeric": _is_number,
    "IsString": lambda v: isinstance(v, str),
    "IsBoolean": lambda v: isinstance(v, bool),
    "IsTimestamp": lambda v: parse_timestamp(v) is not None,
}
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b,
    "LessThan": lambda a, b: a < b,
    "GreaterThan": lambda a, b: a > b,
    "LessThanEquals": lambda a, b: a <= b,
    "GreaterThanEquals": lambda a, b: a >= b,
}


def _compare(operator: str, value: Any, operand: Any) -> bool:
    if operator in _TYPE_TESTS:
        return _TYPE_TESTS[operator](value) == operand
    if operator == "StringMatches":
        return isinstance(value, str) and _string_matches(value, operand)
    for prefix, accepts in (
        ("String", lambda v: isinstance(v, str)),
        ("Numeric", _is_number),
        ("Boolean", lambda v: isinstance(v, bool)),
    ):
        if operator.startswith(prefix):
            # Values of another type never match, as in Step Functions (no coercion).
            return accepts(value) and accepts(operand) and _ORDER[operator[len(prefix) :]](value, operand)
    left, right = parse_timestamp(value), parse_timestamp(operand)
    return left is not None and right is not None and _ORDER[operator[len("Timestamp") :]](left, right)


def _string_matches(value: str, pattern: str) -> bool:
    """`*` matches any run of characters; `\\*` is a literal star (nothing else is special)."""
    literal_pieces = pattern.split("\\*")
    regex = re.escape("*").join(
        ".*".join(re.escape(chunk) for chunk in piece.split("*")) for piece in literal_pieces
    )
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


# --- tasks ------------------------------------------------------------------------------------


def begin_attempt(
    step: Step, state: TaskState, now_ms: int, owner: str, lease_until_ms: int, idempotency_key: str
) -> None:
    """Start the next attempt of the current Task under a lease."""
    attempt = step.execution.attempt + 1
    step.change(
        phase=Phase.TASK,
        attempt=attempt,
        attempt_started_at_ms=now_ms,
        redrives=0,
        lease_owner=owner,
        lease_until_ms=lease_until_ms,
        next_run_at_ms=lease_until_ms,
    )
    step.event(
        "TaskScheduled", {"attempt": attempt, "resource": state.resource, "idempotency_key": idempotency_key}
    )


def apply_result(
    step: Step,
    definition: Definition,
    result: TaskResult,
    now_ms: int,
    unit_random: Callable[[], float],
    timing: Mapping[str, float] | None = None,
) -> None:
    """A Task's outcome: to Next with its output, or Retry (BACKOFF), or Catch, or the execution fails.

    timing: how long the call took (call_ms, function_ms), kept in the TaskSucceeded or TaskFailed
    event; None for outcomes no call produced (a callback's report, a timeout)."""
    state = definition.state(step.execution.state)
    assert isinstance(state, TaskState)
    step.change(lease_owner=None, lease_until_ms=0, task_result=None)
    if result.ok:
        try:
            output = state_output(state, step.execution, result.output)
        except StatesError as failure:
            result = TaskResult(False, error=failure.error, cause=failure.cause)
        else:
            step.event("TaskSucceeded", {"attempt": step.execution.attempt, **(timing or {})})
            leave(step, state, output, now_ms)
            return
    handle_error(
        step,
        state,
        result.error or errors.TASK_FAILED,
        (result.cause or "")[:cause_chars_max],
        now_ms,
        unit_random,
        timing,
    )


def state_output(state: CatchingState, execution: Execution, result: Any) -> Any:
    if state.result_selector is not None:
        result = state.result_selector.evaluate(result, context_object(execution))
    check_size(result, f"the result of {state.name!r}")
    combined = _apply_result_path(state.result_path, execution.state_input, result)
    output = _read(state.output_path, combined, errors.RESULT_PATH_MATCH_FAILURE)
    check_size(output, f"the output of {state.name!r}")
    return output


def handle_error(
    step: Step,
    state: CatchingState,
    error: str,
    cause: str,
    now_ms: int,
    unit_random: Callable[[], float],
    timing: Mapping[str, float] | None,
    failed_event: str = "TaskFailed",
) -> None:
    execution = step.execution
    step.event(failed_event, {"attempt": execution.attempt, "error": error, "cause": cause, **(timing or {})})
    retries = list(execution.retries) or [0] * len(state.retry)
    for index, retrier in enumerate(state.retry):
        if not errors.matches(retrier.error_equals, error):
            continue
        if retries[index] < retrier.max_attempts:
            delay_ms = int(retrier.delay_seconds(retries[index], unit_random()) * MS_PER_SECOND)
            retries[index] += 1
            step.change(phase=Phase.BACKOFF, retries=tuple(retries), next_run_at_ms=now_ms + delay_ms)
            step.event(
                "TaskRetryScheduled",
                {"retry": retries[index], "delay_ms": delay_ms, "until": iso(now_ms + delay_ms)},
            )
            return
        break  # the first matching retrier is exhausted: on to Catch (States Language spec)
    if not catch(step, state, error, cause, now_ms):
        finish(step, Status.FAILED, now_ms, error=error, cause=cause)


def catch(step: Step, state: CatchingState, error: str, cause: str, now_ms: int) -> bool:
    """Hand the error to the first matching catcher of the state (READY at its Next); False: none matches."""
    execution = step.execution
    for catcher in state.catch:
        if errors.matches(catcher.error_equals, error):
            try:
                output = _apply_result_path(
                    catcher.result_path, execution.state_input, {"Error": error, "Cause": cause}
                )
            except StatesError as failure:
                finish(step, Status.FAILED, now_ms, error=failure.error, cause=failure.cause)
                return True
            detail = {"next": catcher.next, "caught": error}
            step.event("StateExited", exited_detail(output, json_bytes(output), detail))
            step.change(state=catcher.next, state_input=output, phase=Phase.READY, task_token=None)
            return True
    return False


def callback_deadline_ms(state: TaskState, execution: Execution) -> int | None:
    """When a waiting callback Task times out (whole wait) or misses a heartbeat; None: never."""
    deadlines = []
    if state.timeout_seconds is not None:
        deadlines.append(execution.attempt_started_at_ms + state.timeout_seconds * MS_PER_SECOND)
    if state.heartbeat_seconds is not None:
        last_sign = max(execution.attempt_started_at_ms, execution.last_heartbeat_ms)
        deadlines.append(last_sign + state.heartbeat_seconds * MS_PER_SECOND)
    return min(deadlines) if deadlines else None


def callback_timeout(state: TaskState, execution: Execution, now_ms: int) -> TaskResult | None:
    """The timeout error of a waiting callback Task if one is due, else None."""
    if state.timeout_seconds is not None:
        if now_ms >= execution.attempt_started_at_ms + state.timeout_seconds * MS_PER_SECOND:
            return TaskResult(False, error=errors.TIMEOUT, cause="no callback within TimeoutSeconds")
    if state.heartbeat_seconds is not None:
        last_sign = max(execution.attempt_started_at_ms, execution.last_heartbeat_ms)
        if now_ms >= last_sign + state.heartbeat_seconds * MS_PER_SECOND:
            return TaskResult(
                False, error=errors.HEARTBEAT_TIMEOUT, cause="no heartbeat within HeartbeatSeconds"
            )
    return None
