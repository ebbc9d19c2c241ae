"""HTTP tasks over real loopback sockets: what a task's outcome is for each kind of answer."""

from __future__ import annotations

import json
import time

import pytest
from finfaas.workflow import errors
from finfaas.workflow.tasks import HTTP_INVOKE, HttpTasks, TaskBusy, TaskCall, TaskFailed, TaskSucceeded
from finfaas_dev.net import free_port
from finfaas_dev.testing.platform import loopback_http_server
from support.http_testing import QuietHandler
from support.workflow_testing import StaticTokens

SLOW_SECONDS = 2.0
SERVICE_TOKEN = "service-token"


class _Bank(QuietHandler):
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"null")
        _Bank.seen.append({**dict(self.headers), "path": self.path, "body": body})
        if self.path.endswith("/slow"):
            time.sleep(SLOW_SECONDS)
        if self.path.endswith("/busy"):
            self.answer_json(409, {"code": "idempotency_key_in_use"}, {"Retry-After": "3"})
        elif self.path.endswith("/refused"):
            self.answer_json(422, {"code": "account_closed"})
        elif self.path.endswith("/timed"):
            self.answer_json(201, {"transfer_id": body["transfer_id"]}, {"X-Duration-Seconds": "0.012345"})
        elif self.path.endswith("/timed-refused"):
            self.answer_json(422, {"code": "account_closed"}, {"X-Duration-Seconds": "0.004"})
        elif self.path.endswith("/badly-timed"):
            self.answer_json(201, {"transfer_id": body["transfer_id"]}, {"X-Duration-Seconds": "soon"})
        else:
            self.answer_json(201, {"transfer_id": body["transfer_id"]})



@pytest.fixture
def gateway():
    _Bank.seen = []
    with loopback_http_server(_Bank) as url:
        yield url


def _call(route: str, timeout_seconds: float = 5.0) -> TaskCall:
    return TaskCall(
        resource=HTTP_INVOKE,
        parameters={
            "ApiEndpoint": f"https://gateway.finfaas/function/bank/{route}",
            "Method": "POST",
            "RequestBody": {"transfer_id": "t-1"},
        },
        idempotency_key="demo:t-1#Debit#1",
        execution_id="demo:t-1",
        state="Debit",
        attempt=1,
        timeout_seconds=timeout_seconds,
    )


def test_a_2xx_answer_succeeds_with_the_response_and_the_call_carries_its_key_and_token(gateway):
    outcome = HttpTasks(gateway, StaticTokens(SERVICE_TOKEN)).run(_call("debits"))

    assert isinstance(outcome, TaskSucceeded)
    assert outcome.output["StatusCode"] == 201
    assert outcome.output["StatusText"] == "Created"
    assert outcome.output["ResponseBody"] == {"transfer_id": "t-1"}
    assert outcome.output["Headers"]["Content-Type"] == "application/json"
    [seen] = _Bank.seen
    assert seen["path"] == "/function/bank/debits"
    assert seen["Idempotency-Key"] == "demo:t-1#Debit#1"
    assert seen["Authorization"] == f"Bearer {SERVICE_TOKEN}"
    assert seen["body"] == {"transfer_id": "t-1"}


def test_another_status_fails_the_task_with_its_status_error_and_the_problem_as_cause(gateway):
    outcome = HttpTasks(gateway, StaticTokens(SERVICE_TOKEN)).run(_call("refused"))

    assert isinstance(outcome, TaskFailed)
    assert outcome.error == "States.Http.StatusCode.422"
    assert json.loads(outcome.cause) == {"StatusCode": 422, "ResponseBody": {"code": "account_closed"}}


def test_the_functions_own_time_is_taken_from_the_gateways_duration_header_in_ms(gateway):
    tasks = HttpTasks(gateway, StaticTokens(SERVICE_TOKEN))

    succeeded, failed = tasks.run(_call("timed")), tasks.run(_call("timed-refused"))

    assert isinstance(succeeded, TaskSucceeded) and succeeded.function_ms == 12.35
    assert isinstance(failed, TaskFailed) and failed.function_ms == 4.0


def test_without_a_readable_duration_header_the_functions_time_is_unknown(gateway):
    tasks = HttpTasks(gateway, StaticTokens(SERVICE_TOKEN))

    assert tasks.run(_call("debits")).function_ms is None
    assert tasks.run(_call("badly-timed")).function_ms is None


def test_the_same_key_still_running_is_busy_not_failed(gateway):
    outcome = HttpTasks(gateway, StaticTokens(SERVICE_TOKEN)).run(_call("busy"))

    assert outcome == TaskBusy(retry_after_seconds=3.0)


def test_no_answer_within_the_timeout_is_states_timeout(gateway):
    outcome = HttpTasks(gateway, StaticTokens(SERVICE_TOKEN)).run(_call("slow", timeout_seconds=0.3))

    assert isinstance(outcome, TaskFailed)
    assert outcome.error == errors.TIMEOUT


def test_nobody_listening_is_states_http_socket():
    closed_port = free_port()

    outcome = HttpTasks(f"http://127.0.0.1:{closed_port}", StaticTokens(SERVICE_TOKEN)).run(_call("debits"))

    assert isinstance(outcome, TaskFailed)
    assert outcome.error == errors.HTTP_SOCKET
