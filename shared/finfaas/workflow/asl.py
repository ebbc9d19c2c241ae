"""Amazon States Language definitions: load, check against the engine's subset, compile.

The subset (docs/workflows.md): Task, Choice, Pass, Wait, Succeed, Fail, Map (inline) and Parallel
(their iterations hold Task, Pass, Choice, Succeed and Fail); InputPath, Parameters,
ResultSelector, ResultPath, OutputPath; Retry and Catch; TimeoutSeconds and HeartbeatSeconds; the
top-level TimeoutSeconds. Anything else, valid ASL or not, is refused here with the state and field
named, so a definition never reaches an execution with a feature the engine would ignore.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path as FilePath
from typing import Any

from finfaas.platform import jsonio
from finfaas.workflow import errors
from finfaas.workflow.errors import DefinitionError, PathSyntaxError
from finfaas.workflow.paths import Path, Template, compile_template, parse_path, parse_result_path

DEFINITION_SUFFIX = ".asl.json"
STATEMACHINES_DIR_ENV = "FINFAAS_STATEMACHINES_DIR"
# shared/finfaas/workflow/asl.py -> the folder holding infra/ (the repository, or the function's
# build context where stack.yml's configuration.copy puts infra/statemachines).
PROJECT_ROOT = FilePath(__file__).resolve().parents[3]
STATE_NAME_CHARS_MAX = 80
STATE_MACHINE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
definition_bytes_max = 256 * 1024
states_max = 500
retriers_max = 16
catchers_max = 16
choices_max = 100
choice_rule_depth_max = 8
timeout_seconds_max = 99_999_999  # the ASL maximum (about three years)
retry_attempts_max = 99_999_999
http_timeout_seconds_max = 60  # AWS's limit for an HTTP task, kept so definitions stay deployable

HTTP_INVOKE = "arn:aws:states:::http:invoke"
SQS_SEND = "arn:aws:states:::sqs:sendMessage"
SQS_SEND_WAIT = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
RESOURCES = (HTTP_INVOKE, SQS_SEND, SQS_SEND_WAIT)
CALLBACK_RESOURCES = frozenset({SQS_SEND_WAIT})
TASK_TOKEN_PATH = "$$.Task.Token"  # noqa: S105 - a context path, not a credential
RETRY_COUNT_PATH = "$$.State.RetryCount"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HTTP_PARAMETERS = frozenset(
    {"ApiEndpoint", "Method", "Headers", "QueryParameters", "RequestBody", "Authentication", "Transform"}
)
SQS_PARAMETERS = frozenset(
    {
        "QueueUrl",
        "MessageBody",
        "MessageAttributes",
        "DelaySeconds",
        "MessageGroupId",
        "MessageDeduplicationId",
    }
)
# The engine sets these on every HTTP task; a definition may not.
ENGINE_HEADERS = frozenset({"authorization", "idempotency-key"})
# /function/<name>/<route>: the gateway path of a suite function.
FUNCTION_PATH_PATTERN = re.compile(r"^/function/([a-z0-9]([-a-z0-9]*[a-z0-9])?)(/[^?#]*)?$")

COMMON_FIELDS = frozenset({"Type", "Comment"})
IO_FIELDS = frozenset({"InputPath", "OutputPath"})
FLOW_FIELDS = frozenset({"Next", "End"})
STATE_FIELDS: dict[str, frozenset[str]] = {
    "Task": COMMON_FIELDS
    | IO_FIELDS
    | FLOW_FIELDS
    | {
        "Resource",
        "Parameters",
        "ResultSelector",
        "ResultPath",
        "Retry",
        "Catch",
        "TimeoutSeconds",
        "HeartbeatSeconds",
    },
    "Pass": COMMON_FIELDS | IO_FIELDS | FLOW_FIELDS | {"Result", "ResultPath", "Parameters"},
    "Choice": COMMON_FIELDS | IO_FIELDS | {"Choices", "Default"},
    "Wait": COMMON_FIELDS
    | IO_FIELDS
    | FLOW_FIELDS
    | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath"},
    "Succeed": COMMON_FIELDS | IO_FIELDS,
    "Fail": COMMON_FIELDS | {"Error", "Cause", "ErrorPath", "CausePath"},
    "Map": COMMON_FIELDS
    | IO_FIELDS
    | FLOW_FIELDS
    | {
        "ItemsPath",
        "ItemSelector",
        "ItemProcessor",
        "MaxConcurrency",
        "ToleratedFailureCount",
        "ToleratedFailurePercentage",
        "ResultSelector",
        "ResultPath",
        "Retry",
        "Catch",
    },
    "Parallel": COMMON_FIELDS
    | IO_FIELDS
    | FLOW_FIELDS
    | {"Branches", "Parameters", "ResultSelector", "ResultPath", "Retry", "Catch"},
}
# What an iteration (a Map's ItemProcessor, a Parallel's branch) may hold: states that run to their
# end in one drive, so an iteration is re-run whole after a crash and its tasks replay by key.
ITERATION_STATE_TYPES = frozenset({"Task", "Pass", "Choice", "Succeed", "Fail"})
PROCESSOR_FIELDS = frozenset({"StartAt", "States", "Comment", "ProcessorConfig"})
BRANCH_FIELDS = frozenset({"StartAt", "States", "Comment"})
PROCESSOR_MODE_INLINE = "INLINE"
branches_max = 16
# An inline Map's concurrency as written (0: no limit of the definition's own; the engine's applies).
map_concurrency_max = 1000
TOP_LEVEL_FIELDS = frozenset({"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"})
RETRIER_FIELDS = frozenset(
    {
        "ErrorEquals",
        "IntervalSeconds",
        "MaxAttempts",
        "BackoffRate",
        "MaxDelaySeconds",
        "JitterStrategy",
        "Comment",
    }
)
CATCHER_FIELDS = frozenset({"ErrorEquals", "Next", "ResultPath", "Comment"})
JITTER_STRATEGIES = ("FULL", "NONE")
_MISSING = object()

COMPARATORS = {
    "StringEquals": "string",
    "StringLessThan": "string",
    "StringGreaterThan": "string",
    "StringLessThanEquals": "string",
    "StringGreaterThanEquals": "string",
    "StringMatches": "pattern",
    "NumericEquals": "number",
    "NumericLessThan": "number",
    "NumericGreaterThan": "number",
    "NumericLessThanEquals": "number",
    "NumericGreaterThanEquals": "number",
    "BooleanEquals": "boolean",
    "TimestampEquals": "timestamp",
    "TimestampLessThan": "timestamp",
    "TimestampGreaterThan": "timestamp",
    "TimestampLessThanEquals": "timestamp",
    "TimestampGreaterThanEquals": "timestamp",
    "IsNull": "test",
    "IsPresent": "test",
    "IsNumeric": "test",
    "IsString": "test",
    "IsBoolean": "test",
    "IsTimestamp": "test",
}
PATH_COMPARATORS = {
    f"{name}Path": kind for name, kind in COMPARATORS.items() if kind not in ("test", "pattern")
}


# --- the compiled definition ------------------------------------------------------------------


@dataclass(frozen=True)
class Retrier:
    error_equals: tuple[str, ...]
    interval_seconds: int = 1
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: int | None = None
    jitter: str = "NONE"

    def delay_seconds(self, retries_done: int, unit_random: float) -> float:
        """Delay before retry number retries_done + 1; unit_random in [0, 1) draws FULL jitter."""
        delay = self.interval_seconds * self.backoff_rate**retries_done
        if self.max_delay_seconds is not None:
            delay = min(delay, self.max_delay_seconds)
        return delay * unit_random if self.jitter == "FULL" else delay


@dataclass(frozen=True)
class Catcher:
    error_equals: tuple[str, ...]
    next: str
    result_path: Path | None  # None: ResultPath null, the error is dropped and the input kept


@dataclass(frozen=True)
class ChoiceRule:
    """A comparison (variable, operator, operand) or a boolean combination (And/Or/Not of rules)."""

    operator: str
    variable: Path | None = None
    operand: Any = None  # a literal, a Path for *Path operators, or child rules for And/Or/Not
    next: str | None = None


@dataclass(frozen=True)
class State:
    """Fields every state may have; each type adds its own below."""

    name: str
    type: str
    next: str | None = None
    end: bool = False
    input_path: Path | None = None  # None: InputPath null, the state sees {}
    output_path: Path | None = None


ROOT = parse_path("$")


@dataclass(frozen=True)
class TaskState(State):
    resource: str = ""
    parameters: Template | None = None
    result_selector: Template | None = None
    result_path: Path | None = ROOT
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()
    timeout_seconds: int | None = None
    heartbeat_seconds: int | None = None

    @property
    def is_callback(self) -> bool:
        return self.resource in CALLBACK_RESOURCES


@dataclass(frozen=True)
class PassState(State):
    result: Any = _MISSING
    parameters: Template | None = None
    result_path: Path | None = ROOT


@dataclass(frozen=True)
class ChoiceState(State):
    choices: tuple[ChoiceRule, ...] = ()
    default: str | None = None


@dataclass(frozen=True)
class WaitState(State):
    seconds: int | None = None
    timestamp: str | None = None
    seconds_path: Path | None = None
    timestamp_path: Path | None = None


@dataclass(frozen=True)
class SucceedState(State):
    pass


@dataclass(frozen=True)
class FailState(State):
    error: str | None = None
    cause: str | None = None
    error_path: Path | None = None
    cause_path: Path | None = None


@dataclass(frozen=True)
class MapState(State):
    """An inline Map: the processor runs once per item of ItemsPath; results form an array in item order."""

    items_path: Path = ROOT
    item_selector: Template | None = None
    processor: Definition | None = None
    max_concurrency: int = 0  # 0: as many as the engine allows
    tolerated_failure_count: int | None = None
    tolerated_failure_percentage: float | None = None
    result_selector: Template | None = None
    result_path: Path | None = ROOT
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()

    @property
    def tolerates_failures(self) -> bool:
        return self.tolerated_failure_count is not None or self.tolerated_failure_percentage is not None


@dataclass(frozen=True)
class ParallelState(State):
    """Branches run on the same input; results form an array in branch order."""

    branches: tuple[Definition, ...] = ()
    parameters: Template | None = None
    result_selector: Template | None = None
    result_path: Path | None = ROOT
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()


IterationState = MapState | ParallelState
CatchingState = TaskState | MapState | ParallelState


@dataclass(frozen=True)
class Definition:
    """A checked state machine: its states, start, optional execution timeout and content digest."""

    name: str
    start_at: str
    states: Mapping[str, State]
    timeout_seconds: int | None
    digest: str
    source: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def state(self, name: str | None) -> State:
        """The named state; KeyError for a name it lacks, or None (an execution that has ended)."""
        if name is None:
            raise KeyError("an ended execution is at no state")
        return self.states[name]

    def has_result(self, state: PassState) -> bool:
        return state.result is not _MISSING


# --- loading ----------------------------------------------------------------------------------


def parse_definition(name: str, document: Any) -> Definition:
    """Check an ASL document against the subset and compile it; DefinitionError says where it fails."""
    if not STATE_MACHINE_NAME_PATTERN.match(name):
        raise DefinitionError(f"state machine name {name!r} must be 1-63 of a-z, 0-9 and '-'")
    if not isinstance(document, dict):
        raise DefinitionError("a definition is a JSON object")
    _reject_unknown(document, TOP_LEVEL_FIELDS, None)
    if document.get("QueryLanguage", "JSONPath") != "JSONPath":
        raise DefinitionError("only the JSONPath query language is supported", field="QueryLanguage")
    raw_states = document.get("States")
    if not isinstance(raw_states, dict) or not raw_states:
        raise DefinitionError("States must be a non-empty object", field="States")
    if len(raw_states) > states_max:
        raise DefinitionError(f"at most {states_max} states", field="States")
    states = {state_name: _state(state_name, raw) for state_name, raw in raw_states.items()}
    start_at = document.get("StartAt")
    if not isinstance(start_at, str) or start_at not in states:
        raise DefinitionError(f"StartAt names no state: {start_at!r}", field="StartAt")
    _check_transitions(states)
    _check_reachable(start_at, states)
    timeout = _optional_seconds(document, "TimeoutSeconds", None, timeout_seconds_max)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return Definition(name, start_at, states, timeout, digest, document)


def load_definition_file(path: FilePath) -> Definition:
    """One *.asl.json file; the state machine is named after the file."""
    name = path.name[: -len(DEFINITION_SUFFIX)] if path.name.endswith(DEFINITION_SUFFIX) else path.stem
    raw = path.read_bytes()
    if len(raw) > definition_bytes_max:
        raise DefinitionError(f"{path.name}: larger than {definition_bytes_max} bytes")
    try:
        document = jsonio.loads(raw)
    except ValueError as error:
        raise DefinitionError(f"{path.name}: not JSON: {error}") from None
    try:
        return parse_definition(name, document)
    except DefinitionError as error:
        raise DefinitionError(f"{path.name}: {error}", state=error.state, field=error.field) from None


class DefinitionRegistry:
    """The state machines an orchestrator can run, by name."""

    def __init__(self, definitions: Iterable[Definition]) -> None:
        self._definitions = {definition.name: definition for definition in definitions}

    @classmethod
    def from_folder(cls, folder: FilePath) -> DefinitionRegistry:
        return cls(load_definition_file(path) for path in sorted(folder.glob(f"*{DEFINITION_SUFFIX}")))

    def get(self, name: str) -> Definition | None:
        return self._definitions.get(name)

    def names(self) -> list[str]:
        return sorted(self._definitions)


def definitions_dir(environ: Mapping[str, str] | None = None) -> FilePath:
    """FINFAAS_STATEMACHINES_DIR, else infra/statemachines next to the shared package."""
    environ = os.environ if environ is None else environ
    configured = environ.get(STATEMACHINES_DIR_ENV)
    return FilePath(configured) if configured else PROJECT_ROOT / "infra" / "statemachines"


# --- states -----------------------------------------------------------------------------------


def _state(name: Any, raw: Any, *, in_iteration: bool = False) -> State:
    if not isinstance(name, str) or not 1 <= len(name) <= STATE_NAME_CHARS_MAX:
        raise DefinitionError(f"state names are 1-{STATE_NAME_CHARS_MAX} characters", state=str(name))
    if not isinstance(raw, dict):
        raise DefinitionError("a state is a JSON object", state=name)
    kind = raw.get("Type")
    if in_iteration and kind in STATE_FIELDS and kind not in ITERATION_STATE_TYPES:
        raise DefinitionError(
            f"an ItemProcessor or a branch holds only {', '.join(sorted(ITERATION_STATE_TYPES))}",
            state=name,
            field="Type",
        )
    if kind not in STATE_FIELDS:
        raise DefinitionError(
            f"Type {kind!r} is not supported; supported: {', '.join(STATE_FIELDS)}", state=name, field="Type"
        )
    _reject_unknown(raw, STATE_FIELDS[kind], name)
    common = _common(name, kind, raw)
    builders = {
        "Task": _task,
        "Pass": _pass,
        "Choice": _choice,
        "Wait": _wait,
        "Succeed": _succeed,
        "Fail": _fail,
        "Map": _map,
        "Parallel": _parallel,
    }
    state = builders[kind](name, raw, common)
    if in_iteration and isinstance(state, TaskState) and state.is_callback:
        raise DefinitionError(
            "a callback task cannot run inside a Map or Parallel iteration", state=name, field="Resource"
        )
    return state


def _reject_unknown(raw: Mapping[str, Any], allowed: frozenset[str], state: str | None) -> None:
    for key in raw:
        if key not in allowed:
            raise DefinitionError("outside the supported subset (docs/workflows.md)", state=state, field=key)


def _common(name: str, kind: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    common: dict[str, Any] = {"name": name, "type": kind}
    if "Next" in STATE_FIELDS[kind] or "End" in STATE_FIELDS[kind]:
        has_next, end = "Next" in raw, raw.get("End") is True
        if "End" in raw and raw["End"] is not True:
            raise DefinitionError("End must be true when present", state=name, field="End")
        if has_next == end:
            raise DefinitionError("exactly one of Next or End is required", state=name, field="Next")
        if has_next:
            common["next"] = _string(raw, "Next", name)
        common["end"] = end
    if "InputPath" in STATE_FIELDS[kind]:
        common["input_path"] = _nullable_path(raw, "InputPath", name)
        common["output_path"] = _nullable_path(raw, "OutputPath", name)
    return common


def _task(name: str, raw: Mapping[str, Any], common: dict[str, Any]) -> TaskState:
    resource = raw.get("Resource")
    if resource not in RESOURCES:
        raise DefinitionError(f"Resource must be one of {', '.join(RESOURCES)}", state=name, field="Resource")
    parameters = _template(raw, "Parameters", name)
    _check_resource_parameters(name, resource, raw.get("Parameters"), parameters)
    timeout = _optional_seconds(raw, "TimeoutSeconds", name, timeout_seconds_max)
    heartbeat = _optional_seconds(raw, "HeartbeatSeconds", name, timeout_seconds_max)
    if resource == HTTP_INVOKE and timeout is not None and timeout > http_timeout_seconds_max:
        raise DefinitionError(
            f"an HTTP task times out after at most {http_timeout_seconds_max} s",
            state=name,
            field="TimeoutSeconds",
        )
    if heartbeat is not None and (resource not in CALLBACK_RESOURCES):
        raise DefinitionError(
            "HeartbeatSeconds applies to callback (.waitForTaskToken) tasks only",
            state=name,
            field="HeartbeatSeconds",
        )
    if heartbeat is not None and timeout is not None and heartbeat >= timeout:
        raise DefinitionError(
            "HeartbeatSeconds must be less than TimeoutSeconds", state=name, field="HeartbeatSeconds"
        )
    return TaskState(
        **common,
        resource=resource,
        parameters=parameters,
        result_selector=_template(raw, "ResultSelector", name),
        result_path=_result_path(raw, name),
        retry=_retriers(name, raw.get("Retry", [])),
        catch=_catchers(name, raw.get("Catch", [])),
        timeout_seconds=timeout,
        heartbeat_seconds=heartbeat,
    )


def _check_resource_parameters(name: str, resource: str, raw: Any, template: Template | None) -> None:
    if not isinstance(raw, dict):
        raise DefinitionError(f"{resource} needs Parameters", state=name, field="Parameters")
    if template is not None and template.uses_context(RETRY_COUNT_PATH):
        raise DefinitionError(
            f"{RETRY_COUNT_PATH} would change the request between retries of one idempotency key",
            state=name,
            field="Parameters",
        )
    keys = {key[:-2] if key.endswith(".$") else key for key in raw}
    if resource == HTTP_INVOKE:
        _check_http_parameters(name, raw, keys)
    else:
        _check_sqs_parameters(name, resource, raw, keys, template)


def _check_http_parameters(name: str, raw: Mapping[str, Any], keys: set[str]) -> None:
    _only(keys, HTTP_PARAMETERS, name)
    for required in ("ApiEndpoint", "Method"):
        if required not in keys:
            raise DefinitionError(f"an HTTP task needs Parameters.{required}", state=name, field="Parameters")
    if "ApiEndpoint" in raw:
        function_path(raw["ApiEndpoint"], name)
    if "Method" in raw and raw["Method"] not in HTTP_METHODS:
        raise DefinitionError(
            f"Method must be one of {', '.join(HTTP_METHODS)}", state=name, field="Parameters.Method"
        )
    headers = raw.get("Headers", {})
    if isinstance(headers, dict):
        for header in headers:
            if header.removesuffix(".$").lower() in ENGINE_HEADERS:
                raise DefinitionError(
                    f"the engine sets {header} itself", state=name, field="Parameters.Headers"
                )
    transform = raw.get("Transform")
    if transform is not None and transform != {"RequestBodyEncoding": "NONE"}:
        raise DefinitionError(
            "only RequestBodyEncoding NONE (JSON bodies) is supported",
            state=name,
            field="Parameters.Transform",
        )


def _check_sqs_parameters(
    name: str, resource: str, raw: Mapping[str, Any], keys: set[str], template: Template | None
) -> None:
    _only(keys, SQS_PARAMETERS, name)
    for required in ("QueueUrl", "MessageBody"):
        if required not in keys:
            raise DefinitionError(f"an SQS task needs Parameters.{required}", state=name, field="Parameters")
    if "QueueUrl" in raw:
        queue_logical_name(raw["QueueUrl"], name)
    wants_token = template is not None and template.uses_context(TASK_TOKEN_PATH)
    if resource == SQS_SEND_WAIT and not wants_token:
        raise DefinitionError(
            f"a .waitForTaskToken task must pass {TASK_TOKEN_PATH} in its Parameters",
            state=name,
            field="Parameters",
        )


def _only(keys: set[str], allowed: frozenset[str], name: str) -> None:
    for key in sorted(keys - allowed):
        raise DefinitionError(
            f"not a supported parameter; supported: {', '.join(sorted(allowed))}",
            state=name,
            field=f"Parameters.{key}",
        )


def function_path(endpoint: Any, state: str | None = None) -> str:
    """The /function/<name>/... path of an ApiEndpoint; DefinitionError if it names no suite function."""
    from urllib.parse import urlsplit

    if not isinstance(endpoint, str):
        raise DefinitionError("ApiEndpoint must be a string", state=state, field="Parameters.ApiEndpoint")
    parts = urlsplit(endpoint)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or not FUNCTION_PATH_PATTERN.match(parts.path)
    ):
        raise DefinitionError(
            "ApiEndpoint must look like https://gateway.finfaas/function/<function>/<route>",
            state=state,
            field="Parameters.ApiEndpoint",
        )
    return parts.path + (f"?{parts.query}" if parts.query else "")


def queue_logical_name(queue_url: Any, state: str | None = None) -> str:
    """The logical queue name: the last path segment of QueueUrl."""
    from urllib.parse import urlsplit

    if not isinstance(queue_url, str):
        raise DefinitionError("QueueUrl must be a string", state=state, field="Parameters.QueueUrl")
    segment = urlsplit(queue_url).path.rstrip("/").rsplit("/", 1)[-1]
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", segment):
        raise DefinitionError(
            "QueueUrl must end with the queue's logical name", state=state, field="Parameters.QueueUrl"
        )
    return segment


def _pass(name: str, raw: Mapping[str, Any], common: dict[str, Any]) -> PassState:
    return PassState(
        **common,
        result=raw.get("Result", _MISSING),
        parameters=_template(raw, "Parameters", name),
        result_path=_result_path(raw, name),
    )


def _map(name: str, raw: Mapping[str, Any], common: dict[str, Any]) -> MapState:
    processor_raw = raw.get("ItemProcessor")
    if not isinstance(processor_raw, dict):
        raise DefinitionError("a Map needs an ItemProcessor object", state=name, field="ItemProcessor")
    _reject_unknown_in(processor_raw, PROCESSOR_FIELDS, name, "ItemProcessor")
    config = processor_raw.get("ProcessorConfig", {})
    mode = config.get("Mode", PROCESSOR_MODE_INLINE) if isinstance(config, dict) else None
    if not isinstance(config, dict) or set(config) - {"Mode"} or mode != PROCESSOR_MODE_INLINE:
        raise DefinitionError(
            "only the INLINE processor mode is supported", state=name, field="ItemProcessor.ProcessorConfig"
        )
    items_path = _path_or_error(raw.get("ItemsPath", "$"), name, "ItemsPath")
    count = raw.get("ToleratedFailureCount")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise DefinitionError("must be a non-negative integer", state=name, field="ToleratedFailureCount")
    percentage = raw.get("ToleratedFailurePercentage")
    if percentage is not None and (
        not isinstance(percentage, int | float) or isinstance(percentage, bool) or not 0 <= percentage <= 100
    ):
        raise DefinitionError(
            "must be a number from 0 to 100", state=name, field="ToleratedFailurePercentage"
        )
    concurrency = raw.get("MaxConcurrency", 0)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 0 <= concurrency <= (
        map_concurrency_max
    ):
        raise DefinitionError(
            f"must be an integer from 0 to {map_concurrency_max}", state=name, field="MaxConcurrency"
        )
    return MapState(
        **common,
        items_path=items_path,
        item_selector=_template(raw, "ItemSelector", name),
        processor=_sub_definition(name, processor_raw, "ItemProcessor"),
        max_concurrency=concurrency,
        tolerated_failure_count=count,
        tolerated_failure_percentage=None if percentage is None else float(percentage),
        result_selector=_template(raw, "ResultSelector", name),
        result_path=_result_path(raw, name),
        retry=_retriers(name, raw.get("Retry", [])),
        catch=_catchers(name, raw.get("Catch", [])),
    )


def _parallel(name: str, raw: Mapping[str, Any], common: dict[str, Any]) -> ParallelState:
    branches = raw.get("Branches")
    if not isinstance(branches, list) or not 1 <= len(branches) <= branches_max:
        raise DefinitionError(f"Branches must list 1-{branches_max} branches", state=name, field="Branches")
    compiled = []
    for branch in branches:
        if not isinstance(branch, dict):
            raise DefinitionError("a branch is an object", state=name, field="Branches")
        _reject_unknown_in(branch, BRANCH_FIELDS, name, "Branches")
        compiled.append(_sub_definition(name, branch, "Branches"))
    return ParallelState(
        **common,
        branches=tuple(compiled),
        parameters=_template(raw, "Parameters", name),
        result_selector=_template(raw, "ResultSelector", name),
        result_path=_result_path(raw, name),
        retry=_retriers(name, raw.get("Retry", [])),
        catch=_catchers(name, raw.get("Catch", [])),
    )


def _sub_definition(owner: str, raw: Mapping[str, Any], where: str) -> Definition:
    """An ItemProcessor or a branch: a state machine of its own, checked like the top level."""
    raw_states = raw.get("States")
    if not isinstance(raw_states, dict) or not raw_states or len(raw_states) > states_max:
        raise DefinitionError(
            f"States must be an object of 1-{states_max} states", state=owner, field=f"{where}.States"
        )
    states = {
        state_name: _state(state_name, state_raw, in_iteration=True)
        for state_name, state_raw in raw_states.items()
    }
    start_at = raw.get("StartAt")
    if not isinstance(start_at, str) or start_at not in states:
        raise DefinitionError(f"StartAt names no state: {start_at!r}", state=owner, field=f"{where}.StartAt")
    _check_transitions(states)
    _check_reachable(start_at, states)
    return Definition(owner, start_at, states, None, "", raw)


def _choice(name: str, raw: Mapping[str, Any], common: dict[str, Any]) -> ChoiceState:
    rules = raw.get("Choices")
    if not isinstance(rules, list) or not 1 <= len(rules) <= choices_max:
        raise DefinitionError(f"Choices must list 1-{choices_max} rules", state=name, field="Choices")
    default = raw.get("Default")
    if default is not None and not isinstance(default, str):
        raise DefinitionError("Default must be a state name", state=name, field="Default")
    return ChoiceState(**common, choices=tuple(_rule(name, rule, 0, True) for rule in rules), default=default)


def _rule(name: str, raw: Any, depth: int, top: bool) -> ChoiceRule:
    where = "Choices"
    if not isinstance(raw, dict) or depth > choice_rule_depth_max:
        raise DefinitionError(
            f"a choice rule is an object nested at most {choice_rule_depth_max} deep", state=name, field=where
        )
    next_state = raw.get("Next")
    if top != (next_state is not None):
        raise DefinitionError(
            "top-level rules need Next, nested rules may not have it", state=name, field=where
        )
    body = {key: value for key, value in raw.items() if key not in ("Next", "Comment")}
    for combinator in ("And", "Or"):
        if combinator in body:
            children = body.pop(combinator)
            if body or not isinstance(children, list) or not children:
                raise DefinitionError(
                    f"{combinator} takes a non-empty list and nothing else",
                    state=name,
                    field=f"{where}.{combinator}",
                )
            return ChoiceRule(
                combinator, None, tuple(_rule(name, c, depth + 1, False) for c in children), next_state
            )
    if "Not" in body:
        child = body.pop("Not")
        if body:
            raise DefinitionError("Not takes one rule and nothing else", state=name, field=f"{where}.Not")
        return ChoiceRule("Not", None, (_rule(name, child, depth + 1, False),), next_state)
    return _comparison(name, body, next_state)


def _comparison(name: str, body: dict[str, Any], next_state: str | None) -> ChoiceRule:
    variable = body.pop("Variable", None)
    if not isinstance(variable, str) or len(body) != 1:
        raise DefinitionError(
            "a comparison has Variable and exactly one operator", state=name, field="Choices"
        )
    operator, operand = next(iter(body.items()))
    kind = COMPARATORS.get(operator) or PATH_COMPARATORS.get(operator)
    if kind is None:
        raise DefinitionError(
            f"unknown comparison operator {operator}", state=name, field=f"Choices.{operator}"
        )
    if operator in PATH_COMPARATORS:
        operand = _path_or_error(operand, name, f"Choices.{operator}")
    elif not _operand_fits(kind, operand):
        raise DefinitionError(f"{operator} needs a {kind} operand", state=name, field=f"Choices.{operator}")
    return ChoiceRule(operator, _path_or_error(variable, name, "Choices.Variable"), operand, next_state)


def _operand_fits(kind: str, operand: Any) -> bool:
    if kind in ("string", "pattern"):
        return isinstance(operand, str)
    if kind == "number":
        return isinstance(operand, int | float) and not isinstance(operand, bool)
    if kind in ("boolean", "test"):
        return isinstance(operand, bool)
    return isinstance(operand, str) and parse_timestamp(operand) is not None


def parse_timestamp(text: Any) -> datetime | None:
    """An RFC 3339 timestamp with an offset or Z; None otherwise."""
    if not isinstance(text, str) or "T" not in text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _wait(name: str, raw: Mapping[str, Any], common: dict[str, Any]) -> WaitState:
    given = [key for key in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if key in raw]
    if len(given) != 1:
        raise DefinitionError(
            "exactly one of Seconds, Timestamp, SecondsPath, TimestampPath", state=name, field="Seconds"
        )
    key = given[0]
    if key == "Seconds":
        return WaitState(**common, seconds=_optional_seconds(raw, key, name, timeout_seconds_max, minimum=0))
    if key == "Timestamp":
        if parse_timestamp(raw[key]) is None:
            raise DefinitionError("Timestamp must be RFC 3339 with an offset", state=name, field=key)
        return WaitState(**common, timestamp=raw[key])
    path = _path_or_error(raw[key], name, key)
    return (
        WaitState(**common, seconds_path=path)
        if key == "SecondsPath"
        else WaitState(**common, timestamp_path=path)
    )


def _succeed(name: str, raw: Mapping[str, Any], common: dict[str, Any]) -> SucceedState:
    return SucceedState(**common)


def _fail(name: str, raw: Mapping[str, Any], common: dict[str, Any]) -> FailState:
    for static, dynamic in (("Error", "ErrorPath"), ("Cause", "CausePath")):
        if static in raw and dynamic in raw:
            raise DefinitionError(f"{static} and {dynamic} exclude each other", state=name, field=dynamic)
        if static in raw and not isinstance(raw[static], str):
            raise DefinitionError(f"{static} must be a string", state=name, field=static)
    return FailState(
        **common,
        error=raw.get("Error"),
        cause=raw.get("Cause"),
        error_path=_path_or_error(raw["ErrorPath"], name, "ErrorPath") if "ErrorPath" in raw else None,
        cause_path=_path_or_error(raw["CausePath"], name, "CausePath") if "CausePath" in raw else None,
    )


# --- Retry and Catch --------------------------------------------------------------------------


def _retriers(name: str, raw: Any) -> tuple[Retrier, ...]:
    if not isinstance(raw, list) or len(raw) > retriers_max:
        raise DefinitionError(
            f"Retry is a list of at most {retriers_max} retriers", state=name, field="Retry"
        )
    retriers = tuple(_retrier(name, entry) for entry in raw)
    _check_error_lists(name, "Retry", [r.error_equals for r in retriers])
    return retriers


def _retrier(name: str, raw: Any) -> Retrier:
    if not isinstance(raw, dict):
        raise DefinitionError("a retrier is an object", state=name, field="Retry")
    _reject_unknown_in(raw, RETRIER_FIELDS, name, "Retry")
    backoff = raw.get("BackoffRate", 2.0)
    if not isinstance(backoff, int | float) or isinstance(backoff, bool) or backoff < 1.0:
        raise DefinitionError("BackoffRate must be a number >= 1.0", state=name, field="Retry.BackoffRate")
    jitter = raw.get("JitterStrategy", "NONE")
    if jitter not in JITTER_STRATEGIES:
        raise DefinitionError("JitterStrategy must be FULL or NONE", state=name, field="Retry.JitterStrategy")
    return Retrier(
        error_equals=_error_equals(name, raw, "Retry"),
        interval_seconds=_optional_seconds(
            raw, "IntervalSeconds", name, timeout_seconds_max, field_prefix="Retry."
        )
        or 1,
        max_attempts=_non_negative(raw, "MaxAttempts", 3, name),
        backoff_rate=float(backoff),
        max_delay_seconds=_optional_seconds(
            raw, "MaxDelaySeconds", name, timeout_seconds_max, field_prefix="Retry."
        ),
        jitter=jitter,
    )


def _catchers(name: str, raw: Any) -> tuple[Catcher, ...]:
    if not isinstance(raw, list) or len(raw) > catchers_max:
        raise DefinitionError(
            f"Catch is a list of at most {catchers_max} catchers", state=name, field="Catch"
        )
    catchers = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise DefinitionError("a catcher is an object", state=name, field="Catch")
        _reject_unknown_in(entry, CATCHER_FIELDS, name, "Catch")
        result_path = _result_path(entry, name, field_prefix="Catch.")
        catchers.append(
            Catcher(
                _error_equals(name, entry, "Catch"), _string(entry, "Next", name, "Catch.Next"), result_path
            )
        )
    _check_error_lists(name, "Catch", [c.error_equals for c in catchers])
    return tuple(catchers)


def _error_equals(name: str, raw: Mapping[str, Any], where: str) -> tuple[str, ...]:
    names = raw.get("ErrorEquals")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DefinitionError("ErrorEquals must list error names", state=name, field=f"{where}.ErrorEquals")
    for error_name in names:
        if not errors.is_known_name(error_name):
            raise DefinitionError(
                f"{error_name} is not a predefined error name", state=name, field=f"{where}.ErrorEquals"
            )
    return tuple(names)


def _check_error_lists(name: str, where: str, lists: list[tuple[str, ...]]) -> None:
    for position, names in enumerate(lists):
        if errors.ALL in names and (len(names) > 1 or position != len(lists) - 1):
            raise DefinitionError(
                f"{errors.ALL} must be alone in the last {where} entry",
                state=name,
                field=f"{where}.ErrorEquals",
            )


def _reject_unknown_in(raw: Mapping[str, Any], allowed: frozenset[str], state: str, where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise DefinitionError("outside the supported subset", state=state, field=f"{where}.{key}")


# --- field helpers ----------------------------------------------------------------------------


def _string(raw: Mapping[str, Any], key: str, state: str, field_name: str | None = None) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise DefinitionError("must be a state name", state=state, field=field_name or key)
    return value


def _optional_seconds(
    raw: Mapping[str, Any],
    key: str,
    state: str | None,
    maximum: int,
    *,
    minimum: int = 1,
    field_prefix: str = "",
) -> int | None:
    if key not in raw:
        return None
    value = raw[key]
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise DefinitionError(
            f"must be an integer from {minimum} to {maximum}", state=state, field=field_prefix + key
        )
    return value


def _non_negative(raw: Mapping[str, Any], key: str, default: int, state: str) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= retry_attempts_max:
        raise DefinitionError(
            f"must be an integer from 0 to {retry_attempts_max}", state=state, field=f"Retry.{key}"
        )
    return value


def _path_or_error(text: Any, state: str, field_name: str) -> Path:
    try:
        return parse_path(text)
    except PathSyntaxError as error:
        raise DefinitionError(str(error), state=state, field=field_name) from None


def _nullable_path(raw: Mapping[str, Any], key: str, state: str) -> Path | None:
    if key not in raw:
        return ROOT
    if raw[key] is None:
        return None
    return _path_or_error(raw[key], state, key)


def _result_path(raw: Mapping[str, Any], state: str, field_prefix: str = "") -> Path | None:
    if "ResultPath" not in raw:
        return ROOT
    if raw["ResultPath"] is None:
        return None
    try:
        return parse_result_path(raw["ResultPath"])
    except PathSyntaxError as error:
        raise DefinitionError(str(error), state=state, field=field_prefix + "ResultPath") from None


def _template(raw: Mapping[str, Any], key: str, state: str) -> Template | None:
    if key not in raw:
        return None
    try:
        return compile_template(raw[key])
    except PathSyntaxError as error:
        raise DefinitionError(str(error), state=state, field=key) from None


# --- graph checks -----------------------------------------------------------------------------


def _targets(state: State) -> list[tuple[str, str]]:
    """(field, state name) of every transition out of a state."""
    found = [("Next", state.next)] if state.next else []
    if isinstance(state, ChoiceState):
        found += [("Choices.Next", rule.next) for rule in state.choices if rule.next]
        if state.default:
            found.append(("Default", state.default))
    if isinstance(state, TaskState | MapState | ParallelState):
        found += [("Catch.Next", catcher.next) for catcher in state.catch]
    return found


def _check_transitions(states: Mapping[str, State]) -> None:
    for state in states.values():
        for field_name, target in _targets(state):
            if target not in states:
                raise DefinitionError(f"names no state: {target!r}", state=state.name, field=field_name)


def _check_reachable(start_at: str, states: Mapping[str, State]) -> None:
    seen, pending = {start_at}, [start_at]
    while pending:
        for _, target in _targets(states[pending.pop()]):
            if target not in seen:
                seen.add(target)
                pending.append(target)
    for name in states:
        if name not in seen:
            raise DefinitionError(f"not reachable from StartAt {start_at!r}", state=name)
