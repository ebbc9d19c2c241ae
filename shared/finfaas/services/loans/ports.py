"""What loans need from outside: the product catalogue."""

from __future__ import annotations

from typing import Protocol

from finfaas.services.loans.model import LoanProduct


class LoanProducts(Protocol):
    """The loan products on offer (today a configured ProductCatalogue; later a table ops can edit)."""

    def get(self, product_id: str) -> LoanProduct | None:
        """The product with this id; None if there is none."""
        ...
