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
from finfaas.services.wealth.errors import (
    FigureAlreadyPublished,
    FigureNotPublished,
    InvalidOrder,
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
    service, store, ledger, product = world()
    subscribe(service)
    service.publish_nav("nav-1", THURSDAY, Decimal("1.1800"))
    run_day(service, "CN", THURSDAY)
    run_day(service, "CN", FRIDAY)
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


def test_the_batch_stops_naming_the_date_while_the_nav_is_not_published_and_confirms_once_it_is():
    service, store, ledger, product = world()
    subscribe(service)
    run_day(service, "CN", THURSDAY)
    with pytest.raises(FigureNotPublished) as refused:
        service.confirm_page("CN", FRIDAY, None)
    assert refused.value.errors[0][0] == "date"
    assert store.order("ada", "s-1").status is OrderStatus.PENDING and ledger.available("wallet-ada") == 0
    service.publish_nav("nav-1", THURSDAY, Decimal("1.1800"))
    assert run_day(service, "CN", FRIDAY).confirmed == 1


def test_a_nav_is_four_decimals_on_a_trading_day_and_a_published_day_needs_a_correction_in_time():
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
    assert service.publish_nav("nav-1", THURSDAY, Decimal("1.1900"), correction=True).version == 2
    run_day(service, "CN", THURSDAY)  # the business date moves past Thursday: its orders get confirmed
    with pytest.raises(FigureAlreadyPublished):
        service.publish_nav("nav-1", THURSDAY, Decimal("1.1800"), correction=True)
    assert store.nav("nav-1", THURSDAY).nav == Decimal("1.1900")


def test_the_check_counts_nav_units_on_positions_and_fees_in_the_fee_account():
    service, store, ledger, product = world()
    subscribe(service)
    service.publish_nav("nav-1", THURSDAY, Decimal("1.1800"))
    run_day(service, "CN", THURSDAY)
    run_day(service, "CN", FRIDAY)

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
