"""A loan account: the state of one disbursed loan as a deterministic fold of its dated transactions.

Pure rules over domain/loans.py: no clock, no AWS. The schedule is fixed at disbursement; repayments,
prepayments, write-offs and reversals are dated transactions, and business dates are closed one by one
(each closed day accrues its penalty after that day's payments). Applying the same transactions in any
arrival order gives the same account: `apply` folds a transaction that sorts last and reprocesses the
whole history from the disbursement otherwise. The rules, and where they differ from Fineract's, are in
docs/design.md, "The loan account".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from finfaas.domain.loans import (
    DEFAULT_ALLOCATION_ORDER,
    DEFAULT_BUCKETS,
    Bucket,
    Component,
    Dues,
    InterestMethod,
    InvalidLoanTerms,
    InvalidRepayment,
    LoanTerms,
    PrepaymentMode,
    Schedule,
    accrue_penalty,
    allocate,
    check_allocation_order,
    daily_penalty_rate_max,
    days_past_due,
    delinquency_bucket,
    dues_of,
    payoff_quote,
    prepay_partially,
    prepayment_penalty_rate_max,
)
from finfaas.domain.money import transfer_amount_minor_max

transaction_id_chars_max = 128
# A nightly run after an outage closes every missed day; more than a year at once is an operator's error.
close_days_max = 366
ONE_DAY = timedelta(days=1)


class LoanStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"  # nothing outstanding
    WRITTEN_OFF = "written_off"


class OverpaymentRule(StrEnum):
    PREPAY = "prepay"  # what exceeds the installments due prepays principal
    REFUSE = "refuse"  # a repayment larger than what is due is refused whole


class TransactionKind(StrEnum):
    DISBURSEMENT = "disbursement"
    REPAYMENT = "repayment"
    PREPAYMENT = "prepayment"  # without a mode: the payoff; with one: a partial prepayment
    PENALTY_ACCRUAL = "penalty_accrual"  # the business date value_date is closed
    WRITE_OFF = "write_off"
    REVERSAL = "reversal"  # of the repayment or prepayment named by `reverses`


# Within one value date: the money first, then the day's penalty on what is still overdue, then a
# write-off of what the day left, and reversals last (they only name what the fold leaves out).
KIND_ORDER = {kind: order for order, kind in enumerate(TransactionKind)}
_PAYMENTS = frozenset({TransactionKind.REPAYMENT, TransactionKind.PREPAYMENT})
_WITH_AMOUNT = _PAYMENTS | {TransactionKind.DISBURSEMENT}


@dataclass(frozen=True)
class AccountRules:
    """The product settings a loan account follows once disbursed."""

    allocation_order: tuple[Component, ...] = DEFAULT_ALLOCATION_ORDER
    overpayment: OverpaymentRule = OverpaymentRule.REFUSE
    overpayment_mode: PrepaymentMode = PrepaymentMode.SMALLER_INSTALLMENT  # how an overpayment prepays
    daily_penalty_rate: Decimal = Decimal(0)
    prepayment_penalty_rate: Decimal = Decimal(0)
    buckets: tuple[Bucket, ...] = DEFAULT_BUCKETS

    def __post_init__(self) -> None:
        check_allocation_order(self.allocation_order)
        if not isinstance(self.daily_penalty_rate, Decimal) or not 0 <= self.daily_penalty_rate \
                <= daily_penalty_rate_max:
            raise InvalidLoanTerms(f"daily penalty rate must be a Decimal 0-{daily_penalty_rate_max}",
                                   field="daily_penalty_rate")
        if not isinstance(self.prepayment_penalty_rate, Decimal) or not 0 <= self.prepayment_penalty_rate \
                <= prepayment_penalty_rate_max:
            raise InvalidLoanTerms(f"prepayment penalty must be a Decimal 0-{prepayment_penalty_rate_max}",
                                   field="prepayment_penalty_rate")


@dataclass(frozen=True)
class LoanTransaction:
    """One dated transaction of a loan; its id makes it idempotent (the same id twice applies once)."""

    transaction_id: str
    kind: TransactionKind
    value_date: date
    amount_minor: int = 0  # disbursement, repayment, prepayment; 0 for the others
    mode: PrepaymentMode | None = None  # a partial prepayment's choice; None on a payoff
    reverses: str | None = None  # the reversed transaction's id

    def __post_init__(self) -> None:
        if not 0 < len(self.transaction_id) <= transaction_id_chars_max:
            raise InvalidRepayment(f"transaction id must be 1-{transaction_id_chars_max} chars",
                                   field="transaction_id")
        if self.kind in _WITH_AMOUNT:
            if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int) \
                    or not 0 < self.amount_minor <= transfer_amount_minor_max:
                raise InvalidRepayment(f"amount must be 1-{transfer_amount_minor_max} minor units",
                                       field="amount")
        elif self.amount_minor != 0:
            raise InvalidRepayment(f"a {self.kind.value} carries no amount", field="amount")
        if self.mode is not None and self.kind is not TransactionKind.PREPAYMENT:
            raise InvalidRepayment("only a prepayment has a mode", field="mode")
        if (self.reverses is None) != (self.kind is not TransactionKind.REVERSAL):
            raise InvalidRepayment("a reversal, and only a reversal, names what it reverses",
                                   field="reverses")

    @property
    def sort_key(self) -> tuple[date, int, str]:
        """The order of the fold: value date, kind, then id, whatever order transactions arrived in."""
        return self.value_date, KIND_ORDER[self.kind], self.transaction_id


@dataclass(frozen=True)
class Applied:
    """What one transaction did: where its money went, installment by installment."""

    transaction: LoanTransaction
    parts: tuple[tuple[int, Component, int], ...] = ()  # (installment number, component, minor units)
    prepaid_principal_minor: int = 0
    prepayment_penalty_minor: int = 0
    credit_minor: int = 0  # money the loan could not use, held for the customer (reprocessing only)
    written_off: Dues = Dues()
    waived: Dues = Dues()  # interest and fees of periods not yet run, forgiven by a payoff or write-off

    @property
    def allocated_minor(self) -> int:
        return sum(amount for _, _, amount in self.parts)


@dataclass(frozen=True)
class BucketChanged:
    """A closed business date moved the loan to another delinquency bucket (None: not past due)."""

    on: date
    previous: str | None
    bucket: str | None
    days_past_due: int


@dataclass(frozen=True)
class AutoDebitDue:
    """What to collect from the wallet for the business date, owed before that day's penalty."""

    on: date
    amount_minor: int


@dataclass(frozen=True)
class LoanClosed:
    """The loan has nothing outstanding."""

    on: date


Change = BucketChanged | AutoDebitDue | LoanClosed


@dataclass(frozen=True)
class LoanAccount:
    """A disbursed loan: its schedule now, what is owed and paid per installment, its status and days.

    Equal accounts mean equal money everywhere; `history` holds every transaction, reversed ones too.
    """

    terms: LoanTerms
    rules: AccountRules
    disbursed_schedule: Schedule  # fixed at disbursement: reprocessing starts from it
    schedule: Schedule  # after partial prepayments
    dues: tuple[Dues, ...]  # still owed, per installment of `schedule`
    paid: tuple[Dues, ...]  # paid against each installment of `schedule`
    status: LoanStatus
    closed_through: date  # the last business date closed (the disbursement date until the first)
    days_past_due: int
    bucket: str | None
    prepaid_principal_minor: int
    penalty_charged_minor: int
    credit_minor: int
    written_off: Dues
    waived: Dues
    closed_on: date | None
    history: tuple[Applied, ...] = field(default=())

    @property
    def disbursed_minor(self) -> int:
        return self.disbursed_schedule.principal_minor

    @property
    def outstanding_minor(self) -> int:
        """Everything still owed under the schedule: principal, interest, fees and penalties."""
        return sum(d.total_minor for d in self.dues)

    @property
    def principal_outstanding_minor(self) -> int:
        return sum(d.principal_minor for d in self.dues)

    @property
    def reversed_ids(self) -> frozenset[str]:
        return frozenset(a.transaction.reverses for a in self.history if a.transaction.reverses is not None)

    def position(self) -> LoanAccount:
        """The account without its history: what the money looks like, whichever way it got there."""
        return replace(self, history=())

    def transactions(self) -> tuple[LoanTransaction, ...]:
        """What reprocessing needs: every transaction, and one accrual for the last closed date."""
        log = tuple(a.transaction for a in self.history)
        if self.closed_through > self.terms.disbursed_on:
            log += (_close_marker(self.closed_through),)
        return log


# --- building and folding -------------------------------------------------------------------------


def disburse(terms: LoanTerms, schedule: Schedule, transaction_id: str,
             rules: AccountRules | None = None) -> LoanAccount:
    """A new account: the principal of terms disbursed on its date under schedule."""
    return replay(terms, schedule, [LoanTransaction(transaction_id, TransactionKind.DISBURSEMENT,
                                                    terms.disbursed_on, terms.principal_minor)], rules)


def replay(terms: LoanTerms, schedule: Schedule, transactions: Iterable[LoanTransaction],
           rules: AccountRules | None = None, *, strict_id: str | None = None) -> LoanAccount:
    """The account the transactions make, in (value date, kind, id) order, from the disbursement on.

    Reprocessing never refuses money: what a backdated change leaves a later payment unable to use is
    held as credit. Only the transaction named strict_id (a new one) is refused as `apply` would.
    """
    rules = rules or AccountRules()
    log = _checked_log(terms, schedule, transactions)
    closed_max = max((t.value_date for t in log if t.kind is TransactionKind.PENALTY_ACCRUAL),
                     default=terms.disbursed_on)
    reversed_ids = {t.reverses for t in log if t.reverses is not None}
    account: LoanAccount | None = None
    for transaction in log:
        if transaction.kind is TransactionKind.PENALTY_ACCRUAL:
            continue  # only the last closed date counts: every day up to it is closed in date order
        if account is None:
            account = _opened(terms, schedule, rules, transaction)
            continue
        # Close the days before this one (and the day itself for what sorts after the day's accrual).
        day_closes_first = KIND_ORDER[transaction.kind] > KIND_ORDER[TransactionKind.PENALTY_ACCRUAL]
        through = transaction.value_date if day_closes_first else transaction.value_date - ONE_DAY
        account, _ = _close_days(account, min(through, closed_max))
        if transaction.transaction_id in reversed_ids:
            account = replace(account, history=account.history + (Applied(transaction),))
            continue
        account = _fold(account, transaction, strict=transaction.transaction_id == strict_id)
    assert account is not None, "the log starts with its disbursement"
    account, _ = _close_days(account, closed_max)
    return account


def apply(account: LoanAccount, transaction: LoanTransaction) -> LoanAccount:
    """The account once transaction is applied; refused (LoanRuleError naming the field) when it cannot.

    A transaction already applied changes nothing; one dated before what the account has already folded
    (or a reversal) reprocesses the history, so arrival order never matters. A payment is dated at most
    the day after the last closed business date, a write-off or reversal at most that date.
    """
    known = next((a.transaction for a in account.history
                  if a.transaction.transaction_id == transaction.transaction_id), None)
    if known is not None:
        if known != transaction:
            raise InvalidRepayment("transaction exists with different fields", field="transaction_id")
        return account
    if transaction.kind is TransactionKind.DISBURSEMENT:
        raise InvalidRepayment("the loan is already disbursed", field="kind")
    if transaction.kind is TransactionKind.PENALTY_ACCRUAL:
        account, _ = close_of_business(account, transaction.value_date)
        return account
    # Days before a payment are closed before it (their penalty is on what was overdue then), and a
    # write-off or reversal comes after its own day's close: the nightly step closes those days first,
    # or this fold and a later reprocessing would disagree.
    after_day = KIND_ORDER[transaction.kind] > KIND_ORDER[TransactionKind.PENALTY_ACCRUAL]
    if transaction.value_date > account.closed_through + (timedelta(0) if after_day else ONE_DAY):
        raise InvalidRepayment(f"close the business dates up to {transaction.value_date.isoformat()} first",
                               field="value_date")
    last = account.history[-1].transaction
    after_close = (transaction.value_date, KIND_ORDER[transaction.kind]) > (
        account.closed_through, KIND_ORDER[TransactionKind.PENALTY_ACCRUAL])
    if transaction.kind is not TransactionKind.REVERSAL and transaction.sort_key > last.sort_key \
            and after_close:
        _check_open(account, transaction)
        return _fold(account, transaction, strict=True)
    if transaction.kind is TransactionKind.REVERSAL:
        _check_reversal(account, transaction)
    elif transaction.value_date < account.terms.disbursed_on:
        raise InvalidRepayment("a transaction cannot precede the disbursement", field="value_date")
    return replay(account.terms, account.disbursed_schedule, account.transactions() + (transaction,),
                  account.rules, strict_id=transaction.transaction_id)


def close_of_business(account: LoanAccount, business_date: date) -> tuple[LoanAccount, tuple[Change, ...]]:
    """The nightly step for business_date: every day since the last closed one accrues its penalty,
    moves the bucket, and is recorded as closed. A date already closed changes nothing."""
    if business_date <= account.closed_through:
        return account, ()
    if (business_date - account.closed_through).days > close_days_max:
        raise InvalidRepayment(f"at most {close_days_max} days are closed at once", field="business_date")
    since = account.closed_through
    account, changes = _close_days(account, business_date - ONE_DAY)
    # A debit dated business_date is folded before that day's penalty: ask for what is owed before it.
    owed = amount_due(account, business_date) if account.status is LoanStatus.ACTIVE else 0
    account, last_day = _close_days(account, business_date)
    found: list[Change] = [*changes, *last_day]
    if owed:
        found.append(AutoDebitDue(business_date, owed))
    if account.closed_on is not None and since < account.closed_on <= business_date:
        found.append(LoanClosed(account.closed_on))
    return account, tuple(found)


def amount_due(account: LoanAccount, on: date) -> int:
    """What the installments due by `on` still owe, as the account stands."""
    return sum(owed.total_minor for installment, owed in zip(account.schedule.installments, account.dues,
                                                              strict=True) if installment.due_on <= on)


# --- the fold ------------------------------------------------------------------------------------


def _close_marker(on: date) -> LoanTransaction:
    return LoanTransaction(f"close-of-business:{on.isoformat()}", TransactionKind.PENALTY_ACCRUAL, on)


def _checked_log(terms: LoanTerms, schedule: Schedule,
                 transactions: Iterable[LoanTransaction]) -> list[LoanTransaction]:
    log = sorted(transactions, key=lambda t: t.sort_key)
    by_id: dict[str, LoanTransaction] = {}
    for transaction in log:
        if transaction.kind is TransactionKind.PENALTY_ACCRUAL:
            continue
        if by_id.setdefault(transaction.transaction_id, transaction) != transaction:
            raise InvalidRepayment("transaction exists with different fields", field="transaction_id")
    # The same transaction given twice (a redelivery) folds once.
    unique: list[LoanTransaction] = []
    seen: set[str] = set()
    for transaction in log:
        if transaction.kind is TransactionKind.PENALTY_ACCRUAL or transaction.transaction_id not in seen:
            unique.append(transaction)
            seen.add(transaction.transaction_id)
    log = unique
    disbursements = [t for t in log if t.kind is TransactionKind.DISBURSEMENT]
    if len(disbursements) != 1 or log[0] is not disbursements[0]:
        raise InvalidRepayment("a loan has one disbursement, before anything else", field="kind")
    first = disbursements[0]
    if first.value_date != terms.disbursed_on or first.amount_minor != terms.principal_minor \
            or schedule.principal_minor != terms.principal_minor:
        raise InvalidRepayment("the disbursement is the terms' principal on their date", field="amount")
    reversed_seen: set[str] = set()
    for transaction in log:
        if transaction.reverses is None:
            continue
        target = by_id.get(transaction.reverses)
        if target is None or target.kind not in _PAYMENTS or target.value_date > transaction.value_date:
            raise InvalidRepayment("a reversal names an earlier repayment or prepayment", field="reverses")
        if transaction.reverses in reversed_seen:
            raise InvalidRepayment("that payment is already reversed", field="reverses")
        reversed_seen.add(transaction.reverses)
    return log


def _opened(terms: LoanTerms, schedule: Schedule, rules: AccountRules,
            disbursement: LoanTransaction) -> LoanAccount:
    dues = dues_of(schedule)
    return LoanAccount(terms, rules, schedule, schedule, dues, tuple(Dues() for _ in dues), LoanStatus.ACTIVE,
                       terms.disbursed_on, 0, None, 0, 0, 0, Dues(), Dues(), None, (Applied(disbursement),))


def _check_open(account: LoanAccount, transaction: LoanTransaction) -> None:
    closable = transaction.kind in _PAYMENTS or transaction.kind is TransactionKind.WRITE_OFF
    if closable and account.status is not LoanStatus.ACTIVE:
        raise InvalidRepayment(f"the loan is {account.status.value}", field="loan")


def _check_reversal(account: LoanAccount, reversal: LoanTransaction) -> None:
    target = next((a.transaction for a in account.history
                   if a.transaction.transaction_id == reversal.reverses), None)
    if target is None or target.kind not in _PAYMENTS or target.value_date > reversal.value_date:
        raise InvalidRepayment("a reversal names an earlier repayment or prepayment", field="reverses")
    if reversal.reverses in account.reversed_ids:
        raise InvalidRepayment("that payment is already reversed", field="reverses")


def _fold(account: LoanAccount, transaction: LoanTransaction, *, strict: bool) -> LoanAccount:
    """The account after one transaction that sorts after everything folded so far."""
    kind = transaction.kind
    if kind is TransactionKind.REVERSAL:
        applied, after = Applied(transaction), account
    elif kind is TransactionKind.WRITE_OFF:
        applied, after = _write_off(account, transaction, strict=strict)
    elif account.status is not LoanStatus.ACTIVE:
        if strict:
            raise InvalidRepayment(f"the loan is {account.status.value}", field="loan")
        applied, after = Applied(transaction, credit_minor=transaction.amount_minor), account
    elif kind is TransactionKind.PREPAYMENT and transaction.mode is None:
        applied, after = _payoff(account, transaction, strict=strict)
    else:
        applied, after = _repay(account, transaction, strict=strict)
    after = replace(after, history=account.history + (applied,),
                    credit_minor=account.credit_minor + applied.credit_minor)
    if after.status is LoanStatus.ACTIVE and after.outstanding_minor == 0:
        after = replace(after, status=LoanStatus.CLOSED, closed_on=transaction.value_date)
    _check_invariants(after, applied)
    return after


def _repay(account: LoanAccount, transaction: LoanTransaction,
           *, strict: bool) -> tuple[Applied, LoanAccount]:
    """Installments due by the value date first, oldest first in the product's order; then what is
    left prepays (a prepayment, or a repayment under the prepay rule) or is refused."""
    on, amount = transaction.value_date, transaction.amount_minor
    allocation = allocate(amount, account.schedule, account.dues, on, account.rules.allocation_order)
    after = _paid(account, allocation.parts, allocation.dues)
    left = allocation.overpayment_minor
    mode = transaction.mode
    if left and mode is None:
        if account.rules.overpayment is OverpaymentRule.REFUSE:
            if strict:
                raise InvalidRepayment("the repayment is more than is due; the product refuses the rest",
                                       field="amount")
            return Applied(transaction, allocation.parts, credit_minor=left), after
        mode = account.rules.overpayment_mode
        if mode is PrepaymentMode.SHORTER_TERM and account.terms.interest_method is InterestMethod.FLAT:
            mode = PrepaymentMode.SMALLER_INSTALLMENT  # a flat loan's interest does not shrink with its term
    if not left:
        return Applied(transaction, allocation.parts), after
    assert mode is not None, "left over money prepays in a mode"
    try:
        prepaid = _prepaid(after, on, left, mode)
    except InvalidRepayment:
        if strict:
            raise
        return Applied(transaction, allocation.parts, credit_minor=left), after
    return Applied(transaction, allocation.parts, prepaid_principal_minor=left), prepaid


def _prepaid(account: LoanAccount, on: date, amount_minor: int, mode: PrepaymentMode) -> LoanAccount:
    """The account once amount_minor of principal is prepaid with the last installment ended by `on`."""
    ended = sum(1 for i in account.schedule.installments if i.period_end <= on)
    schedule = prepay_partially(account.terms, account.schedule, ended, amount_minor, mode)
    # Installments after `ended` had no payment and no penalty (none was due), so their dues start fresh.
    fresh = dues_of(schedule)[ended:]
    return replace(account, schedule=schedule, dues=account.dues[:ended] + fresh,
                   paid=account.paid[:ended] + tuple(Dues() for _ in fresh),
                   prepaid_principal_minor=account.prepaid_principal_minor + amount_minor)


def _payoff(account: LoanAccount, transaction: LoanTransaction,
            *, strict: bool) -> tuple[Applied, LoanAccount]:
    """Everything owed on the value date, with the prepayment penalty; later periods' interest and fees
    are waived. An amount other than the quote is refused (reprocessing: short, it is a repayment)."""
    on = transaction.value_date
    quote = payoff_quote(account.terms, account.schedule, account.dues, on,
                         account.rules.prepayment_penalty_rate)
    excess = transaction.amount_minor - quote.total_minor
    if strict and excess != 0:
        raise InvalidRepayment(f"the payoff on {on.isoformat()} is {quote.total_minor} minor units",
                               field="amount")
    if excess < 0:
        return _repay(account, transaction, strict=False)
    parts: list[tuple[int, Component, int]] = []
    interest_left = quote.interest_minor
    for installment, owed in zip(account.schedule.installments, account.dues, strict=True):
        # The quote's interest covers ended periods first, then the running one: take it in that order.
        ended = installment.period_end <= on
        interest = owed.interest_minor if ended else min(owed.interest_minor, interest_left)
        interest_left -= interest
        taken = Dues(owed.penalty_minor, owed.fee_minor if ended else 0, interest, owed.principal_minor)
        parts.extend((installment.number, c, taken.of(c))
                     for c in account.rules.allocation_order if taken.of(c))
    assert interest_left == 0, "the quote's interest is owed by the installments"
    paid_total = sum(amount for _, _, amount in parts)
    waived = _sum(account.dues)
    waived = Dues(0, waived.fee_minor - quote.fee_minor, waived.interest_minor - quote.interest_minor, 0)
    cleared = tuple(Dues() for _ in account.dues)
    after = _paid(account, tuple(parts), cleared)
    applied = Applied(transaction, tuple(parts), prepayment_penalty_minor=quote.prepayment_penalty_minor,
                      credit_minor=excess, waived=waived)
    assert paid_total + quote.prepayment_penalty_minor == quote.total_minor, "the payoff pays the quote"
    return applied, replace(after, waived=_plus(account.waived, waived))


def _write_off(account: LoanAccount, transaction: LoanTransaction,
               *, strict: bool) -> tuple[Applied, LoanAccount]:
    """All unpaid principal, and the interest, fees and penalties of periods ended by the value date,
    leave the books; later interest and fees were never earned and are waived. Accruals stop."""
    if account.status is not LoanStatus.ACTIVE:
        if strict:
            raise InvalidRepayment(f"the loan is {account.status.value}", field="loan")
        return Applied(transaction), account
    on = transaction.value_date
    written = waived = Dues()
    for installment, owed in zip(account.schedule.installments, account.dues, strict=True):
        if installment.period_end <= on:
            written = _plus(written, owed)
        else:
            written = _plus(written, Dues(owed.penalty_minor, 0, 0, owed.principal_minor))
            waived = _plus(waived, Dues(0, owed.fee_minor, owed.interest_minor, 0))
    cleared = tuple(Dues() for _ in account.dues)
    after = replace(account, dues=cleared, status=LoanStatus.WRITTEN_OFF,
                    written_off=_plus(account.written_off, written), waived=_plus(account.waived, waived))
    return Applied(transaction, written_off=written, waived=waived), after


def _paid(account: LoanAccount, parts: Sequence[tuple[int, Component, int]],
          dues: tuple[Dues, ...]) -> LoanAccount:
    paid = list(account.paid)
    for number, component, amount in parts:
        paid[number - 1] = paid[number - 1].less(component, -amount)
    return replace(account, dues=dues, paid=tuple(paid))


def _close_days(account: LoanAccount, through: date) -> tuple[LoanAccount, tuple[BucketChanged, ...]]:
    """Close every business date after the last closed one up to `through`: the day's penalty on
    principal overdue that day, then its days past due and bucket."""
    if through <= account.closed_through:
        return account, ()
    changes: list[BucketChanged] = []
    day = account.closed_through
    dues, bucket, days, charged = account.dues, account.bucket, account.days_past_due, 0
    rate = account.rules.daily_penalty_rate
    installments = account.schedule.installments
    while day < through:
        if account.status is LoanStatus.WRITTEN_OFF:
            day = through  # accruals stop and the delinquency freezes as written off
            break
        day += ONE_DAY
        overdue = any(i.due_on < day and d.total_minor for i, d in zip(installments, dues, strict=True))
        if not overdue:
            # Nothing is late: skip to the day after the next due date, or to `through`.
            upcoming = next((i.due_on for i, d in zip(installments, dues, strict=True)
                             if i.due_on >= day and d.total_minor), None)
            if bucket is not None:
                changes.append(BucketChanged(day, bucket, None, 0))
            bucket, days = None, 0
            if upcoming is None or upcoming + ONE_DAY > through:
                day = through
                break
            day = upcoming  # the loop adds the day: the first day it can be overdue
            continue
        if rate:
            before = sum(d.penalty_minor for d in dues)
            dues = accrue_penalty(account.schedule, dues, day, rate)
            charged += sum(d.penalty_minor for d in dues) - before
        days = days_past_due(account.schedule, dues, day)
        now = delinquency_bucket(days, account.rules.buckets)
        if now != bucket:
            changes.append(BucketChanged(day, bucket, now, days))
        bucket = now
    return replace(account, dues=dues, closed_through=through, bucket=bucket, days_past_due=days,
                   penalty_charged_minor=account.penalty_charged_minor + charged), tuple(changes)


# --- invariants ------------------------------------------------------------------------------------


def _sum(dues: Iterable[Dues]) -> Dues:
    total = Dues()
    for owed in dues:
        total = _plus(total, owed)
    return total


def _plus(a: Dues, b: Dues) -> Dues:
    return Dues(a.penalty_minor + b.penalty_minor, a.fee_minor + b.fee_minor,
                a.interest_minor + b.interest_minor, a.principal_minor + b.principal_minor)


def _check_invariants(account: LoanAccount, applied: Applied) -> None:
    """Money is neither made nor lost: every minor unit disbursed or paid is somewhere."""
    assert min((min(d.penalty_minor, d.fee_minor, d.interest_minor, d.principal_minor) for d in account.dues),
               default=0) >= 0, "nothing is owed below zero"
    assert len(account.dues) == len(account.paid) == len(account.schedule.installments), "one row each"
    paid_principal_minor = sum(p.principal_minor for p in account.paid)
    assert account.disbursed_minor == (paid_principal_minor + account.prepaid_principal_minor
                                       + account.written_off.principal_minor
                                       + account.principal_outstanding_minor), "principal is conserved"
    if applied.transaction.kind in _PAYMENTS:
        assert (applied.allocated_minor + applied.prepaid_principal_minor + applied.prepayment_penalty_minor
                + applied.credit_minor) == applied.transaction.amount_minor, "a payment is spent exactly"
