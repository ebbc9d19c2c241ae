"""Rail refunds on DynamoDB Local: a pending rail refund and a wallet refund racing share one bound, the
rail's two answers racing end the refund once, and a reversal whose answer was lost reverses once; and a
refused confirmation commits its payment_failed with the intent."""

from __future__ import annotations

import threading

import pytest
from finfaas.domain.creditor import CreditorVault
from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.platform.pii import EnvelopeCipher, KeyedDigests
from finfaas.services.payments.api import RefundBody
from finfaas.services.payments.model import RefundStatus
from finfaas.services.payments.rail_refunds import RailRefunds
from finfaas.services.payments.service import LedgerStoreAccounts
from finfaas_dev.fakes.platform import InMemoryDataKeys
from integration.services.payments.test_payment_intents_dynamodb import APP, World, captured_in_full
from support.ledger_testing import LoseResponses

pytestmark = pytest.mark.emulator
BANK = {"bank_code": "SANDUS00", "account_number": "000987654321", "name": "Ada Lovelace"}
CLEARING = system_account_id(AccountKind.SETTLEMENT, "USD")


class Orchestrator:
    def start(self, state_machine: str, name: str, input_value, reference=None) -> dict:
        return {"execution_id": name}


@pytest.fixture(scope="module")
def world(embedded_aws) -> World:
    return World()


@pytest.fixture(scope="module")
def rail(world: World) -> RailRefunds:
    vault = CreditorVault(EnvelopeCipher(InMemoryDataKeys()), KeyedDigests(b"k" * 32))
    return RailRefunds(world.payments, Orchestrator(), vault, LedgerStoreAccounts(world.ledger))


def race(*calls) -> list[object]:
    """Runs the calls at once; each one's result or refusal."""
    results: list[object] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = calls[n]()
        except Exception as refusal:  # noqa: BLE001
            results[n] = refusal

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_a_rail_refund_and_a_wallet_refund_of_60_each_of_100_racing_one_succeeds(world, rail):
    payment_id, _ = captured_in_full(world)
    held = world.ledger.get_account(world.intents.get(payment_id).receivable_account_id).balance_minor

    results = race(
        lambda: rail.refund(APP, payment_id, RefundBody.model_validate(
            {"refund_number": "r-bank", "amount": 6_000, "bank_account": BANK})),
        lambda: world.payments.refund(APP, payment_id, RefundBody(refund_number="r-wallet", amount=6_000)))

    refused = [r for r in results if isinstance(r, Exception)]
    assert [getattr(r, "code", repr(r)) for r in refused] == ["refund_refused"]
    intent = world.intents.get(payment_id)
    assert intent.amount_refunded_minor == 6_000 and len(intent.refunds) == 1
    shard = world.ledger.get_account(intent.receivable_account_id)
    assert shard.balance_minor == held - 6_000


def test_the_rails_settle_and_fail_racing_end_the_refund_once(world, rail):
    payment_id, _ = captured_in_full(world)
    shard_id = world.intents.get(payment_id).receivable_account_id
    # The merchant's shards are shared with the module's other payments: compare with what it held.
    held = world.ledger.get_account(shard_id).balance_minor
    rail.refund(APP, payment_id, RefundBody.model_validate(
        {"refund_number": "r-1", "amount": 2_500, "bank_account": BANK}))

    results = race(lambda: rail.settled(payment_id, "r-1"),
                   lambda: rail.failed(payment_id, "r-1", "Rail.Rejected"))

    refund = world.intents.get(payment_id).refund("r-1")
    assert [getattr(r, "code", "") for r in results if isinstance(r, Exception)] == [
        "payment_intent_unexpected_state"]
    back = 0 if refund.status is RefundStatus.SUCCEEDED else 2_500
    assert refund.status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED)
    assert world.ledger.get_account(shard_id).balance_minor == held - 2_500 + back
    assert world.intents.get(payment_id).amount_refunded_minor == 2_500 - back


def test_a_reversal_whose_answer_is_lost_reverses_once(world, rail):
    payment_id, _ = captured_in_full(world)
    rail.refund(APP, payment_id, RefundBody.model_validate(
        {"refund_number": "r-1", "amount": 2_500, "bank_account": BANK}))
    shard_id = world.intents.get(payment_id).receivable_account_id
    # The merchant's shards are shared with the module's other payments: compare with what it held.
    shard = world.ledger.get_account(shard_id).balance_minor
    clearing = world.ledger.get_account(CLEARING).balance_minor
    # GIVEN the reversal's transaction commits but its answer is lost (the store sends it again)
    lost = LoseResponses("TransactWriteItems", times=1)
    world.store.register_hook("after-call.dynamodb", lost)
    try:
        first = rail.failed(payment_id, "r-1", "Rail.Rejected")
    finally:
        world.store.unregister_hook("after-call.dynamodb", lost)

    # WHEN the saga, having lost its answer too, runs the step again
    again = rail.failed(payment_id, "r-1", "Rail.Rejected")

    assert lost.lost == 1 and again.refund("r-1") == first.refund("r-1")
    assert first.refund("r-1").status is RefundStatus.FAILED
    assert world.ledger.get_account(shard_id).balance_minor == shard + 2_500
    assert world.ledger.get_account(CLEARING).balance_minor == clearing - 2_500


def test_a_confirmation_without_the_funds_commits_payment_failed_once_on_the_intent(world):
    from finfaas.domain.errors import InsufficientFunds
    from finfaas.services.payments.api import NewIntentBody
    from integration.services.payments.test_payment_intents_dynamodb import outbox_events

    # GIVEN an intent for more than the customer's account holds
    account_id = world.customer(1_000)
    body = NewIntentBody.model_validate({"amount": 1_001, "currency": "USD", "capture_method": "manual",
                                         "customer_account_id": account_id, "merchant_id": world.merchant_id})
    intent, _ = world.payments.create_intent(APP, f"k-{account_id}", body)

    with pytest.raises(InsufficientFunds):
        world.payments.confirm(APP, intent.payment_id)

    stored = world.intents.get(intent.payment_id)
    assert (stored.status.value, stored.last_payment_error) == ("requires_confirmation", "insufficient_funds")
    assert [kind for kind, _ in outbox_events(intent.payment_id)] == [
        "payment_intent.created", "payment_intent.payment_failed"]
    assert world.ledger.get_account(account_id).debits_pending == 0


def test_a_refused_payout_whose_answer_is_lost_goes_back_to_the_reserve_once(world):
    from finfaas.services.payments.rail_payouts import RailPayouts
    from finfaas.store.payments_store import PaymentSettlementsStore
    from integration.services.payments.test_settlement_dynamodb import later

    # GIVEN a day settled on DynamoDB: its payout on the rail's clearing account, handed to the rail
    captured_in_full(world)
    settlements = PaymentSettlementsStore(world.payments_store)
    money = LedgerStoreAccounts(world.ledger)
    vault = CreditorVault(EnvelopeCipher(InMemoryDataKeys()), KeyedDigests(b"k" * 32))
    payouts = RailPayouts(world.payments_store, settlements, money, Orchestrator(), vault)
    from finfaas.services.payments.settlement import MerchantSettlement

    settlement = MerchantSettlement(world.payments_store, world.intents, money, settlements,
                                    lambda: later().date(), later, on_paid=payouts.hand_to_rail)
    report = settlement.settle(world.merchant_id, later().date())
    reserve = world.payments.merchant(world.merchant_id).accounts.reserve
    clearing = world.ledger.get_account(CLEARING).balance_minor
    # WHEN the rail refuses it and the return's answer is lost (the store sends it again), then the saga's
    # retry runs the step again
    lost = LoseResponses("TransactWriteItems", times=1)
    world.store.register_hook("after-call.dynamodb", lost)
    try:
        payouts.failed(world.merchant_id, report.business_date)
    finally:
        world.store.unregister_hook("after-call.dynamodb", lost)
    again = payouts.failed(world.merchant_id, report.business_date)

    # THEN the payout is back in the reserve once
    assert lost.lost == 1 and report.payout_minor > 0 and again.payout_status == "failed"
    assert world.ledger.get_account(reserve).balance_minor == report.reserve_minor + report.payout_minor
    assert world.ledger.get_account(CLEARING).balance_minor == clearing - report.payout_minor
