"""Merchant settlement on DynamoDB Local: the report is read from the shards' ledger statements and the
intents, reconciles, moves exactly its figures, and a rerun (or two runs at once) pays once."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.platform.config import resource_name
from finfaas.services.payments.api import DisputeNotice, OnboardBody
from finfaas.services.payments.errors import SettlementOutOfOrder
from finfaas.services.payments.model import Settlement, SettlementStatus
from finfaas.services.payments.service import LedgerStoreAccounts
from finfaas.services.payments.settlement import MerchantSettlement, settlement_lag_seconds
from finfaas.store.outbox_store import outbox_partition
from finfaas.store.payments_store import PaymentSettlementsStore
from finfaas_dev.payments_check import check
from integration.services.payments.test_disputes_dynamodb import DISPUTE_FEE
from integration.services.payments.test_payment_intents_dynamodb import (
    World,
    captured_in_full,
    refunded,
)

pytestmark = pytest.mark.emulator
SETTLEMENT = system_account_id(AccountKind.SETTLEMENT, "USD")
RUNS_AT_ONCE = 2


def later() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=settlement_lag_seconds + 5)


@pytest.fixture(scope="module")
def world(embedded_aws) -> World:
    world = World()
    world.merchant_id = f"m-{uuid.uuid4().hex[:10]}"
    world.payments.onboard(OnboardBody.model_validate({
        "merchant_id": world.merchant_id, "name": "Shop", "currency": "USD", "reserve_bps": 500,
        "settlement_account": {"bank_code": "SANDUS00", "account_number": "1234567890", "name": "Shop"},
        "fee_schedule": {"bps": 300}, "receivable_shards": 4}))
    return world


def payout_events(merchant_id: str) -> list[str]:
    """Ids of the merchant's payout events (its outbox partition is shared with other merchants)."""
    client = boto3.client("dynamodb")
    items = client.query(TableName=resource_name("outbox"), KeyConditionExpression="#p = :p",
                         ExpressionAttributeNames={"#p": "partition"}, ConsistentRead=True,
                         ExpressionAttributeValues={":p": {"S": outbox_partition("payments", merchant_id)}})
    # The partition also holds other merchants' events and items of other kinds (audit facts).
    return [item["event_id"]["S"] for item in items["Items"]
            if item.get("type", {}).get("S") == "payout.created"
            and item["event_id"]["S"].split(":")[1:2] == [merchant_id]]


def settlement_of(world: World) -> MerchantSettlement:
    return MerchantSettlement(world.payments_store, world.intents, LedgerStoreAccounts(world.ledger),
                              PaymentSettlementsStore(world.payments_store), lambda: later().date(), later)


def test_a_day_settles_once_and_reconciles_with_the_ledger(world):
    first, _ = captured_in_full(world)
    second, _ = captured_in_full(world)
    refunded(world, first, "r-1", 2_500)
    world.payments.open_dispute(DisputeNotice(kind="dispute.opened", dispute_id="dp_1", payment_intent=second,
                                              amount_minor=4_000, currency="USD"))
    accounts = world.payments.merchant(world.merchant_id).accounts
    settled_before = world.ledger.get_account(SETTLEMENT).balance_minor
    settlement = settlement_of(world)
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(settlement.settle(world.merchant_id, later().date()))
        except Exception as error:  # noqa: BLE001 - judged below
            outcomes.append(error)

    threads = [threading.Thread(target=run) for _ in range(RUNS_AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    report = outcomes[0]
    assert all(o == report for o in outcomes)
    assert (report.captures_minor, report.refunds_minor) == (20_000, 2_500)
    assert report.dispute_losses_minor == 4_000 + DISPUTE_FEE
    assert report.fees_minor == 300 + 300 - 75 and report.reconciles
    assert sum(world.ledger.get_account(a).balance_minor for a in accounts.receivables) == 0
    assert world.ledger.get_account(SETTLEMENT).balance_minor - settled_before == report.payout_minor
    assert world.ledger.get_account(accounts.reserve).balance_minor == report.reserve_minor
    assert payout_events(world.merchant_id) == [f"payout.created:{world.merchant_id}:{report.business_date}"]
    assert settlement.settle(world.merchant_id, later().date()) == report  # a rerun: the same, nothing paid


def test_the_daily_run_pages_merchants_from_the_sparse_index_in_order(world):
    ids = world.payments_store.merchant_ids(None, 1_000)
    after = world.payments_store.merchant_ids(world.merchant_id, 1_000)

    assert world.merchant_id in ids and ids == sorted(ids)
    assert all(merchant_id > world.merchant_id for merchant_id in after)
    assert len(ids) == len(set(ids))  # the merchant's intents carry its id too, but are not in the index


def test_the_payments_check_reconciles_the_stored_settlements_with_the_ledger(world):
    checked, problems = check(settlement_of(world), PaymentSettlementsStore(world.payments_store),
                              [world.merchant_id])

    assert (checked, problems) == (1, [])


def test_the_next_settlement_releases_the_reserve_once_and_the_check_agrees(world):
    # GIVEN a merchant whose reserve is held 0 business days (released by its next settlement), settled today
    module_merchant = world.merchant_id
    world.merchant_id = f"m-{uuid.uuid4().hex[:10]}"
    try:
        world.payments.onboard(OnboardBody.model_validate({
            "merchant_id": world.merchant_id, "name": "Hats", "currency": "USD", "reserve_bps": 1_000,
            "reserve_period_days": 0,
            "settlement_account": {"bank_code": "SANDUS00", "account_number": "1234567890", "name": "Hats"},
            "fee_schedule": {"bps": 300}, "receivable_shards": 2}))
        captured_in_full(world)
        today = later().date()
        first = settlement_of(world).settle(world.merchant_id, today)
        reserve = world.payments.merchant(world.merchant_id).accounts.reserve
        settled_before = world.ledger.get_account(SETTLEMENT).balance_minor
        tomorrow = today + timedelta(days=1)
        next_day = MerchantSettlement(world.payments_store, world.intents, LedgerStoreAccounts(world.ledger),
                                      PaymentSettlementsStore(world.payments_store), lambda: tomorrow, later)

        second = next_day.settle(world.merchant_id, tomorrow)
        again = next_day.settle(world.merchant_id, tomorrow)

        # THEN tomorrow pays today's reserve out, once, and the check finds both settlements right
        assert first.reserve_minor > 0 and first.reserve_released_minor == 0
        assert (second.reserve_released_minor, second.payout_minor) == (first.reserve_minor,) * 2
        assert second.reserve_released_through == today and second.reconciles and again == second
        assert world.ledger.get_account(reserve).balance_minor == 0
        assert world.ledger.get_account(SETTLEMENT).balance_minor - settled_before == first.reserve_minor
        assert check(next_day, PaymentSettlementsStore(world.payments_store), [world.merchant_id]) == (2, [])
    finally:
        world.merchant_id = module_merchant


def test_one_settlement_only_follows_each_date_and_a_repeat_of_its_own_date_finds_it(world):
    # GIVEN a merchant's first settlement, then two of different dates planned from it at once
    store, merchant_id = world.payments_store, f"m-{uuid.uuid4().hex[:10]}"
    monday = later().date()
    tuesday, wednesday = monday + timedelta(days=1), monday + timedelta(days=2)

    def planned(day) -> Settlement:
        return Settlement(merchant_id, day, "USD", SettlementStatus.PLANNED, later(), (),
                          0, 0, 0, 0, 0, 0, 0, 0, (), later())

    first = store.create_settlement(planned(monday), None)
    followed = store.create_settlement(planned(wednesday), monday)
    again = store.create_settlement(planned(wednesday), monday)

    # THEN the second claim of Monday's place is refused and writes nothing; a second first is refused too
    with pytest.raises(SettlementOutOfOrder):
        store.create_settlement(planned(tuesday), monday)
    with pytest.raises(SettlementOutOfOrder):
        store.create_settlement(planned(tuesday), None)
    assert (first.business_date, followed.business_date, again) == (monday, wednesday, followed)
    assert store.get_settlement(merchant_id, tuesday) is None
    assert [s.business_date for s in store.settlements_of(merchant_id, 10)] == [monday, wednesday]
    assert store.latest_settlement(merchant_id).business_date == wednesday
