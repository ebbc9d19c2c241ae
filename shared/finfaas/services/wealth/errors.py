"""Wealth's refusals beyond the arithmetic's own (domain/wealth.py): one class per condition."""

from __future__ import annotations

from finfaas.platform.errors import Refusal


class ProductNotFound(Refusal):
    """No product has this id."""

    code = "product_not_found"


class ProductClosed(Refusal):
    """The product takes no new subscriptions."""

    code = "product_closed"


class InvalidOrder(Refusal):
    """An order's fields do not fit its product (a maturity instruction missing or out of place)."""

    code = "invalid_order"


class OrderNotFound(Refusal):
    """No such order, or not the caller's (never say which)."""

    code = "order_not_found"


class OrderExistsWithDifferentFields(Refusal):
    """The order id is taken by an order with another product, account, amount or instruction."""

    code = "order_exists_with_different_fields"


class WalletAccountNotFound(Refusal):
    """The wallet account does not exist or is not the customer's."""

    code = "wallet_account_not_found"


class InsufficientBalance(Refusal):
    """The wallet's available balance is below the amount."""

    code = "insufficient_balance"


class WealthStoreUnavailable(RuntimeError):
    """The wealth tables or the ledger did not answer; safe to retry the same request."""

    code = "wealth_store_unavailable"
