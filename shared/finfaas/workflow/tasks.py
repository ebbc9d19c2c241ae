"""Task resources mapped to the suite: HTTP tasks through the gateway, SQS tasks to suite queues.

    addresses = config.function_addresses()   # platform/config.py
    tokens = LazyServiceTokens(addresses)     # platform/credentials.py
    runner = ResourceRunner(HttpTasks(addresses, tokens), SqsTasks())
    outcome = runner.run(call)   # TaskSucceeded | TaskFailed | TaskSubmitted | TaskBusy

A runner never raises for a task's own failure: every outcome is a value, named with an ASL error
(docs/workflows.md). Effects are made exactly-once by the Idempotency-Key the call carries.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

from finfaas.platform.config import FunctionAddresses
from finfaas.platform.credentials import TokenUnavailable
from finfaas.platform.gateway_client import (
    GatewayClient,
    GatewayTimeout,
    GatewayUnreachable,
    TokenSource,
    reply_body,
)
from finfaas.platform.logging import get_logger
from finfaas.workflow import errors
from finfaas.workflow.asl import (
    HTTP_INVOKE,
    SQS_SEND,
    SQS_SEND_WAIT,
    function_path,
)
from finfaas.workflow.asl import queue_logical_name as _queue_logical_name
from finfaas.workflow.errors import DefinitionError

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_IN_USE_CODE = "idempotency_key_in_use"  # platform/idempotency.py's 409
IDEMPOTENCY_ATTRIBUTE = "ce-idempotencykey"  # becomes the CloudEvent extension `idempotencykey`
TASK_EVENT_TYPE = "dev.finfaas.orchestrator.task"
# Set by the OpenFaaS gateway (and the local one) on a function's answer: its time behind the gateway.
GATEWAY_DURATION_HEADER = "X-Duration-Seconds"
HTTP_TIMEOUT_SECONDS_DEFAULT = 60
busy_retry_seconds_default = 1.0
busy_retry_seconds_max = 30.0
cause_body_chars_max = 8 * 1024

_log = get_logger("workflow.tasks")


@dataclass(frozen=True)
class TaskCall:
    """One invocation of a Task's resource, with what makes it exactly-once."""

    resource: str
    parameters: Any
    idempotency_key: str
    execution_id: str
    state: str
    attempt: int
    timeout_seconds: float


@dataclass(frozen=True)
class TaskSucceeded:
    output: Any
    function_ms: float | None = None  # the function's own time as the gateway reported it, if it did


@dataclass(frozen=True)
class TaskFailed:
    error: str
    cause: str
    function_ms: float | None = None


@dataclass(frozen=True)
class TaskSubmitted:
    """A callback task's message is out; the result comes with the task token."""


@dataclass(frozen=True)
class TaskBusy:
    """The resource is still running the same idempotency key: ask again later, not a failure."""

    retry_after_seconds: float


TaskOutcome = TaskSucceeded | TaskFailed | TaskSubmitted | TaskBusy


class TaskRunner(Protocol):
    def run(self, call: TaskCall) -> TaskOutcome: ...


class ResourceRunner:
    """Dispatches a call by its Resource ARN to the HTTP or SQS integration."""

    def __init__(self, http: TaskRunner, sqs: TaskRunner) -> None:
        self._by_resource = {HTTP_INVOKE: http, SQS_SEND: sqs, SQS_SEND_WAIT: sqs}

    def run(self, call: TaskCall) -> TaskOutcome:
        runner = self._by_resource.get(call.resource)
        if runner is None:
            return TaskFailed(errors.RUNTIME, f"no integration for {call.resource}")
        return runner.run(call)


# --- HTTP tasks -------------------------------------------------------------------------------


class HttpTasks:
    """`arn:aws:states:::http:invoke` to a suite function through the gateway."""

    def __init__(
        self, gateway_url: str | FunctionAddresses, tokens: TokenSource, *,
        request: Callable[..., Any] | None = None,
    ) -> None:
        self._gateway = GatewayClient(gateway_url, tokens, request=request)

    def run(self, call: TaskCall) -> TaskOutcome:
        try:
            path, method, headers, body = self._request_parts(call)
        except DefinitionError as error:
            return TaskFailed(errors.PARAMETER_PATH_FAILURE, str(error))
        try:
            response = self._gateway.send(
                method, path, headers=headers, body=body, timeout_seconds=call.timeout_seconds
            )
        except TokenUnavailable as error:
            return TaskFailed(errors.HTTP_SOCKET, f"service token unavailable: {error}")
        except GatewayTimeout as error:
            return TaskFailed(errors.TIMEOUT, f"no answer within TimeoutSeconds ({error.error_name})")
        except GatewayUnreachable as error:
            return TaskFailed(errors.HTTP_SOCKET, str(error)[:cause_body_chars_max])
        except Exception as error:  # the token endpoint's own transport errors
            return _transport_failure(error)
        return _outcome(response)

    def _request_parts(self, call: TaskCall) -> tuple[str, str, dict[str, str], bytes | None]:
        parameters = call.parameters if isinstance(call.parameters, dict) else {}
        path = function_path(parameters.get("ApiEndpoint"), call.state)
        method = parameters.get("Method")
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise DefinitionError(f"Method {method!r} is not supported", state=call.state)
        headers = {
            str(k): str(v)
            for k, v in (parameters.get("Headers") or {}).items()
            if str(k).lower() not in ("authorization", "idempotency-key")
        }
        headers[IDEMPOTENCY_KEY_HEADER] = call.idempotency_key
        headers["Accept"] = "application/json"
        path += _query(parameters.get("QueryParameters"), "?" in path)
        body = None
        if "RequestBody" in parameters:
            body = json.dumps(parameters["RequestBody"], separators=(",", ":")).encode()
            headers.setdefault("Content-Type", "application/json")
        return path, method, headers, body


def _query(parameters: Any, has_query: bool) -> str:
    from urllib.parse import urlencode

    if not isinstance(parameters, dict) or not parameters:
        return ""
    return ("&" if has_query else "?") + urlencode({str(k): str(v) for k, v in parameters.items()})


def _transport_failure(error: Exception) -> TaskFailed:
    name = type(error).__name__
    if "Timeout" in name:
        return TaskFailed(errors.TIMEOUT, f"no answer within TimeoutSeconds ({name})")
    return TaskFailed(errors.HTTP_SOCKET, f"{name}: {error}"[:cause_body_chars_max])


def _outcome(response: Any) -> TaskOutcome:
    body = reply_body(response.content)
    function_ms = _gateway_duration_ms(response.headers.get(GATEWAY_DURATION_HEADER))
    if 200 <= response.status_code < 300:
        return TaskSucceeded(
            {
                "StatusCode": response.status_code,
                "StatusText": _status_text(response.status_code),
                "Headers": dict(response.headers),
                "ResponseBody": body,
            },
            function_ms,
        )
    if (
        response.status_code == HTTPStatus.CONFLICT
        and isinstance(body, dict)
        and body.get("code") == IDEMPOTENCY_KEY_IN_USE_CODE
    ):
        return TaskBusy(_retry_after(response.headers.get("Retry-After")))
    cause = json.dumps({"StatusCode": response.status_code, "ResponseBody": body}, separators=(",", ":"))
    error = errors.http_status_error(response.status_code)
    return TaskFailed(error, cause[:cause_body_chars_max], function_ms)


def _gateway_duration_ms(raw: str | None) -> float | None:
    """X-Duration-Seconds, as the OpenFaaS gateway (and the local one) sets it, in milliseconds."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return round(seconds * 1000, 2) if math.isfinite(seconds) and seconds >= 0 else None


def _status_text(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _retry_after(raw: str | None) -> float:
    try:
        seconds = float(raw) if raw is not None else busy_retry_seconds_default
    except ValueError:
        seconds = busy_retry_seconds_default
    return min(max(seconds, busy_retry_seconds_default), busy_retry_seconds_max)


# --- SQS tasks --------------------------------------------------------------------------------


class SqsTasks:
    """`sqs:sendMessage` and `.waitForTaskToken` to the suite queue finfaas-<stage>-<logical>."""

    def __init__(
        self,
        client_factory: Callable[[], Any] | None = None,
        resource_name: Callable[[str], str] | None = None,
        mac: Any = None,
    ) -> None:
        from finfaas.platform.queue_proof import lazy_event_mac

        self._client_factory = client_factory or _default_sqs_client
        self._resource_name = resource_name or _default_resource_name
        # Bodies are sealed: the suite's queue routes (rail, transfers) refuse unsealed POSTs.
        self._mac = lazy_event_mac(mac)
        self._client: Any = None
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def run(self, call: TaskCall) -> TaskOutcome:
        parameters = call.parameters if isinstance(call.parameters, dict) else {}
        try:
            logical = _queue_logical_name(parameters.get("QueueUrl"), call.state)
        except DefinitionError as error:
            return TaskFailed(errors.PARAMETER_PATH_FAILURE, str(error))
        try:
            sent = self._send(logical, parameters, call)
        except Exception as error:  # botocore errors carry their AWS code
            code = getattr(error, "response", {}).get("Error", {}).get("Code") or type(error).__name__
            return TaskFailed(f"SQS.{code}", str(error)[:cause_body_chars_max])
        if call.resource == SQS_SEND_WAIT:
            return TaskSubmitted()
        return TaskSucceeded(
            {"MessageId": sent.get("MessageId"), "MD5OfMessageBody": sent.get("MD5OfMessageBody")}
        )

    def _send(self, logical: str, parameters: Mapping[str, Any], call: TaskCall) -> dict[str, Any]:
        from finfaas.platform import tracing
        from finfaas.platform.queue_proof import seal_body

        body = seal_body(self._mac.get(), parameters["MessageBody"])  # ValueError unless a JSON object
        client, url = self._queue(logical)
        attributes = dict(parameters.get("MessageAttributes") or {})
        attributes.setdefault(
            IDEMPOTENCY_ATTRIBUTE, {"DataType": "String", "StringValue": call.idempotency_key}
        )
        attributes.setdefault("ce-type", {"DataType": "String", "StringValue": TASK_EVENT_TYPE})
        attributes.setdefault("ce-subject", {"DataType": "String", "StringValue": call.execution_id})
        request: dict[str, Any] = {
            "QueueUrl": url,
            "MessageBody": body,
            "MessageAttributes": attributes,
            "MessageSystemAttributes": tracing.sqs_message_system_attributes(),
        }
        for optional in ("DelaySeconds", "MessageGroupId", "MessageDeduplicationId"):
            if optional in parameters:
                request[optional] = parameters[optional]
        return client.send_message(**request)

    def _queue(self, logical: str) -> tuple[Any, str]:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            if logical not in self._urls:
                name = self._resource_name(logical)
                self._urls[logical] = self._client.get_queue_url(QueueName=name)["QueueUrl"]
            return self._client, self._urls[logical]


def _default_sqs_client() -> Any:
    # botocore alone: boto3 adds about 0.3 s of imports to a cold start and nothing used here.
    import botocore.session
    from botocore.config import Config

    from finfaas.platform.config import settings

    config = Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 3})
    return botocore.session.get_session().create_client("sqs", region_name=settings().region, config=config)


def _default_resource_name(logical: str) -> str:
    from finfaas.platform.config import resource_name

    return resource_name(logical)
