"""Wealth products' arithmetic: money-market income, the 7-day yield, NAV orders, fixed-term interest.

Pure rules: no clock, no store. Dates come from the business calendar (domain/calendar.py) and the
business date; figures published by the fund manager arrive as Decimal and are checked for precision.
Amounts and units are integers at the edges: amounts in minor units of a two-decimal currency (CNY),
units in hundredths of a unit, since funds book units to 0.01. Every rounding is done once, on an
exact rational (Fraction of the Decimal inputs), by the rule named at the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from finfaas.domain.calendar import Cutoff, MarketCalendar, accrual_days_max

# Wealth products trade in a two-decimal currency: at NAV 1.00 an MMF unit is worth one major unit, so
# a hundredth of a unit and a minor unit of money are the same amount.
WEALTH_CURRENCY_EXPONENT = 2
UNITS_PER_INCOME_FIGURE = 10_000  # the MMF income figure is per 10,000 units (万份收益)
figure_decimals_max = 4  # 万份收益 and NAV are published to 4 decimals
rate_decimals_max = 6  # fee and interest rates: 0.012 = 1.2 %, down to 0.0001 %
yield_decimals = 3  # the 7-day annualised yield, in percent
YIELD_WINDOW_DAYS = 7
DAYS_PER_YEAR_FOR_YIELD = 365
# A day's income above 1 % of the units (365 % a year) or a NAV above 10,000 is a typo, not a market.
income_per_10k_units_max = Decimal("100.0000")
nav_max = Decimal("10000.0000")
fee_rate_max = Decimal("0.10")  # subscription and redemption fees above 10 % are refused as typos
annual_rate_max = Decimal("1.00")  # interest rates above 100 % a year
term_days_max = 3_660  # ten years
# Units held under this many calendar days pay at least the short-holding fee, which goes to the fund
# (the regulators' rule against in-and-out trading at the other holders' cost).
SHORT_HOLDING_DAYS = 7
SHORT_HOLDING_FEE_RATE_MIN = Decimal("0.015")
fee_tiers_max = 10
partial_early_redemptions_max = 1
# One day's fast redemption per customer and product; a product may set a lower cap.
FAST_REDEMPTION_DAILY_CAP_MINOR = 1_000_000  # 10,000.00


class WealthError(ValueError):
    """A wealth rule was given input it refuses; `field` names the input at fault."""

    code = "wealth_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    @property
    def errors(self) -> tuple[tuple[str, str], ...]:
        """(field, message) for an error table's problem: the field named, never its value."""
        return ((self.field, str(self)),) if self.field else ()


class InvalidFigure(WealthError):
    """A published figure (income per 10,000 units, NAV) or a rate has the wrong precision or range."""

    code = "invalid_figure"


class BelowMinimum(WealthError):
    """An amount is under the product's minimum."""

    code = "below_minimum"


class FastRedemptionCapExceeded(WealthError):
    """A fast redemption would take the customer's redemptions of the day over the product's cap."""

    code = "fast_redemption_cap_exceeded"


class InsufficientUnits(WealthError):
    """A redemption asks for more units or principal than the position holds."""

    code = "insufficient_units"


class PartialRedemptionUsed(WealthError):
    """A fixed-term holding allows one partial early redemption, and it was used."""

    code = "partial_redemption_used"


class InvalidFeeTable(WealthError):
    """A redemption fee table has gaps, repeats, or charges short holdings less than the floor."""

    code = "invalid_fee_table"


class Rounding(StrEnum):
    """How a product rounds an amount to 0.01: truncate (toward zero) or half-up (away from zero)."""

    TRUNCATE = "truncate"
    HALF_UP = "half_up"


def round_to_int(value: Fraction, rounding: Rounding) -> int:
    """value rounded to an integer (of minor units) by rounding; exact, whatever the size."""
    if rounding is Rounding.TRUNCATE:
        return int(value)  # int() of a Fraction truncates toward zero
    half_up = (abs(value) * 2 + 1) // 2
    return int(half_up) if value >= 0 else -int(half_up)


def check_figure(value: Decimal, *, field: str, maximum: Decimal,
                 decimals_max: int = figure_decimals_max, positive: bool = False) -> Decimal:
    """value itself when it is a finite Decimal of at most decimals_max places within 0..maximum."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidFigure(f"{field}: expected a finite decimal", field=field)
    if value < 0 or (positive and value == 0) or value > maximum:
        low = "greater than 0" if positive else "at least 0"
        raise InvalidFigure(f"{field}: must be {low} and at most {maximum}", field=field)
    # Trailing zeros are the same figure (0.65120 is 0.6512); a fifth significant decimal is not.
    if value != value.quantize(Decimal(1).scaleb(-decimals_max)):
        raise InvalidFigure(f"{field}: at most {decimals_max} decimal places", field=field)
    return value


def check_rate(value: Decimal, *, field: str, maximum: Decimal) -> Decimal:
    """A fee or interest rate as a fraction (0.012 = 1.2 %), at most rate_decimals_max places."""
    return check_figure(value, field=field, maximum=maximum, decimals_max=rate_decimals_max)


def _check_units(units_minor: int, *, field: str = "units") -> int:
    if isinstance(units_minor, bool) or not isinstance(units_minor, int) or units_minor < 0:
        raise WealthError(f"{field}: expected a non-negative integer of hundredths", field=field)
    return units_minor


# --- money-market fund: income per holder, the fund's distribution, the 7-day yield ----------------


def mmf_income(units_minor: int, income_per_10k_units: Decimal, rounding: Rounding) -> int:
    """A holder's income for one day, in hundredths: units ÷ 10,000 × the figure, rounded to 0.01."""
    _check_units(units_minor)
    figure = check_figure(income_per_10k_units, field="income_per_10k_units",
                          maximum=income_per_10k_units_max)
    return round_to_int(Fraction(units_minor) * Fraction(figure) / UNITS_PER_INCOME_FIGURE, rounding)


@dataclass(frozen=True, slots=True)
class IncomeDistribution:
    """One day's income of an MMF: each holder's posting and the remainder booked to the fund.

    Σ incomes + remainder = distributable, always; the remainder may be negative under half-up (the
    fund's rounding account pays the cents rounded up) and is never negative under truncation."""

    distributable_minor: int
    incomes_minor: tuple[int, ...]
    remainder_minor: int

    def __post_init__(self) -> None:
        posted = sum(self.incomes_minor)
        assert posted + self.remainder_minor == self.distributable_minor, "income not conserved"


def mmf_distributable(total_units_minor: int, income_per_10k_units: Decimal, rounding: Rounding) -> int:
    """The fund's distributable income for the day: the figure applied to every unit outstanding."""
    return mmf_income(total_units_minor, income_per_10k_units, rounding)


def mmf_distribute(units_minor: Sequence[int], income_per_10k_units: Decimal,
                   rounding: Rounding) -> IncomeDistribution:
    """Every holder's income for the day and the remainder; holders are independent, so a batch may
    compute them page by page and settle the remainder once from the totals."""
    incomes = tuple(mmf_income(units, income_per_10k_units, rounding) for units in units_minor)
    distributable = mmf_distributable(sum(units_minor), income_per_10k_units, rounding)
    return IncomeDistribution(distributable, incomes, distributable - sum(incomes))


def mmf_compound(units_minor: int, daily_income_per_10k_units: Sequence[Decimal],
                 rounding: Rounding) -> tuple[int, tuple[int, ...]]:
    """Units after a run of days and each day's income: income is reinvested as units (NAV 1.00), so
    each day earns on the units after the previous day's income."""
    if len(daily_income_per_10k_units) > accrual_days_max:
        raise WealthError(f"at most {accrual_days_max} days at once", field="income_per_10k_units")
    incomes: list[int] = []
    for figure in daily_income_per_10k_units:
        income = mmf_income(units_minor, figure, rounding)
        incomes.append(income)
        units_minor += income
    return units_minor, tuple(incomes)


def seven_day_yield_percent(last_7_days_income_per_10k_units: Sequence[Decimal]) -> Decimal:
    """七日年化: [(Σ of the last 7 days' income per 10,000 units ÷ 7) × 365 ÷ 10,000] × 100 %,
    half-up to 3 decimals. Exactly seven figures: a fund younger than a week publishes no yield."""
    figures = list(last_7_days_income_per_10k_units)
    if len(figures) != YIELD_WINDOW_DAYS:
        raise WealthError(f"the 7-day yield needs exactly {YIELD_WINDOW_DAYS} daily figures",
                          field="income_per_10k_units")
    total = sum((Fraction(check_figure(f, field="income_per_10k_units", maximum=income_per_10k_units_max))
                 for f in figures), Fraction(0))
    percent = total / YIELD_WINDOW_DAYS * DAYS_PER_YEAR_FOR_YIELD / UNITS_PER_INCOME_FIGURE * 100
    return Decimal(round_to_int(percent * 10**yield_decimals, Rounding.HALF_UP)).scaleb(-yield_decimals)


# --- order dates on the business calendar ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderDates:
    """T (the trading day the order belongs to) and T+1 (its confirmation, and the first day of income)."""

    trade_date: date
    confirmation_date: date


def order_dates(calendar: MarketCalendar, placed_at: datetime, cutoff: Cutoff = Cutoff()) -> OrderDates:
    """T and T+1 of an order placed at placed_at: an MMF subscription earns from T+1, a NAV order is
    priced at T's NAV and confirmed on T+1, an MMF standard redemption pays out on T+1."""
    trade = calendar.trade_date(placed_at, cutoff)
    return OrderDates(trade, calendar.add_trading_days(trade, 1))


def mmf_last_income_day_of_redemption(dates: OrderDates) -> date:
    """Redeemed units earn through the day before the cash arrives: the redemption day T is earned,
    and so is a weekend or holiday between T and T+1."""
    return dates.confirmation_date - timedelta(days=1)


def check_fast_redemption(amount_minor: int, redeemed_today_minor: int,
                          cap_minor: int = FAST_REDEMPTION_DAILY_CAP_MINOR) -> int:
    """amount_minor itself when, with today's fast redemptions, it stays within the daily cap."""
    if amount_minor <= 0:
        raise WealthError("amount: must be greater than zero", field="amount")
    if redeemed_today_minor + amount_minor > cap_minor:
        left = max(cap_minor - redeemed_today_minor, 0)
        raise FastRedemptionCapExceeded(f"amount: at most {left} minor units left of today's fast "
                                        f"redemption cap of {cap_minor}", field="amount")
    return amount_minor


# --- NAV funds: subscription and redemption --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NavSubscription:
    """A subscription priced: amount = net + fee; units = net ÷ NAV to 0.01 (the sub-cent difference
    between net and units × NAV stays in the fund's assets)."""

    amount_minor: int
    net_minor: int
    fee_minor: int
    units_minor: int


def nav_subscription(amount_minor: int, fee_rate: Decimal, nav: Decimal) -> NavSubscription:
    """net = amount ÷ (1 + fee rate), fee = amount − net, units = net ÷ NAV, each half-up to 0.01."""
    if amount_minor <= 0:
        raise WealthError("amount: must be greater than zero", field="amount")
    rate = Fraction(check_rate(fee_rate, field="fee_rate", maximum=fee_rate_max))
    price = Fraction(check_figure(nav, field="nav", maximum=nav_max, positive=True))
    net = round_to_int(Fraction(amount_minor) / (1 + rate), Rounding.HALF_UP)
    units = round_to_int(Fraction(net) / price, Rounding.HALF_UP)
    return NavSubscription(amount_minor, net, amount_minor - net, units)


@dataclass(frozen=True, slots=True)
class FeeTier:
    """Units held at least held_days_min calendar days (and under the next tier's) pay rate."""

    held_days_min: int
    rate: Decimal


def check_fee_tiers(tiers: Sequence[FeeTier]) -> tuple[FeeTier, ...]:
    """A redemption fee table: starts at day 0, strictly increasing days, and any tier that covers
    holdings under SHORT_HOLDING_DAYS charges at least SHORT_HOLDING_FEE_RATE_MIN."""
    table = tuple(tiers)
    if not 1 <= len(table) <= fee_tiers_max or table[0].held_days_min != 0:
        raise InvalidFeeTable(f"1-{fee_tiers_max} tiers, the first from day 0", field="fee_tiers")
    for earlier, later in zip(table, table[1:], strict=False):
        if later.held_days_min <= earlier.held_days_min:
            raise InvalidFeeTable("tiers in strictly increasing held_days_min", field="fee_tiers")
    for tier in table:
        check_rate(tier.rate, field="fee_tiers", maximum=fee_rate_max)
        if tier.held_days_min < SHORT_HOLDING_DAYS and tier.rate < SHORT_HOLDING_FEE_RATE_MIN:
            raise InvalidFeeTable(f"holdings under {SHORT_HOLDING_DAYS} days pay at least "
                                  f"{SHORT_HOLDING_FEE_RATE_MIN}", field="fee_tiers")
    return table


def redemption_fee_rate(tiers: Sequence[FeeTier], held_days: int) -> Decimal:
    """The rate of the last tier whose held_days_min the holding has reached."""
    rate = tiers[0].rate
    for tier in tiers:
        if held_days >= tier.held_days_min:
            rate = tier.rate
    return rate


@dataclass(frozen=True, slots=True)
class Lot:
    """Units confirmed on one date: the holding period of a redemption is counted per lot."""

    units_minor: int
    confirmed_on: date


@dataclass(frozen=True, slots=True)
class NavRedemption:
    """A redemption priced: gross = units × NAV, fee by holding period (to the fund), net = gross − fee;
    `remaining` is the lots left, oldest first; `taken` the lots redeemed (a NAV correction re-prices
    them)."""

    units_minor: int
    gross_minor: int
    fee_minor: int
    net_minor: int
    remaining: tuple[Lot, ...]
    taken: tuple[Lot, ...] = ()


def nav_redemption(lots: Sequence[Lot], units_minor: int, nav: Decimal, tiers: Sequence[FeeTier],
                   trade_date: date) -> NavRedemption:
    """Redeem units first in, first out: gross half-up to 0.01 on the whole, each lot's fee half-up on
    its share at its holding period's rate (days from its confirmation to T), net = gross − fee."""
    table = check_fee_tiers(tiers)
    price = Fraction(check_figure(nav, field="nav", maximum=nav_max, positive=True))
    if _check_units(units_minor) == 0:
        raise WealthError("units: must be greater than zero", field="units")
    for lot in lots:
        if _check_units(lot.units_minor, field="lots") == 0:
            raise WealthError("lots: a lot holds units", field="lots")
    ordered = sorted(lots, key=lambda lot: lot.confirmed_on)
    if units_minor > sum(lot.units_minor for lot in ordered):
        raise InsufficientUnits("units: more than the position holds", field="units")
    left, fee, remaining, lots_taken = units_minor, 0, [], []
    for lot in ordered:
        taken = min(left, lot.units_minor)
        if taken:
            rate = redemption_fee_rate(table, (trade_date - lot.confirmed_on).days)
            fee += round_to_int(Fraction(taken) * price * Fraction(rate), Rounding.HALF_UP)
            left -= taken
            lots_taken.append(Lot(taken, lot.confirmed_on))
        if lot.units_minor > taken:
            remaining.append(Lot(lot.units_minor - taken, lot.confirmed_on))
    gross = round_to_int(Fraction(units_minor) * price, Rounding.HALF_UP)
    return NavRedemption(units_minor, gross, fee, gross - fee, tuple(remaining), tuple(lots_taken))


# --- fixed-term products ---------------------------------------------------------------------------


class DayCount(StrEnum):
    """The year a rate is quoted over: actual days held over 365 or over 360."""

    ACT_365 = "ACT/365"
    ACT_360 = "ACT/360"

    @property
    def days_per_year(self) -> int:
        return 365 if self is DayCount.ACT_365 else 360


class MaturityInstruction(StrEnum):
    """What happens at maturity, chosen at purchase."""

    PAY_OUT = "pay_out"
    ROLL_OVER_ALL = "roll_over_all"  # principal and interest into a new term
    ROLL_OVER_PRINCIPAL = "roll_over_principal"  # interest paid out, principal into a new term


@dataclass(frozen=True, slots=True)
class FixedTerm:
    """A fixed-term product's terms: term rate, demand rate for early redemption, term, day count."""

    rate: Decimal
    demand_rate: Decimal
    term_days: int
    day_count: DayCount
    minimum_minor: int

    def __post_init__(self) -> None:
        check_rate(self.rate, field="rate", maximum=annual_rate_max)
        check_rate(self.demand_rate, field="demand_rate", maximum=self.rate)
        if not 1 <= self.term_days <= term_days_max:
            raise WealthError(f"term_days: 1-{term_days_max}", field="term_days")
        if self.minimum_minor <= 0:
            raise WealthError("minimum: must be greater than zero", field="minimum")


def simple_interest(principal_minor: int, rate: Decimal, days: int, day_count: DayCount) -> int:
    """principal × rate × days ÷ the day count's year, half-up to 0.01."""
    return round_to_int(Fraction(principal_minor) * Fraction(rate) * days / day_count.days_per_year,
                        Rounding.HALF_UP)


def check_minimum(amount_minor: int, minimum_minor: int) -> int:
    """amount_minor itself when it reaches a product's minimum."""
    if amount_minor < minimum_minor:
        raise BelowMinimum(f"amount: at least {minimum_minor} minor units", field="amount")
    return amount_minor


def check_purchase(terms: FixedTerm, amount_minor: int) -> int:
    """amount_minor itself when it reaches the fixed-term product's minimum."""
    return check_minimum(amount_minor, terms.minimum_minor)


def maturity_date(terms: FixedTerm, value_date: date) -> date:
    """The day the term ends: value date + term days (calendar days; interest is for exactly the term)."""
    return value_date + timedelta(days=terms.term_days)


@dataclass(frozen=True, slots=True)
class Maturity:
    """At maturity: interest for the term, what goes to the wallet, what starts a new term."""

    interest_minor: int
    payout_minor: int
    rolled_over_minor: int


def mature(terms: FixedTerm, principal_minor: int, instruction: MaturityInstruction) -> Maturity:
    """Interest at maturity split by the instruction; payout + rolled over = principal + interest."""
    interest = simple_interest(principal_minor, terms.rate, terms.term_days, terms.day_count)
    rolled = {MaturityInstruction.PAY_OUT: 0,
              MaturityInstruction.ROLL_OVER_ALL: principal_minor + interest,
              MaturityInstruction.ROLL_OVER_PRINCIPAL: principal_minor}[instruction]
    return Maturity(interest, principal_minor + interest - rolled, rolled)


@dataclass(frozen=True, slots=True)
class EarlyRedemption:
    """An early redemption: the redeemed principal earns the demand rate for the days held; the rest
    keeps its term rate to maturity."""

    principal_minor: int
    interest_minor: int
    remaining_principal_minor: int
    partial_redemptions: int


def early_redemption(terms: FixedTerm, principal_minor: int, amount_minor: int, value_date: date,
                     on: date, partial_redemptions: int = 0) -> EarlyRedemption:
    """Redeem amount_minor of principal on the business date `on` before maturity. A partial redemption
    (less than all) is allowed once and must leave at least the product's minimum."""
    if not value_date <= on < maturity_date(terms, value_date):
        raise WealthError("on: early redemption is between the value date and maturity", field="on")
    if amount_minor <= 0:
        raise WealthError("amount: must be greater than zero", field="amount")
    if amount_minor > principal_minor:
        raise InsufficientUnits("amount: more than the principal held", field="amount")
    remaining = principal_minor - amount_minor
    partials = partial_redemptions
    if remaining:
        if partial_redemptions >= partial_early_redemptions_max:
            raise PartialRedemptionUsed("amount: the one partial early redemption was used; redeem all",
                                        field="amount")
        if remaining < terms.minimum_minor:
            raise BelowMinimum(f"amount: must leave at least {terms.minimum_minor} minor units",
                               field="amount")
        partials += 1
    interest = simple_interest(amount_minor, terms.demand_rate, (on - value_date).days, terms.day_count)
    return EarlyRedemption(amount_minor, interest, remaining, partials)
