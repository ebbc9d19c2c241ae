"""What loans need from outside: products, loans, the wallet's accounts, the risk screen, the bureau."""

from __future__ import annotations

from typing import Any, Protocol

from finfaas.domain.ledger import Account
from finfaas.services.loans.model import Loan, LoanEvent, LoanProduct, ProductPage


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

    def save_loan(self, loan: Loan, event: LoanEvent) -> bool:
        """Store loan only over its previous version; False (nothing written) when that is not stored."""
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
