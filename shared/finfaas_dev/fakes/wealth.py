"""In-memory wealth ports, for tests: the catalogue, the orders and the wallet's holds."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from finfaas.services.wealth.errors import (
    InsufficientBalance,
    OrderExistsWithDifferentFields,
    WalletAccountNotFound,
)
from finfaas.services.wealth.model import Product, SubscriptionOrder


class InMemoryCatalogue:
    """ProductCatalogue over a dict."""

    def __init__(self, *products: Product) -> None:
        self._products = {p.product_id: p for p in products}

    def product(self, product_id: str) -> Product | None:
        return self._products.get(product_id)


class InMemoryOrders:
    """OrderRepository in a dict, with the store's conditional create."""

    def __init__(self) -> None:
        self._orders: dict[str, SubscriptionOrder] = {}
        self._lock = threading.Lock()

    def create(self, order: SubscriptionOrder) -> SubscriptionOrder:
        with self._lock:
            return self._orders.setdefault(order.order_id, order)

    def order(self, order_id: str) -> SubscriptionOrder | None:
        with self._lock:
            return self._orders.get(order_id)

    def all(self) -> list[SubscriptionOrder]:
        with self._lock:
            return list(self._orders.values())


@dataclass(frozen=True)
class Hold:
    hold_id: str
    account_id: str
    fund_account_id: str
    amount_minor: int
    currency: str


class FakeWalletHolds:
    """WalletHolds over wallet balances: available = balance − held; idempotent by hold id as the ledger."""

    def __init__(self, wallets: dict[str, tuple[str, int]]) -> None:
        self._wallets = dict(wallets)  # account id -> (owner customer id, balance in minor units)
        self.holds: dict[str, Hold] = {}
        self._lock = threading.Lock()

    def available(self, account_id: str) -> int:
        with self._lock:
            return self._wallets[account_id][1] - sum(h.amount_minor for h in self.holds.values()
                                                      if h.account_id == account_id)

    def hold(self, hold_id: str, customer_id: str, account_id: str, fund_account_id: str,
             amount_minor: int, currency: str) -> None:
        wanted = Hold(hold_id, account_id, fund_account_id, amount_minor, currency)
        owner = self._wallets.get(account_id, ("", 0))[0]
        if owner != customer_id:
            raise WalletAccountNotFound("no such wallet account", errors=(("account_id", "not found"),))
        with self._lock:
            existing = self.holds.get(hold_id)
            if existing is not None:
                if existing != wanted:
                    raise OrderExistsWithDifferentFields("the order id is taken by another order",
                                                         errors=(("order_id", "taken by another order"),))
                return
            held = sum(h.amount_minor for h in self.holds.values() if h.account_id == account_id)
            if self._wallets[account_id][1] - held < amount_minor:
                raise InsufficientBalance("the wallet's available balance is below the amount",
                                          errors=(("amount", "above the available balance"),))
            self.holds[hold_id] = wanted
