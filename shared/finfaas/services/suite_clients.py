"""The services' clients of other suite functions: JSON over the one gateway client (platform/).

    addresses = config.function_addresses()   # the gateway, or each function's own address
    tokens = ServiceTokens.from_secret(addresses, client_name="transfers")  # secret transfers-client
    orchestrator = OrchestratorClient(SuiteClient(addresses, tokens))
    orchestrator.start("transfer", "tr_1", {...})

A client never retries by itself (beyond the gateway client's one fresh token after a 401): callers
are saga steps and queue consumers, whose own retries (the orchestrator's Retry, the queue's
redelivery) already carry the same idempotency.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from finfaas.platform.config import FunctionAddresses
from finfaas.platform.gateway_client import GatewayClient, GatewayUnreachable, TokenSource, reply_body

connect_timeout_seconds = 2.0
read_timeout_seconds_default = 10.0
ORCHESTRATOR_PATH = "/function/orchestrator"
RISK_PATH = "/function/risk"
LEDGER_PATH = "/function/ledger"
BUREAU_PATH = "/function/bureau"


class ServiceUnreachable(RuntimeError):
    """The function did not answer, or answered with a server error: try again later."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any

    @property
    def code(self) -> str | None:
        """The problem code of an error answer."""
        return self.body.get("code") if isinstance(self.body, dict) else None


def _object_of(reply: Reply, service: str) -> dict[str, Any]:
    """A 200 answer's JSON object; ServiceUnreachable for any other answer of `service`."""
    if reply.status != 200 or not isinstance(reply.body, dict):
        raise ServiceUnreachable(f"{service} answered {reply.status} {reply.code}")
    return reply.body


class SuiteClient:
    """JSON over the gateway client: an answer below 500, or ServiceUnreachable."""

    def __init__(
        self, gateway_url: str | FunctionAddresses, tokens: TokenSource, *,
        request: Callable[..., Any] | None = None,
    ) -> None:
        self._gateway = GatewayClient(
            gateway_url, tokens, connect_timeout_seconds=connect_timeout_seconds, request=request
        )

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float = read_timeout_seconds_default,
    ) -> Reply:
        """The answer (any status below 500); ServiceUnreachable for no answer or a 5xx."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            response = self._gateway.send(
                method, path, headers=all_headers, body=data, timeout_seconds=timeout_seconds
            )
        except GatewayUnreachable as error:
            raise ServiceUnreachable(f"{method} {path}: {error.error_name}") from error
        except Exception as error:  # the token source's errors: no call could be made
            raise ServiceUnreachable(f"{method} {path}: {type(error).__name__}") from error
        reply = Reply(response.status_code, reply_body(response.content))
        if reply.status >= 500:
            raise ServiceUnreachable(f"{method} {path}: {reply.status} {reply.code or ''}".strip())
        return reply


class TaskNotWaiting(Exception):
    """The orchestrator no longer waits for this task token (state left, or token unknown)."""


class OrchestratorClient:
    """The orchestrator's API as a saga participant uses it: platform/orchestrator_api.py's port."""

    def __init__(self, client: SuiteClient) -> None:
        self._client = client

    def start(
        self, state_machine: str, name: str, input_value: Any, reference: str | None = None
    ) -> dict[str, Any]:
        """Start (or find, same name and input) an execution; ValueError for a refused start."""
        body = {"state_machine": state_machine, "name": name, "input": input_value}
        if reference is not None:
            body["reference"] = reference
        reply = self._client.call("POST", f"{ORCHESTRATOR_PATH}/executions", body)
        if reply.status not in (200, 201):
            raise ValueError(f"execution {name} not started: {reply.status} {reply.code}")
        return reply.body

    def describe(self, execution_id: str) -> dict[str, Any] | None:
        reply = self._client.call("GET", f"{ORCHESTRATOR_PATH}/executions/{execution_id}")
        return reply.body if reply.status == 200 else None

    def heartbeat(self, task_token: str) -> bool:
        """True when the orchestrator waits for this token: proof that a queued task message is real."""
        reply = self._client.call("POST", f"{ORCHESTRATOR_PATH}/tasks/heartbeat", {"task_token": task_token})
        return reply.status == 200

    def succeed(self, task_token: str, output: Any) -> None:
        self._report("success", {"task_token": task_token, "output": output})

    def fail(self, task_token: str, error: str, cause: str) -> None:
        self._report("failure", {"task_token": task_token, "error": error, "cause": cause})

    def _report(self, outcome: str, body: dict[str, Any]) -> None:
        reply = self._client.call("POST", f"{ORCHESTRATOR_PATH}/tasks/{outcome}", body)
        if reply.status == 200:
            return
        if reply.status in (404, 409):  # left the state, or already reported with another outcome
            raise TaskNotWaiting(f"task report refused: {reply.status} {reply.code}")
        raise ValueError(f"task report refused: {reply.status} {reply.code}")


class RiskClient:
    """The risk function's POST /assessments."""

    def __init__(self, client: SuiteClient, timeout_seconds: float = 3.0) -> None:
        self._client = client
        self._timeout_seconds = timeout_seconds

    def assess(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = self._client.call(
            "POST", f"{RISK_PATH}/assessments", body, timeout_seconds=self._timeout_seconds
        )
        return _object_of(reply, "risk")

    def rules(self) -> dict[str, Any]:
        """The thresholds in effect (GET /rules): every rule with its thresholds' names and values."""
        reply = self._client.call("GET", f"{RISK_PATH}/rules", None, timeout_seconds=self._timeout_seconds)
        return _object_of(reply, "risk")


class BureauClient:
    """The (sandbox) credit bureau's POST /reports."""

    def __init__(self, client: SuiteClient, timeout_seconds: float = 3.0) -> None:
        self._client = client
        self._timeout_seconds = timeout_seconds

    def report(self, customer_id: str, inquiry_id: str) -> dict[str, Any]:
        body = {"customer_id": customer_id, "inquiry_id": inquiry_id}
        reply = self._client.call("POST", f"{BUREAU_PATH}/reports", body,
                                  timeout_seconds=self._timeout_seconds)
        return _object_of(reply, "bureau")


class LedgerAccountConflict(ValueError):
    """The ledger refused to open an account: one with the same id exists with other fields."""


class LedgerClient:
    """The ledger function's accounts API, as a service keeping its own accounts there calls it."""

    def __init__(self, client: SuiteClient) -> None:
        self._client = client

    def open_account(self, account_id: str, owner_id: str, currency: str, kind: str) -> dict[str, Any]:
        """The account, opened or found with the same fields; LedgerAccountConflict otherwise."""
        body = {"account_id": account_id, "owner_id": owner_id, "currency": currency, "kind": kind}
        reply = self._client.call("POST", f"{LEDGER_PATH}/accounts", body)
        if reply.status == 201 and isinstance(reply.body, dict):
            return reply.body
        if reply.status == 409:
            raise LedgerAccountConflict(f"account {account_id}: {reply.code}")
        raise ServiceUnreachable(f"ledger refused account {account_id}: {reply.status} {reply.code}")
