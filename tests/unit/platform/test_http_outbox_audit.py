"""audit="outbox" routes: the audit record rides in the handler's own transaction, not in a second write."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from finfaas.platform.audit import AuditLog, Outcome, audit_facts_from_json
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import FunctionApp, Request, Response, StrictModel
from finfaas_dev.fakes.platform import InMemoryAuditStore
from finfaas_dev.testing.platform import call
from pydantic import Field

WRITE = "money:write"


class Move(StrictModel):
    move_id: str = Field(min_length=1, max_length=32)
    commit: bool = True  # False: the handler answers without its transaction (a replay of a stored move)


class Refused(Exception):
    """Domain error: nothing was written."""


@dataclass
class FakeTransactions:
    """What the handler's transactions committed: each one's outbox audit facts (or None)."""

    committed: list[str | None] = field(default_factory=list)


@pytest.fixture
def audit_store() -> InMemoryAuditStore:
    return InMemoryAuditStore()


@pytest.fixture
def transactions() -> FakeTransactions:
    return FakeTransactions()


@pytest.fixture
def app(minter, audit_store, transactions) -> FunctionApp:
    app = FunctionApp("mover", verifier=minter.verifier(), audit=AuditLog(audit_store, "mover"),
                      errors={Refused: ErrorSpec(409, "refused", "Refused")})

    @app.route("POST", "/moves", scopes=[WRITE], body=Move, status=201, audit="outbox")
    def create_move(req: Request, body: Move) -> Response:
        """Move something; the audit facts go into this transaction's outbox item."""
        if body.move_id == "refuse":
            raise Refused("no")
        req.audit_target = f"move:{body.move_id}"
        if body.commit:
            assert req.outbox_audit is not None
            transactions.committed.append(req.outbox_audit.facts())
            req.outbox_audit.mark_recorded()
        return Response({"move_id": body.move_id}, 201)

    @app.route("POST", "/plain", scopes=[WRITE])
    def plain(req: Request) -> dict:
        """A route that keeps the default, synchronous audit."""
        assert req.outbox_audit is None
        return {}

    return app


def post(app, minter, path, body, headers=None):
    return call(app.handle, "POST", path, json_body=body, headers=headers or {},
                token=minter.mint(sub="svc-mover", scopes=[WRITE], kind="client"))


def records(audit_store: InMemoryAuditStore) -> list:
    return [r for chain in audit_store.chains() for r in audit_store.records(chain)]


def test_a_committed_call_carries_its_audit_facts_and_appends_nothing_itself(app, minter, audit_store,
                                                                            transactions):
    reply = post(app, minter, "/moves", {"move_id": "m1"},
                 headers={"X-Real-Ip": "203.0.113.9", "X-Request-Id": "req-7"})

    assert reply.status == 201
    assert records(audit_store) == []  # no second write on the money path
    [facts] = transactions.committed
    event, at = audit_facts_from_json(facts)
    assert (event.actor, event.action, event.target, event.outcome) == (
        "svc-mover", "create_move", "move:m1", Outcome.SUCCEEDED)
    assert (event.source_ip, event.request_id) == ("203.0.113.9", "req-7")
    assert event.trace_id and at


def test_a_refusal_is_audited_synchronously_as_failed(app, minter, audit_store, transactions):
    reply = post(app, minter, "/moves", {"move_id": "refuse"})

    assert reply.status == 409 and transactions.committed == []
    [record] = records(audit_store)
    assert (record.action, record.outcome) == ("create_move", "failed")


def test_an_answer_no_transaction_carried_is_audited_synchronously(app, minter, audit_store, transactions):
    reply = post(app, minter, "/moves", {"move_id": "m2", "commit": False})

    assert reply.status == 201 and transactions.committed == []
    [record] = records(audit_store)
    assert (record.target, record.outcome) == ("move:m2", "succeeded")


def test_routes_without_the_option_keep_the_synchronous_audit(app, minter, audit_store):
    post(app, minter, "/plain", {})

    [record] = records(audit_store)
    assert record.action == "plain"


def test_without_an_audit_log_no_facts_are_offered(minter):
    app = FunctionApp("mover", verifier=minter.verifier())
    seen = []

    @app.route("POST", "/moves", scopes=[WRITE], audit="outbox")
    def create_move(req: Request) -> dict:
        """Record whether the platform offered audit facts."""
        seen.append(req.outbox_audit)
        return {}

    post(app, minter, "/moves", {})
    assert seen == [None]


@pytest.mark.parametrize(("method", "auth", "mode"), [("GET", True, "outbox"), ("POST", False, "outbox"),
                                                      ("POST", True, "later")])
def test_the_option_is_refused_where_it_cannot_apply(minter, method, auth, mode):
    app = FunctionApp("mover", verifier=minter.verifier())
    with pytest.raises(ValueError):
        app.route(method, "/x", auth=auth, audit=mode)(lambda req: {})
