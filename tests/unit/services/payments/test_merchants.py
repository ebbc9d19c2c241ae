"""Merchants through the payments function's handle(event, context), over in-memory fakes: onboarding
with its ledger accounts, reading, deactivating, and what operators get refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from finfaas.platform.audit import AuditLog
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.platform.ratelimit import RateLimiter
from finfaas.services.payments.service import PaymentsService
from finfaas_dev.fakes.payments import InMemoryMerchantLedger, InMemoryMerchants
from finfaas_dev.fakes.platform import InMemoryAuditStore, InMemoryIdempotencyStore, InMemoryRateLimitStore
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ONBOARD = {
    "merchant_id": "m-books", "name": "Corner Books", "currency": "USD",
    "settlement_account": {"bank_code": "SANDUS00", "account_number": "000123456789",
                           "name": "Corner Books LLC"},
    "fee_schedule": {"bps": 290, "fixed_minor": 30, "rounding": "half_up"},
    "reserve_bps": 1000, "receivable_shards": 4,
}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class World:
    """The handler with its service on fakes, an operator's token and an app's without ops."""

    def __init__(self) -> None:
        self.handler = load_function_handler("payments")
        self.minter = TokenMinter.generate()
        self.handler.verifier.use(self.minter.verifier())
        self.merchants = InMemoryMerchants()
        self.ledger = InMemoryMerchantLedger()
        limit = self.handler.OPS_LIMIT
        self.handler.services.use(self.handler.PaymentsServices(
            payments=PaymentsService(self.merchants, self.ledger, Clock()),
            guard=IdempotencyGuard(InMemoryIdempotencyStore(), "payments"),
            limiter=RateLimiter(InMemoryRateLimitStore(), {limit.name: limit}),
            audit=AuditLog(InMemoryAuditStore(), "payments"),
            probe=lambda: None,
        ))
        self.operator = self.minter.mint("ops-console", ["ops", "ops:act"], kind="client")
        self.app = self.minter.mint("shop-app", ["payments:write", "payments:read"], kind="client")

    def onboard(self, body: dict | None = None, key: str | None = None, token: str | None = None):
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        return call(self.handler.handle, "POST", "/_/ops/merchants", token=token or self.operator,
                    headers=headers, json_body=ONBOARD if body is None else body)

    def get(self, merchant_id: str, token: str | None = None):
        path = f"/_/ops/merchants/{merchant_id}"
        return call(self.handler.handle, "GET", path, token=token or self.operator)


@pytest.fixture
def world() -> World:
    return World()


def test_onboarding_opens_the_merchants_ledger_accounts_and_shows_its_terms(world):
    reply = world.onboard()

    assert reply.status == 201, reply.body
    body = reply.json()
    accounts = body["ledger_accounts"]
    assert accounts["receivables"] == [f"mrc-m-books-recv-{k}" for k in range(4)]
    assert (accounts["reserve"], accounts["fees_payable"]) == ("mrc-m-books-reserve", "mrc-m-books-fees")
    opened = [*accounts["receivables"], accounts["reserve"], accounts["fees_payable"]]
    assert world.ledger.accounts == {account_id: ("m-books", "USD") for account_id in opened}
    assert body["fee_schedule"] == {"bps": 290, "fixed_minor": 30, "rounding": "half_up"}
    terms = (body["status"], body["reserve_bps"], body["capture_window_seconds"])
    assert terms == ("ACTIVE", 1000, 7 * 86_400)
    assert body["settlement_account"]["account_number"] == "****6789"
    assert world.get("m-books").json() == body


def test_onboarding_again_with_the_same_terms_finds_the_merchant(world):
    first = world.onboard(key="k-1")

    again = world.onboard(key="k-2")

    assert again.status == 201 and again.json() == first.json()


def test_onboarding_finishes_after_a_crash_between_the_ledger_accounts_and_the_record(world):
    # GIVEN an onboarding that stopped after opening two of the merchant's six accounts
    world.ledger.fail_after_calls = 2
    stopped = world.onboard(key="k-1")
    assert stopped.status == 503 and world.get("m-books").status == 404

    # WHEN the operator retries once the ledger answers again
    world.ledger.fail_after_calls = None
    retried = world.onboard(key="k-1")

    # THEN every account is open once and the merchant exists
    assert retried.status == 201
    assert len(world.ledger.accounts) == 6 and world.get("m-books").status == 200


def test_the_same_merchant_id_with_other_terms_is_refused_and_changes_nothing(world):
    first = world.onboard()

    reply = world.onboard({**ONBOARD, "fee_schedule": {"bps": 100}})

    assert reply.status == 409 and reply.json()["code"] == "merchant_exists_with_different_fields"
    assert world.get("m-books").json() == first.json()


def test_a_merchant_whose_ledger_account_id_is_taken_by_another_owner_is_refused(world):
    world.ledger.accounts["mrc-m-books-recv-0"] = ("someone-else", "USD")

    reply = world.onboard()

    assert reply.status == 409 and reply.json()["code"] == "merchant_accounts_conflict"
    assert world.get("m-books").status == 404


@pytest.mark.parametrize(("change", "field"), [
    ({"fee_schedule": {"bps": 5001}}, "fee_schedule.bps"),
    ({"fee_schedule": {"bps": 10, "rounding": "nearest"}}, "fee_schedule.rounding"),
    ({"reserve_bps": 10_001}, "reserve_bps"),
    ({"receivable_shards": 0}, "receivable_shards"),
    ({"capture_window_seconds": 31 * 86_400}, "capture_window_seconds"),
    ({"merchant_id": "m" * 41}, "merchant_id"),
])
def test_terms_out_of_bounds_are_a_422_naming_the_field_and_write_nothing(world, change, field):
    reply = world.onboard({**ONBOARD, **change})

    assert reply.status == 422
    assert field in {error["field"] for error in reply.json()["errors"]}
    assert world.ledger.accounts == {} and world.merchants.get(ONBOARD["merchant_id"]) is None


def test_an_unknown_currency_is_a_422_naming_it(world):
    reply = world.onboard({**ONBOARD, "currency": "XYZ"})

    assert reply.status == 422 and reply.json()["code"] == "unknown_currency"
    assert world.ledger.accounts == {}


def test_deactivating_is_kept_and_repeating_it_changes_nothing(world):
    world.onboard()
    path = "/_/ops/merchants/m-books/deactivate"

    first = call(world.handler.handle, "POST", path, token=world.operator)
    again = call(world.handler.handle, "POST", path, token=world.operator)

    assert first.status == 200 and first.json()["status"] == "INACTIVE"
    assert again.json() == first.json()
    assert world.merchants.get("m-books").version == 2


def test_an_unknown_merchant_is_a_404(world):
    assert world.get("m-nobody").status == 404
    reply = call(world.handler.handle, "POST", "/_/ops/merchants/m-nobody/deactivate", token=world.operator)
    assert reply.status == 404 and reply.json()["code"] == "merchant_not_found"


def test_merchants_are_for_operators_only(world):
    world.onboard()

    assert world.onboard(key="k-app", token=world.app).status == 403
    assert world.get("m-books", token=world.app).status == 403
