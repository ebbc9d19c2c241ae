"""Subscriptions (services/wealth): dates from the business date and calendar, the cash held once,
refusals that write nothing, and another customer's order or wallet not found."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from finfaas.domain.calendar import parse_calendar
from finfaas.domain.wealth import (
    BelowMinimum,
    DayCount,
    FeeTier,
    FixedTerm,
    InvalidFeeTable,
    MaturityInstruction,
    WealthError,
)
from finfaas.platform.errors import ErrorTable
from finfaas.services.business_date.model import BusinessDateMode
from finfaas.services.business_date.service import BusinessDateService
from finfaas.services.wealth.api import ERRORS, SubscribeBody
from finfaas.services.wealth.errors import (
    InsufficientBalance,
    InvalidOrder,
    OrderExistsWithDifferentFields,
    OrderNotFound,
    ProductClosed,
    ProductNotFound,
    WalletAccountNotFound,
)
from finfaas.services.wealth.model import (
    OrderStatus,
    Product,
    ProductKind,
    ProductStatus,
    SubscribeCommand,
    SubscriptionOrder,
    position_account_id,
)
from finfaas.services.wealth.service import WealthService
from finfaas_dev.fakes.business_date import InMemoryBusinessDateStore
from finfaas_dev.fakes.wealth import InMemoryWealthLedger, InMemoryWealthStore
from pydantic import ValidationError

SAMPLE = Path(__file__).resolve().parents[4] / "infra" / "calendars" / "cn-2027.json"
CN = parse_calendar(SAMPLE.read_text())
MMF = Product("mmf-1", ProductKind.MMF, "Cash Plus", "CN", "CNY", ProductStatus.OPEN, 100, "fund-mmf-1")
CLOSED = Product("mmf-2", ProductKind.MMF, "Old Cash", "CN", "CNY", ProductStatus.CLOSED, 100, "fund-mmf-2")
TERM = FixedTerm(Decimal("0.035"), Decimal("0.0035"), 90, DayCount.ACT_365, minimum_minor=1_000_000)
FIXED = Product("ft-90", ProductKind.FIXED_TERM, "90 days", "CN", "CNY", ProductStatus.OPEN, 1_000_000,
                "fund-ft-90", fixed_term=TERM)
ALICE, BOB = "cus_alice", "cus_bob"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


class World:
    """The service over fakes, with a business date an operator sets and a clock the test sets."""

    def __init__(self, business_date: date, now: datetime) -> None:
        self.now = now
        stored = InMemoryBusinessDateStore()
        stored.replace("CN", None, business_date, now)  # as an operator's advance left it
        self.dates = BusinessDateService(stored, BusinessDateMode.MANUAL, clock=lambda: self.now)
        self.orders = InMemoryWealthStore(MMF, CLOSED, FIXED)
        self.holds = InMemoryWealthLedger(self.orders)
        self.holds.fund("w-alice", ALICE, 5_000_000)
        self.holds.fund("w-bob", BOB, 5_000_000)
        self.service = WealthService(self.orders, self.holds, self.dates, {"CN": CN}, clock=lambda: self.now)

    def subscribe(self, order_id: str = "o-1", amount: int = 1_000_000, customer: str = ALICE,
                  product: str = "mmf-1", account: str = "w-alice",
                  instruction: MaturityInstruction | None = None) -> SubscriptionOrder:
        return self.service.subscribe(customer, SubscribeCommand(order_id, product, account, amount,
                                                                 instruction))


@pytest.fixture
def thursday_1459() -> World:
    # Thursday 4 March 2027, 14:59 in Shanghai (06:59 UTC)
    return World(date(2027, 3, 4), utc(2027, 3, 4, 6, 59))


def test_before_the_cut_off_the_order_is_t_and_confirmed_t_plus_1_with_the_cash_held(thursday_1459):
    order = thursday_1459.subscribe()
    assert (order.trade_date, order.confirmation_date, order.status) == (
        date(2027, 3, 4), date(2027, 3, 5), OrderStatus.PENDING)
    assert thursday_1459.holds.available("w-alice") == 4_000_000
    hold = thursday_1459.holds.holds[order.hold_id]
    assert (hold.account_id, hold.credit_account_id, hold.amount_minor, hold.currency) == (
        "w-alice", position_account_id("mmf-1", ALICE), 1_000_000, "CNY")


def test_after_fridays_cut_off_the_order_is_confirmed_tuesday():
    world = World(date(2027, 3, 5), utc(2027, 3, 5, 7, 1))  # Friday 15:01 in Shanghai
    order = world.subscribe()
    assert (order.trade_date, order.confirmation_date) == (date(2027, 3, 8), date(2027, 3, 9))


def test_the_business_date_not_the_clocks_date_decides_t():
    # GIVEN the clock in March but the business date advanced to Thursday 1 April; 16:00 in Shanghai
    world = World(date(2027, 4, 1), utc(2027, 3, 4, 8, 0))
    order = world.subscribe()
    # THEN T is Friday 2 April, and Qingming (Monday 5 April) pushes T+1 to Tuesday
    assert (order.trade_date, order.confirmation_date) == (date(2027, 4, 2), date(2027, 4, 6))
    assert order.placed_at.date() == date(2027, 4, 1)


def test_a_retried_subscription_returns_the_same_order_and_holds_once(thursday_1459):
    first = thursday_1459.subscribe()
    thursday_1459.now = utc(2027, 3, 4, 8, 0)  # retried after the cut-off: still the first order
    assert thursday_1459.subscribe() == first
    assert thursday_1459.holds.available("w-alice") == 4_000_000


def test_the_same_order_id_with_another_amount_is_refused_and_nothing_more_is_held(thursday_1459):
    thursday_1459.subscribe()
    with pytest.raises(OrderExistsWithDifferentFields):
        thursday_1459.subscribe(amount=2_000_000)
    assert thursday_1459.holds.available("w-alice") == 4_000_000


class CrashingLedger(InMemoryWealthLedger):
    """A ledger whose first hold dies before it commits (the function died mid-request)."""

    def __init__(self, store: InMemoryWealthStore) -> None:
        super().__init__(store)
        self.crashes_left = 1

    def hold(self, *args, **kwargs) -> None:
        if self.crashes_left:
            self.crashes_left -= 1
            raise ConnectionError("the function died here")
        super().hold(*args, **kwargs)


def test_a_retry_after_a_crash_holds_once_and_records_the_order(thursday_1459):
    world = thursday_1459
    world.holds = CrashingLedger(world.orders)
    world.holds.fund("w-alice", ALICE, 5_000_000)
    world.service = WealthService(world.orders, world.holds, world.dates, {"CN": CN}, clock=lambda: world.now)
    with pytest.raises(ConnectionError):
        world.subscribe()
    assert world.orders.all_orders() == [] and world.holds.holds == {}
    order = world.subscribe()
    assert world.orders.all_orders() == [order]
    assert list(world.holds.holds) == [order.hold_id]
    assert world.holds.available("w-alice") == 4_000_000


@pytest.mark.parametrize(("kwargs", "error", "field"), [
    ({"amount": 99}, BelowMinimum, "amount"),
    ({"amount": 5_000_001}, InsufficientBalance, "amount"),
    ({"product": "mmf-2"}, ProductClosed, "product_id"),
    ({"product": "nope"}, ProductNotFound, "product_id"),
    ({"product": "ft-90"}, InvalidOrder, "maturity_instruction"),
    ({"instruction": MaturityInstruction.PAY_OUT}, InvalidOrder, "maturity_instruction"),
    ({"account": "w-bob"}, WalletAccountNotFound, "account_id"),
])
def test_a_refused_subscription_names_the_field_and_writes_nothing(thursday_1459, kwargs, error, field):
    with pytest.raises(error) as caught:
        thursday_1459.subscribe(**kwargs)
    problem = ErrorTable(ERRORS).problem_for(caught.value, None)
    assert problem is not None and 400 <= problem.status < 500
    assert [e.field for e in problem.errors] == [field]
    assert thursday_1459.orders.all_orders() == [] and thursday_1459.holds.holds == {}
    assert thursday_1459.orders.positions_of(ALICE) == []


def test_a_fixed_term_order_keeps_its_maturity_instruction(thursday_1459):
    order = thursday_1459.subscribe(product="ft-90", amount=1_000_000,
                                    instruction=MaturityInstruction.ROLL_OVER_PRINCIPAL)
    assert order.maturity_instruction is MaturityInstruction.ROLL_OVER_PRINCIPAL


def test_another_customers_order_is_not_found(thursday_1459):
    order = thursday_1459.subscribe()
    assert thursday_1459.service.order(ALICE, order.order_id) == order
    with pytest.raises(OrderNotFound):
        thursday_1459.service.order(BOB, order.order_id)
    with pytest.raises(OrderNotFound):
        thursday_1459.service.order(ALICE, "o-missing")


def test_an_order_id_leaves_room_for_the_holds_suffix():
    body = {"order_id": "o" * 59, "product_id": "mmf-1", "account_id": "w-alice", "amount": 100}
    assert SubscribeBody.model_validate(body).command().order_id == "o" * 59
    with pytest.raises(ValidationError):
        SubscribeBody.model_validate({**body, "order_id": "o" * 60})
    with pytest.raises(ValidationError):
        SubscribeBody.model_validate({**body, "amount": "1.00"})


def test_the_catalogue_refuses_a_product_it_cannot_price():
    with pytest.raises(WealthError) as caught:
        Product("jp", ProductKind.MMF, "Yen", "CN", "JPY", ProductStatus.OPEN, 100, "fund-jp")
    assert caught.value.field == "currency"
    with pytest.raises(InvalidFeeTable):
        Product("nav", ProductKind.NAV_FUND, "Fund", "CN", "CNY", ProductStatus.OPEN, 100, "fund-nav",
                redemption_fee_tiers=(FeeTier(0, Decimal("0.005")),))
    with pytest.raises(WealthError) as caught:
        Product("ft", ProductKind.FIXED_TERM, "FT", "CN", "CNY", ProductStatus.OPEN, 100, "fund-ft")
    assert caught.value.field == "fixed_term"
