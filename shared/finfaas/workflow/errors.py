"""Error names of the ASL subset (States.*) and the exceptions of the workflow layer."""

from __future__ import annotations

# Predefined ASL error names (States Language spec, "Errors").
ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
PERMISSIONS = "States.Permissions"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
RUNTIME = "States.Runtime"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
HTTP_SOCKET = "States.Http.Socket"
HTTP_STATUS_PREFIX = "States.Http.StatusCode."
STATES_PREFIX = "States."
# What an operator's stop raises in the current Task: a name of our own, since the States Language
# reserves States.* and asl-validator refuses unknown ones; States.ALL and States.TaskFailed match it.
EXECUTION_STOPPED = "Execution.Stopped"
PREDEFINED = frozenset(
    {
        ALL,
        TASK_FAILED,
        TIMEOUT,
        HEARTBEAT_TIMEOUT,
        PERMISSIONS,
        RESULT_PATH_MATCH_FAILURE,
        PARAMETER_PATH_FAILURE,
        NO_CHOICE_MATCHED,
        INTRINSIC_FAILURE,
        RUNTIME,
        DATA_LIMIT_EXCEEDED,
        HTTP_SOCKET,
        "States.BranchFailed",
        "States.ExceedToleratedFailureThreshold",
        "States.ItemReaderFailed",
        "States.ResultWriterFailed",
        "States.QueryEvaluationError",
    }
)
# Terminal errors: no Retry or Catch sees them, the execution fails (as in Step Functions).
UNCATCHABLE = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})


def http_status_error(status: int) -> str:
    return f"{HTTP_STATUS_PREFIX}{status}"


def is_known_name(name: str) -> bool:
    """A States.* name must be predefined or an HTTP status error; other names are user errors."""
    if not name.startswith(STATES_PREFIX):
        return True
    if name in PREDEFINED:
        return True
    suffix = name[len(HTTP_STATUS_PREFIX) :]
    return name.startswith(HTTP_STATUS_PREFIX) and suffix.isdigit() and len(suffix) == 3


def matches(error_equals: tuple[str, ...], error: str) -> bool:
    """Does a Retry/Catch ErrorEquals list match this error name?"""
    if error in UNCATCHABLE:
        return False
    for name in error_equals:
        if name == error or name == ALL:
            return True
        # States.TaskFailed is a wildcard for every error but a timeout.
        if name == TASK_FAILED and error != TIMEOUT:
            return True
    return False


class DefinitionError(ValueError):
    """A state machine definition is outside the supported subset or malformed."""

    def __init__(self, message: str, *, state: str | None = None, field: str | None = None) -> None:
        where = " ".join(
            part
            for part in (
                f"state {state!r}" if state is not None else "",
                f"field {field!r}" if field is not None else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.state = state
        self.field = field


class PathSyntaxError(ValueError):
    """A path or intrinsic function is outside the supported JSONPath subset."""


class StatesError(Exception):
    """A runtime error with an ASL error name, raised while evaluating paths, choices or intrinsics."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause
