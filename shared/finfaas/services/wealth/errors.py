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


class ProductExists(Refusal):
    """The product id is taken by a product with other settings."""

    code = "product_exists"


class PositionNotFound(Refusal):
    """The customer holds no position in the product (another customer's is not found either)."""

    code = "position_not_found"


class FigureAlreadyPublished(Refusal):
    """A figure for the date is published (a correction must be asked for), or the batch settled it."""

    code = "figure_already_published"


class FigureNotPublished(Refusal):
    """The batch needs the day's figure, and the fund manager has not published it."""

    code = "figure_not_published"


class BatchDateMismatch(Refusal):
    """The batch was asked to run a date that is not yet the market's business date."""

    code = "batch_date_mismatch"


class OrderConflict(Refusal):
    """Orders of the same position raced and this one lost every attempt; retrying is safe."""

    code = "order_conflict"
