"""Payment intents on DynamoDB Local: each money step is one ledger transaction carrying the intent's new
state, so capture and refund bounds hold under concurrent requests and a lost answer moves money once."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from finfaas.domain.errors import InsufficientFunds
from finfaas.domain.ledger import AccountKind
from finfaas.domain.risk_rules import Decision, RiskPolicy, RiskRequest
from finfaas.platform.config import resource_name
from finfaas.platform.http.transactional import IdempotentReplay, TransactionalIdempotency
from finfaas.platform.idempotency import IdempotencyGuard, StoredResponse
from finfaas.services.ledger.service import LedgerService
from finfaas.services.payments.api import (
    CaptureBody,
    KeyInTransaction,
    NewIntentBody,
    OnboardBody,
    RefundBody,
)
from finfaas.services.payments.errors import PaymentDeclined, UnexpectedState
from finfaas.services.payments.model import CancellationReason, payment_id_for
from finfaas.services.payments.service import Caller, LedgerStoreAccounts, PaymentsService
from finfaas.services.risk.api import risk_rules_view
from finfaas.services.risk.in_process import InProcessRisk
from finfaas.services.risk.model import hour_window
from finfaas.services.risk.service import RiskService
from finfaas.store.call_meter import DynamoCallMeter
from finfaas.store.idempotency_store import IdempotencyStore
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas.store.outbox_store import outbox_partition
from finfaas.store.payment_reads import PaymentCreateReads
from finfaas.store.payments_store import PaymentIntentsStore, PaymentsStore, expiry_index_shards
from finfaas.store.risk_store import RiskStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.ledger_testing import LoseResponses

pytestmark = pytest.mark.emulator
APP = Caller("shop-app", "client")
AUTHORIZED_MINOR = 10_000
CONCURRENT_CAPTURES = 6


class Approve:
    def assess(self, body: dict) -> dict:
        return {"decision": "approve", "score": 0}


class MerchantAccountsInProcess:
    """Opens the merchant's accounts on the ledger directly (the function goes through the ledger's API)."""

    def __init__(self, ledger: LedgerService) -> None:
        self._ledger = ledger

    def open_merchant_account(self, account_id: str, owner_id: str, currency: str) -> None:
        self._ledger.open_account(owner_id=owner_id, currency=currency, account_id=account_id,
                                  kind=AccountKind.MERCHANT)


class World:
    def __init__(self) -> None:
        self.store = ledger_store_from_config()
        self.ledger = LedgerService(self.store)
        self.ledger.ensure_system_accounts("USD")
        merchants = self.payments_store = PaymentsStore()
        self.intents = PaymentIntentsStore(merchants)
        self.payments = PaymentsService(merchants, MerchantAccountsInProcess(self.ledger),
                                        intents=self.intents, money=LedgerStoreAccounts(self.ledger),
                                        risk=Approve())
        # As the payments function runs: risk's rules in this process, a customer's payment created and
        # confirmed at once reading and writing risk's items with its own.
        self.risk_store = RiskStore()
        self.risk = InProcessRisk(lambda policy: RiskService(self.risk_store, policy),
                                  lambda: risk_rules_view(RiskPolicy()).model_dump(mode="json"))
        self.reads = PaymentCreateReads(merchants, self.store.models.account, self.risk_store)
        self.screened = self.screened_with(self.reads)
        self.merchant_id = f"m-{uuid.uuid4().hex[:10]}"
        self.payments.onboard(OnboardBody.model_validate({
            "merchant_id": self.merchant_id, "name": "Shop", "currency": "USD",
            "settlement_account": {"bank_code": "SANDUS00", "account_number": "1234567890", "name": "Shop"},
            "fee_schedule": {"bps": 300}}))

    def payments_at(self, ahead: timedelta) -> PaymentsService:
        """The same payments on a clock `ahead` of the wall clock (the ledger keeps the wall clock)."""
        return PaymentsService(self.payments_store, MerchantAccountsInProcess(self.ledger),
                               lambda: datetime.now(UTC) + ahead, intents=self.intents,
                               money=LedgerStoreAccounts(self.ledger), risk=Approve())

    def screened_with(self, reads) -> PaymentsService:
        return PaymentsService(self.payments_store, MerchantAccountsInProcess(self.ledger),
                               intents=self.intents, money=LedgerStoreAccounts(self.ledger), risk=self.risk,
                               reads=reads, risk_in_process=self.risk)

    def hour_count(self, owner_id: str) -> int:
        """Risk's count of the customer's payments and transfers this hour."""
        request = RiskRequest("none", owner_id, "none", "none", 0, "USD")
        return self.risk_store.look_up(request, hour_window(datetime.now(UTC))).window_before.transfers

    def customer(self, funded_minor: int) -> str:
        account_id = f"acc-{uuid.uuid4().hex[:12]}"
        self.ledger.open_account(owner_id=f"c-{account_id}", currency="USD", account_id=account_id)
        self.ledger.deposit(account_id, funded_minor, "USD", transfer_id=f"dep-{account_id}")
        return account_id

    def authorized(self, amount_minor: int = AUTHORIZED_MINOR) -> tuple[str, str]:
        account_id = self.customer(amount_minor)
        body = NewIntentBody.model_validate({
            "amount": amount_minor, "currency": "USD", "capture_method": "manual",
            "customer_account_id": account_id, "merchant_id": self.merchant_id})
        intent, _ = self.payments.create_intent(APP, uuid.uuid4().hex, body)
        self.payments.confirm(APP, intent.payment_id)
        return intent.payment_id, account_id

    def capture(self, payment_id: str, amount: int | None, final: bool):
        body = CaptureBody(amount_to_capture=amount, final_capture=final)
        return self.payments.capture(APP, payment_id, body)

    def agrees_with_ledger(self, payment_id: str, account_id: str) -> None:
        """What the intent says is what the ledger holds, and within the authorization."""
        intent = self.intents.get(payment_id)
        account = self.ledger.get_account(account_id)
        assert intent.amount_received_minor + intent.amount_capturable_minor <= intent.amount_minor
        assert (account.debits_posted, account.debits_pending) == (
            intent.amount_received_minor, intent.amount_capturable_minor)
        captures = [step.amount_minor for step in intent.ledger if step.kind == "capture"]
        assert intent.amount_received_minor == sum(captures)


@pytest.fixture(scope="module")
def world(embedded_aws) -> World:
    return World()


def count_transactions(world: World):
    calls: list[str] = []

    def on_call(model, **_):
        calls.append(model.name)

    world.store.register_hook("before-call.dynamodb", on_call)
    return calls, lambda: world.store.unregister_hook("before-call.dynamodb", on_call)


def test_a_partial_capture_is_one_ledger_transaction_with_the_intent(world):
    payment_id, account_id = world.authorized()
    calls, stop = count_transactions(world)
    try:
        world.capture(payment_id, 3_000, final=False)
    finally:
        stop()

    assert calls.count("TransactWriteItems") == 1
    world.agrees_with_ledger(payment_id, account_id)
    assert world.intents.get(payment_id).amount_capturable_minor == 7_000


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amounts=st.lists(st.integers(1, 4_000), min_size=1, max_size=CONCURRENT_CAPTURES))
def test_concurrent_captures_never_take_more_than_was_authorized(world, amounts):
    # GIVEN one authorization of 100.00 and several captures sent at once, together maybe more than that
    payment_id, account_id = world.authorized()
    outcomes: list[object] = []

    def capture(amount: int) -> None:
        try:
            outcomes.append(world.capture(payment_id, amount, final=False))
        except Exception as refusal:  # noqa: BLE001 - each refusal is judged below
            outcomes.append(refusal)

    threads = [threading.Thread(target=capture, args=(amount,)) for amount in amounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # THEN every capture took its amount or was refused (for the bound, or busy: try again), moving
    # nothing, and the books agree
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert {getattr(r, "code", "") for r in refused} <= {"capture_refused", "payment_intent_busy"}, refused
    intent = world.intents.get(payment_id)
    taken = sorted(s.amount_minor for s in intent.ledger if s.kind == "capture")
    assert sum(taken) <= AUTHORIZED_MINOR and len(taken) == len(amounts) - len(refused)
    world.agrees_with_ledger(payment_id, account_id)


def test_two_concurrent_60_captures_of_100_take_one(world):
    payment_id, account_id = world.authorized()
    results: list[object] = []
    barrier = threading.Barrier(2)

    def capture() -> None:
        barrier.wait()
        try:
            results.append(world.capture(payment_id, 6_000, final=False).amount_received_minor)
        except Exception as refusal:  # noqa: BLE001
            results.append(refusal.code)

    threads = [threading.Thread(target=capture) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(map(str, results)) == ["6000", "capture_refused"]
    world.agrees_with_ledger(payment_id, account_id)


def test_a_lost_answer_captures_once(world):
    payment_id, account_id = world.authorized()
    # GIVEN the capture's transaction commits but its answer never arrives (the store sends it again)
    lost = LoseResponses("TransactWriteItems", times=1)
    world.store.register_hook("after-call.dynamodb", lost)
    try:
        captured = world.capture(payment_id, 2_500, final=False)
    finally:
        world.store.unregister_hook("after-call.dynamodb", lost)

    assert lost.lost == 1
    assert (captured.amount_received_minor, captured.amount_capturable_minor) == (2_500, 7_500)
    world.agrees_with_ledger(payment_id, account_id)


def test_terminal_states_absorb(world):
    payment_id, account_id = world.authorized()
    world.capture(payment_id, 1_000, final=True)

    with pytest.raises(UnexpectedState):
        world.capture(payment_id, 1, final=True)
    with pytest.raises(UnexpectedState):
        world.payments.cancel(APP, payment_id, CancellationReason.DUPLICATE)

    intent = world.intents.get(payment_id)
    assert (intent.status.value, intent.amount_received_minor, intent.amount_capturable_minor) == (
        "succeeded", 1_000, 0)
    world.agrees_with_ledger(payment_id, account_id)


def dynamo_calls(call):
    """call's result, and the DynamoDB operations it made, counted by name."""
    meter = DynamoCallMeter()
    meter.start()
    try:
        result = call()
    finally:
        meter.stop()
    return result, Counter(name.split(" ")[0] for name, n in meter.snapshot().items() for _ in range(n))


# --- one call: created, confirmed and paid ---------------------------------------------------------------


def paid_in_one_call(world: World, account_id: str, key: str):
    body = NewIntentBody.model_validate({
        "amount": 2_500, "currency": "USD", "capture_method": "automatic", "confirm": True,
        "customer_account_id": account_id, "merchant_id": world.merchant_id})
    return world.payments.create_intent(APP, key, body)


def test_a_payment_in_one_call_is_two_reads_and_one_transaction_with_both_events(world):
    account_id = world.customer(10_000)
    (intent, repeated), calls = dynamo_calls(lambda: paid_in_one_call(world, account_id, "order-1"))

    # an app's payment: the merchant and the paying account read; money, intent and both events in one
    # transaction (its risk check is the assessor's own)
    assert calls == Counter({"GetItem": 2, "TransactWriteItems": 1})
    assert (intent.status.value, intent.amount_received_minor, repeated) == ("succeeded", 2_500, False)
    assert world.ledger.get_account(account_id).balance_minor == 7_500
    assert outbox_events(intent.payment_id) == [
        ("payment_intent.created", f"payment_intent.created:{intent.payment_id}:1"),
        ("payment_intent.succeeded", f"payment_intent.succeeded:{intent.payment_id}:1")]


# --- a customer's payment in one call: risk's items read and written with the payment's own --------------


def customer_pays(world: World, account_id: str, key: str, amount: int = 2_500,
                  payments: PaymentsService | None = None):
    body = NewIntentBody.model_validate({
        "amount": amount, "currency": "USD", "capture_method": "automatic", "confirm": True,
        "customer_account_id": account_id, "merchant_id": world.merchant_id})
    return (payments or world.screened).create_intent(Caller(f"c-{account_id}", "customer"), key, body)


def test_a_customers_payment_in_one_call_is_one_read_and_one_transaction_with_risks_decision(world):
    account_id = world.customer(10_000)
    (intent, repeated), calls = dynamo_calls(lambda: customer_pays(world, account_id, "order-1"))

    # the merchant, the account and risk's items in one read; money, intent, events, risk's assessment and
    # the customer's hour count in one transaction
    assert calls == Counter({"BatchGetItem": 1, "TransactWriteItems": 1})
    assert (intent.status.value, intent.risk["decision"], repeated) == ("succeeded", "approve", False)
    assert world.ledger.get_account(account_id).balance_minor == 7_500
    assert world.risk_store.stored_assessment(intent.payment_id).decision is Decision.APPROVE
    assert world.hour_count(f"c-{account_id}") == 1


def test_a_customers_hold_created_at_once_carries_risks_decision_and_captures_as_any_other(world):
    account_id = world.customer(10_000)
    owner = f"c-{account_id}"
    body = NewIntentBody.model_validate({
        "amount": 4_000, "currency": "USD", "capture_method": "manual", "confirm": True,
        "customer_account_id": account_id, "merchant_id": world.merchant_id})
    (held, _), calls = dynamo_calls(
        lambda: world.screened.create_intent(Caller(owner, "customer"), "order-hold", body))
    captured = world.screened.capture(APP, held.payment_id, CaptureBody(amount_to_capture=None))

    assert calls == Counter({"BatchGetItem": 1, "TransactWriteItems": 1})
    assert (held.status.value, captured.status.value, captured.amount_received_minor) == (
        "requires_capture", "succeeded", 4_000)
    assert world.risk_store.stored_assessment(held.payment_id).decision is Decision.APPROVE
    assert world.hour_count(owner) == 1
    world.agrees_with_ledger(held.payment_id, account_id)


def test_a_customers_payment_whose_hour_was_counted_into_since_its_read_is_screened_as_risk_counts_it(world):
    account_id = world.customer(10_000)
    owner = f"c-{account_id}"

    class CountedMeanwhile:
        """The payment's read, then another payment of the customer counted before its write."""

        writes = 0

        def facts(self, *args):
            found = world.reads.facts(*args)
            other = RiskRequest(f"other-{uuid.uuid4().hex}", owner, account_id, "merchant:x", 10, "USD")
            RiskService(world.risk_store).assess(other)
            return found

        def screening_writes(self, pending):
            self.writes += 1
            return world.reads.screening_writes(pending)

    reads = CountedMeanwhile()
    intent, _ = customer_pays(world, account_id, "order-m", payments=world.screened_with(reads))

    # the joined write is refused on the count; risk counts the payment itself, after the other one
    assert reads.writes == 1
    assert (intent.status.value, intent.amount_received_minor) == ("succeeded", 2_500)
    assert world.ledger.get_account(account_id).balance_minor == 7_500
    assert world.risk_store.stored_assessment(intent.payment_id).decision is Decision.APPROVE
    assert world.hour_count(owner) == 2


def test_a_customers_payment_whose_answer_is_lost_pays_and_counts_once_and_its_repeat_answers_it(world):
    account_id = world.customer(10_000)
    lost = LoseResponses("TransactWriteItems", times=1)
    world.store.register_hook("after-call.dynamodb", lost)
    try:
        first, _ = customer_pays(world, account_id, "order-lost")
    finally:
        world.store.unregister_hook("after-call.dynamodb", lost)

    again, repeated = customer_pays(world, account_id, "order-lost")

    assert lost.lost == 1 and repeated and again == first
    assert world.ledger.get_account(account_id).balance_minor == 7_500
    assert world.hour_count(f"c-{account_id}") == 1


def test_a_customers_payment_risk_declines_is_recorded_by_risk_and_moves_nothing(world):
    account_id = world.customer(10_000)
    owner = f"c-{account_id}"
    RiskService(world.risk_store).block("customer", owner, "test")
    try:
        with pytest.raises(PaymentDeclined):
            customer_pays(world, account_id, "order-declined")
    finally:
        RiskService(world.risk_store).unblock("customer", owner)

    payment_id = payment_id_for(owner, "order-declined")
    assert world.risk_store.stored_assessment(payment_id).decision is Decision.DECLINE
    assert world.hour_count(owner) == 1
    assert world.intents.get(payment_id) is None
    assert world.ledger.get_account(account_id).balance_minor == 10_000


def test_a_decline_risk_cannot_record_still_declines_the_payment(world, monkeypatch):
    # GIVEN a blocked customer, and risk's table refusing the decline's record (throttled, say)
    account_id = world.customer(10_000)
    owner = f"c-{account_id}"
    RiskService(world.risk_store).block("customer", owner, "test")

    def unrecordable(made):
        raise ConnectionError("risk table unavailable")

    monkeypatch.setattr(world.risk, "record", unrecordable)
    try:
        # THEN the decision risk made stands: no degraded approval, no money moved
        with pytest.raises(PaymentDeclined):
            customer_pays(world, account_id, "order-unrecorded")
    finally:
        RiskService(world.risk_store).unblock("customer", owner)
    assert world.intents.get(payment_id_for(owner, "order-unrecorded")) is None
    assert world.ledger.get_account(account_id).balance_minor == 10_000


def test_a_customers_payment_the_ledger_refuses_is_still_counted_by_risk(world):
    account_id = world.customer(1_000)
    owner = f"c-{account_id}"

    with pytest.raises(InsufficientFunds):
        customer_pays(world, account_id, "order-poor")

    payment_id = payment_id_for(owner, "order-poor")
    assert world.risk_store.stored_assessment(payment_id).decision is Decision.APPROVE
    assert world.hour_count(owner) == 1
    assert world.intents.get(payment_id) is None
    assert world.ledger.get_account(account_id).balance_minor == 1_000


def test_a_payment_in_one_call_whose_answer_is_lost_pays_once_and_its_repeat_answers_it(world):
    account_id = world.customer(10_000)
    lost = LoseResponses("TransactWriteItems", times=1)
    world.store.register_hook("after-call.dynamodb", lost)
    try:
        first, _ = paid_in_one_call(world, account_id, "order-2")
    finally:
        world.store.unregister_hook("after-call.dynamodb", lost)

    # WHEN the client sends the same key again (a new request: new write, same intent id)
    again, repeated = paid_in_one_call(world, account_id, "order-2")

    assert lost.lost == 1 and repeated and again == first
    assert world.ledger.get_account(account_id).balance_minor == 7_500
    assert len(outbox_events(first.payment_id)) == 2


# --- the Idempotency-Key's record in the step's transaction ----------------------------------------------


def capture_key(keys: IdempotencyStore, payment_id: str) -> KeyInTransaction:
    """A fresh request's key handle for one capture request (what the platform opens per request)."""
    guard = IdempotencyGuard(keys, "payments")
    scope = guard.scope(principal=APP.sub, route="POST /payment_intents/{payment_id}/capture",
                        key=f"capture-{payment_id}", method="POST",
                        path=f"/payment_intents/{payment_id}/capture",
                        body=b'{"amount_to_capture":2500,"final_capture":false}')
    assert scope is not None
    return KeyInTransaction(TransactionalIdempotency(guard, scope), keys,
                            lambda intent: StoredResponse(200, f"{intent.payment_id}:{intent.version}"))


def test_a_capture_sent_again_after_its_committed_answer_was_lost_replays_and_captures_once(world):
    payment_id, account_id = world.authorized()
    keys = IdempotencyStore()
    body = CaptureBody(amount_to_capture=2_500, final_capture=False)
    world.payments.capture(APP, payment_id, body, key=capture_key(keys, payment_id))

    # WHEN the same request comes again: it decides a second capture from what is stored now
    with pytest.raises(IdempotentReplay) as replay:
        world.payments.capture(APP, payment_id, body, key=capture_key(keys, payment_id))

    # THEN its key, committed with the first capture, stops it in the transaction: the first answer
    assert replay.value.response.body == f"{payment_id}:3"
    world.agrees_with_ledger(payment_id, account_id)
    assert world.intents.get(payment_id).amount_received_minor == 2_500


# --- refunds -------------------------------------------------------------------------------------------


def refunded(world: World, payment_id: str, number: str, amount: int):
    body = RefundBody(refund_number=number, amount=amount)
    return world.payments.refund(APP, payment_id, body)[1]


def captured_in_full(world: World) -> tuple[str, str]:
    payment_id, account_id = world.authorized()
    world.capture(payment_id, None, final=True)
    return payment_id, account_id


def test_two_concurrent_60_refunds_of_a_100_capture_one_succeeds(world):
    payment_id, account_id = captured_in_full(world)
    results: list[object] = []
    barrier = threading.Barrier(2)

    def refund(number: str) -> None:
        barrier.wait()
        try:
            results.append(refunded(world, payment_id, number, 6_000).amount_minor)
        except Exception as refusal:  # noqa: BLE001
            results.append(getattr(refusal, "code", repr(refusal)))

    threads = [threading.Thread(target=refund, args=(f"r-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(map(str, results)) == ["6000", "refund_refused"]
    intent = world.intents.get(payment_id)
    assert intent.amount_refunded_minor == 6_000 and len(intent.refunds) == 1
    assert world.ledger.get_account(account_id).balance_minor == 6_000  # 100.00 paid, 60.00 back


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amounts=st.lists(st.integers(1, 5_000), min_size=1, max_size=CONCURRENT_CAPTURES))
def test_concurrent_refunds_never_exceed_what_was_captured(world, amounts):
    payment_id, account_id = captured_in_full(world)
    outcomes: list[object] = []

    def refund(n: int, amount: int) -> None:
        try:
            outcomes.append(refunded(world, payment_id, f"r-{n}", amount))
        except Exception as refusal:  # noqa: BLE001
            outcomes.append(refusal)

    threads = [threading.Thread(target=refund, args=(n, a)) for n, a in enumerate(amounts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert {getattr(r, "code", "") for r in refused} <= {"refund_refused", "payment_intent_busy"}, refused
    intent = world.intents.get(payment_id)
    assert intent.amount_refunded_minor == sum(r.amount_minor for r in intent.refunds) <= AUTHORIZED_MINOR
    assert len(intent.refunds) == len(amounts) - len(refused)
    assert world.ledger.get_account(account_id).balance_minor == intent.amount_refunded_minor


def test_a_refund_whose_answer_is_lost_refunds_once_and_its_retry_answers_it(world):
    payment_id, account_id = captured_in_full(world)
    # GIVEN the refund's transaction commits but its answer is lost (the store sends it again)
    lost = LoseResponses("TransactWriteItems", times=1)
    world.store.register_hook("after-call.dynamodb", lost)
    try:
        first = refunded(world, payment_id, "r-1", 2_500)
    finally:
        world.store.unregister_hook("after-call.dynamodb", lost)

    # WHEN the client, having lost its own answer too, sends the same refund number again
    again = refunded(world, payment_id, "r-1", 2_500)

    # THEN one refund, the same answer
    assert lost.lost == 1 and again == first
    assert world.intents.get(payment_id).amount_refunded_minor == 2_500
    assert world.ledger.get_account(account_id).balance_minor == 2_500


# --- events --------------------------------------------------------------------------------------------


def outbox_events(payment_id: str) -> list[tuple[str, str]]:
    """(type, id) of the outbox items about the intent, oldest first."""
    client = boto3.client("dynamodb")
    pages = client.get_paginator("query").paginate(
        TableName=resource_name("outbox"), KeyConditionExpression="#p = :p",
        ExpressionAttributeNames={"#p": "partition"},
        ExpressionAttributeValues={":p": {"S": outbox_partition("payments", payment_id)}},
        ConsistentRead=True)
    # The partition also holds items without a subject (audit facts relayed with the events).
    items = [item for page in pages for item in page["Items"]
             if item.get("subject", {}).get("S") == payment_id]
    return [(item["type"]["S"], item["event_id"]["S"]) for item in items]


def test_each_change_commits_one_event_with_it_even_when_its_answer_was_lost(world):
    payment_id, _ = world.authorized()
    lost = LoseResponses("TransactWriteItems", times=1)
    world.store.register_hook("after-call.dynamodb", lost)
    try:
        world.capture(payment_id, 3_000, final=False)
    finally:
        world.store.unregister_hook("after-call.dynamodb", lost)
    world.capture(payment_id, None, final=True)
    refunded(world, payment_id, "r-1", 1_000)

    assert lost.lost == 1
    assert outbox_events(payment_id) == [
        ("payment_intent.created", f"payment_intent.created:{payment_id}:1"),
        ("payment_intent.requires_capture", f"payment_intent.requires_capture:{payment_id}:2"),
        ("payment_intent.partially_captured", f"payment_intent.partially_captured:{payment_id}:3"),
        ("payment_intent.succeeded", f"payment_intent.succeeded:{payment_id}:4"),
        ("refund.created", f"refund.created:{payment_id}:5"),
    ]


# --- the capture-expiry job ------------------------------------------------------------------------------

EXPIRING_INTENTS = 6
RUNS_AT_ONCE = 2
PAST_THE_WINDOW = timedelta(days=7, minutes=1)  # the default window (7 days), within the hold's grace
RUN_LIMIT = 1000  # every intent of this module is due at once on that clock


def test_two_expiry_runs_at_once_expire_each_intent_once(world):
    # GIVEN six authorizations of 10.00, two of them partly captured, and a clock past capture_before
    made: dict[str, str] = {}
    for n in range(EXPIRING_INTENTS):
        payment_id, account_id = world.authorized(1_000)
        if n % 3 == 0:
            world.capture(payment_id, 400, final=False)
        made[payment_id] = account_id
    later = world.payments_at(PAST_THE_WINDOW)

    # WHEN two runs of the job start at the same instant (a retried tick, two replicas)
    start = threading.Barrier(RUNS_AT_ONCE)
    runs: list = [None] * RUNS_AT_ONCE
    failures: list[BaseException] = []

    def run(slot: int) -> None:
        try:
            start.wait()
            runs[slot] = later.expire_due(RUN_LIMIT)
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(RUNS_AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures

    # THEN each intent was expired by exactly one run, its hold released once with its one event
    expired = [p for result in runs for p in result.expired if p in made]
    assert Counter(expired) == Counter(dict.fromkeys(made, 1))
    assert not {p for result in runs for p in result.failed} & set(made)
    for payment_id, account_id in made.items():
        intent = world.intents.get(payment_id)
        assert (intent.status.value, intent.cancellation_reason.value) == ("canceled", "expired")
        assert [s.kind for s in intent.ledger].count("release") == 1
        world.agrees_with_ledger(payment_id, account_id)  # nothing held any more, captures kept
        assert [t for t, _ in outbox_events(payment_id)].count("payment_intent.canceled") == 1
    # and a third run finds nothing left to do for them
    assert not set(later.expire_due(RUN_LIMIT).expired) & set(made)


def test_the_job_finds_due_intents_with_one_query_per_index_partition_never_a_scan(world):
    payment_id, _ = world.authorized(1_000)
    later = world.payments_at(PAST_THE_WINDOW)
    calls: list[str] = []

    def on_call(model, **_):
        calls.append(model.name)

    world.payments_store.register_hook("before-call.dynamodb", on_call)
    try:
        run = later.expire_due(RUN_LIMIT)
    finally:
        world.payments_store.unregister_hook("before-call.dynamodb", on_call)

    assert payment_id in run.expired
    assert calls.count("Query") == expiry_index_shards and "Scan" not in calls
