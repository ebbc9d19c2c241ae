"""The orchestrator as a function behind the local gateway: started over HTTP with a client token, woken
by the queue connector, calling demo-bank with its own client_credentials token, answering callbacks,
and read back through the API and `finfaas executions describe`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from finfaas.platform.config import resource_name
from finfaas.platform.keys import DEMO_CREDENTIALS_FILE, ensure_service_clients, write_dev_secrets
from finfaas_dev.awsclients import client
from finfaas_dev.net import free_port, wait_for
from finfaas_dev.relay import ensure_events_mac_key
from support.gateway_harness import GatewayProcess, http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPOSITORY = Path(__file__).resolve().parents[2]
DEMO_BANK_DIR = REPOSITORY / "tests" / "integration" / "workflow" / "demo_bank"
EXECUTION_SECONDS_MAX = 60
APPROVALS_QUEUE = "demo-approvals"


def _stack(folder: Path) -> Path:
    path = folder / "stack.yml"
    path.write_text(f"""
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  auth:
    lang: python3-http
    handler: {REPOSITORY / "functions" / "auth"}
    image: finfaas/auth:test
    secrets: [auth-signing-keys, auth-clients]
  orchestrator:
    lang: python3-http
    handler: {REPOSITORY / "functions" / "orchestrator"}
    image: finfaas/orchestrator:test
    annotations:
      topic: orchestrator
    environment:
      exec_timeout: 60s
    secrets: [orchestrator-client]
  demo-bank:
    lang: python3-http
    handler: {DEMO_BANK_DIR}
    image: finfaas/demo-bank:test
    environment:
      DEMO_BANK_REFUSE: closed
""")
    return path


class Suite:
    """A gateway with auth, the orchestrator and demo-bank, on this session's emulators."""

    def __init__(self, folder: Path, aws_env: dict[str, str]) -> None:
        secrets_dir = folder / "secrets"
        write_dev_secrets(secrets_dir, out=lambda _: None)
        ensure_service_clients(secrets_dir, out=lambda _: None)
        ensure_events_mac_key(secrets_dir)  # wake-ups are sealed; the orchestrator's POST / opens them
        self.demo = json.loads((secrets_dir / DEMO_CREDENTIALS_FILE).read_text())
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            **aws_env,
            "FINFAAS_SECRETS_DIR": str(secrets_dir),
            "FINFAAS_GATEWAY_URL": self.url,
            "FINFAAS_JWKS_URL": f"{self.url}/function/auth/.well-known/jwks.json",
        }
        self.gateway = GatewayProcess(folder, env=self.env, stack=_stack(folder), port=port)
        try:
            self.token = self._client_token()
        except BaseException:
            self.gateway.stop()
            raise

    def _client_token(self) -> str:
        basic = base64.b64encode(f"{self.demo['client_id']}:{self.demo['client_secret']}".encode()).decode()
        reply = http(
            "POST",
            self.url + "/function/auth/oauth/token",
            b"grant_type=client_credentials",
            {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        )
        assert reply.status == 200, reply.body
        return reply.json()["access_token"]

    def call(self, method: str, path: str, body=None):
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        data = json.dumps(body).encode() if body is not None else None
        return http(method, self.url + path, data, headers, timeout=30)

    def stopped(self, execution_id: str) -> dict:
        def finished():
            view = self.call("GET", f"/function/orchestrator/executions/{execution_id}").json()
            return view if view["status"] != "RUNNING" else None

        return wait_for(finished, EXECUTION_SECONDS_MAX, f"{execution_id} to stop")

    def stop(self) -> None:
        self.gateway.stop()


@pytest.fixture(scope="module")
def approvals_queue(embedded_aws):
    sqs = client("sqs")
    url = sqs.create_queue(QueueName=resource_name(APPROVALS_QUEUE))["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


@pytest.fixture(scope="module")
def suite(tmp_path_factory, embedded_aws, approvals_queue):
    running = Suite(tmp_path_factory.mktemp("orchestrator-e2e"), embedded_aws.env())
    yield running
    running.stop()


def _start(suite: Suite, state_machine: str, input_value: dict, name: str | None = None):
    body = {
        "state_machine": state_machine,
        "name": name or f"e2e-{uuid.uuid4().hex[:8]}",
        "input": input_value,
    }
    return suite.call("POST", "/function/orchestrator/executions", body)


def test_a_saga_runs_and_a_refused_credit_is_refunded_each_effect_once(suite):
    credited = _start(suite, "demo-transfer", {"from": "alice", "to": "bob", "amount_minor": 1250})
    refunded = _start(suite, "demo-transfer", {"from": "alice", "to": "closed", "amount_minor": 700})
    assert (credited.status, refunded.status) == (201, 201)

    ok = suite.stopped(credited.json()["execution_id"])
    failed = suite.stopped(refunded.json()["execution_id"])

    assert ok["status"] == "SUCCEEDED" and ok["output"]["credit"]["credit_id"].startswith("c-")
    assert (failed["status"], failed["error"]) == ("FAILED", "Transfer.CreditRefused")
    effects = suite.call("GET", "/function/demo-bank/effects").json()
    assert effects["applied"][ok["execution_id"]] == {"debits": 1, "credits": 1}
    assert effects["applied"][failed["execution_id"]] == {"debits": 1, "refunds": 1}
    history = suite.call("GET", f"/function/orchestrator/executions/{failed['execution_id']}/history").json()
    entered = [event["state"] for event in history["data"] if event["type"] == "StateEntered"]
    assert entered == ["Debit", "NeedsCoolingOff", "Credit", "Refund", "CreditRefused"]


def test_starting_by_name_is_idempotent(suite):
    name = f"same-{uuid.uuid4().hex[:8]}"
    transfer = {"from": "alice", "to": "bob", "amount_minor": 5}
    first = _start(suite, "demo-transfer", transfer, name)

    again = _start(suite, "demo-transfer", transfer, name)
    other = _start(suite, "demo-transfer", {**transfer, "amount_minor": 6}, name)

    assert (first.status, again.status, other.status) == (201, 200, 409)
    assert again.json()["execution_id"] == first.json()["execution_id"]
    assert other.json()["code"] == "execution_already_exists"
    suite.stopped(first.json()["execution_id"])
    assert suite.call("GET", "/function/demo-bank/effects").json()["applied"][f"demo-transfer:{name}"] == {
        "debits": 1,
        "credits": 1,
    }


def test_a_callback_task_waits_for_its_token(suite, approvals_queue):
    sqs, url = approvals_queue
    started = _start(suite, "demo-approval", {"amount_minor": 90_000}).json()

    message = wait_for(
        lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, MessageAttributeNames=["All"]).get(
            "Messages"
        ),
        EXECUTION_SECONDS_MAX,
        "the approval request",
    )[0]
    request = json.loads(message["Body"])
    assert request["execution_id"] == started["execution_id"]
    assert (
        message["MessageAttributes"]["ce-idempotencykey"]["StringValue"]
        == f"{started['execution_id']}#RequestApproval#1"
    )
    answer = {"task_token": request["task_token"], "output": {"approved": True, "approver": "ops-7"}}

    assert suite.call("POST", "/function/orchestrator/tasks/success", answer).json() == {"status": "accepted"}
    assert suite.call("POST", "/function/orchestrator/tasks/success", answer).json() == {
        "status": "duplicate"
    }
    stopped = suite.stopped(started["execution_id"])

    assert stopped["status"] == "SUCCEEDED" and stopped["output"] == {"approved_by": "ops-7"}
    late = suite.call("POST", "/function/orchestrator/tasks/failure", {"task_token": request["task_token"]})
    assert late.status == 409


def test_the_api_needs_the_orchestrator_scopes(suite):
    reply = http(
        "POST", suite.url + "/function/orchestrator/executions", b"{}", {"Content-Type": "application/json"}
    )

    assert reply.status == 401


def test_the_command_line_prints_the_path_taken(suite):
    started = _start(suite, "demo-transfer", {"from": "alice", "to": "closed", "amount_minor": 3}).json()
    suite.stopped(started["execution_id"])

    described = subprocess.run(
        [sys.executable, "-m", "finfaas_dev.cli", "executions", "describe", started["execution_id"]],
        capture_output=True,
        text=True,
        env=suite.env,
        timeout=60,
        check=False,
    )

    assert described.returncode == 0, described.stderr
    assert "status      FAILED" in described.stdout
    assert "caught States.Http.StatusCode.422 -> Refund" in described.stdout
    started_at = time.time()
    listed = subprocess.run(
        [sys.executable, "-m", "finfaas_dev.cli", "executions", "list", "--status", "FAILED"],
        capture_output=True,
        text=True,
        env=suite.env,
        timeout=60,
        check=False,
    )
    assert started["execution_id"] in listed.stdout and time.time() - started_at < 60
