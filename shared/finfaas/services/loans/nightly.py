"""The loans nightly job: close a business date on every active loan, one orchestrator execution a date.

The state machine (infra/statemachines/loans-nightly.asl.json) pages through active loans and asks this
service to close each page. Each loan's account is the fold of its stored transactions
(domain/loan_account.py) up to its last closed date; `close_of_business` closes the days to the new
date, and the loan's close record, the night's events and a check that the loan did not change since it
was read commit in one transaction. A date is recorded once: a rerun, or a page retried after a crash,
finds it recorded and writes nothing. docs/design.md, "The loans nightly job".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from finfaas.domain.loan_account import (
    AutoDebitDue,
    BucketChanged,
    LoanAccount,
    LoanClosed,
    TransactionKind,
    close_of_business,
    replay,
)
from finfaas.domain.loan_account import LoanTransaction as AccountTransaction
from finfaas.domain.loans import LoanRuleError, Schedule
from finfaas.platform.logging import get_logger
from finfaas.services.loans.errors import InvalidLoanRequest, LoanBusy
from finfaas.services.loans.model import (
    Loan,
    LoanClose,
    LoanEvent,
    LoanProduct,
    LoanStatus,
)
from finfaas.services.loans.ports import LoanNightlyRepository, LoanProducts, LoanRepository, Orchestrator

NIGHTLY_STATE_MACHINE = "loans-nightly"
BUCKET_CHANGED = "loan.bucket_changed"
LOAN_CLOSED = "loan.closed"
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
    marker = AccountTransaction(f"close-of-business:{close.closed_through.isoformat()}",
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


def utc_now() -> datetime:
    return datetime.now(UTC)


class LoansNightlyService:
    """Starts the night's execution and serves its pages: which loans, and closing them."""

    def __init__(self, products: LoanProducts, loans: LoanRepository, nightly: LoanNightlyRepository,
                 business_date: Callable[[], date], orchestrator: Orchestrator,
                 clock: Callable[[], datetime] = utc_now, page_loans: int = page_loans_max) -> None:
        assert 0 < page_loans <= page_loans_max
        self._page_loans = page_loans
        self._products = products
        self._loans = loans
        self._nightly = nightly
        self._business_date = business_date
        self._orchestrator = orchestrator
        self._clock = clock

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

    def page(self, cursor: str | None, limit: int | None = None) -> NightlyPage:
        limit = limit or self._page_loans
        if not 0 < limit <= page_loans_max:
            raise InvalidLoanRequest(f"limit must be 1-{page_loans_max}", errors=(("limit", "out of range"),))
        ids, after = self._nightly.active_loan_ids(limit, cursor)
        return NightlyPage(tuple(ids), after)

    def close_loans(self, business_date: date, loan_ids: Sequence[str]) -> NightlyResult:
        """Closes business_date on each loan; a loan already closed through it is left as it is."""
        day = self.checked_date(business_date)
        if len(loan_ids) > page_loans_max:
            raise InvalidLoanRequest(f"at most {page_loans_max} loans a page",
                                     errors=(("loan_ids", "too many"),))
        closed = unchanged = owed = 0
        unprocessable: list[str] = []
        products: dict[str, LoanProduct | None] = {}  # a page's loans share a few products: read each once
        for loan_id in loan_ids:
            try:
                done, due = self._close(loan_id, day, products)
            except (LoanRuleError, KeyError, _Unfoldable) as error:
                # Left for an operator, not retried: the same history folds the same way tomorrow.
                _log.warning("loan not closed: its history does not fold", loan_id=loan_id,
                             business_date=day.isoformat(), error=str(error)[:200])
                unprocessable.append(loan_id)
                continue
            closed += done
            unchanged += not done
            owed += due
        return NightlyResult(closed, unchanged, owed, tuple(unprocessable))

    def _close(self, loan_id: str, day: date, products: dict[str, LoanProduct | None]) -> tuple[bool, int]:
        """(True, owed on day) once day is recorded for the loan now; (False, 0) if it already was."""
        for _ in range(close_attempts_max):
            loan = self._loans.get_loan(loan_id)
            if loan is None or loan.status is not LoanStatus.ACTIVE:
                return False, 0  # closed, paid off or written off since the page was read
            close = self._nightly.get_close(loan_id)
            if close is not None and close.closed_through >= day:
                return False, 0
            if loan.product_id not in products:
                products[loan.product_id] = self._products.get(loan.product_id)
            product = products[loan.product_id]
            if product is None:
                raise _Unfoldable(f"the product of loan {loan_id} is gone")
            account, changes = close_of_business(account_of(loan, product, close), day)
            record = LoanClose(loan_id, day, account.days_past_due, account.bucket,
                               account.penalty_charged_minor, account.outstanding_minor)
            # The loan stores what the closed day made of it (figures, the day's marker, a closed status),
            # so repayments, the views and `finfaas loans check` read the same account the job closed.
            closed_loan = replace(loan.with_account(account), version=loan.version + 1,
                                  updated_at=self._clock())
            if self._nightly.record_close(loan, record, _events(loan_id, changes), closed_loan):
                return True, sum(c.amount_minor for c in changes if isinstance(c, AutoDebitDue))
        raise LoanBusy(f"loan {loan_id} kept changing while its day was closed",
                       errors=(("loan_id", "busy"),))
