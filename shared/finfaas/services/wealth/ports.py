"""What wealth needs from outside: the catalogue, the orders, the wallet's holds, the business date."""

from __future__ import annotations

from typing import Protocol

from finfaas.services.business_date.model import BusinessDate
from finfaas.services.wealth.model import Product, SubscriptionOrder


class ProductCatalogue(Protocol):
    def product(self, product_id: str) -> Product | None:
        """The product, or None."""
        ...


class OrderRepository(Protocol):
    def create(self, order: SubscriptionOrder) -> SubscriptionOrder:
        """Store order unless its id exists (a conditional put); either way, the order stored under the id."""
        ...

    def order(self, order_id: str) -> SubscriptionOrder | None:
        """The order, read consistently; None if absent."""
        ...


class WalletHolds(Protocol):
    def hold(self, hold_id: str, customer_id: str, account_id: str, fund_account_id: str,
             amount_minor: int, currency: str) -> None:
        """Hold amount on the customer's wallet toward the fund, idempotent by hold_id (the ledger's
        pending transfer; the same id with other fields is OrderExistsWithDifferentFields);
        WalletAccountNotFound or InsufficientBalance with nothing held."""
        ...


class BusinessDates(Protocol):
    def current(self, market: str) -> BusinessDate:
        """The market's business date (services/business_date)."""
        ...
