"""In-memory loan products and loans, and the risk and bureau functions as loans calls them, for tests;
never shipped."""

from __future__ import annotations

import bisect
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any, TypeVar

from finfaas.domain.ledger import TransactionExtra, Transfer
from finfaas.services.bureau.model import sandbox_report
from finfaas.services.loans.model import (
    CloseWrite,
    Loan,
    LoanClose,
    LoanEvent,
    LoanProduct,
    LoanStatus,
    ProductPage,
)
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
            records = [e for e in events if isinstance(e, _NightRecord)]  # a nightly close riding along
            if stored is None or stored.version != condition or not all(r.holds() for r in records):
                conflicted({"loan": stored} if stored is not None else None)
                raise AssertionError("an extra's conflicted() must raise")
            result = operation()
            for record in records:
                record.commit()  # puts the loan too: the one below is the same
            self._loans[item.loan_id] = item
            self.events.extend(e for e in events if not isinstance(e, _NightRecord))
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
    loans paged in id order (segments: by a hash of the id), close records, and `events` (loan id, date,
    event) as written. `transactions` counts the writes a DynamoDB store would make (one per batch)."""

    def __init__(self, loans: InMemoryLoans) -> None:
        self._loans = loans
        self._closes: dict[str, LoanClose] = {}
        self.events: list[tuple[str, date, LoanEvent]] = []
        self.writes = 0  # close records written
        self.transactions = 0

    def active_loan_ids(self, limit: int, cursor: str | None, segment: int = 0,
                        segments: int = 1) -> tuple[list[str], str | None]:
        with self._loans._lock:
            ids = sorted(loan_id for loan_id, loan in self._loans._loans.items()
                         if loan.status is LoanStatus.ACTIVE and _segment_of(loan_id, segments) == segment)
        start = 0 if cursor is None else bisect.bisect_right(ids, cursor)
        page = ids[start:start + limit]
        return page, page[-1] if page and start + limit < len(ids) else None

    def read_loans(self, loan_ids: Sequence[str]) -> dict[str, tuple[Loan | None, LoanClose | None]]:
        with self._loans._lock:
            return {loan_id: (self._loans._loans.get(loan_id), self._closes.get(loan_id))
                    for loan_id in loan_ids}

    def get_close(self, loan_id: str) -> LoanClose | None:
        with self._loans._lock:
            return self._closes.get(loan_id)

    def record_close(self, loan: Loan, close: LoanClose, events: Sequence[LoanEvent],
                     closed_loan: Loan) -> bool:
        return not self.record_closes([CloseWrite(loan, close, tuple(events), closed_loan)])

    def record_closes(self, writes: Sequence[CloseWrite]) -> set[str]:
        with self._loans._lock:
            self.transactions += 1
            refused = {w.loan.loan_id for w in writes if not self._holds(w)}
            for write in writes:
                if write.loan.loan_id not in refused:
                    self._commit(write)
            return refused

    def close_items(self, write: CloseWrite) -> list[tuple[Any, Any]]:
        """The close record as an item the fake ledger commits under the loans' lock (InMemoryLoans.apply),
        the loan's put, and no separate events (the record carries them)."""
        return [(_NightRecord(self, write), None), self._loans.loan_put(write.closed_loan)]

    def _holds(self, write: CloseWrite) -> bool:
        previous = self._closes.get(write.loan.loan_id)
        stored = self._loans._loans.get(write.loan.loan_id)
        return (previous is None or previous.closed_through < write.close.closed_through) \
            and stored is not None and stored.version == write.loan.version

    def _commit(self, write: CloseWrite) -> None:
        self._closes[write.loan.loan_id] = write.close
        self._loans._loans[write.loan.loan_id] = write.closed_loan
        self.events.extend((write.loan.loan_id, write.close.closed_through, event) for event in write.events)
        self.writes += 1


def _segment_of(loan_id: str, segments: int) -> int:
    return int(hashlib.sha256(loan_id.encode()).hexdigest(), 16) % segments


class _NightRecord:
    """A loan's close record riding in the fake ledger's transaction (InMemoryLoans.apply checks it)."""

    def __init__(self, nightly: InMemoryLoanNightly, write: CloseWrite) -> None:
        self._nightly = nightly
        self._write = write

    def holds(self) -> bool:
        previous = self._nightly._closes.get(self._write.loan.loan_id)
        return previous is None or previous.closed_through < self._write.close.closed_through

    def commit(self) -> None:
        self._nightly._commit(self._write)
        self._nightly.transactions += 1
