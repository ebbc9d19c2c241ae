"""NAV funds on the in-memory fakes: the NAV published per trading day, subscriptions priced at their
trade date's NAV and confirmed by the batch (units on the position, net in the fund, fee in the fee
account), once, even when a run dies between the confirmation and the fee."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from finfaas.domain.calendar import parse_calendar
from finfaas.domain.wealth import FeeTier, InsufficientUnits, InvalidFigure, Lot, WealthError
from finfaas.services.business_date.model import BusinessDateMode
from finfaas.services.business_date.service import BusinessDateService
from finfaas.services.wealth import service as wealth_service
from finfaas.services.wealth.errors import (
    FigureAlreadyPublished,
    FigureNotPublished,
    InvalidOrder,
    OrderConflict,
    PositionNotFound,
)
from finfaas.services.wealth.model import (
    OrderStatus,
    Product,
    ProductKind,
    ProductStatus,
    SubscribeCommand,
    fee_account_id,
    fund_account_id,
    order_transfer_id,
)
from finfaas.services.wealth.service import RedeemCommand, WealthService
from finfaas_dev.fakes.business_date import InMemoryBusinessDateStore
from finfaas_dev.fakes.wealth import InMemoryWealthLedger, InMemoryWealthStore
from finfaas_dev.wealth import check, run_day

CALENDARS = Path(__file__).resolve().parents[4] / "infra" / "calendars"
CN = parse_calendar((CALENDARS / "cn-2027.json").read_text())
THURSDAY = date(2027, 3, 4)
FRIDAY = date(2027, 3, 5)
NOW = datetime(2027, 3, 4, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai, before the cut-off
AMOUNT = 10_000_000  # 100,000.00


class LedgerDyingOnFees(InMemoryWealthLedger):
    """Fails the first fee transfer, as a run killed between a confirmation and its fee would."""

    def __init__(self, store: InMemoryWealthStore) -> None:
        super().__init__(store)
        self.fee_failures_left = 1

    def transfer(self, transfer_id, debit_account_id, credit_account_id, amount_minor, currency, owner_id,
                 write) -> None:
        if transfer_id.endswith("-fee") and self.fee_failures_left:
            self.fee_failures_left -= 1
            raise RuntimeError("killed before the fee")
        super().transfer(transfer_id, debit_account_id, credit_account_id, amount_minor, currency, owner_id,
                         write)


def world(ledger_type: type[InMemoryWealthLedger] = InMemoryWealthLedger):
    product = Product("nav-1", ProductKind.NAV_FUND, "Growth", "CN", "CNY", ProductStatus.OPEN, 100,
                      fund_account_id("nav-1"), subscription_fee_rate=Decimal("0.012"),
                      redemption_fee_tiers=(FeeTier(0, Decimal("0.015")), FeeTier(7, Decimal("0.005"))))
    store = InMemoryWealthStore()
    ledger = ledger_type(store)
    dates_store = InMemoryBusinessDateStore()
    dates_store.replace("CN", None, THURSDAY, NOW)
    dates = BusinessDateService(dates_store, BusinessDateMode.MANUAL, clock=lambda: NOW)
    service = WealthService(store, ledger, dates, {"CN": CN}, clock=lambda: NOW)
    service.create_product(product)
    ledger.fund("wallet-ada", "ada", AMOUNT)
    return service, store, ledger, product


def subscribe(service: WealthService):
    return service.subscribe("ada", SubscribeCommand("s-1", "nav-1", "wallet-ada", AMOUNT))


def confirmed_world():
    """ada's 100,000.00 confirmed on Friday at Thursday's NAV 1.1800 (83,740.87 units)."""
    service, store, ledger, product = world()
    subscribe(service)
    service.publish_nav("nav-1", THURSDAY, Decimal("1.1800"))
    run_day(service, "CN", THURSDAY)
    run_day(service, "CN", FRIDAY)
    return service, store, ledger, product


def test_a_subscription_is_priced_at_its_trade_dates_nav_and_confirmed_once_by_the_next_days_batch():
    # GIVEN 100,000.00 subscribed on Thursday before the cut-off, at a 1.2 % fee
    service, store, ledger, product = world()
    order = subscribe(service)
    assert (order.trade_date, order.confirmation_date) == (THURSDAY, FRIDAY)
    assert ledger.available("wallet-ada") == 0
    # WHEN Thursday's NAV is published and Friday's batch runs (twice)
    service.publish_nav("nav-1", THURSDAY, Decimal("1.1800"))
    run_day(service, "CN", THURSDAY)
    assert store.order("ada", "s-1").status is OrderStatus.PENDING  # confirmed on T+1, not on T
    assert run_day(service, "CN", FRIDAY).confirmed == 1
    assert service.confirm_page("CN", FRIDAY, None).posted == 0
    # THEN the worked example: net 98,814.23, fee 1,185.77, units 83,740.87
    confirmed = store.order("ada", "s-1")
    assert (confirmed.status, confirmed.nav, confirmed.units_minor, confirmed.fee_minor) == (
        OrderStatus.CONFIRMED, Decimal("1.1800"), 8_374_087, 118_577)
    position = store.position("nav-1", "ada")
    assert (position.units_minor, position.lots) == (8_374_087, (Lot(8_374_087, FRIDAY),))
    assert ledger.balances(["wallet-ada", product.fund_account_id, fee_account_id("nav-1")]) == {
        "wallet-ada": (0, 0), product.fund_account_id: (9_881_423, 9_881_423),
        fee_account_id("nav-1"): (118_577, 118_577)}


def test_a_run_killed_between_the_confirmation_and_the_fee_is_finished_by_the_rerun_once():
    service, store, ledger, product = world(LedgerDyingOnFees)
    subscribe(service)
    service.publish_nav("nav-1", THURSDAY, Decimal("1.1800"))
    run_day(service, "CN", THURSDAY)
    with pytest.raises(RuntimeError):
        service.confirm_page("CN", FRIDAY, None)
    interrupted = store.order("ada", "s-1")
    assert interrupted.status is OrderStatus.CONFIRMED and not interrupted.fee_booked
    run_day(service, "CN", FRIDAY)
    service.confirm_page("CN", FRIDAY, None)
    assert store.position("nav-1", "ada").units_minor == 8_374_087
    assert ledger.balances([fee_account_id("nav-1")])[fee_account_id("nav-1")][0] == 118_577
    assert store.order("ada", "s-1").fee_booked


def test_a_redemption_holds_units_and_is_paid_at_t_nav_less_the_short_holding_fee_once():
    # GIVEN 83,740.87 units confirmed on Friday
    service, store, ledger, product = confirmed_world()
    # WHEN ada redeems 10,000.00 units on Saturday: T is Monday, paid on Tuesday
    order = service.redeem("ada", RedeemCommand("r-1", "nav-1", "wallet-ada", 1_000_000, fast=False))
    assert (order.trade_date, order.confirmation_date) == (date(2027, 3, 8), date(2027, 3, 9))
    assert store.position("nav-1", "ada").units_held_minor == 1_000_000
    with pytest.raises(InsufficientUnits) as too_many:  # the held units are not available twice
        service.redeem("ada", RedeemCommand("r-2", "nav-1", "wallet-ada", 7_374_088, fast=False))
    assert too_many.value.field == "amount"
    with pytest.raises(InvalidOrder) as fast:
        service.redeem("ada", RedeemCommand("r-3", "nav-1", "wallet-ada", 100, fast=True))
    assert fast.value.errors[0][0] == "mode"
    with pytest.raises(PositionNotFound):  # another customer holds nothing here
        service.redeem("bob", RedeemCommand("r-1", "nav-1", "wallet-ada", 100, fast=False))
    service.publish_nav("nav-1", date(2027, 3, 8), Decimal("1.2000"))
    for day in (6, 7, 8, 9):
        run_day(service, "CN", date(2027, 3, day))
    assert service.confirm_page("CN", date(2027, 3, 9), None).posted == 0
    # THEN held 3 days (< 7): gross 12,000.00, fee 1.5 % = 180.00 kept by the fund, net 11,820.00 paid
    confirmed = store.order("ada", "r-1")
    assert (confirmed.status, confirmed.units_minor, confirmed.fee_minor) == (OrderStatus.CONFIRMED,
                                                                               1_000_000, 18_000)
    position = store.position("nav-1", "ada")
    assert (position.units_minor, position.units_held_minor, position.lots) == (
        7_374_087, 0, (Lot(7_374_087, FRIDAY),))
    assert ledger.balances(["wallet-ada", product.fund_account_id]) == {
        "wallet-ada": (1_182_000, 1_182_000), product.fund_account_id: (8_699_423, 8_699_423)}


def test_a_missing_nav_leaves_its_orders_pending_and_flagged_the_day_runs_on_and_the_next_batch_confirms():
    # GIVEN ada's Thursday subscription to the NAV fund and bob's in a money-market fund, Thursday's NAV
    # not published when Friday's batch runs
    service, store, ledger, product = world()
    mmf = Product("mmf-1", ProductKind.MMF, "Cash", "CN", "CNY", ProductStatus.OPEN, 100,
                  fund_account_id("mmf-1"))
    service.create_product(mmf)
    ledger.fund("wallet-bob", "bob", AMOUNT)
    service.subscribe("bob", SubscribeCommand("m-1", "mmf-1", "wallet-bob", 1_000_000))
    subscribe(service)
    for day in (THURSDAY, FRIDAY):
        service.publish_income("mmf-1", day, Decimal("0.6512"))
    run_day(service, "CN", THURSDAY)
    # WHEN Friday's batch runs
    friday = run_day(service, "CN", FRIDAY)
    # THEN the MMF's order is confirmed and earns, the date advances, and the NAV order waits, flagged
    assert (friday.ran, friday.confirmed, friday.posted, friday.business_date_after) == (
        True, 1, 1, date(2027, 3, 6))
    waiting = store.order("ada", "s-1")
    assert (waiting.status, waiting.awaiting_nav_since) == (OrderStatus.PENDING, FRIDAY)
    assert ledger.available("wallet-ada") == 0 and store.position("nav-1", "ada") is None
    assert deferred(service, FRIDAY) == 1  # a rerun of Friday's step defers it again, nothing more
    # WHEN the NAV is published on Saturday, late, and Saturday's batch runs
    service.publish_income("mmf-1", date(2027, 3, 6), Decimal("0.6512"))
    service.publish_nav("nav-1", THURSDAY, Decimal("1.1800"))
    assert run_day(service, "CN", date(2027, 3, 6)).confirmed == 1
    # THEN it is confirmed at Thursday's NAV, once, and no longer flagged
    confirmed = store.order("ada", "s-1")
    assert (confirmed.status, confirmed.units_minor, confirmed.awaiting_nav_since) == (
        OrderStatus.CONFIRMED, 8_374_087, None)
    assert store.position("nav-1", "ada").units_minor == 8_374_087
    assert service.confirm_page("CN", date(2027, 3, 7), None).posted == 0


def deferred(service: WealthService, day: date) -> int:
    """NAV orders the day's confirm step left waiting, over all its pages."""
    total, cursor = 0, None
    while True:
        page = service.confirm_page("CN", day, cursor)
        total, cursor = total + page.deferred, page.next_cursor
        if cursor is None:
            return total


def test_a_nav_is_four_decimals_on_a_trading_day_and_published_once():
    service, store, ledger, product = world()
    with pytest.raises(InvalidFigure) as five_places:
        service.publish_nav("nav-1", THURSDAY, Decimal("1.18001"))
    assert five_places.value.field == "nav"
    with pytest.raises(WealthError) as saturday:
        service.publish_nav("nav-1", date(2027, 3, 6), Decimal("1.1800"))
    assert saturday.value.field == "date"
    service.publish_nav("nav-1", THURSDAY, Decimal("1.1800"))
    with pytest.raises(FigureAlreadyPublished) as again:
        service.publish_nav("nav-1", THURSDAY, Decimal("1.1900"))
    assert again.value.errors[0][0] == "date"
    assert store.nav("nav-1", THURSDAY).nav == Decimal("1.1800")


def test_a_nav_correction_reprices_the_subscriptions_confirmed_at_it_and_nothing_else():
    # GIVEN ada's subscription confirmed at 1.1800, and another order confirmed at Friday's NAV
    service, store, ledger, product = confirmed_world()
    ledger.fund("wallet-bob", "bob", AMOUNT)
    service.subscribe("bob", SubscribeCommand("s-2", "nav-1", "wallet-bob", AMOUNT))  # Saturday: T is Monday
    service.publish_nav("nav-1", date(2027, 3, 8), Decimal("1.1800"))
    for day in (6, 7, 8, 9):
        run_day(service, "CN", date(2027, 3, day))
    fund_before = ledger.balances([product.fund_account_id])[product.fund_account_id]
    # WHEN ops correct Thursday's NAV to 1.2000
    result = service.correct_nav("nav-1", THURSDAY, Decimal("1.2000"), "the manager restated Thursday",
                                 "ops-1")
    # THEN the worked example: net 98,814.23 ÷ 1.2000 = 82,345.19 units (was 83,740.87); the cash and the
    # fee (1,185.77) do not depend on the NAV: the confirmation is reversed and made again, net zero
    assert (result.repriced, result.more, result.figure.nav, result.figure.version) == (
        1, False, Decimal("1.2000"), 2)
    assert [(c.previous, c.reason, c.actor) for c in result.figure.corrections] == [
        (Decimal("1.1800"), "the manager restated Thursday", "ops-1")]
    corrected = store.order("ada", "s-1")
    assert (corrected.nav, corrected.units_minor, corrected.fee_minor, corrected.corrections) == (
        Decimal("1.2000"), 8_234_519, 118_577, 1)
    position = store.position("nav-1", "ada")
    assert (position.units_minor, position.lots) == (8_234_519, (Lot(8_234_519, FRIDAY),))
    reversal = order_transfer_id("ada", "s-1", "r1")
    again = order_transfer_id("ada", "s-1", "c1")
    assert ledger.transfers[reversal] == (product.fund_account_id, "wallet-ada", AMOUNT)
    assert ledger.transfers[again] == ("wallet-ada", product.fund_account_id, AMOUNT)
    assert ledger.balances([product.fund_account_id])[product.fund_account_id] == fund_before
    assert ledger.available("wallet-ada") == 0
    # bob's order, priced at Monday's NAV, is untouched; the same correction again re-prices nothing
    assert store.order("bob", "s-2").corrections == 0
    assert service.correct_nav("nav-1", THURSDAY, Decimal("1.2000"), "again", "ops-1").repriced == 0
    with pytest.raises(FigureNotPublished) as unpublished:
        service.correct_nav("nav-1", date(2027, 3, 10), Decimal("1.2000"), "no such NAV", "ops-1")
    assert unpublished.value.errors[0][0] == "date"


def test_a_nav_correction_reprices_at_most_its_cap_per_call_and_the_same_correction_resumes(monkeypatch):
    # GIVEN three subscriptions confirmed at Thursday's NAV, and a cap of two orders per call
    service, store, ledger, product = world()
    for customer in ("ada", "bob", "cy"):
        ledger.fund(f"wallet-{customer}", customer, AMOUNT)
        service.subscribe(customer, SubscribeCommand("s-1", "nav-1", f"wallet-{customer}", AMOUNT))
    service.publish_nav("nav-1", THURSDAY, Decimal("1.1800"))
    run_day(service, "CN", THURSDAY)
    run_day(service, "CN", FRIDAY)
    monkeypatch.setattr(wealth_service, "corrected_orders_per_call_max", 2)
    # WHEN ops correct the NAV, then send the same correction twice more
    calls = [service.correct_nav("nav-1", THURSDAY, Decimal("1.2000"), "restated", "ops-1") for _ in range(3)]
    # THEN the first call re-prices two orders and says more, the second the last one, the third none
    assert [(c.repriced, c.more) for c in calls] == [(2, True), (1, False), (0, False)]
    assert [store.order(c, "s-1").corrections for c in ("ada", "bob", "cy")] == [1, 1, 1]


def test_a_nav_correction_reverses_a_redemptions_payment_and_pays_again_at_the_corrected_nav():
    # GIVEN ada redeemed 10,000.00 units held 3 days at Monday's NAV 1.2000: gross 12,000.00, fee 1.5 %
    # = 180.00, net 11,820.00 paid on Tuesday
    service, store, ledger, product = confirmed_world()
    service.redeem("ada", RedeemCommand("r-1", "nav-1", "wallet-ada", 1_000_000, fast=False))
    monday = date(2027, 3, 8)
    service.publish_nav("nav-1", monday, Decimal("1.2000"))
    for day in (6, 7, 8, 9):
        run_day(service, "CN", date(2027, 3, day))
    assert ledger.available("wallet-ada") == 1_182_000
    fund_before = ledger.balances([product.fund_account_id])[product.fund_account_id][0]
    # WHEN Monday's NAV is corrected to 1.1900
    assert service.correct_nav("nav-1", monday, Decimal("1.1900"), "restated", "ops-1").repriced == 1
    # THEN gross 11,900.00, fee 178.50, net 11,721.50: 11,820.00 taken back and 11,721.50 paid, each a
    # balanced transfer; the wallet holds 98.50 less and the fund 98.50 more; the units do not change
    corrected = store.order("ada", "r-1")
    assert (corrected.nav, corrected.fee_minor, corrected.units_minor) == (
        Decimal("1.1900"), 17_850, 1_000_000)
    assert ledger.transfers[order_transfer_id("ada", "r-1", "r1")] == (
        "wallet-ada", product.fund_account_id, 1_182_000)
    assert ledger.transfers[order_transfer_id("ada", "r-1", "c1")] == (
        product.fund_account_id, "wallet-ada", 1_172_150)
    assert ledger.available("wallet-ada") == 1_172_150
    assert ledger.balances([product.fund_account_id])[product.fund_account_id][0] == fund_before + 9_850
    assert store.position("nav-1", "ada").units_minor == 7_374_087
    # AND the check finds both corrections' legs, and would see a payment at the old NAV
    amounts = {t: amount for t, (_, _, amount) in ledger.transfers.items()}
    assert check(table_items(store, product), ledger.balances, amounts.get).passed
    amounts[order_transfer_id("ada", "r-1", "c1")] = 1_182_000
    assert not check(table_items(store, product), ledger.balances, amounts.get).passed


def test_a_correction_needs_a_changed_figure_and_is_refused_while_a_wallet_cannot_give_back_the_difference():
    service, store, ledger, product = confirmed_world()
    with pytest.raises(FigureAlreadyPublished) as same:
        service.correct_nav("nav-1", THURSDAY, Decimal("1.1800"), "no change", "ops-1")
    assert same.value.errors[0][0] == "nav"
    service.redeem("ada", RedeemCommand("r-1", "nav-1", "wallet-ada", 1_000_000, fast=False))
    monday = date(2027, 3, 8)
    service.publish_nav("nav-1", monday, Decimal("1.2000"))
    for day in (6, 7, 8, 9):
        run_day(service, "CN", date(2027, 3, day))
    ledger.accounts["wallet-ada"].posted = 0  # ada spent the payment
    with pytest.raises(OrderConflict) as short:
        service.correct_nav("nav-1", monday, Decimal("1.1900"), "restated", "ops-1")
    assert short.value.errors[0][0] == "nav"
    assert store.order("ada", "r-1").nav == Decimal("1.2000")  # nothing moved for the order
    ledger.accounts["wallet-ada"].posted = 10_000
    assert service.correct_nav("nav-1", monday, Decimal("1.1900"), "restated", "ops-1").repriced == 1


class Item:
    """An item of the wealth table as the check reads it."""

    def __init__(self, pk: str, doc: str) -> None:
        self.pk, self.doc = pk, doc


def table_items(store: InMemoryWealthStore, product: Product) -> list[Item]:
    from finfaas.store.wealth_store import order_to_json, position_to_json, product_to_json

    return [Item("product", product_to_json(product)),
            Item("pos#nav-1", position_to_json(store.position("nav-1", "ada"))),
            *(Item("order#ada", order_to_json(o)) for o in store.orders_of("ada", 10))]


def test_the_check_counts_nav_units_on_positions_and_fees_in_the_fee_account():
    service, store, ledger, product = confirmed_world()

    class Item:
        def __init__(self, pk: str, doc: str) -> None:
            self.pk, self.doc = pk, doc

    from finfaas.store.wealth_store import order_to_json, position_to_json, product_to_json

    items = [Item("product", product_to_json(product)),
             Item("pos#nav-1", position_to_json(store.position("nav-1", "ada"))),
             Item("order#ada", order_to_json(store.order("ada", "s-1")))]
    fees = {f"{t}": amount for t, (_, _, amount) in ledger.transfers.items()}
    assert check(items, ledger.balances, fees.get).passed
    fees.clear()
    assert not check(items, ledger.balances, fees.get).passed
