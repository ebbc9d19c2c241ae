"""Disputes on DynamoDB Local: a dispute takes its amount and fee in one ledger transaction with the intent,
so refunds and disputes racing each other never take more than was captured, a lost answer opens a
dispute once, and each change commits exactly one event."""

from __future__ import annotations

import threading

import pytest
from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.services.payments.api import DisputeNotice
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from integration.services.payments.test_payment_intents_dynamodb import (
    APP,
    AUTHORIZED_MINOR,
    World,
    captured_in_full,
    outbox_events,
    refunded,
)
from support.ledger_testing import LoseResponses

pytestmark = pytest.mark.emulator
DISPUTE_FEE = 1_500  # the default 15.00 USD
RACERS_MAX = 5
SETTLEMENT = system_account_id(AccountKind.SETTLEMENT, "USD")


@pytest.fixture(scope="module")
def world(embedded_aws) -> World:
    world = World()
    # The merchant's reserve carries a dispute its payment's shard cannot cover (after refunds).
    world.ledger.deposit(world.payments.merchant(world.merchant_id).accounts.reserve, 10_000_000, "USD",
                         transfer_id=f"reserve-{world.merchant_id}")
    return world


def opened(world: World, payment_id: str, dispute_id: str, amount: int):
    notice = DisputeNotice(kind="dispute.opened", dispute_id=dispute_id, payment_intent=payment_id,
                           amount_minor=amount, currency="USD")
    return world.payments.open_dispute(notice)[1]


def merchant_total(world: World, payment_id: str) -> int:
    """What the payment's shard and the merchant's reserve hold together."""
    intent = world.intents.get(payment_id)
    reserve = world.payments.merchant(world.merchant_id).accounts.reserve
    return sum(world.ledger.get_account(a).balance_minor for a in (intent.receivable_account_id, reserve))


def race(*calls) -> list[object]:
    outcomes: list[object] = []
    barrier = threading.Barrier(len(calls))

    def run(call) -> None:
        barrier.wait()
        try:
            outcomes.append(call())
        except Exception as refusal:  # noqa: BLE001 - each refusal is judged by the caller
            outcomes.append(refusal)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_a_60_refund_and_a_60_dispute_of_a_100_capture_at_once_one_succeeds(world):
    payment_id, _ = captured_in_full(world)

    outcomes = race(lambda: refunded(world, payment_id, "r-1", 6_000),
                    lambda: opened(world, payment_id, "dp_1", 6_000))

    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 1, outcomes
    assert getattr(refused[0], "code", "") in ("refund_refused", "dispute_refused")
    intent = world.intents.get(payment_id)
    assert intent.amount_refunded_minor + intent.amount_disputed_minor == 6_000


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.tuples(st.sampled_from(["refund", "dispute"]), st.integers(1, 5_000)),
                      min_size=2, max_size=RACERS_MAX))
def test_refunds_and_disputes_at_once_never_take_more_than_was_captured(world, moves):
    payment_id, account_id = captured_in_full(world)
    before = merchant_total(world, payment_id)
    settled_before = world.ledger.get_account(SETTLEMENT).balance_minor

    def move(n: int, kind: str, amount: int):
        if kind == "refund":
            return lambda: refunded(world, payment_id, f"r-{n}", amount)
        return lambda: opened(world, payment_id, f"dp_{n}", amount)

    outcomes = race(*(move(n, kind, amount) for n, (kind, amount) in enumerate(moves)))

    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert {getattr(r, "code", "") for r in refused} <= {"refund_refused", "dispute_refused",
                                                         "payment_intent_busy"}, refused
    intent = world.intents.get(payment_id)
    refunded_minor, disputed_minor = intent.amount_refunded_minor, intent.amount_disputed_minor
    assert refunded_minor + disputed_minor <= AUTHORIZED_MINOR
    assert len(intent.refunds) + len(intent.disputes) == len(moves) - len(refused)
    # THEN the ledger says the same: the customer got the refunds, the rail the disputed amounts, and the
    # merchant paid both and one fee per dispute
    fees = DISPUTE_FEE * len(intent.disputes)
    assert world.ledger.get_account(account_id).balance_minor == refunded_minor
    assert world.ledger.get_account(SETTLEMENT).balance_minor - settled_before == disputed_minor
    assert before - merchant_total(world, payment_id) == refunded_minor + disputed_minor + fees


def test_a_dispute_whose_answer_is_lost_opens_once_and_each_change_has_one_event(world):
    payment_id, _ = captured_in_full(world)
    lost = LoseResponses("TransactWriteItems", times=1)
    world.store.register_hook("after-call.dynamodb", lost)
    try:
        first = opened(world, payment_id, "dp_1", 2_000)
    finally:
        world.store.unregister_hook("after-call.dynamodb", lost)

    again = opened(world, payment_id, "dp_1", 2_000)  # the rail's notice delivered twice
    world.payments.submit_evidence(APP, payment_id, "dp_1", "tracking number 1Z999")
    world.payments.close_dispute(DisputeNotice(kind="dispute.closed", dispute_id="dp_1",
                                               payment_intent=payment_id, amount_minor=2_000, currency="USD",
                                               outcome="won"))

    assert lost.lost == 1 and again == first
    intent = world.intents.get(payment_id)
    assert [step.kind for step in intent.ledger].count("dispute") == 1
    assert [t for t, _ in outbox_events(payment_id)][-3:] == ["dispute.created", "dispute.updated",
                                                               "dispute.closed"]
    assert [t for t, _ in outbox_events(payment_id)].count("dispute.created") == 1
