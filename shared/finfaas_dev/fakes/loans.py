"""In-memory loan products for tests; never shipped."""

from __future__ import annotations

import threading

from finfaas.services.loans.model import LoanProduct, ProductPage


class InMemoryLoanProducts:
    """Loan products in a dict; the same contract as store/loans_store.py."""

    def __init__(self) -> None:
        self._products: dict[str, LoanProduct] = {}
        self._lock = threading.Lock()

    def create(self, product: LoanProduct) -> LoanProduct:
        with self._lock:
            return self._products.setdefault(product.product_id, product)

    def get(self, product_id: str) -> LoanProduct | None:
        with self._lock:
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
