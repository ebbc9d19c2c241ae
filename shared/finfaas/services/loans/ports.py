"""What loans need from outside: the product catalogue."""

from __future__ import annotations

from typing import Protocol

from finfaas.services.loans.model import LoanProduct, ProductPage


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
