"""The loans nightly job: close a business date on every active loan, one orchestrator execution a date.

The state machine (infra/statemachines/loans-nightly.asl.json) splits the loans into segments closed at
once, each paging through its active loans and asking this service to close each page. A page's loans
and close records are read in one batch; each loan's account is the fold of its stored transactions
(domain/loan_account.py) up to its last closed date; `close_of_business` closes the days to the new
date, and the loan's close record, the night's events and the loan put over the version read commit
together, many loans a transaction. A loan opted in to auto-debit is repaid from its wallet on a due
date in its own ledger transaction with the same writes. A date is recorded once: a rerun, or a page
retried after a crash, finds it recorded and writes nothing. docs/design.md, "The loans nightly job".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from finfaas.domain.errors import InsufficientFunds, LedgerError
from finfaas.domain.ledger import AccountStatus
from finfaas.domain.loan_account import (
    ONE_DAY,
    AutoDebitDue,
    BucketChanged,
    LoanAccount,
    LoanClosed,
    LoanTransaction,
    TransactionKind,
    amount_due,
    apply,
    close_of_business,
    replay,
)
from finfaas.domain.loans import LoanRuleError, Schedule
from finfaas.platform.logging import get_logger
from finfaas.services.loans.errors import InvalidLoanRequest, LoanBusy
from finfaas.services.loans.model import (
    CloseWrite,
    Loan,
    LoanClose,
    LoanEvent,
    LoanProduct,
    LoanStatus,
)
from finfaas.services.loans.ports import (
    LoanLedger,
    LoanNightlyRepository,
    LoanProducts,
    LoanRepository,
    Orchestrator,
    WalletAccounts,
)
from finfaas.services.loans.service import Leg, ledger_legs

NIGHTLY_STATE_MACHINE = "loans-nightly"
BUCKET_CHANGED = "loan.bucket_changed"
LOAN_CLOSED = "loan.closed"
AUTO_DEBITED = "loan.auto_debited"
AUTO_DEBIT_FAILED = "loan.auto_debit_failed"
INSUFFICIENT_FUNDS = "insufficient_funds"
ACCOUNT_UNAVAILABLE = "account_unavailable"
# The night's loans split into this many Scan segments at most, each closed by its own chunk at once.
segments_max = 16
# A page is one Task of the state machine: small enough to finish well inside its timeout.
page_loans_max = 100
# A repayment committed between the job's read and its write: read again, a few times at most.
close_attempts_max = 3
_log = get_logger("loans_nightly")


@dataclass(frozen=True)
class NightlyPage:
    """A page of active loans' ids and the cursor of the next (None: the last page)."""

    loan_ids: tuple[str, ...]
    next: str | None


@dataclass(frozen=True)
class NightlyResult:
    """What closing a page did: loans whose date was recorded now, loans found already done (a rerun),
    and loans the job could not fold (their stored history is not one the account fold reads)."""

    closed: int
    unchanged: int
    auto_debits_due_minor: int  # owed on the date by the closed loans, for the auto-debit step
    unprocessable: tuple[str, ...]


def execution_name(business_date: date) -> str:
    """One execution per business date: starting it again finds the first."""
    return f"loans-nightly-{business_date.isoformat()}"


def account_of(loan: Loan, product: LoanProduct, close: LoanClose | None) -> LoanAccount:
    """The loan's account: its stored transactions folded (Loan.account), with every day to the last one
    the job closed closed too. Raises LoanRuleError when the history cannot fold."""
    account = loan.account(product)
    done = account.closed_through
    if close is None or (done is not None and done >= close.closed_through):
        return account
    assert loan.disbursed_on is not None, f"loan {loan.loan_id} is active, so disbursed"
    marker = LoanTransaction(f"close-of-business:{close.closed_through.isoformat()}",
                             TransactionKind.PENALTY_ACCRUAL, close.closed_through)
    terms = product.terms(loan.principal_minor, loan.term_months, loan.disbursed_on)
    disbursed = Schedule(loan.principal_minor, loan.disbursed_installments)
    return replay(terms, disbursed, [*loan.transactions, marker], product.account_rules())


def _events(loan_id: str, changes: Sequence[object]) -> list[LoanEvent]:
    events: list[LoanEvent] = []
    for change in changes:
        if isinstance(change, BucketChanged):
            events.append(LoanEvent(BUCKET_CHANGED, {
                "loan_id": loan_id, "on": change.on.isoformat(), "previous": change.previous,
                "bucket": change.bucket, "days_past_due": change.days_past_due}))
        elif isinstance(change, LoanClosed):
            events.append(LoanEvent(LOAN_CLOSED, {"loan_id": loan_id, "on": change.on.isoformat()}))
    return events


class _Unfoldable(Exception):
    """A loan the job leaves for an operator: nothing is written for it."""


class _LoanMoved(Exception):
    """The loan or its close record changed since they were read: read them again."""


def autodebit_transfer_id(loan_id: str, due_on: date) -> str:
    """One auto-debit per (loan, due date): its ledger transfer's id, a second attempt finds it taken."""
    return f"{loan_id}-autodebit-{due_on.isoformat()}"


def auto_debit_date(loan: Loan, last_closed: date, day: date) -> date | None:
    """The due date the night collects for, when the loan is opted in: the last installment due date
    after the job's last closed date and up to `day` (a night closing several days collects once, for
    everything due by the latest); None when there is none or the debit was already made."""
    if not loan.auto_debit:
        return None
    due = [i.due_on for i in loan.installments if last_closed < i.due_on <= day]
    if not due or any(t.transaction_id == autodebit_transfer_id(loan.loan_id, due[-1])
                      for t in loan.transactions):
        return None
    return due[-1]


def collectable_minor(due_minor: int, available_minor: int) -> int:
    """What an auto-debit takes: the amount due, or all the wallet holds when that is less (never below 0)."""
    return max(0, min(due_minor, available_minor))


# What _available answers for a wallet that is gone or not open: nothing to take, and the reason differs.
WALLET_UNUSABLE = -1


@dataclass(frozen=True)
class _Night:
    """A loan's night as planned from what was read: the write (None: an auto-debit is due, and the
    wallet must be read first), what the installments due by the date still owed before it, and the
    auto-debit's ledger legs (the ledger then makes the write, in the money's transaction)."""

    write: CloseWrite | None
    owed_minor: int = 0
    legs: tuple[Leg, ...] = ()


class _NightWrite:
    """The ledger's TransactionExtra for an auto-debit: the loan's night (loan put, close record, events)
    in the repayment's own transaction."""

    def __init__(self, items: list[tuple[Any, Any]]) -> None:
        self._close, self._loan, *self._events = items

    def put_for(self, result: Any) -> tuple[Any, Any]:
        return self._loan

    def more_puts_for(self, result: Any) -> list[tuple[Any, Any]]:
        return [self._close, *self._events]

    def conflicted(self, raw_item: dict[str, Any] | None) -> None:
        raise _LoanMoved()

    def more_conflicted(self, number: int, raw_item: dict[str, Any] | None) -> None:
        raise _LoanMoved()

    def committed(self) -> None:
        return None


def utc_now() -> datetime:
    return datetime.now(UTC)


class LoansNightlyService:
    """Starts the night's execution and serves its pages: which loans, and closing them."""

    def __init__(self, products: LoanProducts, loans: LoanRepository, nightly: LoanNightlyRepository,
                 business_date: Callable[[], date], orchestrator: Orchestrator,
                 clock: Callable[[], datetime] = utc_now, page_loans: int = page_loans_max,
                 wallets: WalletAccounts | None = None, ledger: LoanLedger | None = None) -> None:
        assert 0 < page_loans <= page_loans_max
        self._page_loans = page_loans
        self._products = products
        self._loans = loans
        self._nightly = nightly
        self._business_date = business_date
        self._orchestrator = orchestrator
        self._clock = clock
        self._wallets = wallets
        self._ledger = ledger

    def start(self, business_date: date | None = None) -> tuple[date, dict[str, Any]]:
        """Starts (or finds) the execution closing business_date; by default the day before the business
        date (that day's payments are in; today's may still come)."""
        day = self.checked_date(business_date or self._business_date() - timedelta(days=1))
        started = self._orchestrator.start(NIGHTLY_STATE_MACHINE, execution_name(day),
                                           {"business_date": day.isoformat(), "cursor": None},
                                           reference=execution_name(day))
        return day, started

    def checked_date(self, business_date: date | None) -> date:
        """business_date, refused if after the current business date: a day is closed once it has run."""
        today = self._business_date()
        day = business_date or today
        if day > today:
            raise InvalidLoanRequest(f"{day} is after the business date {today}",
                                     errors=(("business_date", "after the current business date"),))
        return day

    def page(self, cursor: str | None, limit: int | None = None, segment: int = 0,
             segments: int = 1) -> NightlyPage:
        """The next page of active loans of one segment (of `segments` splitting the table)."""
        limit = limit or self._page_loans
        if not 0 < limit <= page_loans_max:
            raise InvalidLoanRequest(f"limit must be 1-{page_loans_max}", errors=(("limit", "out of range"),))
        if not 0 < segments <= segments_max:
            raise InvalidLoanRequest(f"segments must be 1-{segments_max}",
                                     errors=(("segments", "out of range"),))
        if not 0 <= segment < segments:
            raise InvalidLoanRequest("segment must be 0 up to segments - 1",
                                     errors=(("segment", "out of range"),))
        ids, after = self._nightly.active_loan_ids(limit, cursor, segment, segments)
        return NightlyPage(tuple(ids), after)

    def close_loans(self, business_date: date, loan_ids: Sequence[str]) -> NightlyResult:
        """Closes business_date on each loan; a loan already closed through it is left as it is. The page
        is read in one batch and written many loans a transaction; a loan that changed meanwhile, and a
        loan collecting an auto-debit, are then closed one by one."""
        day = self.checked_date(business_date)
        if len(loan_ids) > page_loans_max:
            raise InvalidLoanRequest(f"at most {page_loans_max} loans a page",
                                     errors=(("loan_ids", "too many"),))
        loan_ids = list(dict.fromkeys(loan_ids))  # a loan twice in a page is closed once
        products: dict[str, LoanProduct | None] = {}  # a page's loans share a few products: read each once
        read = self._nightly.read_loans(loan_ids)
        nights: dict[str, _Night] = {}
        alone: list[str] = []
        unchanged = 0
        unprocessable: list[str] = []
        for loan_id in loan_ids:
            loan, close = read[loan_id]
            try:
                night = self._night(loan, close, day, products)
            except (LoanRuleError, KeyError, _Unfoldable) as error:
                self._leave(loan_id, day, error, unprocessable)
                continue
            if night is None:
                unchanged += 1
            elif night.write is None:
                alone.append(loan_id)
            else:
                nights[loan_id] = night
        refused = self._nightly.record_closes([n.write for n in nights.values() if n.write is not None])
        closed = len(nights) - len(refused)
        owed = sum(n.owed_minor for loan_id, n in nights.items() if loan_id not in refused)
        # A loan left out changed since the batch read: read again. An auto-debit's loan is as read.
        for loan_id, known in [*((i, None) for i in nights if i in refused), *((i, read[i]) for i in alone)]:
            try:
                done, due = self._close(loan_id, day, products, known)
            except (LoanRuleError, KeyError, _Unfoldable) as error:
                self._leave(loan_id, day, error, unprocessable)
                continue
            closed += done
            unchanged += not done
            owed += due
        return NightlyResult(closed, unchanged, owed, tuple(unprocessable))

    @staticmethod
    def _leave(loan_id: str, day: date, error: Exception, unprocessable: list[str]) -> None:
        # Left for an operator, not retried: the same history folds the same way tomorrow.
        _log.warning("loan not closed: its history does not fold", loan_id=loan_id,
                     business_date=day.isoformat(), error=str(error)[:200])
        unprocessable.append(loan_id)

    def _night(self, loan: Loan | None, close: LoanClose | None, day: date,
               products: dict[str, LoanProduct | None], available_minor: int | None = None) -> _Night | None:
        """The loan's night from what was read; None when there is nothing to do (closed, paid off or
        written off since the page was read, or the date already recorded). With available_minor (the
        wallet's, read), the auto-debit due is folded in; without, it is only marked."""
        if loan is None or loan.status is not LoanStatus.ACTIVE:
            return None
        if close is not None and close.closed_through >= day:
            return None
        if loan.product_id not in products:
            products[loan.product_id] = self._products.get(loan.product_id)
        product = products[loan.product_id]
        if product is None:
            raise _Unfoldable(f"the product of loan {loan.loan_id} is gone")
        assert loan.disbursed_on is not None, f"loan {loan.loan_id} is active, so disbursed"
        debit_on = auto_debit_date(loan, loan.disbursed_on if close is None else close.closed_through, day)
        if debit_on is not None and available_minor is None:
            return _Night(None)  # the money needs the wallet read and the ledger: one by one
        account = account_of(loan, product, close)
        events: list[LoanEvent] = []
        changes: list[object] = []
        legs: list[Leg] = []
        if debit_on is not None:
            assert available_minor is not None, "the wallet was read"
            if account.closed_through < debit_on - ONE_DAY:
                account, found = close_of_business(account, debit_on - ONE_DAY)
                changes += found
            due_minor = amount_due(account, debit_on)
            taken_minor = collectable_minor(due_minor, available_minor)
            if taken_minor:
                paid = LoanTransaction(autodebit_transfer_id(loan.loan_id, debit_on),
                                       TransactionKind.REPAYMENT, debit_on, taken_minor)
                before, account = account, apply(account, paid)
                legs = ledger_legs(loan, paid.transaction_id, before, account)
            if due_minor:  # repaid by hand before the night: nothing to collect, nothing to tell
                events.append(_debit_event(loan, debit_on, due_minor, taken_minor, available_minor))
        account, found = close_of_business(account, day)
        changes += found
        # The loan stores what the closed day made of it (figures, the day's marker, a closed status),
        # so repayments, the views and `finfaas loans check` read the same account the job closed.
        closed_loan = replace(loan.with_account(account), version=loan.version + 1, updated_at=self._clock())
        write = CloseWrite(loan, _record(loan.loan_id, day, account),
                           (*_events(loan.loan_id, changes), *events), closed_loan)
        owed = sum(c.amount_minor for c in changes if isinstance(c, AutoDebitDue) and c.on == day)
        return _Night(write, owed, tuple(legs))

    def _close(self, loan_id: str, day: date, products: dict[str, LoanProduct | None],
               known: tuple[Loan | None, LoanClose | None] | None = None) -> tuple[bool, int]:
        """(True, owed on day) once day is recorded for the loan now; (False, 0) if it already was. `known`:
        the loan and its close record as just read, for the first attempt (later ones read them again)."""
        refused = False  # the ledger refused the wallet's debit (frozen, closed): record the failure instead
        for _ in range(close_attempts_max):
            loan, close = known or (self._loans.get_loan(loan_id), self._nightly.get_close(loan_id))
            known = None
            available = WALLET_UNUSABLE if refused and loan is not None and loan.auto_debit \
                else self._available(loan)
            night = self._night(loan, close, day, products, available)
            if night is None:
                return False, 0
            write = night.write
            assert write is not None, "the wallet was read"
            try:
                if night.legs:
                    assert self._ledger is not None, "auto-debits need the ledger"
                    self._ledger.transfer_linked(night.legs, _NightWrite(self._nightly.close_items(write)))
                elif not self._nightly.record_close(write.loan, write.close, write.events, write.closed_loan):
                    continue
            except (_LoanMoved, InsufficientFunds):
                continue  # a repayment, a rival run or a wallet debit came first: read everything again
            except LedgerError as error:
                if error.retryable:  # contention or an unreachable table moved nothing: retry the page
                    raise LoanBusy(f"the ledger stayed busy debiting loan {loan_id}",
                                   errors=(("loan_id", "busy"),)) from error
                # One wallet the ledger refuses must not stop the night of every other loan.
                _log.warning("auto-debit refused by the ledger", loan_id=loan_id, error=str(error)[:200])
                refused = True
                continue
            return True, night.owed_minor
        raise LoanBusy(f"loan {loan_id} kept changing while its day was closed",
                       errors=(("loan_id", "busy"),))

    def _available(self, loan: Loan | None) -> int | None:
        """What the loan's wallet may give an auto-debit (0 when it is not open); None when not asked."""
        if loan is None or not loan.auto_debit:
            return None
        if self._wallets is None:
            raise _Unfoldable(f"loan {loan.loan_id} auto-debits, and this job has no ledger")
        account = self._wallets.account(loan.account_id)
        if account is None or account.status is not AccountStatus.OPEN:
            return WALLET_UNUSABLE
        return account.available_minor


def _record(loan_id: str, day: date, account: LoanAccount) -> LoanClose:
    return LoanClose(loan_id, day, account.days_past_due, account.bucket, account.penalty_charged_minor,
                     account.outstanding_minor)


def _debit_event(loan: Loan, due_on: date, due_minor: int, taken_minor: int,
                 available_minor: int) -> LoanEvent:
    """loan.auto_debited when money was taken (the shortfall named), loan.auto_debit_failed otherwise."""
    data: dict[str, object] = {"loan_id": loan.loan_id, "account_id": loan.account_id,
                               "currency": loan.currency, "due_on": due_on.isoformat(),
                               "due_minor": str(due_minor)}
    if taken_minor:
        return LoanEvent(AUTO_DEBITED, {**data, "amount_minor": str(taken_minor),
                                        "shortfall_minor": str(due_minor - taken_minor),
                                        "transfer_id": autodebit_transfer_id(loan.loan_id, due_on)})
    reason = ACCOUNT_UNAVAILABLE if available_minor == WALLET_UNUSABLE else INSUFFICIENT_FUNDS
    return LoanEvent(AUTO_DEBIT_FAILED, {**data, "reason": reason})
