"""In-memory wealth ports, for tests: the wealth table and the ledger in process.

`InMemoryWealthStore` passes the same contract tests as store/wealth_store.py. Its `*_write` rows are
applied by `InMemoryWealthLedger` together with the money, under one lock, after their condition is
checked: the in-memory counterpart of a ledger transaction carrying the row."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from finfaas.services.wealth.errors import (
    InsufficientBalance,
    OrderExistsWithDifferentFields,
    WalletAccountNotFound,
)
from finfaas.services.wealth.model import (
    DailyIncome,
    IncomeChunk,
    NavFigure,
    OrderStatus,
    Position,
    PositionPage,
    Product,
    SubscriptionOrder,
)
from finfaas.services.wealth.ports import AlreadyRecorded, RowMoved

_Key = tuple[str, str]


class MemoryWrite:
    """A row write riding with money: `check` raises AlreadyRecorded or RowMoved, `apply` writes."""

    def __init__(self, check: Callable[[], None], apply: Callable[[], None]) -> None:
        self.check = check
        self.apply = apply


class InMemoryWealthStore:
    """WealthRepository in dicts, with the DynamoDB store's conditions."""

    def __init__(self, *products: Product) -> None:
        self.lock = threading.RLock()
        self._products = {p.product_id: p for p in products}
        self._orders: dict[_Key, SubscriptionOrder] = {}
        self._due: dict[tuple[str, date], dict[_Key, None]] = {}
        self._positions: dict[str, dict[str, Position]] = {}
        self._figures: dict[tuple[str, date], DailyIncome] = {}
        self._chunks: dict[tuple[str, date], dict[str, IncomeChunk]] = {}
        self._fast: dict[tuple[str, str, date], int] = {}
        self._navs: dict[tuple[str, date], NavFigure] = {}
        self._maturing: dict[tuple[str, date], dict[_Key, None]] = {}
        self._priced: dict[tuple[str, date], dict[_Key, None]] = {}

    def products(self, limit: int) -> list[Product]:
        with self.lock:
            return [self._products[k] for k in sorted(self._products)][:limit]

    def product(self, product_id: str) -> Product | None:
        with self.lock:
            return self._products.get(product_id)

    def create_product(self, product: Product) -> Product:
        with self.lock:
            return self._products.setdefault(product.product_id, product)

    def save_product(self, product: Product, previous_status: str) -> bool:
        with self.lock:
            stored = self._products.get(product.product_id)
            if stored is None or stored.status.value != previous_status:
                return False
            self._products[product.product_id] = product
            return True

    def order(self, customer_id: str, order_id: str) -> SubscriptionOrder | None:
        with self.lock:
            return self._orders.get((customer_id, order_id))

    def all_orders(self) -> list[SubscriptionOrder]:
        with self.lock:
            return list(self._orders.values())

    def orders_of(self, customer_id: str, limit: int) -> list[SubscriptionOrder]:
        with self.lock:
            return [o for k, o in sorted(self._orders.items()) if k[0] == customer_id][:limit]

    def order_write(self, order: SubscriptionOrder) -> MemoryWrite:
        key = (order.customer_id, order.order_id)

        def check() -> None:
            stored = self._orders.get(key)
            taken = stored is not None if order.version == 1 else (stored is None or
                                                                   stored.version != order.version - 1)
            if taken:
                raise AlreadyRecorded(f"order {order.order_id} is written already")

        def apply() -> None:
            self._orders[key] = order
            if order.version == 1 and order.status is OrderStatus.PENDING:
                self._due.setdefault((order.product_id, order.confirmation_date), {})[key] = None

        return MemoryWrite(check, apply)

    def due_orders(self, product_id: str, day: date, limit: int,
                   cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        return self._listed(self._due, product_id, day, limit, cursor)

    def create_position(self, position: Position) -> Position:
        with self.lock:
            held = self._positions.setdefault(position.product_id, {})
            return held.setdefault(position.customer_id, position)

    def position(self, product_id: str, customer_id: str) -> Position | None:
        with self.lock:
            return self._positions.get(product_id, {}).get(customer_id)

    def positions_of(self, customer_id: str) -> list[Position]:
        with self.lock:
            return [held[customer_id] for _, held in sorted(self._positions.items()) if customer_id in held]

    def positions_page(self, product_id: str, limit: int, cursor: str | None) -> PositionPage:
        with self.lock:
            held = self._positions.get(product_id, {})
            ordered = [held[c] for c in sorted(held)]
        page, after = _paged(ordered, limit, cursor, lambda p: p.customer_id)
        return PositionPage(tuple(page), after)

    def publish_income(self, figure: DailyIncome, replace_version: int | None) -> bool:
        with self.lock:
            key = (figure.product_id, figure.day)
            stored = self._figures.get(key)
            if (stored is not None) if replace_version is None else (stored is None or
                                                                      stored.version != replace_version):
                return False
            self._figures[key] = figure
            return True

    def daily_income(self, product_id: str, day: date) -> DailyIncome | None:
        with self.lock:
            return self._figures.get((product_id, day))

    def daily_incomes(self, product_id: str, first: date, last: date) -> list[DailyIncome]:
        with self.lock:
            return [f for (p, d), f in sorted(self._figures.items())
                    if p == product_id and first <= d <= last]

    def publish_nav(self, figure: NavFigure, replace_version: int | None) -> bool:
        key = (figure.product_id, figure.day)
        with self.lock:
            stored = self._navs.get(key)
            if (stored.version if stored is not None else None) != replace_version:
                return False
            self._navs[key] = figure
            return True

    def nav(self, product_id: str, day: date) -> NavFigure | None:
        with self.lock:
            return self._navs.get((product_id, day))

    def place_order(self, order: SubscriptionOrder, position: Position) -> bool:
        of_order, of_position = self.order_write(order), self.position_write(position)
        with self.lock:
            try:
                of_position.check()
                of_order.check()
            except (AlreadyRecorded, RowMoved):
                return False
            of_order.apply()
            of_position.apply()
            return True

    def term_write(self, order: SubscriptionOrder, listed: Sequence[tuple[SubscriptionOrder, date]],
                   recorded: Sequence[SubscriptionOrder] = ()) -> MemoryWrite:
        of_order = self.order_write(order)

        def apply() -> None:
            of_order.apply()
            for other in recorded:
                self._orders[(other.customer_id, other.order_id)] = other
            for other, maturity in listed:
                key = (other.customer_id, other.order_id)
                self._orders[key] = other if other.order_id != order.order_id else order
                self._maturing.setdefault((other.product_id, maturity), {})[key] = None

        return MemoryWrite(of_order.check, apply)

    def maturing(self, product_id: str, day: date, limit: int,
                 cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        return self._listed(self._maturing, product_id, day, limit, cursor)

    def confirm_write(self, order: SubscriptionOrder, position: Position) -> MemoryWrite:
        of_order = self.order_write(order)

        def check() -> None:
            self._check_position(position)
            of_order.check()

        def apply() -> None:
            of_order.apply()
            self._positions[position.product_id][position.customer_id] = position
            if order.nav is not None:  # a NAV order is listed under the NAV it was priced at
                key = (order.customer_id, order.order_id)
                self._priced.setdefault((order.product_id, order.trade_date), {})[key] = None

        return MemoryWrite(check, apply)

    def seed(self, positions: Sequence[Position], orders: Sequence[SubscriptionOrder]) -> None:
        """Tooling, as the DynamoDB store's: positions and orders written as they are."""
        with self.lock:
            for position in positions:
                self._positions.setdefault(position.product_id, {})[position.customer_id] = position
            for order in orders:
                self._orders[(order.customer_id, order.order_id)] = order

    def priced_orders(self, product_id: str, day: date, limit: int,
                      cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        return self._listed(self._priced, product_id, day, limit, cursor)

    def _listed(self, lists: dict[tuple[str, date], dict[_Key, None]], product_id: str, day: date, limit: int,
                cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        with self.lock:
            keys = sorted(lists.get((product_id, day), {}))
        return _paged(keys, limit, cursor, lambda k: f"{k[0]} {k[1]}")

    def relist_due(self, order: SubscriptionOrder, day: date) -> None:
        with self.lock:
            self._due.setdefault((order.product_id, day), {})[(order.customer_id, order.order_id)] = None

    def save_order(self, order: SubscriptionOrder) -> bool:
        assert order.version > 1, "a new order is written with its money"
        write = self.order_write(order)
        with self.lock:
            try:
                write.check()
            except AlreadyRecorded:
                return False
            write.apply()
            return True

    def chunk_write(self, chunk: IncomeChunk, positions: Sequence[Position]) -> MemoryWrite:
        def check() -> None:
            if chunk.first_customer_id in self._chunks.get((chunk.product_id, chunk.day), {}):
                raise AlreadyRecorded("chunk written already")
            for p in positions:
                try:
                    self._check_position(p)
                except RowMoved:
                    stored = self._positions[p.product_id].get(p.customer_id)
                    if stored is not None and stored.last_income_date == chunk.day:
                        raise AlreadyRecorded("a holder is credited for the day already") from None
                    raise

        def apply() -> None:
            self._chunks.setdefault((chunk.product_id, chunk.day), {})[chunk.first_customer_id] = chunk
            for p in positions:
                self._positions[p.product_id][p.customer_id] = p

        return MemoryWrite(check, apply)

    def position_write(self, position: Position) -> MemoryWrite:
        def apply() -> None:
            self._positions[position.product_id][position.customer_id] = position

        return MemoryWrite(lambda: self._check_position(position), apply)

    def _check_position(self, position: Position) -> None:
        """The position on its previous version, else RowMoved (a rival changed it)."""
        stored = self._positions.get(position.product_id, {}).get(position.customer_id)
        if stored is None or stored.version != position.version - 1:
            raise RowMoved("the position changed")

    def record_chunk(self, chunk: IncomeChunk) -> bool:
        with self.lock:
            written = self._chunks.setdefault((chunk.product_id, chunk.day), {})
            if chunk.first_customer_id in written:
                return False
            written[chunk.first_customer_id] = chunk
            return True

    def chunks(self, product_id: str, day: date) -> list[IncomeChunk]:
        with self.lock:
            return [c for _, c in sorted(self._chunks.get((product_id, day), {}).items())]

    def settlement_write(self, figure: DailyIncome) -> MemoryWrite:
        key = (figure.product_id, figure.day)

        def check() -> None:
            stored = self._figures.get(key)
            if stored is None or stored.version != figure.version - 1:
                raise AlreadyRecorded("settled already")

        def apply() -> None:
            self._figures[key] = figure

        return MemoryWrite(check, apply)

    def settle_without_money(self, figure: DailyIncome) -> bool:
        with self.lock:
            return self.publish_income(figure, figure.version - 1)

    def fast_usage(self, product_id: str, customer_id: str, day: date) -> int:
        with self.lock:
            return self._fast.get((product_id, customer_id, day), 0)

    def fast_usage_write(self, product_id: str, customer_id: str, day: date, used_before_minor: int,
                         used_after_minor: int, order: SubscriptionOrder, position: Position) -> MemoryWrite:
        key = (product_id, customer_id, day)

        def check() -> None:
            try:
                if self._fast.get(key, 0) != used_before_minor:
                    raise RowMoved("the day's usage changed")
                self._check_position(position)
            except RowMoved:
                if (order.customer_id, order.order_id) in self._orders:
                    raise AlreadyRecorded("fast redemption recorded already") from None
                raise

        def apply() -> None:
            self._fast[key] = used_after_minor
            self._orders[(order.customer_id, order.order_id)] = order
            self._positions[position.product_id][position.customer_id] = position

        return MemoryWrite(check, apply)


def _paged(items: list, limit: int, cursor: str | None, key: Callable) -> tuple[list, str | None]:
    start = 0 if cursor is None else next((i + 1 for i, item in enumerate(items) if key(item) == cursor),
                                          len(items))
    page = items[start:start + limit]
    more = start + limit < len(items)
    return page, key(page[-1]) if more and page else None


@dataclass
class _Account:
    owner_id: str
    currency: str
    limited: bool
    posted: int = 0
    pending_debits: int = 0


@dataclass(frozen=True)
class Hold:
    hold_id: str
    account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str


class InMemoryWealthLedger:
    """WealthLedger over balances in a dict: holds, posts, transfers and linked legs, idempotent by id,
    each applying its row write under the same lock (all or nothing)."""

    def __init__(self, store: InMemoryWealthStore) -> None:
        self.lock = store.lock
        self.accounts: dict[str, _Account] = {}
        self.holds: dict[str, Hold] = {}
        self.transfers: dict[str, tuple[str, str, int]] = {}
        self.posted_holds: set[str] = set()

    def open_account(self, account_id: str, owner_id: str, currency: str, limited: bool) -> None:
        with self.lock:
            self.accounts.setdefault(account_id, _Account(owner_id, currency, limited))

    def fund(self, account_id: str, owner_id: str, amount_minor: int) -> None:
        self.open_account(account_id, owner_id, "CNY", True)
        with self.lock:
            self.accounts[account_id].posted += amount_minor

    def account(self, account_id: str) -> tuple[str, int, int] | None:
        with self.lock:
            found = self.accounts.get(account_id)
            if found is None:
                return None
            return found.owner_id, found.posted, found.posted - found.pending_debits

    def available(self, account_id: str) -> int:
        found = self.account(account_id)
        assert found is not None
        return found[2]

    def balances(self, account_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        with self.lock:
            return {i: (a.posted, a.posted - a.pending_debits) for i in account_ids
                    if (a := self.accounts.get(i)) is not None}

    def hold(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
             currency: str, owner_id: str, write: MemoryWrite) -> None:
        wanted = Hold(transfer_id, debit_account_id, credit_account_id, amount_minor, currency)
        with self.lock:
            write.check()
            existing = self.holds.get(transfer_id)
            if existing is not None:
                if existing != wanted:
                    raise OrderExistsWithDifferentFields("the order id is taken by another order",
                                                         errors=(("order_id", "taken by another order"),))
                return
            debit = self._debitable(debit_account_id, owner_id, amount_minor)
            debit.pending_debits += amount_minor
            self.holds[transfer_id] = wanted
            write.apply()

    def post(self, pending_id: str, transfer_id: str, write: MemoryWrite) -> None:
        with self.lock:
            write.check()
            hold = self.holds[pending_id]
            assert pending_id not in self.posted_holds
            self.posted_holds.add(pending_id)
            self.accounts[hold.account_id].pending_debits -= hold.amount_minor
            self.accounts[hold.account_id].posted -= hold.amount_minor
            self.accounts[hold.credit_account_id].posted += hold.amount_minor
            write.apply()

    def transfer(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
                 currency: str, owner_id: str | None, write: MemoryWrite) -> None:
        self.post_linked([(transfer_id, debit_account_id, credit_account_id, amount_minor)], currency, write,
                         owner_id)

    def post_linked(self, legs: Sequence[tuple[str, str, str, int]], currency: str, write: MemoryWrite,
                    owner_id: str | None = None) -> None:
        with self.lock:
            write.check()
            net: dict[str, int] = {}
            for transfer_id, debit, credit, amount in legs:
                assert transfer_id not in self.transfers, f"{transfer_id} posted twice"
                net[debit] = net.get(debit, 0) + amount
                net[credit] = net.get(credit, 0) - amount
            # The ledger judges each account on its net change in the transaction, as here.
            for _, debit, _, _ in legs:
                self._debitable(debit, owner_id, max(net[debit], 0))
            for transfer_id, debit, credit, amount in legs:
                self.accounts[debit].posted -= amount
                self.accounts[credit].posted += amount
                self.transfers[transfer_id] = (debit, credit, amount)
            write.apply()

    def transfer_exists(self, transfer_id: str) -> bool:
        with self.lock:
            return transfer_id in self.transfers

    def _debitable(self, account_id: str, owner_id: str | None, amount_minor: int) -> _Account:
        account = self.accounts.get(account_id)
        if account is None or (owner_id is not None and account.owner_id != owner_id):
            raise WalletAccountNotFound("no such account", errors=(("account_id", "not found"),))
        if account.limited and account.posted - account.pending_debits < amount_minor:
            raise InsufficientBalance("the available balance is below the amount",
                                      errors=(("amount", "above the available balance"),))
        return account
