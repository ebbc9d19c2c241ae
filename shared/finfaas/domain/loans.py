"""Loan rules: repayment schedules, day counts, allocation of a repayment, penalties, payoff and prepayment.

Pure rules: no clock, no AWS. Amounts are integers of minor units at the edges and `Decimal` inside;
every rounding is to a whole minor unit, half to even (Fineract's default), and the last installment
absorbs what rounding left over, so the principal of a schedule sums to the principal lent exactly.
"""

from __future__ import annotations

import calendar as gregorian
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from enum import StrEnum
from fractions import Fraction

from finfaas.domain.calendar import DateOutsideCalendar, MarketCalendar
from finfaas.domain.money import transfer_amount_minor_max

term_months_max = 600  # fifty years of monthly installments
grace_months_max = 60
annual_rate_max = Decimal(1)  # 100 % a year: anything above is a typing error, not a product
daily_penalty_rate_max = Decimal("0.01")  # 1 % of overdue principal a day
prepayment_penalty_rate_max = Decimal("0.1")  # 10 % of the principal prepaid
# Principal below 10**24 and rates of a few digits: 60 significant digits never round inside a formula.
_CONTEXT = Context(prec=60)
_ONE = Decimal(1)
_MONTHS_PER_YEAR = 12
emi_adjustments_max = 8  # tuning the equal installment converges in one or two steps


class LoanRuleError(ValueError):
    """Loan terms or a loan operation break a rule; `field` names the input at fault."""

    code = "loan_rule_error"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class InvalidLoanTerms(LoanRuleError):
    """A principal, term, rate or grace period is outside what a schedule can be built for."""

    code = "invalid_loan_terms"


class InvalidRepayment(LoanRuleError):
    """A repayment, prepayment or accrual was asked with an amount, date or installment that cannot apply."""

    code = "invalid_repayment"


class Amortization(StrEnum):
    EQUAL_INSTALLMENTS = "equal_installments"  # French amortisation, 等额本息
    EQUAL_PRINCIPAL = "equal_principal"  # 等额本金


class InterestMethod(StrEnum):
    DECLINING_BALANCE = "declining_balance"
    FLAT = "flat"


class DayCount(StrEnum):
    THIRTY_360 = "30/360"  # 30E/360: day 31 and the last day of February count as the 30th
    ACT_365 = "ACT/365"  # actual days over 365, leap years too (ACT/365 Fixed)
    ACT_ACT = "ACT/ACT"  # ISDA: the days in each calendar year over that year's length


class Component(StrEnum):
    PENALTY = "penalty"
    FEE = "fee"
    INTEREST = "interest"
    PRINCIPAL = "principal"


DEFAULT_ALLOCATION_ORDER = (Component.PENALTY, Component.FEE, Component.INTEREST, Component.PRINCIPAL)


class PrepaymentMode(StrEnum):
    SHORTER_TERM = "shorter_term"  # keep the installment, pay off sooner
    SMALLER_INSTALLMENT = "smaller_installment"  # keep the term, pay less each month


def to_minor(value: Decimal) -> int:
    """A Decimal amount of minor units rounded to a whole minor unit, half to even."""
    return int(value.quantize(_ONE, rounding=ROUND_HALF_EVEN))


# --- dates and day counts ---------------------------------------------------------------------------


def add_months(start: date, months: int) -> date:
    """The same day `months` later, or that month's last day when it is shorter (Jan 31 + 1 = Feb 28/29)."""
    index = start.year * _MONTHS_PER_YEAR + start.month - 1 + months
    year, month = divmod(index, _MONTHS_PER_YEAR)
    return date(year, month + 1, min(start.day, gregorian.monthrange(year, month + 1)[1]))


def roll_due_date(day: date, business_calendar: MarketCalendar | None) -> date:
    """The due date a customer is held to: the next trading day when day is not one.

    A year the calendar was not configured for keeps the nominal date: its holidays are unknown, and a
    schedule of thirty years cannot wait for thirty years of calendars.
    """
    if business_calendar is None:
        return day
    try:
        return day if business_calendar.is_trading_day(day) else business_calendar.next_trading_day(day)
    except DateOutsideCalendar:
        return day


def _thirty_360_day(day: date) -> int:
    last_of_february = day.month == 2 and day.day == gregorian.monthrange(day.year, 2)[1]
    return 30 if day.day == 31 or last_of_february else day.day


def year_fraction(start: date, end: date, day_count: DayCount) -> Fraction:
    """The fraction of a year from start to end (end excluded) under day_count, exactly."""
    if end < start:
        raise InvalidRepayment(f"{end.isoformat()} is before {start.isoformat()}", field="date")
    if day_count is DayCount.THIRTY_360:
        days = (360 * (end.year - start.year) + 30 * (end.month - start.month)
                + _thirty_360_day(end) - _thirty_360_day(start))
        return Fraction(days, 360)
    if day_count is DayCount.ACT_365:
        return Fraction((end - start).days, 365)
    fraction = Fraction(0)
    cursor = start
    while cursor < end:
        year_end = min(date(cursor.year + 1, 1, 1), end)
        fraction += Fraction((year_end - cursor).days, 366 if gregorian.isleap(cursor.year) else 365)
        cursor = year_end
    return fraction


def _times(amount: Decimal, fraction: Fraction) -> Decimal:
    """amount x fraction with a single division, so a day count adds no rounding of its own."""
    return amount * fraction.numerator / fraction.denominator


# --- terms and schedules -------------------------------------------------------------------------


@dataclass(frozen=True)
class LoanTerms:
    """What a schedule is built from: the product's rules applied to one amount, term and date."""

    principal_minor: int
    annual_rate: Decimal  # nominal, 0.12 = 12 % a year
    term_months: int
    disbursed_on: date
    amortization: Amortization = Amortization.EQUAL_INSTALLMENTS
    interest_method: InterestMethod = InterestMethod.DECLINING_BALANCE
    day_count: DayCount = DayCount.THIRTY_360
    principal_grace_months: int = 0  # the first installments carry no principal
    interest_grace_months: int = 0  # and no interest: it is deferred to the first installment after
    installment_fee_minor: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.principal_minor, bool) or not isinstance(self.principal_minor, int) \
                or not 0 < self.principal_minor <= transfer_amount_minor_max:
            raise InvalidLoanTerms(f"principal must be 1-{transfer_amount_minor_max} minor units",
                                   field="principal")
        if not isinstance(self.annual_rate, Decimal) or not self.annual_rate.is_finite() \
                or not 0 <= self.annual_rate <= annual_rate_max:
            raise InvalidLoanTerms(f"annual rate must be a Decimal 0-{annual_rate_max}", field="annual_rate")
        months = (self.term_months, self.principal_grace_months, self.interest_grace_months)
        if any(isinstance(m, bool) or not isinstance(m, int) for m in months):
            raise InvalidLoanTerms("months are whole numbers", field="term_months")
        if not 1 <= self.term_months <= term_months_max:
            raise InvalidLoanTerms(f"term must be 1-{term_months_max} months", field="term_months")
        if not 0 <= self.principal_grace_months <= min(grace_months_max, self.term_months - 1):
            raise InvalidLoanTerms("principal grace must leave at least one installment with principal",
                                   field="principal_grace_months")
        # Deferred interest is paid with the first installment that also repays principal, so the
        # equal installments that follow stay equal.
        if not 0 <= self.interest_grace_months <= self.principal_grace_months:
            raise InvalidLoanTerms("interest grace must be 0 up to the principal grace",
                                   field="interest_grace_months")
        if not 0 <= self.installment_fee_minor <= transfer_amount_minor_max:
            raise InvalidLoanTerms("installment fee must be 0 or more minor units", field="installment_fee")


@dataclass(frozen=True)
class Installment:
    """One installment: its period (interest runs from period_start to period_end), due date and parts."""

    number: int
    period_start: date
    period_end: date  # nominal: interest is counted to here
    due_on: date  # period_end rolled to a trading day: overdue only after this
    principal_minor: int
    interest_minor: int
    fee_minor: int
    balance_minor: int  # principal outstanding once this installment is paid

    @property
    def total_minor(self) -> int:
        return self.principal_minor + self.interest_minor + self.fee_minor


@dataclass(frozen=True)
class Schedule:
    """A repayment schedule and its totals."""

    principal_minor: int  # what the installments repay: the principal lent, less any prepaid apart
    installments: tuple[Installment, ...]

    @property
    def interest_minor(self) -> int:
        return sum(i.interest_minor for i in self.installments)

    @property
    def fee_minor(self) -> int:
        return sum(i.fee_minor for i in self.installments)

    @property
    def total_minor(self) -> int:
        return sum(i.total_minor for i in self.installments)

    def __post_init__(self) -> None:
        assert sum(i.principal_minor for i in self.installments) == self.principal_minor, "principal sums"
        assert self.installments[-1].balance_minor == 0, "the balance ends at zero"


def annuity_minor(principal_minor: int, monthly_rate: Decimal, count: int) -> int:
    """The equal installment repaying principal over count months at monthly_rate, rounded."""
    with localcontext(_CONTEXT):
        if monthly_rate == 0:
            return to_minor(Decimal(principal_minor) / count)
        return to_minor(Decimal(principal_minor) * monthly_rate / (_ONE - (_ONE + monthly_rate) ** -count))


def build_schedule(terms: LoanTerms, business_calendar: MarketCalendar | None = None) -> Schedule:
    """The full repayment schedule of terms; due dates rolled to trading days of business_calendar."""
    return Schedule(terms.principal_minor, _installments(
        terms, business_calendar, first_number=1, period_start=terms.disbursed_on,
        balance_minor=terms.principal_minor, count=terms.term_months,
        principal_grace=terms.principal_grace_months, interest_grace=terms.interest_grace_months))


def _installments(terms: LoanTerms, business_calendar: MarketCalendar | None, *, first_number: int,
                  period_start: date, balance_minor: int, count: int, principal_grace: int = 0,
                  interest_grace: int = 0, installment_minor: int | None = None,
                  principal_part_minor: int | None = None, stop_when_repaid: bool = False,
                  ) -> tuple[Installment, ...]:
    """count installments from period_start repaying balance_minor, the equal installment tuned so the
    last one (which takes the rounding residue) is as close to the others as it can be."""
    def rows(installment: int | None) -> tuple[Installment, ...]:
        return _rows(terms, business_calendar, first_number=first_number, period_start=period_start,
                     balance_minor=balance_minor, count=count, principal_grace=principal_grace,
                     interest_grace=interest_grace, installment_minor=installment,
                     principal_part_minor=principal_part_minor, stop_when_repaid=stop_when_repaid)

    annuity = terms.amortization is Amortization.EQUAL_INSTALLMENTS \
        and terms.interest_method is InterestMethod.DECLINING_BALANCE
    if installment_minor is not None or not annuity:
        return rows(installment_minor)
    with localcontext(_CONTEXT):
        amortizing = Decimal(count - principal_grace)
        monthly_rate = terms.annual_rate / _MONTHS_PER_YEAR
        installment_minor = annuity_minor(balance_minor, monthly_rate, int(amortizing))
        best = rows(installment_minor)
        # Fineract's progressive EMI: move the installment by the last one's excess spread over the
        # amortizing months (rounded half to even) while that brings the last installment closer.
        for _ in range(emi_adjustments_max):
            excess = _excess(best[-1], installment_minor)
            step = to_minor(Decimal(excess) / amortizing)
            if step == 0:
                break
            candidate = rows(installment_minor + step)
            if abs(_excess(candidate[-1], installment_minor + step)) >= abs(excess):
                break
            best, installment_minor = candidate, installment_minor + step
    return best


def _excess(last: Installment, installment_minor: int) -> int:
    return last.principal_minor + last.interest_minor - installment_minor


def _rows(terms: LoanTerms, business_calendar: MarketCalendar | None, *, first_number: int,
          period_start: date, balance_minor: int, count: int, principal_grace: int,
          interest_grace: int, installment_minor: int | None, principal_part_minor: int | None,
          stop_when_repaid: bool) -> tuple[Installment, ...]:
    """count installments from period_start repaying balance_minor; the last takes the rounding residue.

    installment_minor (equal installments) or principal_part_minor (equal principal) fixes what each
    installment repays; stop_when_repaid ends the schedule as soon as the balance is 0 (shorter term).
    """
    amortizing = count - principal_grace
    with localcontext(_CONTEXT):
        monthly_rate = terms.annual_rate / _MONTHS_PER_YEAR
        # Flat interest is owed on the whole principal for every month of the term, grace months too.
        flat_left = to_minor(Decimal(balance_minor) * monthly_rate * count)
        flat_each = to_minor(Decimal(flat_left) / count)
        if installment_minor is None:
            installment_minor = annuity_minor(balance_minor, monthly_rate, amortizing)
        if principal_part_minor is None:
            principal_part_minor = to_minor(Decimal(balance_minor) / amortizing)
    deferred = 0
    rows: list[Installment] = []
    for offset in range(count):
        number = first_number + offset
        end = add_months(terms.disbursed_on, number)
        last = offset == count - 1
        if terms.interest_method is InterestMethod.FLAT:
            interest = flat_left if last else min(flat_each, flat_left)
            flat_left -= interest
        else:
            with localcontext(_CONTEXT):
                interest = to_minor(_times(Decimal(balance_minor) * terms.annual_rate,
                                           year_fraction(period_start, end, terms.day_count)))
        if offset < principal_grace:
            principal = 0
        elif last:
            principal = balance_minor
        elif terms.amortization is Amortization.EQUAL_PRINCIPAL \
                or terms.interest_method is InterestMethod.FLAT:
            principal = min(principal_part_minor, balance_minor)
        else:
            # Never negative amortisation: a period longer than the month the annuity assumes may
            # charge more interest than the installment; the principal part is then 0, not less.
            principal = min(max(installment_minor - interest, 0), balance_minor)
        if offset < interest_grace:
            deferred, interest = deferred + interest, 0
        else:
            deferred, interest = 0, interest + deferred
        balance_minor -= principal
        rows.append(Installment(number, period_start, end, roll_due_date(end, business_calendar),
                                principal, interest, terms.installment_fee_minor, balance_minor))
        period_start = end
        if stop_when_repaid and balance_minor == 0:
            break
    return tuple(rows)


# --- what is owed, and paying it ----------------------------------------------------------------


_DUES_FIELDS = {component: f"{component.value}_minor" for component in Component}


@dataclass(frozen=True)
class Dues:
    """What is still owed on one installment, by component."""

    penalty_minor: int = 0
    fee_minor: int = 0
    interest_minor: int = 0
    principal_minor: int = 0

    def of(self, component: Component) -> int:
        return int(getattr(self, _DUES_FIELDS[component]))

    def less(self, component: Component, amount_minor: int) -> Dues:
        return replace(self, **{_DUES_FIELDS[component]: self.of(component) - amount_minor})

    @property
    def total_minor(self) -> int:
        return self.penalty_minor + self.fee_minor + self.interest_minor + self.principal_minor


def dues_of(schedule: Schedule) -> tuple[Dues, ...]:
    """Everything a fresh schedule owes, installment by installment."""
    return tuple(Dues(0, i.fee_minor, i.interest_minor, i.principal_minor) for i in schedule.installments)


@dataclass(frozen=True)
class Allocation:
    """Where a repayment went: (installment number, component, minor units) in order, and what was left."""

    parts: tuple[tuple[int, Component, int], ...]
    overpayment_minor: int
    dues: tuple[Dues, ...]  # what is owed after the repayment

    @property
    def allocated_minor(self) -> int:
        return sum(amount for _, _, amount in self.parts)


def check_allocation_order(order: Sequence[Component]) -> tuple[Component, ...]:
    """The order itself when it names each component exactly once."""
    if sorted(order) != sorted(Component):
        raise InvalidLoanTerms("the allocation order names penalty, fee, interest and principal once each",
                               field="allocation_order")
    return tuple(order)


def allocate(amount_minor: int, schedule: Schedule, dues: Sequence[Dues], on: date,
             order: Sequence[Component] = DEFAULT_ALLOCATION_ORDER) -> Allocation:
    """Spread a repayment made on `on` over the installments, oldest first, each in `order`.

    Installments due by `on` are paid in full before the next one, component by component (Fineract's
    per-installment strategy). Nothing goes to an installment not yet due: what is left is the
    overpayment, for the caller to prepay with or refuse.
    """
    _check_amount(amount_minor, "amount")
    order = check_allocation_order(order)
    assert len(dues) == len(schedule.installments), "one Dues per installment"
    left = amount_minor
    parts: list[tuple[int, Component, int]] = []
    after = list(dues)
    for index, installment in enumerate(schedule.installments):
        if installment.due_on > on or left == 0:
            break
        if after[index].total_minor == 0:
            continue  # paid already: a loan's repayments would otherwise walk every paid row again
        for component in order:
            taken = min(left, after[index].of(component))
            if taken:
                parts.append((installment.number, component, taken))
                after[index] = after[index].less(component, taken)
                left -= taken
    allocation = Allocation(tuple(parts), left, tuple(after))
    assert allocation.allocated_minor + allocation.overpayment_minor == amount_minor, "money is conserved"
    return allocation


def _check_amount(amount_minor: int, field: str) -> None:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) \
            or not 0 < amount_minor <= transfer_amount_minor_max:
        raise InvalidRepayment(f"{field} must be 1-{transfer_amount_minor_max} minor units", field=field)


# --- overdue: penalties, days past due, buckets ----------------------------------------------------


def accrue_penalty(schedule: Schedule, dues: Sequence[Dues], on: date,
                   daily_rate: Decimal) -> tuple[Dues, ...]:
    """The dues after one day's penalty for `on`: daily_rate times each overdue installment's unpaid
    principal, rounded per installment (the nightly job accrues one business date at a time)."""
    if not isinstance(daily_rate, Decimal) or not 0 <= daily_rate <= daily_penalty_rate_max:
        raise InvalidLoanTerms(f"daily penalty rate must be a Decimal 0-{daily_penalty_rate_max}",
                               field="daily_penalty_rate")
    assert len(dues) == len(schedule.installments), "one Dues per installment"
    after = list(dues)
    with localcontext(_CONTEXT):
        for index, installment in enumerate(schedule.installments):
            if installment.due_on < on and after[index].principal_minor:
                penalty = to_minor(Decimal(after[index].principal_minor) * daily_rate)
                after[index] = replace(after[index], penalty_minor=after[index].penalty_minor + penalty)
    return tuple(after)


def days_past_due(schedule: Schedule, dues: Sequence[Dues], on: date) -> int:
    """Days since the due date of the oldest installment still owing anything; 0 when none is overdue."""
    for installment, owed in zip(schedule.installments, dues, strict=True):
        if owed.total_minor and installment.due_on < on:
            return (on - installment.due_on).days
    return 0


@dataclass(frozen=True)
class Bucket:
    """A delinquency bucket: days past due from first_day up to last_day (None: no upper end)."""

    name: str
    first_day: int
    last_day: int | None = None


DEFAULT_BUCKETS = (Bucket("1-10", 1, 10), Bucket("11-30", 11, 30), Bucket("31-60", 31, 60), Bucket("61+", 61))


def delinquency_bucket(days: int, buckets: Sequence[Bucket] = DEFAULT_BUCKETS) -> str | None:
    """The bucket days past due fall in; None for a loan that is not past due."""
    for bucket in buckets:
        if days >= bucket.first_day and (bucket.last_day is None or days <= bucket.last_day):
            return bucket.name
    return None


# --- payoff and prepayment --------------------------------------------------------------------------


@dataclass(frozen=True)
class Payoff:
    """What settles a loan in full on a date."""

    principal_minor: int
    interest_minor: int  # unpaid interest of past periods plus the current period's to the date
    fee_minor: int  # unpaid fees of installments already due; future fees are not charged
    penalty_minor: int
    prepayment_penalty_minor: int  # the product's percentage of the principal paid before its time

    @property
    def total_minor(self) -> int:
        return (self.principal_minor + self.interest_minor + self.fee_minor + self.penalty_minor
                + self.prepayment_penalty_minor)


def payoff_quote(terms: LoanTerms, schedule: Schedule, dues: Sequence[Dues], on: date,
                 prepayment_penalty_rate: Decimal = Decimal(0)) -> Payoff:
    """The amount that closes the loan on `on`.

    The current period's interest is its scheduled interest prorated by the day count from the period's
    start to `on`, less what was already paid of it; later periods' interest is not owed. The prepayment
    penalty applies to the principal of installments not yet due.
    """
    if not isinstance(prepayment_penalty_rate, Decimal) or not 0 <= prepayment_penalty_rate \
            <= prepayment_penalty_rate_max:
        raise InvalidLoanTerms(f"prepayment penalty must be a Decimal 0-{prepayment_penalty_rate_max}",
                               field="prepayment_penalty_rate")
    if on < terms.disbursed_on:
        raise InvalidRepayment("a payoff date cannot precede the disbursement", field="date")
    principal = interest = fee = penalty = early_principal = 0
    for installment, owed in zip(schedule.installments, dues, strict=True):
        principal += owed.principal_minor
        penalty += owed.penalty_minor
        if installment.period_end <= on:
            interest += owed.interest_minor
            fee += owed.fee_minor
            continue
        early_principal += owed.principal_minor
        if installment.period_start < on:
            whole = year_fraction(installment.period_start, installment.period_end, terms.day_count)
            part = year_fraction(installment.period_start, on, terms.day_count)
            with localcontext(_CONTEXT):
                accrued = to_minor(_times(Decimal(installment.interest_minor), part / whole)) if whole else 0
            paid = installment.interest_minor - owed.interest_minor
            interest += max(accrued - paid, 0)
    with localcontext(_CONTEXT):
        prepayment_penalty = to_minor(Decimal(early_principal) * prepayment_penalty_rate)
    return Payoff(principal, interest, fee, penalty, prepayment_penalty)


def prepay_partially(terms: LoanTerms, schedule: Schedule, after_number: int, amount_minor: int,
                     mode: PrepaymentMode, business_calendar: MarketCalendar | None = None) -> Schedule:
    """The schedule once amount_minor of principal is prepaid together with installment after_number.

    The prepayment reduces the balance from that installment's period end; installments up to it are
    unchanged and the rest are recomputed: the same installment and fewer of them (shorter_term), or as
    many as before, each smaller (smaller_installment).
    """
    _check_amount(amount_minor, "amount")
    if not 1 <= after_number < len(schedule.installments):
        raise InvalidRepayment("a prepayment goes with an installment before the last", field="installment")
    # Interest deferred by the grace is owed with the first installment after it: prepaying before then
    # would recompute that installment without it.
    if after_number < terms.interest_grace_months:
        raise InvalidRepayment("no partial prepayment before the interest grace ends", field="installment")
    kept = schedule.installments[:after_number]
    remaining = schedule.installments[after_number:]
    # What the schedule still repays, not kept[-1].balance_minor: an earlier prepayment with the same
    # installment lowered the balance without changing that row.
    balance = schedule.principal_minor - sum(i.principal_minor for i in kept)
    if amount_minor >= balance:
        raise InvalidRepayment("a partial prepayment leaves principal to repay; quote a payoff instead",
                               field="amount")
    grace_left = sum(1 for i in remaining if i.number <= terms.principal_grace_months)
    interest_grace_left = sum(1 for i in remaining if i.number <= terms.interest_grace_months)
    fixed_installment = fixed_principal = None
    if mode is PrepaymentMode.SHORTER_TERM:
        if terms.interest_method is InterestMethod.FLAT:
            raise InvalidRepayment("a flat-interest loan can only be prepaid for a smaller installment",
                                   field="mode")
        fixed_installment, fixed_principal = _regular_installment(terms, schedule)
    rows = _installments(terms, business_calendar, first_number=after_number + 1,
                         period_start=remaining[0].period_start, balance_minor=balance - amount_minor,
                         count=len(remaining), principal_grace=grace_left, interest_grace=interest_grace_left,
                         installment_minor=fixed_installment, principal_part_minor=fixed_principal,
                         stop_when_repaid=mode is PrepaymentMode.SHORTER_TERM)
    # A prepayment changes amounts, not dates: each installment left keeps the due date the schedule was
    # fixed with (rolled by the calendar of its disbursement), whatever calendar is at hand now.
    dated = tuple(replace(row, due_on=old.due_on) if row.period_end == old.period_end else row
                  for row, old in zip(rows, remaining, strict=False))
    return Schedule(schedule.principal_minor - amount_minor, kept + dated)


def _regular_installment(terms: LoanTerms, schedule: Schedule) -> tuple[int | None, int | None]:
    """The installment and principal part the customer pays now: those of the last installment that
    repays principal, carries no deferred interest and is not the last (which holds the residue)."""
    for installment in reversed(schedule.installments[:-1]):
        grace = terms.interest_grace_months
        carries_deferred = grace > 0 and installment.number == grace + 1
        if installment.number > terms.principal_grace_months and not carries_deferred:
            return installment.principal_minor + installment.interest_minor, installment.principal_minor
    return None, None
