"""What loans need from outside: products, loans, the wallet's accounts, the risk screen, the bureau."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from finfaas.domain.ledger import Account, TransactionExtra, Transfer
from finfaas.services.loans.model import CloseWrite, Loan, LoanClose, LoanEvent, LoanProduct, ProductPage


class LoanProducts(Protocol):
    """The loan products on offer (a fixed ProductCatalogue, or the loans table ops edit)."""

    def get(self, product_id: str) -> LoanProduct | None:
        """The product with this id; None if there is none."""
        ...


class LoanProductRepository(LoanProducts, Protocol):
    """Products kept in the loans table (DynamoDB: store/loans_store.py)."""

    def create(self, product: LoanProduct) -> LoanProduct:
        """Store product unless its id exists (a conditional put); either way, the product stored under it."""
        ...

    def save(self, product: LoanProduct) -> bool:
        """Store product only over its previous version; False (nothing written) when that is not stored."""
        ...

    def page(self, limit: int, after: str | None) -> ProductPage:
        """Up to limit products in id order, from the one after `after`."""
        ...


class LoanRepository(Protocol):
    """Loans in the loans table (DynamoDB: store/loans_store.py); each write carries its outbox event."""

    def create_loan(self, loan: Loan, event: LoanEvent) -> Loan:
        """Store loan unless its id exists (a conditional put); either way, the loan stored under it."""
        ...

    def get_loan(self, loan_id: str) -> Loan | None:
        """The loan, read consistently; None if absent."""
        ...

    def save_loan(self, loan: Loan, event: LoanEvent | None) -> bool:
        """Store loan (and its event, if any) only over its previous version; False (nothing written)
        when that is not stored."""
        ...

    def loan_put(self, loan: Loan) -> tuple[Any, Any]:
        """(item, condition) putting loan over its previous version, for another operation's transaction."""
        ...

    def event_put(self, loan: Loan, event: LoanEvent) -> tuple[Any, Any]:
        """(item, condition) of the change's outbox event, for the same transaction."""
        ...

    def loan_from_raw(self, raw_item: dict[str, Any]) -> Loan:
        """The loan in an item a failed condition returned."""
        ...


class WalletAccounts(Protocol):
    """The ledger's accounts, read in process (the ledger's store)."""

    def account(self, account_id: str) -> Account | None: ...


class RiskAssessor(Protocol):
    """The risk function's POST /assessments (services/suite_clients.py RiskClient)."""

    def assess(self, body: dict[str, Any]) -> dict[str, Any]: ...


class CreditBureau(Protocol):
    """The bureau function's POST /reports (services/suite_clients.py BureauClient)."""

    def report(self, customer_id: str, inquiry_id: str) -> dict[str, Any]: ...


class LoanLedger(Protocol):
    """The ledger's transfers, run in process so a loan's change rides in the same transaction."""

    def transfer(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
                 currency: str, extra: TransactionExtra) -> Transfer: ...

    def transfer_linked(self, legs: Sequence[tuple[str, str, str, int, str]],
                        extra: TransactionExtra) -> list[Transfer]:
        """Legs (transfer id, debit, credit, amount, currency) committing all together with the extra."""
        ...

    def hold(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
             currency: str, timeout_seconds: int, extra: TransactionExtra) -> Transfer:
        """A pending transfer (a disbursement in transit), released by the ledger's sweep after timeout."""
        ...

    def post(self, pending_id: str, transfer_id: str, amount_minor: int, currency: str,
             extra: TransactionExtra) -> Transfer: ...

    def void(self, pending_id: str, transfer_id: str, extra: TransactionExtra) -> Transfer: ...


class PaymentRecord(Protocol):
    """A payment request's Idempotency-Key record and audit facts, put in the payment's ledger
    transaction (the platform's KeyInTransaction), so both are written if and only if the money moves."""

    def put_for(self, answer: Any) -> tuple[Any, Any]:
        """(item, condition): the key's completion record holding the answer rendered from `answer`
        (the service's Paid)."""
        ...

    def conflicted(self, raw_item: dict[str, Any] | None) -> None:
        """The record's condition failed: raise the replay (or 409/422); return when the key is free."""
        ...

    def outbox_audit(self) -> str | None:
        """The request's audit facts for the ledger's outbox item; None when nothing is audited."""
        ...

    def committed(self) -> None: ...


class Orchestrator(Protocol):
    """The orchestrator's start (services/suite_clients.py OrchestratorClient): same name and input
    again finds the execution the first start made."""

    def start(self, state_machine: str, name: str, input_value: Any,
              reference: str | None = None) -> dict[str, Any]: ...


class ReviewOrchestrator(Orchestrator, Protocol):
    """The orchestrator as reviews use it (OrchestratorClient): the saga started, its token checked and
    answered."""

    def heartbeat(self, task_token: str) -> bool:
        """True when the orchestrator waits for this token."""
        ...

    def succeed(self, task_token: str, output: Any) -> None:
        """Report the task done; TaskNotWaiting when the orchestrator no longer waits for it."""
        ...


class LoanNightlyRepository(Protocol):
    """What the nightly job reads and writes (DynamoDB: store/loans_nightly_store.py)."""

    def active_loan_ids(self, limit: int, cursor: str | None, segment: int = 0,
                        segments: int = 1) -> tuple[list[str], str | None]:
        """Up to limit active loans' ids of one segment (of `segments` splitting the loans) and the
        cursor of the rest of that segment (None: no more)."""
        ...

    def read_loans(self, loan_ids: Sequence[str]) -> dict[str, tuple[Loan | None, LoanClose | None]]:
        """Each loan and its close record, read consistently in one batch (None where absent)."""
        ...

    def get_close(self, loan_id: str) -> LoanClose | None:
        """The loan's close record, read consistently; None before its first nightly run."""
        ...

    def record_close(self, loan: Loan, close: LoanClose, events: Sequence[LoanEvent],
                     closed_loan: Loan) -> bool:
        """In one transaction: close over an earlier date (or none), its events, and closed_loan over
        the version read. False when a condition failed: nothing written."""
        ...

    def record_closes(self, writes: Sequence[CloseWrite]) -> set[str]:
        """record_close for many loans, a few transactions for them all; the ids of the loans whose
        condition failed (nothing written for them; every other loan written)."""
        ...

    def close_items(self, write: CloseWrite) -> list[tuple[Any, Any]]:
        """(item, condition) of one loan's night for another operation's transaction, in the order: the
        close record, the loan, its events."""
        ...
