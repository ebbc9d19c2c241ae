"""demo-bank: the toy bank the demo state machines call, for tests only.

Debits, credits and refunds are applied once per Idempotency-Key through the platform's
IdempotencyGuard (as the suite's functions do). GET /effects tells a test what was applied.
DEMO_BANK_REFUSE lists accounts whose credits are refused (422); DEMO_BANK_SLOW lists
`account:seconds` debits that take that long.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from typing import Any

from finfaas.platform import jwt_auth
from finfaas.platform.errors import HttpError
from finfaas.platform.http import FunctionApp, Request, Response, StrictModel
from finfaas.platform.idempotency import IDEMPOTENCY_KEY_HEADER, IdempotencyGuard, StoredResponse
from finfaas_dev.fakes.platform import InMemoryIdempotencyStore
from pydantic import Field

WRITE = "transfers:write"
lease_seconds = 5  # a retry of a still-running request is told to come back within this


class AccountClosed(HttpError):
    status, code, title = 422, "account_closed", "Account closed"


class Bank:
    """Balances and the count of every applied effect, by (route, reference)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.balances: Counter = Counter()
        self.applied: Counter = Counter()
        self.refused = {a for a in os.environ.get("DEMO_BANK_REFUSE", "closed").split(",") if a}
        slow = (part.partition(":") for part in os.environ.get("DEMO_BANK_SLOW", "").split(",") if part)
        self.slow = {account: float(seconds) for account, _, seconds in slow}

    def apply(self, route: str, reference: str, changes: dict[str, int]) -> None:
        with self.lock:
            self.applied[(route, reference)] += 1
            self.balances.update(changes)


class ReplaceableVerifier:
    def __init__(self) -> None:
        self.verifier: Any = None

    def verify(self, token: str) -> jwt_auth.Principal:
        return (self.verifier or jwt_auth.default_verifier()).verify(token)


bank = Bank()
verifier = ReplaceableVerifier()
guard = IdempotencyGuard(InMemoryIdempotencyStore(), "demo-bank", lease_seconds=lease_seconds)
app = FunctionApp("demo-bank", verifier=verifier)


class Movement(StrictModel):
    account_id: str = Field(min_length=1, max_length=64)
    amount_minor: int = Field(gt=0)
    reference: str = Field(min_length=1, max_length=200)


class Refund(StrictModel):
    debit_id: str | None = None
    reference: str = Field(min_length=1, max_length=200)


def once(req: Request, run) -> Response:
    """Run a money movement once per Idempotency-Key; a retry gets the stored answer, refusals included."""
    key = req.header(IDEMPOTENCY_KEY_HEADER.lower())
    scope = guard.scope(
        principal=req.principal.sub,
        route=req.route,
        key=key,
        method=req.method,
        path=req.path,
        body=req.body,
        required=True,
    )

    def attempt() -> StoredResponse:
        try:
            body = run()
        except HttpError as error:
            problem = error.to_problem(req.path)
            problem_type = {"Content-Type": "application/problem+json"}
            return StoredResponse(problem.status, json.dumps(problem.to_dict()), problem_type)
        return StoredResponse(201, json.dumps(body), {"Content-Type": "application/json"})

    stored = guard.run(scope, attempt)
    media_type = stored.headers.get("Content-Type", "application/json")
    return Response(stored.body, stored.status_code, dict(stored.headers), media_type)


def debited(body: Movement) -> dict:
    time.sleep(bank.slow.get(body.account_id, 0))
    moved = {body.account_id: -body.amount_minor, "in-flight": body.amount_minor}
    bank.apply("debits", body.reference, moved)
    return {"debit_id": f"d-{body.reference}"}


def credited(body: Movement) -> dict:
    if body.account_id in bank.refused:
        raise AccountClosed(f"account {body.account_id} is closed")
    moved = {"in-flight": -body.amount_minor, body.account_id: body.amount_minor}
    bank.apply("credits", body.reference, moved)
    return {"credit_id": f"c-{body.reference}"}


def refunded(body: Refund) -> dict:
    bank.apply("refunds", body.reference, {})
    return {"refunded": body.debit_id}


@app.route("POST", "/debits", scopes=[WRITE], body=Movement, status=201)
def debit(req: Request, body: Movement) -> Response:
    return once(req, lambda: debited(body))


@app.route("POST", "/credits", scopes=[WRITE], body=Movement, status=201)
def credit(req: Request, body: Movement) -> Response:
    return once(req, lambda: credited(body))


@app.route("POST", "/refunds", scopes=[WRITE], body=Refund, status=201)
def refund(req: Request, body: Refund) -> Response:
    return once(req, lambda: refunded(body))


@app.route("GET", "/effects", auth=False)
def effects(req: Request) -> dict[str, Any]:
    """What was applied, by reference: {reference: {route: count}}, and the sum of all balances."""
    with bank.lock:
        by_reference: dict[str, dict[str, int]] = {}
        for (route, reference), count in bank.applied.items():
            by_reference.setdefault(reference, {})[route] = count
        return {"applied": by_reference, "balance_total": sum(bank.balances.values())}


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
