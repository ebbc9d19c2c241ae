"""What wealth needs from outside: its tables, the ledger (in process), the business date.

A write that must commit with money (an order, a fast redemption's daily usage, a batch chunk, a day's
settlement) is a `RowWrite`: the ledger's TransactionExtra, carried in the ledger operation's own
DynamoDB transaction, as payments does with its intents."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Protocol

from finfaas.services.business_date.model import BusinessDate
from finfaas.services.wealth.model import (
    DailyIncome,
    IncomeChunk,
    NavFigure,
    Position,
    PositionPage,
    Product,
    SubscriptionOrder,
)

RowWrite = Any  # a TransactionExtra of the store (finfaas.domain.ledger.TransactionExtra)


class ProductCatalogue(Protocol):
    def product(self, product_id: str) -> Product | None:
        """The product, or None."""
        ...


class OrderRepository(Protocol):
    def order_write(self, order: SubscriptionOrder) -> RowWrite:
        """The order's put (new: attribute_not_exists; changed: on its previous version), to ride in the
        ledger transaction that moves its money; a new pending order also lists itself as due on its
        confirmation date."""
        ...

    def order(self, customer_id: str, order_id: str) -> SubscriptionOrder | None:
        """The customer's order, read consistently; None if absent (or another customer's)."""
        ...


class WealthRepository(ProductCatalogue, OrderRepository, Protocol):
    """The wealth table: products, orders, positions, published figures and the batch's chunks."""

    def products(self, limit: int) -> list[Product]:
        """The catalogue (at most limit products), by product id."""
        ...

    def create_product(self, product: Product) -> Product:
        """Store product unless its id exists; either way, the product stored under the id."""
        ...

    def save_product(self, product: Product, previous_status: str) -> bool:
        """Replace the product if its stored status is still previous_status."""
        ...

    def orders_of(self, customer_id: str, limit: int) -> list[SubscriptionOrder]:
        """The customer's orders (at most limit), by order id."""
        ...

    def due_orders(self, product_id: str, day: date, limit: int,
                   cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        """(customer id, order id) of the orders confirmed on day, a page at a time."""
        ...

    def create_position(self, position: Position) -> Position:
        """Store position unless it exists; either way, the position stored."""
        ...

    def position(self, product_id: str, customer_id: str) -> Position | None:
        ...

    def positions_of(self, customer_id: str) -> list[Position]:
        """The customer's positions, every product."""
        ...

    def positions_page(self, product_id: str, limit: int, cursor: str | None) -> PositionPage:
        """A product's positions in customer order (one Query); the batch pages over them."""
        ...

    def publish_income(self, figure: DailyIncome, replace_version: int | None) -> bool:
        """Store the day's figure: new (replace_version None) or over that version; False if taken."""
        ...

    def daily_income(self, product_id: str, day: date) -> DailyIncome | None:
        ...

    def daily_incomes(self, product_id: str, first: date, last: date) -> list[DailyIncome]:
        """The product's figures from first to last (inclusive), by day."""
        ...

    def publish_nav(self, figure: NavFigure, replace_version: int | None) -> bool:
        """Store a NAV fund's NAV of a day: new (replace_version None) or over that version; False if
        taken."""
        ...

    def nav(self, product_id: str, day: date) -> NavFigure | None:
        ...

    def place_order(self, order: SubscriptionOrder, position: Position) -> bool:
        """A NAV redemption without money yet: the new order (attribute_not_exists, listed as due) and the
        position's held units (on its previous version), in one transaction; False if either was taken."""
        ...

    def term_write(self, order: SubscriptionOrder, listed: Sequence[tuple[SubscriptionOrder, date]],
                   recorded: Sequence[SubscriptionOrder] = ()) -> RowWrite:
        """A fixed-term step: the order on its previous version, plus each listed order put (a rolled-over
        term's new order) and listed as maturing on its date, and each recorded order put (an early
        redemption), to ride in the step's ledger transaction."""
        ...

    def maturing(self, product_id: str, day: date, limit: int,
                 cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        """(customer id, order id) of the fixed terms maturing on day, a page at a time."""
        ...

    def confirm_write(self, order: SubscriptionOrder, position: Position) -> RowWrite:
        """An order's confirmation: the order on its previous version (taken: AlreadyRecorded) and the
        position's units (a NAV fund's) or mirrored ledger units (an MMF's) on its previous version
        (changed by a rival: RowMoved), in one transaction; a priced (NAV) order is listed under its
        trade date's NAV (priced_orders)."""
        ...

    def priced_orders(self, product_id: str, day: date, limit: int,
                      cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        """(customer id, order id) of the NAV orders confirmed at day's NAV, a page at a time."""
        ...

    def relist_due(self, order: SubscriptionOrder, day: date) -> None:
        """List the order as due on day too (a NAV order waiting for its NAV); idempotent."""
        ...

    def save_order(self, order: SubscriptionOrder) -> bool:
        """An order's change that moves no money, on its previous version; False if it moved."""
        ...

    def chunk_write(self, chunk: IncomeChunk, positions: Sequence[Position]) -> RowWrite:
        """The chunk's record (attribute_not_exists: the batch's exactly-once guard) and its holders'
        credited positions, each on its previous version, to ride in the chunk's ledger transaction. Taken
        record, or a row already credited for the day: AlreadyRecorded; a row changed otherwise (a
        sweep): RowMoved."""
        ...

    def position_write(self, position: Position) -> RowWrite:
        """A position on its previous version (changed meanwhile: RowMoved), to ride in a ledger
        transaction (a sweep of its accrued units)."""
        ...

    def record_chunk(self, chunk: IncomeChunk) -> bool:
        """The record of a chunk that posts nothing (no holder earned a cent); False if it exists."""
        ...

    def chunks(self, product_id: str, day: date) -> list[IncomeChunk]:
        """Every chunk the batch recorded for the day."""
        ...

    def settlement_write(self, figure: DailyIncome) -> RowWrite:
        """The day's settled figure, put on its published version, to ride with the remainder's posting."""
        ...

    def settle_without_money(self, figure: DailyIncome) -> bool:
        """The day's settled figure when no remainder moves (a put on its published version)."""
        ...

    def fast_usage(self, product_id: str, customer_id: str, day: date) -> int:
        """Minor units the customer fast-redeemed from the product on that business date."""
        ...

    def fast_usage_write(self, product_id: str, customer_id: str, day: date, used_before_minor: int,
                         used_after_minor: int, order: SubscriptionOrder, position: Position) -> RowWrite:
        """The day's usage put on condition it is still used_before (the cap holds under races), with the
        order recorded beside it and the position's mirrored units on its previous version (either changed
        by a rival: RowMoved, unless the order is recorded: AlreadyRecorded)."""
        ...


class AlreadyRecorded(Exception):
    """A batch record (a chunk, a day's settlement) exists: an earlier or rival run wrote it with its
    money, so this one moves nothing."""


class RowMoved(Exception):
    """A row a money step was decided on changed before the step committed (a rival's step): decide
    again from a fresh read."""


class WealthLedger(Protocol):
    """The ledger's use cases, in process; each money call carries one RowWrite in its transaction."""

    def open_account(self, account_id: str, owner_id: str, currency: str, limited: bool) -> None:
        """Open the account (idempotent)."""
        ...

    def account(self, account_id: str) -> tuple[str, int, int] | None:
        """(owner, posted balance, available) of the account, or None."""
        ...

    def balances(self, account_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(posted balance, available) of each existing account, credit-normal."""
        ...

    def hold(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
             currency: str, owner_id: str, write: RowWrite) -> None:
        """A hold from owner_id's debit account; WalletAccountNotFound / InsufficientBalance with nothing
        written; a retry (same id and fields) replays."""
        ...

    def post(self, pending_id: str, transfer_id: str, write: RowWrite) -> None:
        """Post the whole hold."""
        ...

    def transfer(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
                 currency: str, owner_id: str | None, write: RowWrite) -> None:
        """A posted transfer (owner_id: the debit account's owner must be it)."""
        ...

    def post_linked(self, legs: Sequence[tuple[str, str, str, int]], currency: str, write: RowWrite) -> None:
        """(transfer id, debit, credit, amount) legs in one transaction, all or nothing."""
        ...

    def transfer_exists(self, transfer_id: str) -> bool:
        ...


class BusinessDates(Protocol):
    def current(self, market: str) -> BusinessDate:
        """The market's business date (services/business_date)."""
        ...

    def advance(self, market: str, *, days: int | None = None, to: date | None = None) -> BusinessDate:
        """Move the business date forward (manual mode; BusinessDateFollowsClock otherwise)."""
        ...
