"""Payment intents through the payments function's handle(event, context), on the reference ledger and
in-memory fakes: create, confirm (risk, hold), capture in parts, cancel, and what is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from finfaas.domain.ledger import AccountKind, expiry_transfer_id
from finfaas.domain.payments import captures_per_payment_max
from finfaas.platform.audit import AuditLog
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.platform.ratelimit import RateLimiter
from finfaas.platform.resilience import CircuitBreaker
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.ledger.service import LedgerService
from finfaas.services.payments.model import LedgerStep
from finfaas.services.payments.service import PaymentsService, PaymentsSettings, hold_grace_seconds
from finfaas_dev.fakes.payments import (
    InMemoryMerchantLedger,
    InMemoryMerchants,
    InMemoryPaymentIntents,
    InMemoryPaymentsLedger,
)
from finfaas_dev.fakes.platform import InMemoryAuditStore, InMemoryIdempotencyStore, InMemoryRateLimitStore
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler
from finfaas_dev.testing.reference_model import ReferenceLedger

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SCOPES = ("payments:read", "payments:write")
MERCHANT = {
    "merchant_id": "m-books", "name": "Corner Books", "currency": "USD",
    "settlement_account": {"bank_code": "SANDUS00", "account_number": "000123456789", "name": "CB LLC"},
    "fee_schedule": {"bps": 300, "fixed_minor": 0, "rounding": "half_up"}, "receivable_shards": 4,
    "capture_window_seconds": 3600,
}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


class Risk:
    """The risk function as payments sees it: a decision, or a failure."""

    def __init__(self) -> None:
        self.decision = "approve"
        self.down = False
        self.calls = 0

    def assess(self, body: dict) -> dict:
        self.calls += 1
        if self.down:
            raise ConnectionError("risk is down")
        return {"decision": self.decision, "score": 10, "reasons": []}


class World:
    """The handler on fakes: merchant m-books, ada's USD account with 1,000.00, bob's account."""

    def __init__(self) -> None:
        self.handler = load_function_handler("payments")
        self.minter = TokenMinter.generate()
        self.handler.verifier.use(self.minter.verifier())
        self.clock = Clock()
        self.ledger = LedgerService(ReferenceLedger(), self.clock)
        self.ledger.ensure_system_accounts("USD")
        self.merchants, self.intents, self.risk = InMemoryMerchants(), InMemoryPaymentIntents(), Risk()
        self.keys = InMemoryIdempotencyStore()
        self.money = InMemoryPaymentsLedger(self.ledger, self.intents, self.keys)
        self.breaker = CircuitBreaker("risk", failures_to_open=2, open_seconds=30)
        self.handler.services.use(self.handler.PaymentsServices(
            payments=PaymentsService(self.merchants, LedgerAccountsOnReference(self.ledger), self.clock,
                                     intents=self.intents,
                                     money=self.money,
                                     risk=self.risk, breaker=self.breaker, settings=PaymentsSettings(100)),
            guard=IdempotencyGuard(self.keys, "payments"),
            limiter=RateLimiter(InMemoryRateLimitStore(), self.handler.LIMITS),
            audit=AuditLog(InMemoryAuditStore(), "payments"),
            probe=lambda: None,
            records=self.keys,
        ))
        self.operator = self.minter.mint("ops-console", ["ops", "ops:act"], kind="client")
        self.ada = self.minter.mint("cust-ada", SCOPES)
        self.bob = self.minter.mint("cust-bob", SCOPES)
        self.app = self.minter.mint("shop-app", SCOPES, kind="client")
        self.ada_account = self.ledger.open_account(owner_id="cust-ada", currency="USD", account_id="acc-ada")
        self.ledger.open_account(owner_id="cust-bob", currency="USD", account_id="acc-bob")
        self.ledger.deposit("acc-ada", 100_000, "USD", transfer_id="dep-ada")
        reply = self.post("/_/ops/merchants", self.operator, MERCHANT)
        assert reply.status == 201, reply.body
        self.receivables = reply.json()["ledger_accounts"]["receivables"]

    def post(self, path: str, token: str, body: dict | None = None, key: str | None = None):
        return call(self.handler.handle, "POST", path, token=token,
                    headers={"Idempotency-Key": key or uuid.uuid4().hex}, json_body=body)

    def create(self, amount=10_000, token: str | None = None, key: str | None = None, **fields):
        body = {"amount": amount, "currency": "USD", "customer_account_id": "acc-ada",
                "merchant_id": "m-books", "capture_method": "manual", **fields}
        return self.post("/payment_intents", token or self.ada, body, key)

    def authorized(self, amount=10_000) -> str:
        payment_id = self.create(amount).json()["id"]
        reply = self.post(f"/payment_intents/{payment_id}/confirm", self.ada)
        assert reply.status == 200, reply.body
        return payment_id

    def capture(self, payment_id: str, amount: int | None = None, final: bool = True, key: str | None = None):
        body = {"final_capture": final}
        if amount is not None:
            body["amount_to_capture"] = amount
        return self.post(f"/payment_intents/{payment_id}/capture", self.ada, body, key)

    def balances(self) -> tuple[int, int, int]:
        """ada's posted and pending debits, and what all the merchant's receivables hold (posted)."""
        ada = self.ledger.get_account("acc-ada")
        received = sum(self.ledger.get_account(a).balance_minor for a in self.receivables)
        return ada.debits_posted - 0, ada.debits_pending, received


class LedgerAccountsOnReference(InMemoryMerchantLedger):
    """Merchant accounts opened on the same reference ledger the payments move money on."""

    def __init__(self, ledger: LedgerService) -> None:
        super().__init__()
        self._ledger = ledger

    def open_merchant_account(self, account_id: str, owner_id: str, currency: str) -> None:
        super().open_merchant_account(account_id, owner_id, currency)
        self._ledger.open_account(owner_id=owner_id, currency=currency, account_id=account_id,
                                  kind=AccountKind.MERCHANT)


@pytest.fixture
def world() -> World:
    return World()


def test_a_new_intent_waits_for_confirmation_and_prices_its_fee(world):
    reply = world.create(10_000, metadata={"order": "A-17"}, statement_descriptor="CORNER BOOKS")

    assert reply.status == 201, reply.body
    intent = reply.json()
    assert reply.header("Location") == f"/function/payments/payment_intents/{intent['id']}"
    assert (intent["status"], intent["amount"]) == ("requires_confirmation", 10_000)
    assert intent["amount_capturable"] == 0
    assert intent["application_fee_amount"] == 300  # 3 % of 100.00
    assert intent["metadata"] == {"order": "A-17"} and intent["ledger_transfers"] == []


def test_the_same_key_finds_the_same_intent_and_another_body_is_refused(world):
    first = world.create(key="order-17")
    again = world.create(key="order-17")
    other = world.create(20_000, key="order-17")

    assert again.status == 201 and again.json() == first.json()
    assert again.header("Idempotency-Replayed") == "true"
    assert other.status == 422 and other.json()["code"] == "idempotency_key_reused"


def test_confirming_a_manual_intent_holds_the_amount_until_capture_before(world):
    payment_id = world.create(10_000).json()["id"]

    reply = world.post(f"/payment_intents/{payment_id}/confirm", world.ada)

    intent = reply.json()
    assert (intent["status"], intent["amount_capturable"]) == ("requires_capture", 10_000)
    capture_before = datetime.fromisoformat(intent["capture_before"])
    assert timedelta(seconds=3599) < capture_before - START < timedelta(seconds=3601)
    assert [step["kind"] for step in intent["ledger_transfers"]] == ["hold"]
    hold = world.ledger.get_transfer(intent["ledger_transfers"][0]["transfer_id"])
    assert (hold.amount_minor, hold.debit_account_id, hold.credit_account_id) == (
        10_000, "acc-ada", intent_receivable(world, payment_id))
    assert capture_before < hold.expires_at <= capture_before + timedelta(seconds=hold_grace_seconds + 1)
    assert world.balances() == (0, 10_000, 0)


def intent_receivable(world: World, payment_id: str) -> str:
    return world.intents.get(payment_id).receivable_account_id


def test_an_automatic_intent_is_paid_at_confirmation(world):
    payment_id = world.create(2_500, capture_method="automatic").json()["id"]

    intent = world.post(f"/payment_intents/{payment_id}/confirm", world.ada).json()

    assert (intent["status"], intent["amount_received"]) == ("succeeded", 2_500)
    assert intent["amount_capturable"] == 0
    assert [s["kind"] for s in intent["ledger_transfers"]] == ["payment"]
    assert world.balances() == (2_500, 0, 2_500)


def test_confirm_in_the_create_request_pays_an_automatic_intent_in_one_call(world):
    reply = world.create(2_500, capture_method="automatic", confirm=True, key="order-1")

    assert reply.status == 201, reply.body
    intent = reply.json()
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 2_500)
    assert intent["amount_capturable"] == 0
    assert [s["kind"] for s in intent["ledger_transfers"]] == ["payment"]
    assert world.balances() == (2_500, 0, 2_500)
    # both changes' events, written with the money; the request's audit facts too
    assert [(v, e.type) for pid, v, e in world.intents.events if pid == intent["id"]] == [
        (1, "payment_intent.created"), (1, "payment_intent.succeeded")]
    assert len(world.money.audits) == 1 and intent["id"] in world.money.audits[0]


def test_a_create_and_confirm_sent_again_pays_once_and_another_body_is_refused(world):
    first = world.create(2_500, capture_method="automatic", confirm=True, key="order-2")

    again = world.create(2_500, capture_method="automatic", confirm=True, key="order-2")
    unconfirmed = world.create(2_500, capture_method="automatic", key="order-2")

    assert again.status == 201 and again.json() == first.json()
    assert again.header("Idempotency-Replayed") == "true"
    assert unconfirmed.status == 422 and unconfirmed.json()["code"] == "idempotency_key_reused"
    assert world.balances() == (2_500, 0, 2_500)
    assert len([e for pid, _, e in world.intents.events if pid == first.json()["id"]]) == 2


def test_confirm_in_the_create_request_holds_a_manual_intent_for_its_capture(world):
    intent = world.create(10_000, confirm=True).json()

    assert (intent["status"], intent["amount_capturable"]) == ("requires_capture", 10_000)
    assert world.balances() == (0, 10_000, 0)
    captured = world.capture(intent["id"]).json()
    assert (captured["status"], captured["amount_received"]) == ("succeeded", 10_000)
    assert world.balances() == (10_000, 0, 10_000)


def test_a_create_and_confirm_refused_by_risk_or_funds_writes_nothing(world):
    world.risk.decision = "decline"
    declined = world.create(1_000, capture_method="automatic", confirm=True)
    world.risk.decision = "approve"
    unfunded = world.create(100_001, capture_method="automatic", confirm=True)

    assert declined.status == 422 and declined.json()["code"] == "payment_declined"
    assert unfunded.status == 409 and unfunded.json()["code"] == "insufficient_funds"
    assert world.intents._intents == {} and world.intents.events == []
    assert world.balances() == (0, 0, 0)


def test_partial_captures_post_what_they_take_and_keep_the_rest_capturable(world):
    payment_id = world.authorized(10_000)

    first = world.capture(payment_id, 3_000, final=False).json()
    second = world.capture(payment_id, 2_000, final=False).json()

    assert (first["status"], first["amount_received"], first["amount_capturable"]) == (
        "partially_captured", 3_000, 7_000)
    assert (second["amount_received"], second["amount_capturable"]) == (5_000, 5_000)
    assert world.balances() == (5_000, 5_000, 5_000)
    final = world.capture(payment_id, 1_000).json()
    assert (final["status"], final["amount_received"], final["amount_capturable"]) == ("succeeded", 6_000, 0)
    assert world.balances() == (6_000, 0, 6_000)  # the final capture released the rest
    assert [s["kind"] for s in final["ledger_transfers"]] == [
        "hold", "capture", "hold", "capture", "hold", "capture", "release"]


def test_a_capture_above_what_is_capturable_is_refused_and_moves_nothing(world):
    payment_id = world.authorized(10_000)
    world.capture(payment_id, 4_000, final=False)

    reply = world.capture(payment_id, 6_001)

    assert reply.status == 422 and reply.json()["code"] == "capture_refused"
    assert "amount_to_capture" in reply.json()["detail"]
    assert world.balances() == (4_000, 6_000, 4_000)


def test_a_payment_takes_at_most_fifty_captures(world):
    payment_id = world.authorized(100)
    for _ in range(captures_per_payment_max):
        assert world.capture(payment_id, 1, final=False).status == 200

    reply = world.capture(payment_id, 1, final=False)

    assert reply.status == 422 and reply.json()["code"] == "capture_refused"
    assert world.balances() == (50, 50, 50)


@pytest.mark.parametrize("status_maker", ["canceled", "succeeded", "requires_confirmation"])
def test_capture_of_an_intent_that_holds_nothing_is_refused_naming_the_state(world, status_maker):
    payment_id = world.create(1_000).json()["id"] if status_maker == "requires_confirmation" else \
        world.authorized(1_000)
    if status_maker == "canceled":
        world.post(f"/payment_intents/{payment_id}/cancel", world.ada, {})
    if status_maker == "succeeded":
        world.capture(payment_id)
    before = world.balances()

    reply = world.capture(payment_id, 1)

    assert reply.status == 409 and reply.json()["code"] == "payment_intent_unexpected_state"
    assert status_maker in reply.json()["detail"]
    assert world.balances() == before


def test_a_capture_after_capture_before_is_refused_as_expired(world):
    payment_id = world.authorized(1_000)
    world.clock.now += timedelta(hours=2)

    reply = world.capture(payment_id)

    assert reply.status == 409 and reply.json()["code"] == "authorization_expired"
    assert world.intents.get(payment_id).amount_received_minor == 0


def test_cancel_releases_what_is_capturable_and_a_canceled_intent_stays_canceled(world):
    payment_id = world.authorized(10_000)
    world.capture(payment_id, 2_500, final=False)

    path = f"/payment_intents/{payment_id}/cancel"
    canceled = world.post(path, world.ada, {"cancellation_reason": "abandoned"})
    again = world.post(f"/payment_intents/{payment_id}/cancel", world.ada, {})

    assert canceled.json()["status"] == "canceled" and canceled.json()["cancellation_reason"] == "abandoned"
    assert (canceled.json()["amount_capturable"], canceled.json()["amount_received"]) == (0, 2_500)
    assert again.status == 200 and again.json() == canceled.json()
    assert world.balances() == (2_500, 0, 2_500)
    assert world.post(f"/payment_intents/{payment_id}/confirm", world.ada).status == 409


def test_a_retry_with_the_same_key_captures_once(world):
    payment_id = world.authorized(10_000)

    first = world.capture(payment_id, 1_000, final=False, key="cap-1")
    again = world.capture(payment_id, 1_000, final=False, key="cap-1")

    assert again.json() == first.json() and again.header("Idempotency-Replayed") == "true"
    assert world.balances() == (1_000, 9_000, 1_000)


def test_another_customers_intent_is_a_404_and_nothing_moves(world):
    payment_id = world.authorized(1_000)

    assert call(world.handler.handle, "GET", f"/payment_intents/{payment_id}", token=world.bob).status == 404
    reply = world.post(f"/payment_intents/{payment_id}/capture", world.bob, {})
    assert reply.status == 404 and reply.json()["code"] == "payment_intent_not_found"
    assert call(world.handler.handle, "GET", f"/payment_intents/{payment_id}", token=world.app).status == 200
    assert world.balances() == (0, 1_000, 0)


@pytest.mark.parametrize(("fields", "status", "code", "field"), [
    ({"customer_account_id": "acc-bob"}, 404, "account_not_found", "customer_account_id"),
    ({"customer_account_id": "acc-nowhere"}, 404, "account_not_found", "customer_account_id"),
    ({"currency": "EUR"}, 422, "currency_mismatch", "currency"),
    ({"application_fee_amount": 10_001}, 422, "application_fee_exceeds_amount", "application_fee_amount"),
    ({"merchant_id": "m-nobody"}, 404, "merchant_not_found", "merchant_id"),
])
def test_what_the_request_already_decides_is_refused_and_writes_nothing(world, fields, status, code, field):
    reply = world.create(10_000, **fields)

    assert reply.status == status and reply.json()["code"] == code
    assert reply.json()["detail"].startswith(f"{field}:")
    assert world.intents._intents == {}


def test_an_inactive_merchant_takes_no_new_payments(world):
    world.post("/_/ops/merchants/m-books/deactivate", world.operator)

    reply = world.create()

    assert reply.status == 422 and reply.json()["code"] == "merchant_inactive"


def test_a_declined_payment_is_not_held(world):
    payment_id = world.create(1_000).json()["id"]
    world.risk.decision = "decline"

    reply = world.post(f"/payment_intents/{payment_id}/confirm", world.ada)

    assert reply.status == 422 and reply.json()["code"] == "payment_declined"
    assert world.intents.get(payment_id).status.value == "requires_confirmation"
    assert world.balances() == (0, 0, 0)


def test_with_risk_down_small_payments_pass_degraded_and_larger_ones_wait(world):
    # GIVEN a failing risk function (the breaker opens after two failures)
    world.risk.down = True
    small, large = world.create(10_000).json()["id"], world.create(10_001).json()["id"]

    passed = world.post(f"/payment_intents/{small}/confirm", world.ada)
    refused = world.post(f"/payment_intents/{large}/confirm", world.ada)
    calls = world.risk.calls
    world.post(f"/payment_intents/{large}/confirm", world.ada)

    assert passed.status == 200 and world.intents.get(small).risk["degraded"] is True
    assert refused.status == 503 and refused.json()["code"] == "risk_unavailable"
    assert world.risk.calls == calls  # the breaker is open: risk is not called
    assert world.balances() == (0, 10_000, 0)


def test_a_customer_without_the_funds_is_refused_and_nothing_is_held(world):
    payment_id = world.create(100_001).json()["id"]

    reply = world.post(f"/payment_intents/{payment_id}/confirm", world.ada)

    assert reply.status == 409 and reply.json()["code"] == "insufficient_funds"
    assert world.intents.get(payment_id).status.value == "requires_confirmation"


def test_a_deposit_later_lets_the_same_intent_confirm(world):
    payment_id = world.create(100_001).json()["id"]
    world.post(f"/payment_intents/{payment_id}/confirm", world.ada)
    world.ledger.transfer(TransferRequest("sys-funding-USD", "acc-ada", 1, "USD", "dep-2"))

    assert world.post(f"/payment_intents/{payment_id}/confirm", world.ada).status == 200


def test_the_merchants_balance_sums_its_receivable_shards(world):
    # GIVEN payments spread over the merchant's four receivable shards, one still only authorized
    for amount in (1_000, 2_000, 3_000, 4_000, 5_000):
        world.capture(world.authorized(amount))
    world.authorized(700)

    reply = call(world.handler.handle, "GET", "/_/ops/merchants/m-books/balance", token=world.operator)

    balance = reply.json()
    assert reply.status == 200
    assert (balance["receivable_posted_minor"], balance["receivable_pending_minor"]) == (15_000, 700)
    assert sorted(balance["receivable_shards"]) == sorted(world.receivables)
    assert sum(balance["receivable_shards"].values()) == 15_000
    assert len([v for v in balance["receivable_shards"].values() if v]) > 1  # spread, not one hot item


def listing(world: World, token: str, **query: str):
    return call(world.handler.handle, "GET", "/payment_intents", token=token, query=query)


def test_a_list_pages_newest_first_with_a_cursor_bound_to_its_caller_and_filters(world):
    made = [world.create(1_000 + n).json()["id"] for n in range(3)]

    first = listing(world, world.app, merchant_id="m-books", limit="2").json()
    second = listing(world, world.app, merchant_id="m-books", limit="2",
                     starting_after=first["next_cursor"]).json()

    assert [i["id"] for i in first["data"]] == [made[2], made[1]] and first["has_more"]
    assert [i["id"] for i in second["data"]] == [made[0]] and not second["has_more"]
    for other in (listing(world, world.ada, limit="2", starting_after=first["next_cursor"]),
                  listing(world, world.app, merchant_id="m-books", status="succeeded", limit="2",
                          starting_after=first["next_cursor"]),
                  listing(world, world.app, merchant_id="m-books", starting_after="forged")):
        assert other.status == 422 and "starting_after" in other.json()["detail"]


def test_a_customer_lists_only_its_own_intents_and_an_app_names_what_it_lists(world):
    mine = world.create(1_000).json()["id"]
    bob_account = world.ledger.get_account("acc-bob")
    assert bob_account.owner_id == "cust-bob"

    own = listing(world, world.ada).json()["data"]
    bobs = listing(world, world.bob).json()["data"]
    asked_for_ada = listing(world, world.bob, customer="cust-ada").json()["data"]
    unbounded = listing(world, world.app)

    assert [i["id"] for i in own] == [mine] and bobs == [] and asked_for_ada == []
    assert unbounded.status == 422 and unbounded.json()["code"] == "merchant_or_customer_required"
    assert [i["id"] for i in listing(world, world.app, customer="cust-ada").json()["data"]] == [mine]


def test_a_list_filters_by_status_and_creation_time(world):
    held = world.authorized(1_000)
    created = world.create(2_000).json()

    waiting = listing(world, world.ada, status="requires_confirmation").json()["data"]
    since = listing(world, world.ada, created_gte=created["created_at"]).json()["data"]
    before = listing(world, world.ada, created_lt=created["created_at"]).json()["data"]

    assert [i["id"] for i in waiting] == [created["id"]]
    assert [i["id"] for i in since] == [created["id"]] and [i["id"] for i in before] == [held]


# --- refunds -------------------------------------------------------------------------------------------


def refund(world: World, payment_id: str, number: str, amount=None, token: str | None = None,
           key: str | None = None, **fields):
    body = {"refund_number": number, **({} if amount is None else {"amount": amount}), **fields}
    return world.post(f"/payment_intents/{payment_id}/refunds", token or world.ada, body, key)


def paid(world: World, amount: int = 10_000) -> str:
    payment_id = world.authorized(amount)
    assert world.capture(payment_id).status == 200
    return payment_id


def test_a_quarter_refunded_to_the_wallet_gives_a_quarter_of_the_fee_back(world):
    # GIVEN 100.00 paid with a 3.00 application fee (the merchant's 3 %)
    payment_id = paid(world)

    reply = refund(world, payment_id, "r-1", "25.00")

    assert reply.status == 201, reply.body
    assert (reply.json()["amount"], reply.json()["application_fee_refunded"]) == (2_500, 75)
    intent = world.intents.get(payment_id)
    assert (intent.amount_refunded_minor, intent.fee_refunded_minor) == (2_500, 75)
    assert world.ledger.get_account("acc-ada").balance_minor == 100_000 - 10_000 + 2_500
    assert world.balances()[2] == 7_500


def test_several_refunds_up_to_what_was_captured_and_not_a_cent_more(world):
    payment_id = paid(world)
    assert refund(world, payment_id, "r-1", 4_000).status == 201
    assert refund(world, payment_id, "r-2", 4_000).status == 201  # same amount, another number: another

    over = refund(world, payment_id, "r-3", 2_001)
    rest = refund(world, payment_id, "r-4")

    assert over.status == 422 and over.json()["code"] == "refund_refused"
    assert over.json()["detail"].startswith("amount:")
    assert rest.status == 201 and rest.json()["amount"] == 2_000
    intent = world.intents.get(payment_id)
    assert (intent.amount_refunded_minor, intent.fee_refunded_minor) == (10_000, 300)  # the whole fee
    assert refund(world, payment_id, "r-5", 1).status == 422


def test_a_refund_number_sent_again_refunds_once(world):
    payment_id = paid(world)

    first = refund(world, payment_id, "r-1", 1_000, key="k-1")
    again = refund(world, payment_id, "r-1", 1_000, key="k-2")  # another key: the number decides
    other = refund(world, payment_id, "r-1", 2_000, key="k-3")

    assert first.status == again.status == 201 and again.json() == first.json()
    assert other.status == 409 and other.json()["code"] == "refund_exists_with_different_fields"
    assert world.intents.get(payment_id).amount_refunded_minor == 1_000
    assert world.ledger.get_account("acc-ada").balance_minor == 100_000 - 10_000 + 1_000


def test_a_refund_in_another_currency_or_of_another_customers_payment_is_refused(world):
    payment_id = paid(world)

    currency = refund(world, payment_id, "r-1", 100, currency="EUR")
    foreign = refund(world, payment_id, "r-2", 100, token=world.bob)

    assert currency.status == 422 and currency.json()["code"] == "currency_mismatch"
    assert foreign.status == 404 and foreign.json()["code"] == "payment_intent_not_found"
    assert world.intents.get(payment_id).amount_refunded_minor == 0


def test_nothing_captured_nothing_refundable(world):
    payment_id = world.authorized(1_000)

    reply = refund(world, payment_id, "r-1", 1)

    assert reply.status == 422 and reply.json()["code"] == "refund_refused"


def test_a_repeated_creation_answers_the_stored_intent_even_after_the_merchant_left(world):
    first = world.create(key="order-9")
    world.post("/_/ops/merchants/m-books/deactivate", world.operator)

    again = world.create(key="order-9")

    assert again.status == 201 and again.json() == first.json()
    assert world.create(key="order-10").json()["code"] == "merchant_inactive"


def test_every_change_writes_exactly_one_event_with_it(world):
    payment_id = world.authorized(10_000)
    world.capture(payment_id, 4_000, final=False)
    world.capture(payment_id, 4_000, final=False, key="cap-2")
    world.capture(payment_id, 4_000, final=False, key="cap-2")  # a replay: no change, no event
    world.capture(payment_id, 1_000)
    refund(world, payment_id, "r-1", 500)
    refund(world, payment_id, "r-1", 500)  # the same refund again: no change, no event
    world.capture(payment_id, 1)  # refused: no change, no event

    events = [(version, event.type) for pid, version, event in world.intents.events if pid == payment_id]

    assert events == [(1, "payment_intent.created"), (2, "payment_intent.requires_capture"),
                      (3, "payment_intent.partially_captured"), (4, "payment_intent.partially_captured"),
                      (5, "payment_intent.succeeded"), (6, "refund.created")]
    last = world.intents.events[-1][2].data
    assert (last["amount_minor"], last["application_fee_refunded_minor"]) == ("500", "17")  # 300 * 500 / 9000


# --- the capture-expiry job ------------------------------------------------------------------------------

TICK_AT = 1_800_000_000.0  # the scheduled route's own clock (unix seconds), pinned to one minute


def expiry_run(world: World):
    return world.handler.services.get().payments.expire_due()


def scheduled_tick(world: World):
    world.handler.schedule_proof.use(clock=lambda: TICK_AT, claims=world.claims)
    return call(world.handler.handle, "POST", "/")


def events_of(world: World, payment_id: str) -> list[tuple[str, dict]]:
    return [(event.type, dict(event.data)) for pid, _, event in world.intents.events if pid == payment_id]


@pytest.fixture
def claims() -> InMemoryRateLimitStore:
    return InMemoryRateLimitStore()


def test_a_tick_after_capture_before_cancels_as_expired_and_releases_the_hold(world, claims):
    # GIVEN an authorization of 100.00, 25.00 of it captured, and its capture window (1 h) over
    world.claims = claims
    payment_id = world.authorized(10_000)
    world.capture(payment_id, 2_500, final=False)
    world.clock.now += timedelta(hours=1, seconds=1)

    # WHEN the scheduler ticks the function twice in its minute
    first = scheduled_tick(world)
    second = scheduled_tick(world)

    # THEN the first run canceled it (reason expired), releasing the 75.00 still held in the same step
    assert first.status == 200 and first.json()["expired"] == [payment_id], first.body
    assert second.status == 200 and second.json()["ran"] is False
    intent = call(world.handler.handle, "GET", f"/payment_intents/{payment_id}", token=world.ada).json()
    assert (intent["status"], intent["cancellation_reason"]) == ("canceled", "expired")
    assert (intent["amount_capturable"], intent["amount_received"]) == (0, 2_500)
    assert intent["ledger_transfers"][-1]["kind"] == "release"
    assert world.balances() == (2_500, 0, 2_500)
    canceled = [data for kind, data in events_of(world, payment_id) if kind == "payment_intent.canceled"]
    assert [data["cancellation_reason"] for data in canceled] == ["expired"]


def test_a_capture_after_capture_before_is_refused_before_and_after_the_job_ran(world):
    payment_id = world.authorized(1_000)
    world.clock.now += timedelta(hours=1, minutes=1)  # past the 1 h window, within the hold's grace
    before = world.capture(payment_id)

    expiry_run(world)
    after = world.capture(payment_id, 500)

    for reply in (before, after):
        assert reply.status == 409 and reply.json()["code"] == "authorization_expired", reply.body
        assert reply.json()["detail"].startswith("capture_before:")
    assert world.intents.get(payment_id).amount_received_minor == 0
    assert world.balances() == (0, 0, 0)


def test_the_job_selects_only_capturable_intents_whose_time_has_come(world):
    # GIVEN intents in every state, and one authorized after the clock moved (its window still open)
    expiring = world.authorized(1_000)
    captured = world.authorized(1_000)
    world.capture(captured)
    canceled = world.authorized(1_000)
    world.post(f"/payment_intents/{canceled}/cancel", world.ada, {})
    unconfirmed = world.create(1_000).json()["id"]
    world.clock.now += timedelta(minutes=30)
    recent = world.authorized(1_000)
    expiry_run(world)  # a 1 h window is shorter than a day: both are warned at once
    world.clock.now += timedelta(minutes=31)

    # WHEN the job runs past the first intent's capture_before only
    run = expiry_run(world)

    # THEN only that one is expired; the others are as they were
    assert (run.expired, run.warned, run.failed) == ((expiring,), (), ())
    statuses = {pid: world.intents.get(pid).status.value for pid in (captured, canceled, unconfirmed, recent)}
    assert statuses == {captured: "succeeded", canceled: "canceled", unconfirmed: "requires_confirmation",
                        recent: "requires_capture"}
    assert world.intents.get(canceled).cancellation_reason.value != "expired"


def test_a_run_is_bounded_and_takes_the_longest_due_first(world):
    made = []
    for _ in range(3):
        made.append(world.authorized(100))
        world.clock.now += timedelta(minutes=1)
    world.clock.now += timedelta(hours=1)

    first = world.handler.services.get().payments.expire_due(limit=2)
    second = world.handler.services.get().payments.expire_due(limit=2)

    assert (first.expired, first.examined) == (tuple(made[:2]), 2)
    assert (second.expired, second.examined) == ((made[2],), 1)


def test_a_capture_window_of_days_is_warned_once_a_day_before_and_then_expired(world):
    # GIVEN a merchant with the default 7-day window and an authorization on it, partly captured
    world.post("/_/ops/merchants", world.operator, {**MERCHANT, "merchant_id": "m-week",
                                                   "capture_window_seconds": 7 * 86_400})
    payment_id = world.create(10_000, merchant_id="m-week").json()["id"]
    world.post(f"/payment_intents/{payment_id}/confirm", world.ada)
    capture_before = world.intents.get(payment_id).capture_before

    # WHEN the job runs before, at, and after the day before capture_before, with a capture in between
    world.clock.now = capture_before - timedelta(hours=24, minutes=1)
    early = expiry_run(world)
    world.clock.now = capture_before - timedelta(hours=23, minutes=59)
    warned = expiry_run(world)
    world.capture(payment_id, 1_000, final=False)
    again = expiry_run(world)
    world.clock.now = capture_before
    expired = expiry_run(world)

    # THEN one warning (naming capture_before) a day before, one expiry at capture_before
    assert (early.warned, warned.warned, again.warned, expired.warned) == ((), (payment_id,), (), ())
    assert expired.expired == (payment_id,)
    kinds = [kind for kind, _ in events_of(world, payment_id)]
    assert kinds == ["payment_intent.created", "payment_intent.requires_capture",
                     "payment_intent.capture_expiring", "payment_intent.partially_captured",
                     "payment_intent.canceled"]
    warning = dict(events_of(world, payment_id))["payment_intent.capture_expiring"]
    assert datetime.fromisoformat(warning["capture_before"]) == capture_before
    assert warning["amount_capturable_minor"] == "10000"


def test_an_authorization_found_past_its_holds_own_timeout_is_recorded_as_the_ledgers_expiry(world):
    # GIVEN an authorization the job did not reach until its hold's grace was over as well
    payment_id = world.authorized(1_000)
    hold_id = world.intents.get(payment_id).hold_id
    world.clock.now += timedelta(hours=1, seconds=hold_grace_seconds + 1)

    # WHEN the job runs (the ledger refuses to void a hold past its timeout: only its sweep expires it)
    run = expiry_run(world)
    world.ledger.expire_due_holds()

    # THEN the intent is canceled as expired, naming the ledger's expiry, and the money came back once
    assert run.expired == (payment_id,)
    intent = world.intents.get(payment_id)
    assert (intent.status.value, intent.cancellation_reason.value) == ("canceled", "expired")
    assert intent.ledger[-1] == LedgerStep("release", expiry_transfer_id(hold_id), 1_000)
    assert world.balances() == (0, 0, 0)


def test_an_operator_reads_any_customers_intent_and_a_reader_needs_only_the_ops_scope(world):
    # GIVEN ada's captured payment and a read-only operator (ops, without ops:act)
    payment_id = world.authorized(10_000)
    world.capture(payment_id, 4_000)
    reader = world.minter.mint("ops-reader", ["ops"], kind="client")

    # WHEN the operator, ada and bob ask the ops read for it
    seen = call(world.handler.handle, "GET", f"/_/ops/payment_intents/{payment_id}", token=reader)
    customer = call(world.handler.handle, "GET", f"/_/ops/payment_intents/{payment_id}", token=world.ada)
    missing = call(world.handler.handle, "GET", "/_/ops/payment_intents/pi_missing", token=reader)

    # THEN the operator sees it with its payer and the ledger transfers behind it; a customer is refused
    assert seen.status == 200, seen.body
    view = seen.json()
    assert (view["owner_id"], view["amount_received"]) == ("cust-ada", 4_000)
    assert [s["kind"] for s in view["ledger_transfers"]] == ["hold", "capture", "release"]
    assert customer.status == 403 and missing.status == 404
