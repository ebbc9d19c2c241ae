"""Wealth's request and response shapes and its error table (the wealth function's routes)."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictInt

from finfaas.domain import wealth as rules
from finfaas.domain.calendar import CalendarError, Cutoff
from finfaas.domain.ledger import identifier_chars_max
from finfaas.domain.money import transfer_amount_minor_max
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.services.suite_clients import ServiceUnreachable
from finfaas.services.wealth.errors import (
    BatchDateMismatch,
    FigureAlreadyPublished,
    FigureNotPublished,
    InsufficientBalance,
    InvalidOrder,
    OrderConflict,
    OrderExistsWithDifferentFields,
    OrderNotFound,
    PositionNotFound,
    ProductClosed,
    ProductExists,
    ProductNotFound,
    WalletAccountNotFound,
    WealthStoreUnavailable,
)
from finfaas.services.wealth.model import (
    ROLLED_SUFFIX_CHARS,
    DailyIncome,
    FigureCorrection,
    NavFigure,
    OrderKind,
    OrderStatus,
    Product,
    ProductKind,
    ProductStatus,
    SubscribeCommand,
    SubscriptionOrder,
    correction_reason_chars_max,
    fund_account_id,
)
from finfaas.services.wealth.service import (
    NavCorrection,
    PageResult,
    PositionSummary,
    RedeemCommand,
    Settlement,
)

# Order ids stay within the length they always had (the ledger ids are derived from a digest now).
HOLD_SUFFIX_CHARS = len("-hold")
# Dates the batch and the figures take: far enough for any calendar, and never at date's own ends, where
# the day before or after (the yield's window, the next business date) does not exist.
business_date_min, business_date_max = date(2000, 1, 1), date(2199, 12, 31)
BusinessDay = Annotated[date, Field(ge=business_date_min, le=business_date_max)]
DecimalText = Annotated[str, Field(min_length=1, max_length=24, pattern=r"^[0-9]+(\.[0-9]+)?$")]
Identifier = Annotated[str, Field(min_length=1, max_length=identifier_chars_max, pattern=r"^[A-Za-z0-9_-]+$")]
OrderId = Annotated[str, Field(min_length=1, max_length=identifier_chars_max - HOLD_SUFFIX_CHARS,
                               pattern=r"^[A-Za-z0-9_-]+$")]
# A term may be a rolled-over one (model.rolled_order_id: its first order's id and `~YYYYMMDD`).
TermOrderId = Annotated[str, Field(min_length=1,
                                   max_length=identifier_chars_max - HOLD_SUFFIX_CHARS + ROLLED_SUFFIX_CHARS,
                                   pattern=r"^[A-Za-z0-9_-]+(~[0-9]{8})?$")]
Reason = Annotated[str, Field(min_length=1, max_length=correction_reason_chars_max)]


class SubscribeBody(StrictModel):
    """Subscribe amount (minor units) of the wallet account to a product; order_id makes it idempotent."""

    order_id: OrderId
    product_id: Identifier
    account_id: Identifier
    amount: Annotated[StrictInt, Field(ge=1, le=transfer_amount_minor_max, description="minor units")]
    maturity_instruction: rules.MaturityInstruction | None = None

    def command(self) -> SubscribeCommand:
        return SubscribeCommand(self.order_id, self.product_id, self.account_id, self.amount,
                                self.maturity_instruction)


class OrderView(BaseModel):
    order_id: str
    kind: OrderKind
    product_id: str
    account_id: str
    amount: int = Field(description="minor units")
    currency: str
    maturity_instruction: rules.MaturityInstruction | None
    placed_at: datetime
    trade_date: date = Field(description="T: the trading day the order belongs to")
    confirmation_date: date = Field(description="T+1: confirmation, and the first day of income")
    status: OrderStatus
    nav: str | None = Field(default=None, description="a NAV fund's confirmed order: the NAV of T")
    units: int | None = Field(default=None, description="a NAV fund's confirmed order: hundredths of units")
    fee: int | None = Field(default=None, description="a NAV fund's confirmed order: minor units")
    awaiting_nav_since: date | None = Field(default=None, description="a NAV order still pending because "
                                            "its trade date's NAV is not published: the first day it waited")
    corrections: int = Field(default=0, description="NAV corrections that re-priced the order")


def order_view(order: SubscriptionOrder) -> OrderView:
    return OrderView(order_id=order.order_id, kind=order.kind, product_id=order.product_id,
                     account_id=order.account_id,
                     amount=order.amount_minor, currency=order.currency,
                     maturity_instruction=order.maturity_instruction, placed_at=order.placed_at,
                     trade_date=order.trade_date, confirmation_date=order.confirmation_date,
                     status=order.status, nav=None if order.nav is None else str(order.nav),
                     units=order.units_minor, fee=order.fee_minor,
                     awaiting_nav_since=order.awaiting_nav_since, corrections=order.corrections)


class RedeemBody(StrictModel):
    """Redeem amount (minor units; NAV 1.00) of a money-market position to the wallet account: standard
    (paid on T+1) or fast (at once, within the product's daily cap)."""

    order_id: OrderId
    product_id: Identifier
    account_id: Identifier
    amount: Annotated[StrictInt, Field(ge=1, le=transfer_amount_minor_max, description="minor units")]
    mode: Literal["standard", "fast"] = "standard"
    term_order_id: TermOrderId | None = Field(default=None, description="a fixed term's early redemption: "
                                          "the order id of the term it redeems (paid at once)")

    def command(self) -> RedeemCommand:
        return RedeemCommand(self.order_id, self.product_id, self.account_id, self.amount,
                             self.mode == "fast", self.term_order_id)


class NewProductBody(StrictModel):
    """A product of the catalogue (ops). Money-market funds are built end to end."""

    product_id: Identifier
    kind: ProductKind
    name: Annotated[str, Field(min_length=1, max_length=80)]
    market: Annotated[str, Field(min_length=2, max_length=8, pattern=r"^[A-Z]+$")] = "CN"
    currency: Annotated[str, Field(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")] = "CNY"
    minimum: Annotated[StrictInt, Field(ge=1, le=transfer_amount_minor_max, description="minor units")]
    cutoff: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
                                 description="local time of the order cut-off, HH:MM[:SS]")] = (
        Cutoff().at.isoformat())
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = Cutoff().time_zone
    rounding: rules.Rounding = rules.Rounding.TRUNCATE
    fast_redemption_cap: Annotated[StrictInt, Field(ge=1, le=rules.FAST_REDEMPTION_DAILY_CAP_MINOR)] = (
        rules.FAST_REDEMPTION_DAILY_CAP_MINOR)
    subscription_fee_rate: DecimalText = "0"
    fee_tiers: list[tuple[Annotated[StrictInt, Field(ge=0)], DecimalText]] = Field(default=[],
                                                                                max_length=rules.fee_tiers_max)
    rate: DecimalText | None = None
    demand_rate: DecimalText | None = None
    term_days: StrictInt | None = None
    day_count: rules.DayCount = rules.DayCount.ACT_365

    def product(self) -> Product:
        term = None
        if self.kind is ProductKind.FIXED_TERM:
            if self.rate is None or self.demand_rate is None or self.term_days is None:
                raise rules.WealthError("rate, demand_rate and term_days: required for a fixed term",
                                        field="rate")
            term = rules.FixedTerm(Decimal(self.rate), Decimal(self.demand_rate), self.term_days,
                                   self.day_count, self.minimum)
        return Product(self.product_id, self.kind, self.name, self.market, self.currency, ProductStatus.OPEN,
                       self.minimum, fund_account_id(self.product_id),
                       Cutoff(time.fromisoformat(self.cutoff), self.time_zone),
                       self.rounding, self.fast_redemption_cap, Decimal(self.subscription_fee_rate),
                       tuple(rules.FeeTier(days, Decimal(rate)) for days, rate in self.fee_tiers), term)


class ProductView(BaseModel):
    product_id: str
    kind: ProductKind
    name: str
    market: str
    currency: str
    status: ProductStatus
    minimum: int = Field(description="minor units")
    cutoff: str = Field(description="local time of the order cut-off, HH:MM:SS")
    time_zone: str
    rounding: rules.Rounding
    fast_redemption_cap: int
    fund_account_id: str


def product_view(product: Product) -> ProductView:
    return ProductView(product_id=product.product_id, kind=product.kind, name=product.name,
                       market=product.market, currency=product.currency, status=product.status,
                       minimum=product.minimum_minor, cutoff=product.cutoff.at.isoformat(),
                       time_zone=product.cutoff.time_zone,
                       rounding=product.rounding, fast_redemption_cap=product.fast_redemption_cap_minor,
                       fund_account_id=product.fund_account_id)


class IncomeBody(StrictModel):
    """A day's income per 10,000 units (a decimal string, at most 4 places), published once."""

    date: BusinessDay
    income_per_10k_units: DecimalText


class IncomeCorrectionBody(StrictModel):
    """An operator's correction of a published day's income, before the batch settles it; why, kept."""

    income_per_10k_units: DecimalText
    reason: Reason


class NavBody(StrictModel):
    """A NAV fund's NAV of a trading day (a decimal string, at most 4 places), published once."""

    date: BusinessDay
    nav: DecimalText


class NavCorrectionBody(StrictModel):
    """An operator's correction of a published NAV: the orders priced at it are re-priced; why, kept."""

    nav: DecimalText
    reason: Reason


class CorrectionView(BaseModel):
    previous: str
    reason: str
    actor: str
    at: datetime


def correction_views(corrections: tuple[FigureCorrection, ...]) -> list[CorrectionView]:
    return [CorrectionView(previous=str(c.previous), reason=c.reason, actor=c.actor, at=c.at)
            for c in corrections]


class NavView(BaseModel):
    product_id: str
    date: date
    nav: str
    version: int
    corrections: list[CorrectionView] = Field(default_factory=list)


def nav_view(figure: NavFigure) -> NavView:
    return NavView(product_id=figure.product_id, date=figure.day, nav=str(figure.nav), version=figure.version,
                   corrections=correction_views(figure.corrections))


class NavCorrectionView(NavView):
    repriced: int = Field(description="orders this call re-priced at the corrected NAV")
    more: bool = Field(description="orders remain: send the same correction again")


def nav_correction_view(result: NavCorrection) -> NavCorrectionView:
    return NavCorrectionView(**nav_view(result.figure).model_dump(), repriced=result.repriced,
                             more=result.more)


class DailyIncomeView(BaseModel):
    product_id: str
    date: date
    income_per_10k_units: str
    seven_day_yield_percent: str | None
    settled: bool
    distributable: int | None = Field(description="minor units: the figure on every unit outstanding")
    posted: int | None = Field(description="minor units: Σ of the holders' incomes")
    remainder: int | None = Field(description="minor units: booked to the fund's rounding account")
    holders: int | None
    corrections: list[CorrectionView] = Field(default_factory=list)


def daily_income_view(figure: DailyIncome) -> DailyIncomeView:
    yield_percent = figure.seven_day_yield_percent
    return DailyIncomeView(product_id=figure.product_id, date=figure.day,
                           income_per_10k_units=str(figure.income_per_10k_units),
                           seven_day_yield_percent=None if yield_percent is None else str(yield_percent),
                           settled=figure.settled, distributable=figure.distributable_minor,
                           posted=figure.posted_minor, remainder=figure.remainder_minor,
                           holders=figure.holders, corrections=correction_views(figure.corrections))


class DailyIncomeList(BaseModel):
    data: list[DailyIncomeView]


class OrderList(BaseModel):
    data: list[OrderView]


class PositionView(BaseModel):
    product_id: str
    kind: ProductKind
    units: int = Field(description="hundredths of a unit (an MMF's NAV is 1.00: minor units of money)")
    available_units: int
    value: int = Field(description="minor units")
    yesterday_income: int = Field(description="minor units")
    cumulative_income: int = Field(description="minor units")
    last_income_date: date | None
    pending_orders: list[OrderView]


def position_view(summary: PositionSummary) -> PositionView:
    position = summary.position
    return PositionView(product_id=position.product_id, kind=summary.product.kind, units=summary.units_minor,
                        available_units=summary.available_units_minor, value=summary.units_minor,
                        yesterday_income=summary.yesterday_income_minor,
                        cumulative_income=position.cumulative_income_minor,
                        last_income_date=position.last_income_date,
                        pending_orders=[order_view(o) for o in summary.pending_orders])


class PositionList(BaseModel):
    data: list[PositionView]


class IncomeLine(BaseModel):
    date: date
    income: int = Field(description="minor units")


class IncomeStatement(BaseModel):
    product_id: str
    data: list[IncomeLine]


class OpsPositionView(PositionView):
    """What operators see of any customer's position: the customer's view, whose it is, and its income."""

    customer_id: str
    currency: str = Field(description="the product's: value and income are in its minor units")
    exponent: int
    income: list[IncomeLine] = Field(description="income per day, newest first (the last 31 days)")


class BatchBody(StrictModel):
    """One step of the daily batch for a market's business date; cursor resumes a paged step."""

    market: Annotated[str, Field(min_length=2, max_length=8, pattern=r"^[A-Z]+$")] = "CN"
    business_date: BusinessDay
    cursor: Annotated[str, Field(min_length=1, max_length=512)] | None = None


class BatchPageView(BaseModel):
    processed: int
    posted: int
    next: str | None
    deferred: int = Field(default=0, description="NAV orders left pending for their unpublished NAV")


def batch_page_view(result: PageResult) -> BatchPageView:
    return BatchPageView(processed=result.processed, posted=result.posted, next=result.next_cursor,
                         deferred=result.deferred)


class SettlementView(BaseModel):
    product_id: str
    date: date
    distributable: int
    posted: int
    remainder: int
    holders: int
    seven_day_yield_percent: str | None


def settlement_view(s: Settlement) -> SettlementView:
    return SettlementView(product_id=s.product_id, date=s.day, distributable=s.distributable_minor,
                          posted=s.posted_minor, remainder=s.remainder_minor, holders=s.holders,
                          seven_day_yield_percent=None if s.seven_day_yield_percent is None
                          else str(s.seven_day_yield_percent))


class SettlementList(BaseModel):
    data: list[SettlementView]


ERRORS = {
    rules.BelowMinimum: ErrorSpec(422, rules.BelowMinimum.code, "Below the product's minimum"),
    rules.FastRedemptionCapExceeded: ErrorSpec(422, rules.FastRedemptionCapExceeded.code,
                                               "Fast redemption cap exceeded"),
    rules.InsufficientUnits: ErrorSpec(422, rules.InsufficientUnits.code, "Insufficient units"),
    rules.PartialRedemptionUsed: ErrorSpec(409, rules.PartialRedemptionUsed.code, "Partial redemption used"),
    rules.InvalidFigure: ErrorSpec(422, rules.InvalidFigure.code, "Invalid figure"),
    rules.WealthError: ErrorSpec(422, rules.WealthError.code, "Invalid wealth input"),
    InvalidOrder: ErrorSpec(422, InvalidOrder.code, "Invalid order"),
    ProductNotFound: ErrorSpec(404, ProductNotFound.code, "Product not found"),
    ProductClosed: ErrorSpec(409, ProductClosed.code, "Product closed"),
    OrderNotFound: ErrorSpec(404, OrderNotFound.code, "Order not found"),
    PositionNotFound: ErrorSpec(404, PositionNotFound.code, "Position not found"),
    ProductExists: ErrorSpec(409, ProductExists.code, "Product exists"),
    FigureAlreadyPublished: ErrorSpec(409, FigureAlreadyPublished.code, "Figure already published"),
    FigureNotPublished: ErrorSpec(409, FigureNotPublished.code, "Figure not published"),
    BatchDateMismatch: ErrorSpec(409, BatchDateMismatch.code, "Not the business date"),
    OrderConflict: ErrorSpec(409, OrderConflict.code, "Order conflict"),
    OrderExistsWithDifferentFields: ErrorSpec(409, OrderExistsWithDifferentFields.code,
                                              "Order exists with different fields"),
    WalletAccountNotFound: ErrorSpec(404, WalletAccountNotFound.code, "Wallet account not found"),
    InsufficientBalance: ErrorSpec(422, InsufficientBalance.code, "Insufficient balance"),
    # The market's calendar does not cover the business date: configuration, not the customer's input.
    CalendarError: ErrorSpec(503, "calendar_not_configured", "Calendar not configured"),
    WealthStoreUnavailable: ErrorSpec(503, WealthStoreUnavailable.code, "Wealth store unavailable"),
    # The orchestrator did not answer a batch's start: the next tick (or the operator's retry) starts it.
    ServiceUnreachable: ErrorSpec(503, "dependency_unreachable", "Dependency unreachable"),
}
