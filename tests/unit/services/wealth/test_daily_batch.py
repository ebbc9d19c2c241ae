"""The daily batch on the in-memory fakes: each holder's income once per day, conserved with the
remainder, a day without its figure refused naming the date, and the clock's date never batched early."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from finfaas.domain.calendar import parse_calendar
from finfaas.domain.wealth import FastRedemptionCapExceeded, InsufficientUnits, Rounding, mmf_distribute
from finfaas.services.business_date.model import BusinessDateMode
from finfaas.services.business_date.service import BusinessDateService
from finfaas.services.wealth.errors import (
    BatchDateMismatch,
    FigureAlreadyPublished,
    FigureNotPublished,
    WalletAccountNotFound,
)
from finfaas.services.wealth.model import (
    Product,
    ProductKind,
    ProductStatus,
    SubscribeCommand,
    fund_account_id,
    fund_shard_account_id,
    rounding_account_id,
)
from finfaas.services.wealth.service import RedeemCommand, WealthService, fund_shards
from finfaas_dev.fakes.business_date import InMemoryBusinessDateStore
from finfaas_dev.fakes.wealth import InMemoryWealthLedger, InMemoryWealthStore
from finfaas_dev.wealth import run_day, seeded_holdings
from hypothesis import given, settings
from hypothesis import strategies as st

CALENDARS = Path(__file__).resolve().parents[4] / "infra" / "calendars"
CN = parse_calendar((CALENDARS / "cn-2027.json").read_text())
DAY = date(2027, 3, 4)
NOW = datetime(2027, 3, 4, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai, before the cut-off


def world(mode: BusinessDateMode = BusinessDateMode.MANUAL, rounding: Rounding = Rounding.TRUNCATE,
          store_type: type[InMemoryWealthStore] = InMemoryWealthStore):
    product = Product("mmf-1", ProductKind.MMF, "Cash", "CN", "CNY", ProductStatus.OPEN, 100,
                      fund_account_id("mmf-1"), rounding=rounding)
    store = store_type()
    ledger = InMemoryWealthLedger(store)
    dates_store = InMemoryBusinessDateStore()
    dates_store.replace("CN", None, DAY, NOW)
    dates = BusinessDateService(dates_store, mode, clock=lambda: NOW)
    service = WealthService(store, ledger, dates, {"CN": CN}, clock=lambda: NOW, page_positions=7)
    service.create_product(product)
    ledger.open_account(product.fund_account_id, "mmf-1", "CNY", limited=False)
    return service, store, ledger, product


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=40),
       st.sampled_from([Rounding.TRUNCATE, Rounding.HALF_UP]))
def test_every_holder_earns_once_and_posted_plus_remainder_is_the_distributable_income(units, rounding):
    service, store, ledger, product = world(rounding=rounding)
    customers = [f"c{n:03d}" for n in range(len(units))]
    positions, orders = seeded_holdings(product, customers, units, DAY)
    for position, held in zip(positions, units, strict=True):
        store.create_position(position)
        ledger.fund(position.account_id, position.customer_id, held)
    service.publish_income("mmf-1", DAY, Decimal("0.6512"))
    first = run_day(service, "CN", DAY)
    again = service.income_page("CN", DAY, None)  # the same day's first page once more
    expected = mmf_distribute(units, Decimal("0.6512"), rounding)
    assert held_units(store, ledger, positions) == [
        u + i for u, i in zip(units, expected.incomes_minor, strict=True)]
    assert again.posted == 0 and not run_day(service, "CN", DAY).ran
    settled = first.settlements[0]
    assert (settled.distributable_minor, settled.posted_minor, settled.remainder_minor) == (
        expected.distributable_minor, sum(expected.incomes_minor), expected.remainder_minor)


def held_units(store, ledger, positions) -> list[int]:
    """Each position's units: its ledger balance and the income units accrued on its row (whose mirror of
    the ledger units must be that balance exactly)."""
    rows = [store.position(p.product_id, p.customer_id) for p in positions]
    balances = [ledger.balances([r.account_id])[r.account_id][0] for r in rows]
    assert [r.ledger_units_minor for r in rows] == balances
    return [balance + r.accrued_units_minor for balance, r in zip(balances, rows, strict=True)]


def test_a_day_without_its_figure_is_refused_naming_the_date_and_posts_nothing():
    service, store, ledger, product = world()
    positions, _ = seeded_holdings(product, ["c1"], [1_000_000], DAY)
    store.create_position(positions[0])
    ledger.fund(positions[0].account_id, "c1", 1_000_000)
    with pytest.raises(FigureNotPublished) as refused:
        run_day(service, "CN", DAY)
    assert refused.value.errors[0][0] == "date"
    assert ledger.transfers == {}


def test_where_the_clock_moves_the_date_a_day_is_batched_only_once_it_has_ended():
    service, *_ = world(BusinessDateMode.CLOCK)
    with pytest.raises(BatchDateMismatch):
        service.begin_day("CN", DAY)
    assert service.begin_day("CN", date(2027, 3, 3))


def holder_after_confirmation(store_type: type[InMemoryWealthStore] = InMemoryWealthStore):
    service, store, ledger, product = world(store_type=store_type)
    ledger.fund("w-ada", "ada", 5_000_000)
    ledger.fund("w-bob", "bob", 5_000_000)
    service.subscribe("ada", SubscribeCommand("s-1", "mmf-1", "w-ada", 2_000_000))
    service.publish_income("mmf-1", DAY, Decimal("0"))
    service.publish_income("mmf-1", DAY + timedelta(days=1), Decimal("0"))
    run_day(service, "CN", DAY)
    run_day(service, "CN", DAY + timedelta(days=1))  # Friday: confirmed
    return service, ledger


def test_a_redemption_pays_only_the_customers_own_wallet_and_a_refusal_writes_nothing():
    service, ledger = holder_after_confirmation()
    before = dict(ledger.transfers)
    with pytest.raises(WalletAccountNotFound) as refused:
        service.redeem("ada", RedeemCommand("r-1", "mmf-1", "w-bob", 100_000, fast=True))
    assert refused.value.errors[0][0] == "account_id"
    with pytest.raises(FastRedemptionCapExceeded):
        service.redeem("ada", RedeemCommand("r-2", "mmf-1", "w-ada", 1_000_001, fast=True))
    with pytest.raises(InsufficientUnits):
        service.redeem("ada", RedeemCommand("r-3", "mmf-1", "w-ada", 2_000_001, fast=False))
    assert ledger.transfers == before and service.orders("ada")[-1].order_id == "s-1"


def test_fast_redemptions_of_a_day_share_its_cap():
    service, ledger = holder_after_confirmation()
    service.redeem("ada", RedeemCommand("r-1", "mmf-1", "w-ada", 600_000, fast=True))
    assert service.redeem("ada", RedeemCommand("r-1", "mmf-1", "w-ada", 600_000, fast=True)).order_id == "r-1"
    with pytest.raises(FastRedemptionCapExceeded):
        service.redeem("ada", RedeemCommand("r-2", "mmf-1", "w-ada", 400_001, fast=True))
    service.redeem("ada", RedeemCommand("r-3", "mmf-1", "w-ada", 400_000, fast=True))
    assert ledger.balances(["w-ada"])["w-ada"][0] == 5_000_000 - 2_000_000 + 1_000_000


class RivalFastRedemption(InMemoryWealthStore):
    """A rival fast redemption of 600.00 commits between a request's read of the day's usage and its write."""

    rival_minor = 600_000

    def fast_usage_write(self, product_id, customer_id, day, used_before_minor, used_after_minor, order,
                         position):
        if self.rival_minor:
            rival = super().fast_usage_write(product_id, customer_id, day, used_before_minor,
                                             used_before_minor + self.rival_minor,
                                             dataclasses.replace(order, order_id="rival"), position)
            self.rival_minor = 0
            with self.lock:
                rival.check()
                rival.apply()
        return super().fast_usage_write(product_id, customer_id, day, used_before_minor, used_after_minor,
                                        order, position)


def test_a_fast_redemption_losing_the_days_usage_to_a_rival_judges_the_cap_again():
    # GIVEN a fast redemption of 600.00 whose usage write loses to a rival's 600.00
    service, ledger = holder_after_confirmation(RivalFastRedemption)
    before = dict(ledger.transfers)
    # WHEN it is judged again on the usage the rival left THEN the cap of 1,000.00 refuses it, paying nothing
    with pytest.raises(FastRedemptionCapExceeded):
        service.redeem("ada", RedeemCommand("r-1", "mmf-1", "w-ada", 600_000, fast=True))
    assert ledger.transfers == before
    # and the 400.00 left of the cap is paid
    service.redeem("ada", RedeemCommand("r-2", "mmf-1", "w-ada", 400_000, fast=True))
    assert ledger.balances(["w-ada"])["w-ada"][0] == 5_000_000 - 2_000_000 + 400_000


class DiesOnce(InMemoryWealthLedger):
    """The in-memory ledger, dying before its second batch transaction (a Task killed mid-page)."""

    def __init__(self, store: InMemoryWealthStore) -> None:
        super().__init__(store)
        self.linked = 0

    def post_linked(self, legs, currency, write, owner_id=None) -> None:
        self.linked += 1
        if self.linked == 2:
            raise ConnectionError("the batch died here")
        super().post_linked(legs, currency, write, owner_id)


def test_a_subscription_while_the_batch_runs_moves_no_chunk_of_its_rerun():
    service, store, _, product = world()
    ledger = DiesOnce(store)
    for account in (product.fund_account_id, rounding_account_id("mmf-1")):
        ledger.open_account(account, "mmf-1", "CNY", limited=False)
    service = WealthService(store, ledger, service._business_dates, {"CN": CN}, clock=lambda: NOW,
                            page_positions=7)
    units = [1_000_000 + n for n in range(40)]
    positions, _ = seeded_holdings(product, [f"c{n:03d}" for n in range(40)], units, DAY)
    for position, held in zip(positions, units, strict=True):
        store.create_position(position)
        ledger.fund(position.account_id, position.customer_id, held)
    service.publish_income("mmf-1", DAY, Decimal("0.6512"))
    with pytest.raises(ConnectionError):
        run_day(service, "CN", DAY)
    # GIVEN a customer whose id sorts first subscribes before the rerun (confirmed on the next day)
    ledger.fund("w-a", "a000", 1_000_000)
    service.subscribe("a000", SubscribeCommand("s-1", "mmf-1", "w-a", 500_000))
    # WHEN the day runs again THEN every holder earned once and the day is conserved
    rerun = run_day(service, "CN", DAY)
    expected = mmf_distribute(units, Decimal("0.6512"), Rounding.TRUNCATE)
    assert held_units(store, ledger, positions) == [
        u + i for u, i in zip(units, expected.incomes_minor, strict=True)]
    assert rerun.settlements[0].distributable_minor == expected.distributable_minor


class ChunksAtOnce(InMemoryWealthLedger):
    """The in-memory ledger whose first two batch transactions wait for each other (they run only if
    the page posts its chunks at once), and which can fail one chunk (a killed thread of the Task)."""

    def __init__(self, store: InMemoryWealthStore, fail_chunk_from: str | None = None) -> None:
        super().__init__(store)
        self.together = threading.Barrier(2, timeout=5)
        self.calls = 0
        self.fail_chunk_from = fail_chunk_from
        self.debited: list[str] = []

    def post_linked(self, legs, currency, write, owner_id=None) -> None:
        with self.lock:
            self.calls += 1
            waits = self.calls <= 2
        if waits:
            self.together.wait()
        if self.fail_chunk_from is not None and any(debit == self.fail_chunk_from for _, debit, _, _ in legs):
            self.fail_chunk_from = None
            raise ConnectionError("this chunk's thread died")
        super().post_linked(legs, currency, write, owner_id)
        with self.lock:
            self.debited.extend({debit for _, debit, _, _ in legs})


@pytest.mark.parametrize("dies", [False, True])
def test_a_pages_chunks_posted_at_once_pay_each_holder_once_from_the_funds_shards(dies):
    service, store, _, product = world()
    units = [1_000_000 + 7 * n for n in range(40)]  # one page of three chunks (16, 16, 8 holders)
    positions, _ = seeded_holdings(product, [f"c{n:03d}" for n in range(40)], units, DAY)
    ledger = ChunksAtOnce(store, fail_chunk_from=fund_shard_account_id(product.fund_account_id, 1) if dies
                          else None)
    service = WealthService(store, ledger, service._business_dates, {"CN": CN}, clock=lambda: NOW,
                            chunk_holders=16)
    for account in (product.fund_account_id, rounding_account_id("mmf-1")):
        ledger.open_account(account, "mmf-1", "CNY", limited=False)
    for position, held in zip(positions, units, strict=True):
        store.create_position(position)
        ledger.fund(position.account_id, position.customer_id, held)
    service.publish_income("mmf-1", DAY, Decimal("0.6512"))
    # WHEN the page runs (and, when one chunk's posting dies, the Task is retried)
    if dies:
        with pytest.raises(ConnectionError):
            run_day(service, "CN", DAY)
    day = run_day(service, "CN", DAY)
    # THEN every holder earned once, the day is conserved, and the chunks debited distinct fund shards
    expected = mmf_distribute(units, Decimal("0.6512"), Rounding.TRUNCATE)
    assert held_units(store, ledger, positions) == [
        u + i for u, i in zip(units, expected.incomes_minor, strict=True)]
    settled = day.settlements[0]
    assert (settled.posted_minor, settled.remainder_minor) == (sum(expected.incomes_minor),
                                                               expected.remainder_minor)
    assert len(set(ledger.debited)) == 3
    shards = [fund_shard_account_id(product.fund_account_id, n) for n in range(fund_shards)]
    fund = sum(ledger.balances(shards)[s][0] for s in shards)
    assert fund == -(settled.posted_minor + settled.remainder_minor)  # the fund paid the distributable
    assert service.income_page("CN", DAY, None).posted == 0


def test_an_income_correction_replaces_a_day_the_batch_has_not_posted_and_a_settled_day_is_refused():
    # GIVEN a holder of 10,000.00 and Thursday's income published at 0.6512
    service, store, ledger, product = world()
    positions, _ = seeded_holdings(product, ["c000"], [1_000_000], DAY)
    store.create_position(positions[0])
    ledger.fund(positions[0].account_id, "c000", 1_000_000)
    service.publish_income("mmf-1", DAY, Decimal("0.6512"))
    with pytest.raises(FigureAlreadyPublished) as again:  # publishing again is no correction
        service.publish_income("mmf-1", DAY, Decimal("0.7000"))
    assert again.value.errors[0][0] == "date"
    # WHEN ops correct it to 0.7000 before the batch, with a reason
    corrected = service.correct_income("mmf-1", DAY, Decimal("0.7000"), "the manager restated it", "ops-1")
    assert (corrected.income_per_10k_units, corrected.version, corrected.corrections[0].previous) == (
        Decimal("0.7000"), 2, Decimal("0.6512"))
    # THEN the batch posts the corrected figure: 10,000.00 ÷ 10,000 × 0.7000 = 0.70
    run_day(service, "CN", DAY)
    assert service.position("c000", "mmf-1").units_minor == 1_000_070
    # and the settled day is refused naming the date: its income is compounded into the holders' units
    with pytest.raises(FigureAlreadyPublished) as settled:
        service.correct_income("mmf-1", DAY, Decimal("0.6512"), "too late", "ops-1")
    assert settled.value.errors == (("date", "already settled by the batch"),)
    with pytest.raises(FigureNotPublished):
        service.correct_income("mmf-1", DAY + timedelta(days=1), Decimal("0.6512"), "nothing there", "ops-1")


class CorrectedWhilePosting(InMemoryWealthStore):
    """An operator's income correction arrives while the batch builds its first chunk of the day."""

    service: WealthService | None = None
    refusals: list[FigureAlreadyPublished]

    def chunk_write(self, chunk, positions):
        if self.service is not None:
            service, self.service = self.service, None
            try:
                service.correct_income(chunk.product_id, chunk.day, Decimal("0.7000"), "restated", "ops-1")
            except FigureAlreadyPublished as refused:
                self.refusals.append(refused)
        return super().chunk_write(chunk, positions)


def test_an_income_correction_racing_the_batchs_first_chunk_is_refused_so_every_holder_earns_one_figure():
    # GIVEN a holder of 10,000.00 and Thursday's income published at 0.6512
    service, store, ledger, product = world(store_type=CorrectedWhilePosting)
    positions, _ = seeded_holdings(product, ["c000"], [1_000_000], DAY)
    store.create_position(positions[0])
    ledger.fund(positions[0].account_id, "c000", 1_000_000)
    service.publish_income("mmf-1", DAY, Decimal("0.6512"))
    # WHEN ops correct it to 0.7000 after the batch read the figure, before its chunk commits
    store.service, store.refusals = service, []
    run_day(service, "CN", DAY)
    # THEN the correction is refused naming the date, and the day settles at the figure its income was
    # posted at: 10,000.00 ÷ 10,000 × 0.6512 = 0.65, nothing left to the rounding account
    assert [r.errors for r in store.refusals] == [(("date", "being posted by the batch"),)]
    figure = store.daily_income("mmf-1", DAY)
    assert (figure.income_per_10k_units, figure.posted_minor, figure.remainder_minor) == (
        Decimal("0.6512"), 65, 0)


def test_a_redemption_counts_the_income_accrued_on_the_row_and_a_refused_one_moves_nothing():
    # GIVEN a holder of 10,000.00 units whose day's income (0.65) is accrued on the position's row
    service, store, ledger, product = world()
    positions, _ = seeded_holdings(product, ["ada"], [1_000_000], DAY)
    account = positions[0].account_id
    store.create_position(positions[0])
    ledger.fund(account, "ada", 1_000_000)
    ledger.fund("w-ada", "ada", 0)
    service.publish_income("mmf-1", DAY, Decimal("0.6512"))
    run_day(service, "CN", DAY)
    summary = service.position("ada", "mmf-1")
    assert (summary.units_minor, summary.available_units_minor, summary.yesterday_income_minor) == (
        1_000_065, 1_000_065, 65)
    assert service.income_statement("ada", "mmf-1") == [(DAY, 65)]
    # WHEN redemptions above the units or the fast cap are refused THEN nothing moves, not even the income
    before = dict(ledger.transfers)
    with pytest.raises(InsufficientUnits):
        service.redeem("ada", RedeemCommand("r-1", "mmf-1", "w-ada", 1_000_066, fast=False))
    with pytest.raises(FastRedemptionCapExceeded):
        service.redeem("ada", RedeemCommand("r-2", "mmf-1", "w-ada", 1_000_001, fast=True))
    assert ledger.transfers == before and store.position("mmf-1", "ada").accrued_units_minor == 65
    # WHEN every unit is redeemed THEN the accrued income is swept onto the ledger account and held with it
    service.redeem("ada", RedeemCommand("r-3", "mmf-1", "w-ada", 1_000_065, fast=False))
    assert store.position("mmf-1", "ada").accrued_units_minor == 0
    assert ledger.balances([account])[account] == (1_000_065, 0)
    assert service.position("ada", "mmf-1").available_units_minor == 0


class SweptWhileConfirming(InMemoryWealthStore):
    """A holder's fast redemption (sweeping the income accrued on the row) commits after the confirm step
    read the position for a new subscription and before its confirmation commits."""

    redeem = None

    def confirm_write(self, order, position):
        redeem, self.redeem = self.redeem, None
        if redeem is not None:
            redeem()
        return super().confirm_write(order, position)


def test_a_subscriptions_confirmation_racing_a_sweep_reads_the_row_again_and_mirrors_the_ledger_exactly():
    # GIVEN ada holding 20,000.00 with Friday's income accrued on her row, and a second subscription
    service, ledger = holder_after_confirmation(SweptWhileConfirming)
    store = service._repo
    saturday = DAY + timedelta(days=2)
    service.publish_income("mmf-1", saturday, Decimal("0.6512"))
    run_day(service, "CN", saturday)
    assert store.position("mmf-1", "ada").accrued_units_minor == 130
    service.subscribe("ada", SubscribeCommand("s-2", "mmf-1", "w-ada", 1_000_000))
    # WHEN a fast redemption of 1,000.00 sweeps the row while the confirm step posts the subscription
    store.redeem = lambda: service.redeem("ada", RedeemCommand("r-1", "mmf-1", "w-ada", 100_000, fast=True))
    confirmed_on = service.order("ada", "s-2").confirmation_date
    day = saturday + timedelta(days=1)
    while day <= confirmed_on:
        service.publish_income("mmf-1", day, Decimal("0"))
        run_day(service, "CN", day)
        day += timedelta(days=1)
    # THEN the confirmation was built again on the swept row: the mirror is the ledger's units exactly
    row = store.position("mmf-1", "ada")
    assert store.redeem is None and service.order("ada", "s-2").status.value == "confirmed"
    assert row.accrued_units_minor == 0
    assert row.ledger_units_minor == ledger.balances([row.account_id])[row.account_id][0] == (
        2_000_000 + 130 - 100_000 + 1_000_000)
