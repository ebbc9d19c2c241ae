"""The platform's HTTP glue: Idempotency-Key handling, rate limits and audit records, with fakes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from finfaas.platform.audit import AuditLog
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import FunctionApp, Request, Response, StrictModel
from finfaas.platform.idempotency import IdempotencyGuard, IdempotencyStoreError
from finfaas.platform.ratelimit import RateLimit, RateLimiter
from finfaas_dev.fakes.platform import InMemoryAuditStore, InMemoryIdempotencyStore, InMemoryRateLimitStore
from finfaas_dev.testing.platform import call
from pydantic import BaseModel, Field

NOW_S = 1_800_000_000.0
WRITE = "payments:write"


class NewPayment(StrictModel):
    payment_id: str = Field(min_length=1, max_length=32)
    amount_minor: int = Field(gt=0)


class Payment(BaseModel):
    payment_id: str
    amount_minor: int


class Declined(Exception):
    """Domain error: the payment was refused (a final answer for this key)."""


class Flaky(Exception):
    """An unexpected failure: 500, and the key must stay free for a retry."""


@dataclass
class Ledger:
    """What the handlers change: counts effects, so a test can see a replay did nothing."""

    effects: list[str] = field(default_factory=list)
    fail_next: list[type[Exception]] = field(default_factory=list)
    # in_transaction: completion records committed "in the same transaction" as the effect.
    records: InMemoryIdempotencyStore = field(default_factory=InMemoryIdempotencyStore)


class BrokenIdempotencyStore(InMemoryIdempotencyStore):
    def put_if_free(self, record, now_ms):
        raise IdempotencyStoreError("table unreachable")


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def audit_store() -> InMemoryAuditStore:
    return InMemoryAuditStore()


@pytest.fixture
def built(minter, ledger, audit_store):
    """An app with every platform service on fakes; factories count how often they are called."""
    builds = {"guard": 0, "limiter": 0, "audit": 0}

    def guard() -> IdempotencyGuard:
        builds["guard"] += 1
        # One table: the platform's records and those the handler's transaction writes.
        return IdempotencyGuard(ledger.records, "payments", clock=lambda: NOW_S)

    def limiter() -> RateLimiter:
        builds["limiter"] += 1
        limits = {"default": RateLimit("default", 100, 60), "money": RateLimit("money", 3, 60)}
        return RateLimiter(InMemoryRateLimitStore(), limits, clock=lambda: NOW_S)

    def audit() -> AuditLog:
        builds["audit"] += 1
        return AuditLog(audit_store, "payments", clock=lambda: NOW_S)

    app = FunctionApp("payments", verifier=minter.verifier(), idempotency=guard, limiter=limiter, audit=audit,
                      errors={Declined: ErrorSpec(409, "declined", "Declined")})
    register_routes(app, ledger)
    return app, builds


def register_routes(app: FunctionApp, ledger: Ledger) -> None:
    @app.route("POST", "/payments", scopes=[WRITE], body=NewPayment, status=201, idempotency="required")
    def create_payment(req: Request, body: NewPayment) -> Payment:
        """Create a payment."""
        if ledger.fail_next:
            raise ledger.fail_next.pop(0)("refused")
        ledger.effects.append(body.payment_id)
        req.audit_target = f"payment:{body.payment_id}"
        return Payment(payment_id=body.payment_id, amount_minor=body.amount_minor)

    @app.route("POST", "/notes", scopes=[WRITE], idempotency="optional", rate_limit=None)
    def add_note(req: Request) -> dict:
        """Add a note."""
        ledger.effects.append("note")
        return {"notes": len(ledger.effects)}

    @app.route("POST", "/transfers", scopes=[WRITE], body=NewPayment, status=201,
               idempotency="in_transaction", rate_limit="money")
    def create_transfer(req: Request, body: NewPayment) -> Response:
        """Move money; the key is completed in the same (fake) transaction."""
        if ledger.fail_next:
            raise ledger.fail_next.pop(0)("refused")
        response = Response(json.dumps({"transfer_id": body.payment_id}), 201)
        record = req.idempotency.completion_record(stored_form(response))
        outcome = ledger.records.put_if_free(record, int(NOW_S * 1000))
        if not outcome.written:
            req.idempotency.conflict(outcome.existing)  # raises the replay, 409 or 422
        ledger.effects.append(body.payment_id)
        req.idempotency.mark_recorded()
        return response

    @app.route("GET", "/payments/{payment_id}", scopes=["payments:read"])
    def get_payment(req: Request, payment_id: str) -> Payment:
        """Read a payment."""
        return Payment(payment_id=payment_id, amount_minor=1)


def stored_form(response: Response):
    from finfaas.platform.idempotency import StoredResponse

    return StoredResponse(response.status, response.body, {"Content-Type": response.media_type})


def post(app, minter, path, body, key="key-1", sub="svc-payments", headers=None, scopes=(WRITE,)):
    all_headers = {**({"Idempotency-Key": key} if key is not None else {}), **(headers or {})}
    return call(app.handle, "POST", path, json_body=body, headers=all_headers,
                token=minter.mint(sub=sub, scopes=scopes, kind="client"))


# --- claimed keys ("required" / "optional") ------------------------------------------------------


def test_same_key_and_body_replays_the_answer_without_a_second_effect(built, minter, ledger):
    app, _ = built
    first = post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 500})

    again = post(app, minter, "/payments", {"amount_minor": 500, "payment_id": "p1"})  # same JSON, reordered

    assert first.status == again.status == 201
    assert again.json() == first.json() == {"payment_id": "p1", "amount_minor": 500}
    assert again.header("Idempotency-Replayed") == "true"
    assert first.header("Idempotency-Replayed") is None
    assert ledger.effects == ["p1"]


def test_same_key_with_a_different_body_is_422_and_changes_nothing(built, minter, ledger):
    app, _ = built
    post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 500})

    reused = post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 501})

    assert reused.status == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert ledger.effects == ["p1"]


def test_keys_are_scoped_by_principal(built, minter, ledger):
    app, _ = built
    post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 500}, sub="svc-a")

    other = post(app, minter, "/payments", {"payment_id": "p2", "amount_minor": 7}, sub="svc-b")

    assert other.status == 201 and ledger.effects == ["p1", "p2"]


def test_a_required_key_that_is_missing_is_400_and_the_handler_does_not_run(built, minter, ledger):
    app, _ = built

    reply = post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 500}, key=None)

    assert reply.status == 400
    assert reply.json()["code"] == "idempotency_key_missing"
    assert ledger.effects == []


def test_an_optional_key_may_be_left_out(built, minter, ledger):
    app, _ = built

    replies = [post(app, minter, "/notes", {}, key=None) for _ in range(2)]

    assert [r.status for r in replies] == [200, 200] and ledger.effects == ["note", "note"]


def test_a_retry_while_the_first_attempt_runs_is_409_with_retry_after(built, minter, ledger):
    app, _ = built
    nested: list = []

    # GIVEN a handler that, while running, sees the same request arrive again (a client retry)
    @app.route("POST", "/slow", scopes=[WRITE], idempotency="required")
    def slow(req: Request) -> dict:
        """Take a while."""
        nested.append(post(app, minter, "/slow", {"n": 1}, key="k-slow"))
        return {"done": True}

    first = post(app, minter, "/slow", {"n": 1}, key="k-slow")

    assert first.status == 200
    assert nested[0].status == 409
    assert nested[0].json()["code"] == "idempotency_key_in_use"
    assert int(nested[0].header("Retry-After")) >= 1


# The platform's own record (/payments), and a key completed in the handler's transaction (/transfers),
# where an answer that made no transaction (a 4xx) is stored by the platform and a 5xx leaves the key free.
GUARDED_PATHS = pytest.mark.parametrize("path", ["/payments", "/transfers"],
                                        ids=["platform", "in-transaction"])


def sent_twice(built, minter, ledger, path: str, failure: type[Exception]):
    """One request sent twice under one key, the ledger raising `failure` on the first; both replies."""
    app, _ = built
    ledger.fail_next.append(failure)
    body = {"payment_id": "p1", "amount_minor": 500}
    return post(app, minter, path, body), post(app, minter, path, body)


@GUARDED_PATHS
def test_a_final_4xx_is_stored_and_replayed(built, minter, ledger, path):
    first, again = sent_twice(built, minter, ledger, path, Declined)

    assert first.status == again.status == 409
    assert again.json()["code"] == "declined"
    assert again.header("Idempotency-Replayed") == "true"
    assert again.header("Content-Type") == "application/problem+json"
    assert ledger.effects == []


@GUARDED_PATHS
def test_a_5xx_is_not_stored_so_the_retry_runs(built, minter, ledger, path):
    first, retry = sent_twice(built, minter, ledger, path, Flaky)

    assert (first.status, retry.status) == (500, 201)
    assert retry.header("Idempotency-Replayed") is None
    assert ledger.effects == ["p1"]


def test_an_invalid_body_is_422_naming_the_field_and_not_stored_under_the_key(built, minter, ledger):
    app, _ = built

    invalid = post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 1.5})
    fixed = post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 2})

    assert invalid.status == 422
    assert [e["field"] for e in invalid.json()["errors"]] == ["amount_minor"]
    assert fixed.status == 201  # the key was not spent on the malformed request


def test_an_unreachable_idempotency_store_is_503_with_retry_after(minter, ledger):
    guard = IdempotencyGuard(BrokenIdempotencyStore(), "payments", clock=lambda: NOW_S)
    app = FunctionApp("payments", verifier=minter.verifier(), idempotency=guard)
    register_routes(app, ledger)

    reply = post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 500})

    assert reply.status == 503
    assert reply.json()["code"] == "idempotency_store_unavailable"
    assert reply.header("Retry-After") == "1"
    assert ledger.effects == []


# --- keys completed in the handler's own transaction ----------------------------------------------


def test_in_transaction_replay_has_the_header_and_no_second_effect(built, minter, ledger):
    app, _ = built
    first = post(app, minter, "/transfers", {"payment_id": "t1", "amount_minor": 5})

    again = post(app, minter, "/transfers", {"payment_id": "t1", "amount_minor": 5})

    assert first.status == again.status == 201
    assert again.json() == first.json() == {"transfer_id": "t1"}
    assert again.header("Idempotency-Replayed") == "true"
    assert ledger.effects == ["t1"]


def test_in_transaction_different_body_is_422(built, minter, ledger):
    app, _ = built
    post(app, minter, "/transfers", {"payment_id": "t1", "amount_minor": 5})

    reused = post(app, minter, "/transfers", {"payment_id": "t2", "amount_minor": 5})

    assert reused.status == 422 and reused.json()["code"] == "idempotency_key_reused"
    assert ledger.effects == ["t1"]


def test_in_transaction_routes_require_the_key(built, minter, ledger):
    app, _ = built

    reply = post(app, minter, "/transfers", {"payment_id": "t1", "amount_minor": 5}, key=None)

    assert reply.status == 400 and reply.json()["code"] == "idempotency_key_missing"


# --- rate limits ----------------------------------------------------------------------------------


def test_over_the_limit_is_429_with_retry_after_and_nothing_runs(built, minter, ledger, audit_store):
    app, _ = built
    replies = [post(app, minter, "/transfers", {"payment_id": f"t{i}", "amount_minor": 5}, key=f"k{i}")
               for i in range(4)]

    assert [r.status for r in replies] == [201, 201, 201, 429]
    refused = replies[-1]
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.header("Retry-After")) <= 60
    assert ledger.effects == ["t0", "t1", "t2"]
    assert len(list(audit_store.records(next(audit_store.chains())))) == 3  # the 429 left no record


def test_limits_are_per_principal(built, minter, ledger):
    app, _ = built
    for i in range(3):
        post(app, minter, "/transfers", {"payment_id": f"a{i}", "amount_minor": 5}, key=f"a{i}", sub="svc-a")

    other = post(app, minter, "/transfers", {"payment_id": "b0", "amount_minor": 5}, key="b0", sub="svc-b")

    assert other.status == 201


# --- audit ----------------------------------------------------------------------------------------


def records(audit_store: InMemoryAuditStore) -> list:
    return [r for chain in audit_store.chains() for r in audit_store.records(chain)]


def test_a_state_change_is_audited_with_who_what_target_outcome_and_where(built, minter, audit_store):
    app, _ = built

    reply = post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 500},
                 headers={"X-Real-Ip": "203.0.113.9", "X-Request-Id": "req-42"})

    assert reply.status == 201
    [record] = records(audit_store)
    assert (record.actor, record.action, record.target, record.outcome) == (
        "svc-payments", "create_payment", "payment:p1", "succeeded")
    assert record.source_ip == "203.0.113.9"
    assert record.request_id == "req-42"
    assert record.trace_id


def test_audit_ignores_addresses_in_headers_the_edge_does_not_set(built, minter, audit_store):
    app, _ = built

    # X-Forwarded-For is not the configured header (X-Real-Ip): whatever the client wrote there.
    post(app, minter, "/notes", {}, key=None, headers={"X-Forwarded-For": "198.51.100.1, 192.0.2.7"})

    [record] = records(audit_store)
    assert (record.action, record.target, record.source_ip) == ("add_note", "notes", None)


def test_audit_never_stores_a_client_ip_header_that_is_not_an_address(built, minter, audit_store):
    app, _ = built

    reply = post(app, minter, "/notes", {}, key=None, headers={"X-Real-Ip": "<script>"})

    assert reply.status == 200
    [record] = records(audit_store)
    assert record.source_ip is None


def test_reads_are_not_audited(built, minter, audit_store):
    app, _ = built

    reply = call(app.handle, "GET", "/payments/p1", token=minter.mint(scopes=["payments:read"]))

    assert reply.status == 200 and records(audit_store) == []


def test_denials_and_failures_are_audited_but_unknown_callers_are_not(built, minter, audit_store, ledger):
    app, _ = built
    ledger.fail_next.append(Declined)

    post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 5}, scopes=("payments:read",))
    post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 5})
    call(app.handle, "POST", "/payments", json_body={"payment_id": "p1", "amount_minor": 5},
         headers={"Authorization": "Bearer not-a-token"})

    assert [(r.action, r.outcome) for r in records(audit_store)] == [
        ("create_payment", "denied"), ("create_payment", "failed")]


def test_an_audit_store_failure_does_not_change_the_answer(minter, ledger):
    class BrokenAuditStore(InMemoryAuditStore):
        def append(self, record):
            raise RuntimeError("audit table unreachable")

    app = FunctionApp("payments", verifier=minter.verifier(), idempotency=IdempotencyGuard(
        InMemoryIdempotencyStore(), "payments"), audit=AuditLog(BrokenAuditStore(), "payments"))
    register_routes(app, ledger)

    reply = post(app, minter, "/payments", {"payment_id": "p1", "amount_minor": 5})

    assert reply.status == 201 and ledger.effects == ["p1"]


# --- construction, registration and the contract --------------------------------------------------


def test_platform_services_are_built_once_and_not_for_health_probes(built, minter):
    app, builds = built

    call(app.handle, "GET", "/_/health")
    assert builds == {"guard": 0, "limiter": 0, "audit": 0}

    for i in range(2):
        post(app, minter, "/payments", {"payment_id": f"p{i}", "amount_minor": 5}, key=f"k{i}")
    assert builds == {"guard": 1, "limiter": 1, "audit": 1}


def test_registration_refuses_idempotency_the_app_cannot_honour(minter):
    plain = FunctionApp("payments", verifier=minter.verifier())
    with_guard = FunctionApp("payments", verifier=minter.verifier(),
                             idempotency=IdempotencyGuard(InMemoryIdempotencyStore(), "payments"))

    def handler(req: Request) -> dict:
        return {}

    with pytest.raises(ValueError, match="idempotency="):
        plain.route("POST", "/a", idempotency="required")(handler)
    with pytest.raises(ValueError, match="state-changing"):
        with_guard.route("GET", "/a", idempotency="required")(handler)
    with pytest.raises(ValueError, match="need auth"):
        with_guard.route("POST", "/a", auth=False, idempotency="required")(handler)
    with pytest.raises(ValueError, match="one of"):
        with_guard.route("POST", "/a", idempotency="always")(handler)


def test_the_openapi_document_declares_the_key_and_its_answers(built):
    app, _ = built
    document = call(app.handle, "GET", "/_/openapi.json").json()

    required = document["paths"]["/payments"]["post"]
    optional = document["paths"]["/notes"]["post"]
    read = document["paths"]["/payments/{payment_id}"]["get"]
    [key] = [p for p in required["parameters"] if p["in"] == "header"]
    assert (key["name"], key["required"]) == ("Idempotency-Key", True)
    assert [p["required"] for p in optional["parameters"] if p["in"] == "header"] == [False]
    assert {"400", "409", "422", "429"} <= set(required["responses"])
    assert "Idempotency-Replayed" in required["responses"]["201"]["headers"]
    assert "429" not in optional["responses"]  # rate_limit=None
    assert "409" not in read["responses"] and "429" in read["responses"]
    assert "Retry-After" in document["components"]["responses"]["RateLimited"]["headers"]


# --- "keyed": the handler's own conditional write is the key's record --------------------------------


@pytest.fixture
def keyed_app(minter):
    """An app without an idempotency store whose route keys its own write by the Idempotency-Key."""
    orders: dict[str, str] = {}
    app = FunctionApp("orders", verifier=minter.verifier())

    @app.route("POST", "/orders", scopes=[WRITE], body=NewPayment, status=202, idempotency="keyed")
    def create_order(req: Request, body: NewPayment) -> Response:
        """Create an order keyed by the caller's Idempotency-Key."""
        key = req.header("idempotency-key")
        repeated = key in orders
        orders.setdefault(key, body.payment_id)
        return Response({"order": orders[key]}, 202, {"Idempotency-Replayed": "true"} if repeated else {})

    return app, orders


def test_a_keyed_route_runs_its_handler_with_a_valid_key_and_keeps_no_record_of_its_own(keyed_app, minter):
    app, orders = keyed_app
    token = minter.mint("app-1", [WRITE])
    body = {"payment_id": "o-1", "amount_minor": 5}

    first = call(app.handle, "POST", "/orders", json_body=body, token=token, headers={"Idempotency-Key": "k"})
    again = call(app.handle, "POST", "/orders", json_body=body, token=token, headers={"Idempotency-Key": "k"})

    assert (first.status, first.json()) == (202, {"order": "o-1"})
    assert "Idempotency-Replayed" not in first.headers
    assert (again.status, again.json()) == (202, {"order": "o-1"})
    assert again.headers["Idempotency-Replayed"] == "true"
    assert orders == {"k": "o-1"}


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "idempotency_key_missing"), ({"Idempotency-Key": "caf\u00e9"}, "idempotency_key_invalid")],
)
def test_a_keyed_route_refuses_a_missing_or_malformed_key_before_its_handler(
    keyed_app, minter, headers, code
):
    app, orders = keyed_app
    token = minter.mint("app-1", [WRITE])

    reply = call(app.handle, "POST", "/orders", json_body={"payment_id": "o-1", "amount_minor": 5},
                 token=token, headers=headers)

    assert reply.status == 400
    assert reply.json()["code"] == code
    assert orders == {}


def test_a_keyed_route_documents_the_required_key(keyed_app):
    app, _ = keyed_app

    operation = call(app.handle, "GET", "/_/openapi.json").json()["paths"]["/orders"]["post"]

    [header] = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["required"] is True
    assert "Idempotency-Replayed" in operation["responses"]["202"]["headers"]
