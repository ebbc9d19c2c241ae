"""The accounts function through handle(event, context), over the reference ledger and in-memory fakes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from finfaas.platform.audit import AuditLog
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.platform.pii import EnvelopeCipher
from finfaas.platform.ratelimit import LIMITS, RateLimit, RateLimiter
from finfaas.services.accounts.service import AccountsService
from finfaas.services.customers.model import CustomerRecord
from finfaas.services.customers.service import AuditTrail, CustomerProfileService
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.ledger.service import LedgerService
from finfaas_dev.fakes.customers import InMemoryCustomerStore
from finfaas_dev.fakes.platform import (
    InMemoryAuditStore,
    InMemoryDataKeys,
    InMemoryIdempotencyStore,
    InMemoryRateLimitStore,
)
from finfaas_dev.testing.platform import (
    TokenMinter,
    call,
    captured_logs,
    load_function_handler,
)
from finfaas_dev.testing.reference_model import ReferenceLedger
from openapi_spec_validator import validate as validate_spec
from support.clocks import SteppingClock
from support.cold_start import cold_health_probe

CUSTOMER_SCOPES = ("accounts:read", "accounts:write")
PROFILE = {"name": "Ada Lovelace", "national_id": "AB 123 456", "phone": "+44 20 7946 0958"}
START = datetime(2025, 1, 1, tzinfo=UTC)


class World:
    """The handler module with its services on fakes, and tokens for two customers and an operator."""

    def __init__(self, limits: dict[str, RateLimit] | None = None) -> None:
        self.handler = load_function_handler("accounts")
        self.minter = TokenMinter.generate()
        self.handler.verifier.use(self.minter.verifier())
        self.reference = ReferenceLedger()
        self.ledger = LedgerService(self.reference, SteppingClock(START, timedelta(seconds=1)))
        self.ledger.ensure_system_accounts("USD")
        self.audit_store = InMemoryAuditStore()
        audit = AuditTrail(AuditLog(self.audit_store, "accounts"))
        self.customers = InMemoryCustomerStore()
        for sub in ("cust-alice", "cust-bob"):
            self.customers.customers[sub] = CustomerRecord(sub, sub, 0)
        self.handler.services.use(self.handler.AccountsServices(
            accounts=AccountsService(self.ledger, audit),
            profiles=CustomerProfileService(self.customers, EnvelopeCipher(InMemoryDataKeys()), audit),
            idempotency=IdempotencyGuard(InMemoryIdempotencyStore(), "accounts"),
            limiter=RateLimiter(InMemoryRateLimitStore(), limits or LIMITS),
            probe=lambda: None,
        ))
        self.alice = self.minter.mint("cust-alice", CUSTOMER_SCOPES)
        self.bob = self.minter.mint("cust-bob", CUSTOMER_SCOPES)
        self.operator = self.minter.mint("ops-console", ["ops", "ops:act"], kind="client")

    def call(self, method: str, path: str, token: str | None, key: str | None = None, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Idempotency-Key"] = key
        return call(self.handler.handle, method, path, token=token, headers=headers, **kwargs)

    def open(self, token: str, currency: str = "USD", key: str | None = None) -> str:
        key = key or uuid.uuid4().hex
        reply = self.call("POST", "/accounts", token, key, json_body={"currency": currency})
        assert reply.status == 201, reply.body
        return reply.json()["account_id"]

    def accounts_of(self, owner_id: str) -> list:
        return [a for a in self.reference.accounts.values() if a.owner_id == owner_id]


@pytest.fixture
def world() -> World:
    return World()


# --- opening ---------------------------------------------------------------------------------------


def test_opening_an_account_answers_201_with_its_location_and_balances(world):
    reply = world.call("POST", "/accounts", world.alice, "open-1", json_body={"currency": "JPY"})

    assert reply.status == 201
    body = reply.json()
    assert reply.header("Location") == f"/accounts/{body['account_id']}"
    assert (body["currency"], body["exponent"]) == ("JPY", 0)
    assert (body["kind"], body["status"]) == ("CUSTOMER", "OPEN")
    assert body["balances"]["available_minor"] == 0
    assert [a.account_id for a in world.accounts_of("cust-alice")] == [body["account_id"]]


def test_a_retry_with_the_same_key_replays_the_first_answer(world):
    first = world.call("POST", "/accounts", world.alice, "open-1", json_body={"currency": "USD"})
    retry = world.call("POST", "/accounts", world.alice, "open-1", json_body={"currency": "USD"})

    assert retry.status == 201 and retry.body == first.body
    assert retry.header("Idempotency-Replayed") == "true"
    assert len(world.accounts_of("cust-alice")) == 1


def test_the_same_key_with_another_body_is_a_422(world):
    world.call("POST", "/accounts", world.alice, "open-1", json_body={"currency": "USD"})

    reply = world.call("POST", "/accounts", world.alice, "open-1", json_body={"currency": "EUR"})

    assert reply.status == 422 and reply.json()["code"] == "idempotency_key_reused"
    assert len(world.accounts_of("cust-alice")) == 1


def test_opening_needs_an_idempotency_key(world):
    reply = world.call("POST", "/accounts", world.alice, json_body={"currency": "USD"})

    assert reply.status == 400 and reply.json()["code"] == "idempotency_key_missing"
    assert world.accounts_of("cust-alice") == []


@pytest.mark.parametrize("field, value", [
    ("owner_id", "cust-bob"), ("balance", 1_000_000), ("status", "OPEN"), ("account_id", "chosen"),
    ("overdraft_limit_minor", 10**9), ("credits_posted", 5), ("debits_must_not_exceed_credits", False),
])
def test_mass_assignment_is_refused_and_nothing_is_written(world, field, value):
    reply = world.call("POST", "/accounts", world.alice, "k", json_body={"currency": "USD", field: value})

    assert reply.status == 422
    assert reply.json()["errors"] == [{"field": field, "message": "Extra inputs are not permitted"}]
    assert world.accounts_of("cust-alice") == world.accounts_of("cust-bob") == []


@pytest.mark.parametrize("body, code", [
    ({"currency": "XXX"}, "unknown_currency"),
    ({"currency": "usd"}, "unknown_currency"),
    ({"currency": "USD", "kind": "SETTLEMENT"}, "validation_failed"),
    ({}, "validation_failed"),
])
def test_bad_openings_are_422s(world, body, code):
    reply = world.call("POST", "/accounts", world.alice, "k", json_body=body)

    assert reply.status == 422 and reply.json()["code"] == code


# --- reading ---------------------------------------------------------------------------------------


def test_a_customer_lists_only_their_own_accounts_page_by_page(world):
    mine = {world.open(world.alice) for _ in range(3)}
    world.open(world.bob)

    first = world.call("GET", "/accounts", world.alice, query={"limit": "2"}).json()
    rest = world.call("GET", "/accounts", world.alice,
                      query={"limit": "2", "starting_after": first["next_cursor"]}).json()

    assert first["has_more"] and not rest["has_more"]
    assert {a["account_id"] for a in first["data"] + rest["data"]} == mine


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}, {"limit": "ten"},
                                   {"owner_id": "cust-bob"}])
def test_bad_list_queries_are_422s(world, query):
    assert world.call("GET", "/accounts", world.alice, query=query).status == 422


def test_an_account_shows_posted_pending_and_available_balances(world):
    account_id = world.open(world.alice)
    world.ledger.deposit(account_id, 12_345, "USD")

    body = world.call("GET", f"/accounts/{account_id}", world.alice).json()

    assert body["balances"] == {"currency": "USD", "exponent": 2, "posted_minor": 12_345, "pending_minor": 0,
                                "pending_debits_minor": 0, "pending_credits_minor": 0,
                                "available_minor": 12_345}


def test_a_statement_pages_newest_first_with_running_balances(world):
    account_id = world.open(world.alice)
    for amount in (100, 200, 300):
        world.ledger.deposit(account_id, amount, "USD")

    first = world.call("GET", f"/accounts/{account_id}/statement", world.alice, query={"limit": "2"}).json()
    rest = world.call("GET", f"/accounts/{account_id}/statement", world.alice,
                      query={"limit": "2", "starting_after": first["next_cursor"]}).json()

    lines = first["data"] + rest["data"]
    assert [(e["amount_minor"], e["balance_after_minor"]) for e in lines] == [
        (300, 600), (200, 300), (100, 100)]
    assert first["has_more"] and not rest["has_more"] and first["exponent"] == 2


def test_an_operator_reads_any_accounts_statement_holds_included(world):
    account_id = world.open(world.bob)
    world.ledger.deposit(account_id, 500, "USD")
    world.ledger.transfer(TransferRequest(account_id, "sys-funding-USD", 120, "USD", transfer_id="hold-1",
                                          pending=True, timeout_seconds=3600))

    first = world.call("GET", f"/_/ops/accounts/{account_id}/statement", world.operator,
                       query={"limit": "1"}).json()
    rest = world.call("GET", f"/_/ops/accounts/{account_id}/statement", world.operator,
                      query={"limit": "1", "starting_after": first["next_cursor"]}).json()
    stolen = world.call("GET", f"/accounts/{account_id}/statement", world.alice,
                        query={"starting_after": first["next_cursor"]})

    assert [(e["transfer_id"], e["kind"], e["pending_delta_minor"]) for e in first["data"]] == [
        ("hold-1", "PENDING", -120)]
    assert [e["amount_minor"] for e in rest["data"]] == [500] and not rest["has_more"]
    assert stolen.status == 422 and stolen.json()["code"] == "invalid_cursor"


def test_the_balance_at_a_past_moment(world):
    account_id = world.open(world.alice)
    world.ledger.deposit(account_id, 100, "USD")
    between = world.ledger._clock() + timedelta(milliseconds=500)
    world.ledger.deposit(account_id, 50, "USD")

    then = world.call("GET", f"/accounts/{account_id}/balance", world.alice,
                      query={"at": between.isoformat().replace("+00:00", "Z")}).json()
    before_opening = world.call("GET", f"/accounts/{account_id}/balance", world.alice,
                                query={"at": "2000-01-01T00:00:00Z"}).json()

    assert then["posted_minor"] == 100 and before_opening["posted_minor"] == 0
    assert then["currency"] == "USD" and then["exponent"] == 2


def test_a_balance_moment_needs_a_utc_offset(world):
    account_id = world.open(world.alice)

    reply = world.call("GET", f"/accounts/{account_id}/balance", world.alice,
                       query={"at": "2025-01-01T00:00:00"})

    assert reply.status == 422 and reply.json()["errors"][0]["field"] == "at"


# --- object-level authorisation --------------------------------------------------------------------


@pytest.mark.parametrize("suffix, query", [
    ("", None), ("/statement", None), ("/balance", {"at": "2030-01-01T00:00:00Z"}),
])
def test_another_customers_account_is_a_404_identical_to_a_missing_one(world, suffix, query):
    alices = world.open(world.alice)
    world.ledger.deposit(alices, 500, "USD")
    missing = "acc_" + "0" * 32

    foreign = world.call("GET", f"/accounts/{alices}{suffix}", world.bob, query=query)
    absent = world.call("GET", f"/accounts/{missing}{suffix}", world.bob, query=query)

    assert foreign.status == absent.status == 404
    assert foreign.body.replace(alices, "<id>") == absent.body.replace(missing, "<id>")
    assert world.ledger.get_account(alices).balance_minor == 500


def test_customers_cannot_reach_operator_routes(world):
    account_id = world.open(world.alice)

    for method, path in [("GET", ""), ("GET", "/statement"), ("POST", "/freeze"), ("POST", "/unfreeze"),
                         ("POST", "/close")]:
        reply = world.call(method, f"/_/ops/accounts/{account_id}{path}", world.alice, "k")
        assert reply.status == 403 and reply.json()["code"] == "insufficient_scope"
    assert world.ledger.get_account(account_id).status == "OPEN"


def test_tokens_without_the_scope_or_without_a_token_are_refused(world):
    read_only = world.minter.mint("cust-alice", ["accounts:read"])

    assert world.call("POST", "/accounts", read_only, "k", json_body={"currency": "USD"}).status == 403
    assert world.call("GET", "/accounts", None).status == 401


def test_each_caller_is_rate_limited_on_its_own():
    world = World({"default": RateLimit("default", requests_max=3, window_seconds=60)})
    for _ in range(3):
        assert world.call("GET", "/accounts", world.alice).status == 200

    limited = world.call("GET", "/accounts", world.alice)

    assert limited.status == 429 and int(limited.header("Retry-After")) >= 1
    assert world.call("GET", "/accounts", world.bob).status == 200


# --- operators -------------------------------------------------------------------------------------


def test_an_operator_freezes_unfreezes_and_closes_an_empty_account(world):
    account_id = world.open(world.alice)

    frozen = world.call("POST", f"/_/ops/accounts/{account_id}/freeze", world.operator, "f1")
    opened = world.call("POST", f"/_/ops/accounts/{account_id}/unfreeze", world.operator, "u1")
    closed = world.call("POST", f"/_/ops/accounts/{account_id}/close", world.operator, "c1")

    assert [r.json()["status"] for r in (frozen, opened, closed)] == ["FROZEN", "OPEN", "CLOSED"]
    assert closed.json()["owner_id"] == "cust-alice"
    assert world.call("GET", f"/_/ops/accounts/{account_id}", world.operator).json()["status"] == "CLOSED"


def test_closing_an_account_with_money_or_holds_is_a_409(world):
    # GIVEN one account holding a cent, and one with a zero balance but an incoming hold
    funded, held = world.open(world.alice), world.open(world.alice)
    world.ledger.deposit(funded, 1, "USD")
    world.ledger.transfer(TransferRequest("sys-funding-USD", held, 10, "USD", pending=True))
    assert world.ledger.get_account(held).balance_minor == 0

    for account_id in (funded, held):
        reply = world.call("POST", f"/_/ops/accounts/{account_id}/close", world.operator, f"c-{account_id}")
        assert reply.status == 409 and reply.json()["code"] == "account_not_empty"
        assert world.ledger.get_account(account_id).status == "OPEN"


def test_unfreezing_a_closed_account_is_a_409(world):
    account_id = world.open(world.alice)
    world.call("POST", f"/_/ops/accounts/{account_id}/close", world.operator, "c1")

    reply = world.call("POST", f"/_/ops/accounts/{account_id}/unfreeze", world.operator, "u1")

    assert reply.status == 409 and reply.json()["code"] == "invalid_status_change"


def test_operator_changes_need_an_idempotency_key(world):
    account_id = world.open(world.alice)

    reply = world.call("POST", f"/_/ops/accounts/{account_id}/freeze", world.operator)

    assert reply.status == 400 and world.ledger.get_account(account_id).status == "OPEN"


def test_every_change_is_audited_with_who_what_and_outcome(world):
    account_id = world.open(world.alice)
    world.ledger.deposit(account_id, 1, "USD")
    world.call("POST", f"/_/ops/accounts/{account_id}/freeze", world.operator, "f1")
    world.call("POST", f"/_/ops/accounts/{account_id}/close", world.operator, "c1")

    records = [r for chain in world.audit_store.chains() for r in world.audit_store.records(chain)]
    assert sorted((r.actor, r.action, r.outcome) for r in records) == [
        ("cust-alice", "account.open", "succeeded"),
        ("ops-console", "account.close", "denied"),
        ("ops-console", "account.freeze", "succeeded"),
    ]
    assert all(r.target == f"account:{account_id}" and r.request_id for r in records)


# --- the customer's profile ------------------------------------------------------------------------


def test_a_customer_saves_and_reads_their_profile(world):
    saved = world.call("POST", "/customers/me", world.alice, json_body=PROFILE)
    read = world.call("GET", "/customers/me", world.alice)

    assert saved.status == 200 and set(saved.json()) == {"customer_id", "updated_at"}
    assert read.json() | {"updated_at": None} == {
        "customer_id": "cust-alice", "name": "Ada Lovelace", "national_id": "AB123456",
        "phone": "+442079460958", "updated_at": None}
    assert "Lovelace" not in world.customers.get("cust-alice").sealed_profile


def test_a_profile_write_with_extra_fields_is_refused_and_nothing_is_stored(world):
    reply = world.call("POST", "/customers/me", world.alice, json_body={**PROFILE, "customer_id": "cust-bob"})

    assert reply.status == 422
    assert world.customers.get("cust-alice").sealed_profile is None
    assert world.customers.get("cust-bob").sealed_profile is None


def test_invalid_profile_fields_are_named_not_echoed(world):
    reply = world.call("POST", "/customers/me", world.alice,
                       json_body={**PROFILE, "phone": "call me maybe", "national_id": "??"})

    assert reply.status == 422 and reply.json()["code"] == "invalid_profile"
    assert [e["field"] for e in reply.json()["errors"]] == ["national_id", "phone"]
    assert "call me maybe" not in reply.body


def test_a_customer_without_a_profile_or_a_client_app_gets_404(world):
    assert world.call("GET", "/customers/me", world.bob).json()["code"] == "profile_not_found"
    client = world.minter.mint("demo-app", CUSTOMER_SCOPES, kind="client")
    assert world.call("GET", "/customers/me", client).json()["code"] == "customer_not_found"


def test_profile_values_never_reach_the_logs(world):
    with captured_logs() as logs:
        world.call("POST", "/customers/me", world.alice, json_body=PROFILE)
        world.call("GET", "/customers/me", world.alice)
        world.call("POST", "/customers/me", world.alice, json_body={**PROFILE, "phone": "+1"})

    assert [line["status"] for line in logs.requests()] == [200, 200, 422]
    for value in ("Ada", "Lovelace", "AB123456", "AB 123 456", "+442079460958", "7946"):
        assert value not in logs.text


# --- the contract ----------------------------------------------------------------------------------


def test_the_openapi_document_is_valid_and_documents_idempotency_keys(world):
    document = world.call("GET", "/_/openapi.json", None).json()

    validate_spec(document)
    assert {"/accounts", "/accounts/{account_id}", "/accounts/{account_id}/statement",
            "/accounts/{account_id}/balance", "/customers/me", "/_/ops/accounts/{account_id}/close"} <= set(
        document["paths"])
    parameters = document["paths"]["/accounts"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in parameters)


HEAVY_MODULES = ("boto3", "botocore", "pynamodb", "aws_xray_sdk", "jwt", "cryptography", "argon2", "requests")


def test_a_health_probe_on_a_cold_accounts_function_loads_no_aws_or_crypto_code():
    report = cold_health_probe("accounts", HEAVY_MODULES)

    assert report["status"] == 200 and report["heavy"] == []
    print(f"accounts cold start: import {report['import_ms']:.0f} ms")
