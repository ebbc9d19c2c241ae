"""In-memory loan products and loans, and the risk and bureau functions as loans calls them, for tests;
never shipped."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any, TypeVar

from finfaas.domain.ledger import TransactionExtra, Transfer
from finfaas.services.bureau.model import sandbox_report
from finfaas.services.loans.model import Loan, LoanClose, LoanEvent, LoanProduct, LoanStatus, ProductPage
from finfaas.services.loans.service import LedgerAccounts
from finfaas.services.suite_clients import ServiceUnreachable

_T = TypeVar("_T")


class InMemoryLoanProducts:
    """Loan products in a dict; the same contract as store/loans_store.py."""

    def __init__(self) -> None:
        self._products: dict[str, LoanProduct] = {}
        self._lock = threading.Lock()
        self.reads = 0  # get calls: each is a GetItem on the real store

    def create(self, product: LoanProduct) -> LoanProduct:
        with self._lock:
            return self._products.setdefault(product.product_id, product)

    def get(self, product_id: str) -> LoanProduct | None:
        with self._lock:
            self.reads += 1
            return self._products.get(product_id)

    def save(self, product: LoanProduct) -> bool:
        with self._lock:
            stored = self._products.get(product.product_id)
            if stored is None or stored.version != product.version - 1:
                return False
            self._products[product.product_id] = product
            return True

    def page(self, limit: int, after: str | None) -> ProductPage:
        with self._lock:
            ids = sorted(i for i in self._products if after is None or i > after)
            taken = ids[:limit]
            return ProductPage(tuple(self._products[i] for i in taken),
                               taken[-1] if len(ids) > limit else None)


class InMemoryLoans:
    """Loans in a dict; the same contract as store/loans_store.py. `events` holds (loan id, version,
    event) as written, in order."""

    def __init__(self) -> None:
        self._loans: dict[str, Loan] = {}
        self.events: list[tuple[str, int, LoanEvent]] = []
        self._lock = threading.Lock()

    def create_loan(self, loan: Loan, event: LoanEvent) -> Loan:
        with self._lock:
            stored = self._loans.setdefault(loan.loan_id, loan)
            if stored is loan:
                self.events.append((loan.loan_id, loan.version, event))
            return stored

    def get_loan(self, loan_id: str) -> Loan | None:
        with self._lock:
            return self._loans.get(loan_id)

    def scan_loans(self) -> Iterator[Loan]:
        with self._lock:
            loans = list(self._loans.values())
        yield from loans

    def tamper(self, loan: Loan) -> None:
        """Overwrite a stored loan as is (no version check, no event): for reconciliation tests."""
        with self._lock:
            self._loans[loan.loan_id] = loan

    def save_loan(self, loan: Loan, event: LoanEvent | None) -> bool:
        with self._lock:
            stored = self._loans.get(loan.loan_id)
            if stored is None or stored.version != loan.version - 1:
                return False
            self._loans[loan.loan_id] = loan
            if event is not None:
                self.events.append((loan.loan_id, loan.version, event))
            return True


    def loan_put(self, loan: Loan) -> tuple[Any, Any]:
        return loan, loan.version - 1

    def event_put(self, loan: Loan, event: LoanEvent) -> tuple[Any, Any]:
        return (loan.loan_id, loan.version, event), None

    def loan_from_raw(self, raw_item: dict[str, Any]) -> Loan:
        loan: Loan = raw_item["loan"]
        return loan

    def apply(self, item: Loan, condition: int, operation: Callable[[], _T],
              conflicted: Callable[[dict[str, Any] | None], None], events: list[Any]) -> _T:
        """Runs operation and puts item and events, all or nothing, if the stored version is `condition`."""
        with self._lock:
            stored = self._loans.get(item.loan_id)
            if stored is None or stored.version != condition:
                conflicted({"loan": stored} if stored is not None else None)
                raise AssertionError("an extra's conflicted() must raise")
            result = operation()
            self._loans[item.loan_id] = item
            self.events.extend(events)
            return result


class InMemoryLoansLedger(LedgerAccounts):
    """LoanLedger over a LedgerService on the reference ledger: each transfer and its extra's loan put
    apply together, as the DynamoDB store's one transaction does."""

    def __init__(self, ledger: Any, loans: InMemoryLoans) -> None:
        super().__init__(ledger)
        self._loans = loans

    def _in_transaction(self, extra: TransactionExtra,
                        operation: Callable[[TransactionExtra | None], Transfer]) -> Transfer:
        item, condition = extra.put_for(())
        more = getattr(extra, "more_puts_for", None)
        events = [event for event, _ in (more(()) if more is not None else [])]
        result = self._loans.apply(item, condition, lambda: operation(None), extra.conflicted, events)
        extra.committed()
        return result


class FakeRisk:
    """The risk function's assessments: `findings` answered to every request, or `failing` raises."""

    def __init__(self, findings: list[dict[str, str]] | None = None) -> None:
        self.findings = findings or [{"rule": "blocked_party", "verdict": "PASS", "detail": "no party"},
                                     {"rule": "velocity_count", "verdict": "PASS", "detail": "0 this hour"}]
        self.failing = False
        self.requests: list[dict[str, Any]] = []

    def assess(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        if self.failing:
            raise ServiceUnreachable("POST /function/risk/assessments: ConnectionError")
        return {"assessment_id": body["assessment_id"], "decision": "approve", "score": 0,
                "findings": self.findings}


class FakeBureau:
    """The sandbox bureau in process (its own derivation), or `failing` raises as an unreachable one."""

    def __init__(self) -> None:
        self.failing = False
        self.calls = 0

    def report(self, customer_id: str, inquiry_id: str) -> dict[str, Any]:
        self.calls += 1
        if self.failing:
            raise ServiceUnreachable("bureau answered 503 bureau_unavailable")
        report = sandbox_report(customer_id)
        return {"customer_id": customer_id, "inquiry_id": inquiry_id, "score": report.score,
                "delinquencies": report.delinquencies, "open_accounts": report.open_accounts}


class InMemoryLoanNightly:
    """The nightly job's store over an InMemoryLoans (the same contract as store/loans_nightly_store.py):
    loans paged in id order, close records, and `events` (loan id, date, event) as written."""

    def __init__(self, loans: InMemoryLoans) -> None:
        self._loans = loans
        self._closes: dict[str, LoanClose] = {}
        self.events: list[tuple[str, date, LoanEvent]] = []
        self.writes = 0  # close records written

    def active_loan_ids(self, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        with self._loans._lock:
            ids = sorted(loan_id for loan_id, loan in self._loans._loans.items()
                         if loan.status is LoanStatus.ACTIVE)
        start = 0 if cursor is None else bisect.bisect_right(ids, cursor)
        page = ids[start:start + limit]
        return page, page[-1] if page and start + limit < len(ids) else None

    def get_close(self, loan_id: str) -> LoanClose | None:
        with self._loans._lock:
            return self._closes.get(loan_id)

    def record_close(self, loan: Loan, close: LoanClose, events: Sequence[LoanEvent],
                     closed_loan: Loan | None) -> bool:
        with self._loans._lock:
            previous = self._closes.get(loan.loan_id)
            stored = self._loans._loans.get(loan.loan_id)
            if previous is not None and previous.closed_through >= close.closed_through:
                return False
            if stored is None or stored.version != loan.version:
                return False
            self._closes[loan.loan_id] = close
            if closed_loan is not None:
                self._loans._loans[loan.loan_id] = closed_loan
            self.events.extend((loan.loan_id, close.closed_through, event) for event in events)
            self.writes += 1
            return True
