"""The wealth table (HASH pk, RANGE sk): products, orders, positions, published figures, batch records.

Items (each a JSON `doc`, with `version` where it changes):
- `product` / `<product id>`: the catalogue, one partition (a few hundred products at most);
- `order#<customer id>` / `<order id>`: a customer's orders, so another customer's is simply absent;
- `due#<product id>#<date>` / `<customer id> <order id>`: the orders confirmed on that date, written with
  the order; the batch's confirmation step reads them a page at a time;
- `pos#<product id>` / `<customer id>`: a product's positions, so the daily batch pages over them with
  one Query per page (sorted by customer); `cpos#<customer id>` / `<product id>` lists a customer's; an
  MMF position is its holder's sub-ledger of the daily income (accrued units, newest incomes), changed
  on its `version`;
- `fig#<product id>` / `<date>`: the day's published income per 10,000 units, then its settlement;
- `nav#<product id>` / `<date>`: a NAV fund's NAV of a trading day;
- `chunk#<product id>#<date>` / `<first customer id>`: one batch transaction's holders, units and
  incomes, written in that transaction with its holders' rows (attribute_not_exists: the exactly-once
  guard);
- `fast#<product id>#<customer id>` / `<date>`: fast redemptions of the day, against the cap;
- `mat#<product id>#<date>` / `<customer id> <order id>`: the fixed terms maturing that date, written
  with the term's confirmation (or the maturity that rolled it over);
- `priced#<product id>#<date>` / `<customer id> <order id>`: the NAV orders priced at that date's NAV,
  written with each confirmation, so a correction of the NAV re-prices exactly those.

A write that goes with money is not made here: `*_write` hands the item and its condition to the ledger's
transaction (the ledger's TransactionExtra), as payments does with its intents.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError
from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from finfaas.domain.calendar import Cutoff
from finfaas.domain.wealth import DayCount, FeeTier, FixedTerm, Lot, MaturityInstruction, Rounding
from finfaas.platform import jsonio
from finfaas.platform.config import resource_name, settings
from finfaas.services.wealth.errors import InvalidOrder, WealthStoreUnavailable
from finfaas.services.wealth.model import (
    DailyIncome,
    FigureCorrection,
    IncomeChunk,
    NavFigure,
    OrderKind,
    OrderStatus,
    Position,
    PositionPage,
    Product,
    ProductKind,
    ProductStatus,
    SubscriptionOrder,
)
from finfaas.services.wealth.ports import AlreadyRecorded, RowMoved
from finfaas.store.binding import StoreMeta, bound
from finfaas.store.dynamo import any_condition_failed, conditional_write
from finfaas.store.models import format_time, parse_time

WEALTH_TABLE_LOGICAL_NAME = "wealth"
PRODUCT_PK = "product"
# A Query page of chunk records or figures: small items, so one page holds many.
query_page_items_max = 1_000
# `finfaas wealth check` scans the table in scan_segments segments, scan_threads at once. DynamoDB Local
# walks a segment from its start for every page, so a scan's work grows with segment size × pages: at
# 30,000 positions (90,000 items) one segment of 1 MB pages took 40.8 s, 4 segments of 250 items 26.0 s,
# 32 segments of 1,000 items 6.7 s. Small segments also keep each page well within the client's read
# timeout (a whole 1 MB page of one segment of 100,000 positions did not, on a loaded machine).
scan_page_items_max = 1_000
scan_segments = 32
scan_threads = 4
cursor_chars_max = 512



class ScannedItem(NamedTuple):
    """An item as the check reads it: its keys and its record's JSON."""

    pk: str
    sk: str
    doc: str


class _WealthItem(Model):
    """Every item of the table; `doc` is the JSON of the record, `version` where it changes."""

    Meta = StoreMeta

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = UnicodeAttribute()
    version = NumberAttribute(default=1)


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


# --- codecs ------------------------------------------------------------------------------------------


def product_to_json(product: Product) -> str:
    term = product.fixed_term
    return _dumps({
        "product_id": product.product_id, "kind": product.kind.value, "name": product.name,
        "market": product.market, "currency": product.currency, "status": product.status.value,
        "minimum_minor": product.minimum_minor, "fund_account_id": product.fund_account_id,
        "cutoff": {"at": product.cutoff.at.isoformat(), "time_zone": product.cutoff.time_zone},
        "rounding": product.rounding.value, "fast_redemption_cap_minor": product.fast_redemption_cap_minor,
        "subscription_fee_rate": str(product.subscription_fee_rate),
        "redemption_fee_tiers": [[t.held_days_min, str(t.rate)] for t in product.redemption_fee_tiers],
        "fixed_term": None if term is None else {
            "rate": str(term.rate), "demand_rate": str(term.demand_rate), "term_days": term.term_days,
            "day_count": term.day_count.value, "minimum_minor": term.minimum_minor},
    })


def product_from_json(text: str) -> Product:
    raw: dict[str, Any] = jsonio.loads(text)
    term = raw["fixed_term"]
    return Product(
        raw["product_id"], ProductKind(raw["kind"]), raw["name"], raw["market"], raw["currency"],
        ProductStatus(raw["status"]), int(raw["minimum_minor"]), raw["fund_account_id"],
        Cutoff(time.fromisoformat(raw["cutoff"]["at"]), raw["cutoff"]["time_zone"]),
        Rounding(raw["rounding"]), int(raw["fast_redemption_cap_minor"]),
        Decimal(raw["subscription_fee_rate"]),
        tuple(FeeTier(int(days), Decimal(rate)) for days, rate in raw["redemption_fee_tiers"]),
        None if term is None else FixedTerm(Decimal(term["rate"]), Decimal(term["demand_rate"]),
                                            int(term["term_days"]), DayCount(term["day_count"]),
                                            int(term["minimum_minor"])))


def order_to_json(order: SubscriptionOrder) -> str:
    return _dumps({
        "order_id": order.order_id, "customer_id": order.customer_id, "product_id": order.product_id,
        "account_id": order.account_id, "amount_minor": order.amount_minor, "currency": order.currency,
        "maturity_instruction": order.maturity_instruction.value if order.maturity_instruction else None,
        "placed_at": order.placed_at.isoformat(), "trade_date": order.trade_date.isoformat(),
        "confirmation_date": order.confirmation_date.isoformat(), "hold_id": order.hold_id,
        "status": order.status.value, "kind": order.kind.value, "version": order.version,
        "nav": _optional(order.nav), "units_minor": order.units_minor, "fee_minor": order.fee_minor,
        "fee_booked": order.fee_booked, "early_redeemed_minor": order.early_redeemed_minor,
        "partial_redemptions": order.partial_redemptions,
        "awaiting_nav_since": order.awaiting_nav_since.isoformat() if order.awaiting_nav_since else None,
        "lots_redeemed": [[lot.units_minor, lot.confirmed_on.isoformat()] for lot in order.lots_redeemed],
        "corrections": order.corrections,
    })


def order_from_json(text: str) -> SubscriptionOrder:
    raw: dict[str, Any] = json.loads(text)  # written by order_to_json alone, as a row (position_from_json)
    instruction = raw["maturity_instruction"]
    return SubscriptionOrder(
        raw["order_id"], raw["customer_id"], raw["product_id"], raw["account_id"], int(raw["amount_minor"]),
        raw["currency"], MaturityInstruction(instruction) if instruction else None,
        datetime.fromisoformat(raw["placed_at"]), date.fromisoformat(raw["trade_date"]),
        date.fromisoformat(raw["confirmation_date"]), raw["hold_id"], OrderStatus(raw["status"]),
        OrderKind(raw["kind"]), int(raw["version"]),
        Decimal(raw["nav"]) if raw.get("nav") is not None else None, raw.get("units_minor"),
        raw.get("fee_minor"), bool(raw.get("fee_booked", False)), int(raw.get("early_redeemed_minor", 0)),
        int(raw.get("partial_redemptions", 0)),
        date.fromisoformat(raw["awaiting_nav_since"]) if raw.get("awaiting_nav_since") else None,
        tuple(Lot(int(u), date.fromisoformat(d)) for u, d in raw.get("lots_redeemed", [])),
        int(raw.get("corrections", 0)))


def position_to_json(position: Position) -> str:
    return _dumps({
        "product_id": position.product_id, "customer_id": position.customer_id,
        "account_id": position.account_id, "opened_on": position.opened_on.isoformat(),
        "last_income_date": position.last_income_date.isoformat() if position.last_income_date else None,
        "last_income_minor": position.last_income_minor,
        "cumulative_income_minor": position.cumulative_income_minor,
        "units_minor": position.units_minor, "version": position.version,
        "units_held_minor": position.units_held_minor,
        "lots": [[lot.units_minor, lot.confirmed_on.isoformat()] for lot in position.lots],
        "accrued_units_minor": position.accrued_units_minor,
        "recent_incomes": [[day.isoformat(), minor] for day, minor in position.recent_incomes],
        "ledger_units_minor": position.ledger_units_minor,
    })


def position_from_json(text: str) -> Position:
    # A row's doc is written by position_to_json alone (three levels deep) and read for every holder each
    # day: the standard parser, without the bounded parser's depth scan that untrusted input needs.
    raw: dict[str, Any] = json.loads(text)
    last = raw["last_income_date"]
    return Position(raw["product_id"], raw["customer_id"], raw["account_id"],
                    date.fromisoformat(raw["opened_on"]), date.fromisoformat(last) if last else None,
                    int(raw["last_income_minor"]), int(raw["cumulative_income_minor"]),
                    int(raw.get("units_minor", 0)),
                    tuple(Lot(int(u), date.fromisoformat(d)) for u, d in raw.get("lots", [])),
                    int(raw.get("version", 1)), int(raw.get("units_held_minor", 0)),
                    int(raw.get("accrued_units_minor", 0)),
                    tuple((date.fromisoformat(d), int(m)) for d, m in raw.get("recent_incomes", [])),
                    raw.get("ledger_units_minor"))


def _corrections_to_json(corrections: Sequence[FigureCorrection]) -> list[dict[str, str]]:
    return [{"previous": str(c.previous), "reason": c.reason, "actor": c.actor, "at": format_time(c.at)}
            for c in corrections]


def _corrections_from_json(raw: Sequence[dict[str, str]]) -> tuple[FigureCorrection, ...]:
    return tuple(FigureCorrection(Decimal(c["previous"]), c["reason"], c["actor"], parse_time(c["at"]))
                 for c in raw)


def nav_to_json(figure: NavFigure) -> str:
    return _dumps({"product_id": figure.product_id, "day": figure.day.isoformat(), "nav": str(figure.nav),
                   "published_at": format_time(figure.published_at), "version": figure.version,
                   "corrections": _corrections_to_json(figure.corrections)})


def nav_from_json(text: str) -> NavFigure:
    raw: dict[str, Any] = jsonio.loads(text)
    return NavFigure(raw["product_id"], date.fromisoformat(raw["day"]), Decimal(raw["nav"]),
                     parse_time(raw["published_at"]), int(raw["version"]),
                     _corrections_from_json(raw.get("corrections", [])))


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


def figure_to_json(figure: DailyIncome) -> str:
    return _dumps({
        "product_id": figure.product_id, "day": figure.day.isoformat(),
        "income_per_10k_units": str(figure.income_per_10k_units),
        "published_at": format_time(figure.published_at), "version": figure.version,
        "seven_day_yield_percent": _optional(figure.seven_day_yield_percent),
        "units_total_minor": figure.units_total_minor, "distributable_minor": figure.distributable_minor,
        "posted_minor": figure.posted_minor, "remainder_minor": figure.remainder_minor,
        "holders": figure.holders, "corrections": _corrections_to_json(figure.corrections),
        "posting_started": figure.posting_started,
    })


def figure_from_json(text: str) -> DailyIncome:
    raw: dict[str, Any] = jsonio.loads(text)
    yield_text = raw["seven_day_yield_percent"]
    return DailyIncome(raw["product_id"], date.fromisoformat(raw["day"]),
                       Decimal(raw["income_per_10k_units"]), parse_time(raw["published_at"]),
                       int(raw["version"]), Decimal(yield_text) if yield_text is not None else None,
                       raw["units_total_minor"], raw["distributable_minor"], raw["posted_minor"],
                       raw["remainder_minor"], raw["holders"],
                       _corrections_from_json(raw.get("corrections", [])),
                       bool(raw.get("posting_started", False)))


def chunk_to_json(chunk: IncomeChunk) -> str:
    return _dumps({"product_id": chunk.product_id, "day": chunk.day.isoformat(),
                   "first_customer_id": chunk.first_customer_id, "holders": chunk.holders,
                   "units_total_minor": chunk.units_total_minor,
                   "income_total_minor": chunk.income_total_minor})


def chunk_from_json(text: str) -> IncomeChunk:
    raw: dict[str, Any] = jsonio.loads(text)
    return IncomeChunk(raw["product_id"], date.fromisoformat(raw["day"]), raw["first_customer_id"],
                       int(raw["holders"]), int(raw["units_total_minor"]), int(raw["income_total_minor"]))


# --- the ledger's extras ------------------------------------------------------------------------------


class _Write:
    """A TransactionExtra: one conditional put (and a few unconditional ones) riding in a ledger
    transaction. A failed condition means the row was written already (a rerun, a rival, a retry whose
    answer was lost): AlreadyRecorded, unless `moved` says the row changed under a rival's hand."""

    def __init__(self, item: Any, condition: Any, more: Sequence[Any] = (),
                 moved: type[Exception] | None = None, recorded: Any = None) -> None:
        self._item = item
        self._condition = condition
        self._more = list(more)
        self._moved = moved
        self._recorded = recorded

    def put_for(self, result: Any) -> tuple[Any, Any]:
        return self._item, self._condition

    def more_puts_for(self, result: Any) -> list[tuple[Any, Any]]:
        return [(item, None) for item in self._more]

    def conflicted(self, raw_item: dict[str, Any] | None) -> None:
        if self._moved is not None and (self._recorded is None or not self._recorded()):
            raise self._moved("the row changed while this request ran; try again")
        raise AlreadyRecorded(f"{self._item.pk} {self._item.sk} is written already")

    def committed(self) -> None:
        return None


class _ConfirmWrite(_Write):
    """An order's confirmation: the order (on its version), its position (on its version) and, for a NAV
    order, the order listed under the NAV it was priced at."""

    def __init__(self, item: Any, condition: Any, position_item: Any, position_condition: Any,
                 priced_item: Any | None) -> None:
        super().__init__(item, condition)
        self._position = (position_item, position_condition)
        self._priced = priced_item

    def more_puts_for(self, result: Any) -> list[tuple[Any, Any]]:
        return [self._position] + ([(self._priced, None)] if self._priced is not None else [])

    def more_conflicted(self, n: int, raw_item: dict[str, Any] | None) -> None:
        raise RowMoved("the position changed while the order was confirmed; try again")


class _FastWrite(_Write):
    """A fast redemption: the day's usage (on the figure it was judged on), the order, and the position
    with its mirrored units (on its version). Either condition failing is a rival's move (RowMoved),
    unless the order is recorded already (this request's own answer was lost)."""

    def __init__(self, item: Any, condition: Any, more: Sequence[tuple[Any, Any]], recorded: Any) -> None:
        super().__init__(item, condition, moved=RowMoved, recorded=recorded)
        self._conditional_more = list(more)

    def more_puts_for(self, result: Any) -> list[tuple[Any, Any]]:
        return self._conditional_more

    def more_conflicted(self, n: int, raw_item: dict[str, Any] | None) -> None:
        self.conflicted(raw_item)


class _ChunkWrite(_Write):
    """A batch chunk: its record (attribute_not_exists) and its holders' rows, each on its version."""

    def __init__(self, item: Any, condition: Any, positions: Sequence[tuple[Any, Any]], day: date) -> None:
        super().__init__(item, condition)
        self._positions = list(positions)
        self._day = day.isoformat()

    def more_puts_for(self, result: Any) -> list[tuple[Any, Any]]:
        return self._positions

    def more_conflicted(self, n: int, raw_item: dict[str, Any] | None) -> None:
        # A row credited for the day was credited with its chunk's record: the chunk is posted. Any other
        # change (a sweep by a redemption) means the chunk must be built again from fresh rows.
        doc = (raw_item or {}).get("doc", {}).get("S")
        if doc is not None and jsonio.loads(doc).get("last_income_date") == self._day:
            raise AlreadyRecorded(f"{self._item.pk} {self._item.sk} is written already")
        raise RowMoved("a holder's position changed while its chunk was posted; build it again")


# --- the store ----------------------------------------------------------------------------------------


class WealthStore:
    """WealthRepository on DynamoDB (pynamodb). Thread-safe; share one per process."""

    def __init__(self, table_name: str | None = None, region: str | None = None) -> None:
        self.table_name = table_name or resource_name(WEALTH_TABLE_LOGICAL_NAME)
        self._item = bound(_WealthItem, self.table_name, region or settings().region)

    def register_hook(self, event_name: str, handler: Any) -> None:
        self._item._get_connection().connection.client.meta.events.register(event_name, handler)

    def unregister_hook(self, event_name: str, handler: Any) -> None:
        self._item._get_connection().connection.client.meta.events.unregister(event_name, handler)

    # -- reads and plain writes ---------------------------------------------------------------

    def _get(self, pk: str, sk: str) -> Any | None:
        try:
            return self._item.get(pk, sk, consistent_read=True)
        except self._item.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise WealthStoreUnavailable(f"read {pk} {sk}: {error}") from error

    def _query(self, pk: str, condition: Any = None, limit: int | None = None,
               last_key: dict[str, Any] | None = None, consistent: bool = True) -> Any:
        try:
            return self._item.query(pk, condition, consistent_read=consistent, limit=limit,
                                    last_evaluated_key=last_key, page_size=min(limit or query_page_items_max,
                                                                               query_page_items_max))
        except PynamoDBException as error:
            raise WealthStoreUnavailable(f"query {pk}: {error}") from error

    def _create(self, item: Any) -> bool:
        written = conditional_write(lambda: item.save(condition=self._item.pk.does_not_exist()))
        if written.taken:
            return True
        if any_condition_failed(written.error):
            return False
        raise WealthStoreUnavailable(f"write {item.pk} {item.sk}: {written.code}") from written.error

    def products(self, limit: int) -> list[Product]:
        try:
            return [product_from_json(i.doc) for i in self._query(PRODUCT_PK, limit=limit)]
        except PynamoDBException as error:
            raise WealthStoreUnavailable(f"read products: {error}") from error

    def product(self, product_id: str) -> Product | None:
        item = self._get(PRODUCT_PK, product_id)
        return product_from_json(item.doc) if item is not None else None

    def create_product(self, product: Product) -> Product:
        self._create(self._item(PRODUCT_PK, product.product_id, doc=product_to_json(product), version=1))
        stored = self.product(product.product_id)
        assert stored is not None
        return stored

    def save_product(self, product: Product, previous_status: str) -> bool:
        item = self._get(PRODUCT_PK, product.product_id)
        if item is None or product_from_json(item.doc).status.value != previous_status:
            return False
        version = int(item.version)
        new = self._item(PRODUCT_PK, product.product_id, doc=product_to_json(product), version=version + 1)
        written = conditional_write(lambda: new.save(condition=self._item.version == version))
        return written.or_raise(lambda w: WealthStoreUnavailable(f"save product: {w.code}"))

    def order(self, customer_id: str, order_id: str) -> SubscriptionOrder | None:
        item = self._get(f"order#{customer_id}", order_id)
        return order_from_json(item.doc) if item is not None else None

    def orders_of(self, customer_id: str, limit: int) -> list[SubscriptionOrder]:
        try:
            return [order_from_json(i.doc) for i in self._query(f"order#{customer_id}", limit=limit)]
        except PynamoDBException as error:
            raise WealthStoreUnavailable(f"read orders: {error}") from error

    def order_write(self, order: SubscriptionOrder) -> _Write:
        item = self._item(f"order#{order.customer_id}", order.order_id, doc=order_to_json(order),
                          version=order.version)
        if order.version == 1:
            more = []
            if order.status is OrderStatus.PENDING:
                more.append(self._listed_item(f"due#{order.product_id}#{order.confirmation_date.isoformat()}",
                                              order))
            return _Write(item, self._item.pk.does_not_exist(), more)
        return _Write(item, self._item.version == order.version - 1)

    def due_orders(self, product_id: str, day: date, limit: int,
                   cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        return self._listed(f"due#{product_id}#{day.isoformat()}", limit, cursor)

    def create_position(self, position: Position) -> Position:
        item = self._item(f"pos#{position.product_id}", position.customer_id, doc=position_to_json(position))
        self._create(item)
        index = self._item(f"cpos#{position.customer_id}", position.product_id, doc="{}")
        written = conditional_write(index.save)
        written.or_raise(lambda w: WealthStoreUnavailable(f"write position index: {w.code}"))
        stored = self.position(position.product_id, position.customer_id)
        assert stored is not None
        return stored

    def position(self, product_id: str, customer_id: str) -> Position | None:
        item = self._get(f"pos#{product_id}", customer_id)
        return position_from_json(item.doc) if item is not None else None

    def positions_of(self, customer_id: str) -> list[Position]:
        try:
            products = [i.sk for i in self._query(f"cpos#{customer_id}")]
        except PynamoDBException as error:
            raise WealthStoreUnavailable(f"read positions: {error}") from error
        found = [self.position(product_id, customer_id) for product_id in products]
        return [p for p in found if p is not None]

    def positions_page(self, product_id: str, limit: int, cursor: str | None) -> PositionPage:
        """Exactly limit positions unless the partition ends (a Query's 1 MB page is followed up), so a
        rerun pages over the same positions. Read as raw items: the batch reads every row each day, and
        a model instance per row is work it does not need."""
        pk = f"pos#{product_id}"
        start = _decode_key(cursor, pk)
        docs: list[str] = []
        while True:
            page = self._raw_query(pk, limit - len(docs), start)
            docs += [item["doc"]["S"] for item in page.get("Items", ())]
            start = page.get("LastEvaluatedKey")
            if start is None or len(docs) >= limit:
                break
        return PositionPage(tuple(position_from_json(d) for d in docs), _encode_key(start))

    def _raw_query(self, pk: str, limit: int, start: dict[str, Any] | None) -> dict[str, Any]:
        try:
            # The model's own connection knows the table (a bare Connection would need DescribeTable).
            page: dict[str, Any] = self._item._get_connection().query(
                pk, limit=limit, exclusive_start_key=start, consistent_read=True)
        except (PynamoDBException, BotoCoreError) as error:
            raise WealthStoreUnavailable(f"query {pk}: {error}") from error
        return page

    def all_positions(self, product_id: str) -> list[Position]:
        """Every position of the product (tooling: the check and the bench)."""
        found: list[Position] = []
        cursor = None
        while True:
            page = self.positions_page(product_id, query_page_items_max, cursor)
            found.extend(page.positions)
            cursor = page.next_cursor
            if cursor is None:
                return found

    def publish_income(self, figure: DailyIncome, replace_version: int | None) -> bool:
        item = self._figure_item(figure)
        condition = (self._item.pk.does_not_exist() if replace_version is None
                     else self._item.version == replace_version)
        written = conditional_write(lambda: item.save(condition=condition))
        return written.or_raise(lambda w: WealthStoreUnavailable(f"publish figure: {w.code}"))

    def daily_income(self, product_id: str, day: date) -> DailyIncome | None:
        item = self._get(f"fig#{product_id}", day.isoformat())
        return figure_from_json(item.doc) if item is not None else None

    def daily_incomes(self, product_id: str, first: date, last: date) -> list[DailyIncome]:
        condition = self._item.sk.between(first.isoformat(), last.isoformat())
        try:
            return [figure_from_json(i.doc) for i in self._query(f"fig#{product_id}", condition)]
        except PynamoDBException as error:
            raise WealthStoreUnavailable(f"read figures: {error}") from error

    def publish_nav(self, figure: NavFigure, replace_version: int | None) -> bool:
        item = self._item(f"nav#{figure.product_id}", figure.day.isoformat(), doc=nav_to_json(figure),
                          version=figure.version)
        condition = (self._item.pk.does_not_exist() if replace_version is None
                     else self._item.version == replace_version)
        written = conditional_write(lambda: item.save(condition=condition))
        return written.or_raise(lambda w: WealthStoreUnavailable(f"publish nav: {w.code}"))

    def nav(self, product_id: str, day: date) -> NavFigure | None:
        item = self._get(f"nav#{product_id}", day.isoformat())
        return nav_from_json(item.doc) if item is not None else None

    def place_order(self, order: SubscriptionOrder, position: Position) -> bool:
        write = self.order_write(order)
        order_item, order_condition = write.put_for(None)
        position_item, position_condition = self._position_put(position)

        def transact() -> None:
            with TransactWrite(connection=self._item._get_connection().connection) as transaction:
                transaction.save(order_item, condition=order_condition)
                for due, _ in write.more_puts_for(None):
                    transaction.save(due)
                transaction.save(position_item, condition=position_condition)

        return conditional_write(transact).or_raise(
            lambda w: WealthStoreUnavailable(f"place order: {w.code}"))

    def term_write(self, order: SubscriptionOrder, listed: Sequence[tuple[SubscriptionOrder, date]],
                   recorded: Sequence[SubscriptionOrder] = ()) -> _Write:
        item = self._item(f"order#{order.customer_id}", order.order_id, doc=order_to_json(order),
                          version=order.version)
        more = [self._item(f"order#{o.customer_id}", o.order_id, doc=order_to_json(o), version=o.version)
                for o in recorded]
        for other, maturity in listed:
            if other.order_id != order.order_id:
                more.append(self._item(f"order#{other.customer_id}", other.order_id, doc=order_to_json(other),
                                       version=other.version))
            more.append(self._listed_item(f"mat#{other.product_id}#{maturity.isoformat()}", other))
        return _Write(item, self._item.version == order.version - 1, more)

    def maturing(self, product_id: str, day: date, limit: int,
                 cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        return self._listed(f"mat#{product_id}#{day.isoformat()}", limit, cursor)

    def confirm_write(self, order: SubscriptionOrder, position: Position) -> _Write:
        assert order.version > 1 and position.version > 1
        order_item, order_condition = self.order_write(order).put_for(None)
        position_item, position_condition = self._position_put(position)
        priced = (None if order.nav is None
                  else self._listed_item(f"priced#{order.product_id}#{order.trade_date.isoformat()}", order))
        return _ConfirmWrite(order_item, order_condition, position_item, position_condition, priced)

    def priced_orders(self, product_id: str, day: date, limit: int,
                      cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        return self._listed(f"priced#{product_id}#{day.isoformat()}", limit, cursor)

    def relist_due(self, order: SubscriptionOrder, day: date) -> None:
        item = self._listed_item(f"due#{order.product_id}#{day.isoformat()}", order)
        conditional_write(item.save).or_raise(lambda w: WealthStoreUnavailable(f"list due order: {w.code}"))

    def save_order(self, order: SubscriptionOrder) -> bool:
        assert order.version > 1, "a new order is written with its money"
        item, condition = self.order_write(order).put_for(None)
        written = conditional_write(lambda: item.save(condition=condition))
        return written.or_raise(lambda w: WealthStoreUnavailable(f"save order: {w.code}"))

    def _listed_item(self, pk: str, order: SubscriptionOrder) -> Any:
        return self._item(pk, f"{order.customer_id} {order.order_id}",
                          doc=_dumps({"customer_id": order.customer_id, "order_id": order.order_id}))

    def _listed(self, pk: str, limit: int, cursor: str | None) -> tuple[list[tuple[str, str]], str | None]:
        result = self._query(pk, limit=limit, last_key=_decode_key(cursor, pk))
        try:
            found = [(raw["customer_id"], raw["order_id"]) for raw in (jsonio.loads(i.doc) for i in result)]
        except PynamoDBException as error:
            raise WealthStoreUnavailable(f"read {pk}: {error}") from error
        return found, _encode_key(result.last_evaluated_key)

    def chunk_write(self, chunk: IncomeChunk, positions: Sequence[Position]) -> _Write:
        return _ChunkWrite(self._chunk_item(chunk), self._item.pk.does_not_exist(),
                           [self._position_put(p) for p in positions], chunk.day)

    def position_write(self, position: Position) -> _Write:
        item, condition = self._position_put(position)
        return _Write(item, condition, moved=RowMoved)

    def _position_put(self, position: Position) -> tuple[Any, Any]:
        item = self._item(f"pos#{position.product_id}", position.customer_id, doc=position_to_json(position),
                          version=position.version)
        return item, self._item.version == position.version - 1

    def record_chunk(self, chunk: IncomeChunk) -> bool:
        return self._create(self._chunk_item(chunk))

    def chunks(self, product_id: str, day: date) -> list[IncomeChunk]:
        try:
            return [chunk_from_json(i.doc) for i in self._query(f"chunk#{product_id}#{day.isoformat()}")]
        except PynamoDBException as error:
            raise WealthStoreUnavailable(f"read chunks: {error}") from error

    def settlement_write(self, figure: DailyIncome) -> _Write:
        return _Write(self._figure_item(figure), self._item.version == figure.version - 1)

    def settle_without_money(self, figure: DailyIncome) -> bool:
        item = self._figure_item(figure)
        written = conditional_write(lambda: item.save(condition=self._item.version == figure.version - 1))
        return written.or_raise(lambda w: WealthStoreUnavailable(f"settle figure: {w.code}"))

    def fast_usage(self, product_id: str, customer_id: str, day: date) -> int:
        item = self._get(f"fast#{product_id}#{customer_id}", day.isoformat())
        return int(item.version) if item is not None else 0

    def fast_usage_write(self, product_id: str, customer_id: str, day: date, used_before_minor: int,
                         used_after_minor: int, order: SubscriptionOrder, position: Position) -> _Write:
        # The usage is kept in `version`, so the condition is the figure it was judged on.
        item = self._item(f"fast#{product_id}#{customer_id}", day.isoformat(), doc="{}",
                          version=used_after_minor)
        condition = (self._item.pk.does_not_exist() if used_before_minor == 0
                     else self._item.version == used_before_minor)
        order_item = self._item(f"order#{order.customer_id}", order.order_id, doc=order_to_json(order),
                                version=order.version)
        return _FastWrite(item, condition, [(order_item, None), self._position_put(position)],
                          recorded=lambda: self.order(order.customer_id, order.order_id) is not None)

    def seed(self, positions: Sequence[Position], orders: Sequence[SubscriptionOrder]) -> None:
        """Tooling (tests, the bench): write positions, their index items and orders as they are, 25 to a
        BatchWriteItem; never a path of the function."""
        try:
            with self._item.batch_write() as batch:
                for p in positions:
                    batch.save(self._item(f"pos#{p.product_id}", p.customer_id, doc=position_to_json(p)))
                    batch.save(self._item(f"cpos#{p.customer_id}", p.product_id, doc="{}"))
                for o in orders:
                    batch.save(self._item(f"order#{o.customer_id}", o.order_id, doc=order_to_json(o),
                                          version=o.version))
        except PynamoDBException as error:
            raise WealthStoreUnavailable(f"seed: {error}") from error

    def scan_all(self) -> Iterator[ScannedItem]:
        """Every item, in no particular order (tooling: `finfaas wealth check`): the table's segments read
        a few at once as raw items, so the emulator's work spreads over its cores and no model instance
        is built per item."""
        with ThreadPoolExecutor(scan_threads) as pool:
            for found in pool.map(self._scan_segment, range(scan_segments)):
                yield from found

    def _scan_segment(self, segment: int) -> list[ScannedItem]:
        connection = self._item._get_connection()
        found: list[ScannedItem] = []
        start = None
        while True:
            try:
                page = connection.scan(limit=scan_page_items_max, segment=segment,
                                       total_segments=scan_segments, exclusive_start_key=start,
                                       consistent_read=True)
            except (PynamoDBException, BotoCoreError) as error:
                raise WealthStoreUnavailable(f"scan: {error}") from error
            found += [ScannedItem(i["pk"]["S"], i["sk"]["S"], i.get("doc", {}).get("S", ""))
                      for i in page.get("Items", ())]
            start = page.get("LastEvaluatedKey")
            if start is None:
                return found

    def _figure_item(self, figure: DailyIncome) -> Any:
        return self._item(f"fig#{figure.product_id}", figure.day.isoformat(), doc=figure_to_json(figure),
                          version=figure.version)

    def _chunk_item(self, chunk: IncomeChunk) -> Any:
        return self._item(f"chunk#{chunk.product_id}#{chunk.day.isoformat()}", chunk.first_customer_id,
                          doc=chunk_to_json(chunk))


def _encode_key(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(_dumps(key).encode()).decode()


def _decode_key(cursor: str | None, pk: str) -> dict[str, Any] | None:
    """A Query's resume key from a cursor this store issued for the same partition (else refused)."""
    if cursor is None:
        return None
    try:
        if len(cursor) > cursor_chars_max:
            raise ValueError("too long")
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if key["pk"] != {"S": pk} or set(key) != {"pk", "sk"} or set(key["sk"]) != {"S"}:
            raise ValueError("another list's cursor")
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidOrder("cursor: not one the batch issued", errors=(("cursor", "malformed"),)) from error
    return dict(key)


# A balance needs only these of an account's attributes: the reply of a BatchGetItem is parsed attribute
# by attribute, and the batch reads every holder's balance each day.
BALANCE_ATTRIBUTES = ("account_id", "credits_posted", "debits_posted", "available_minor")


# One BatchGetItem reads at most this many keys.
batch_get_keys_max = 100


def ledger_balances_reader(ledger_store: Any) -> Any:
    """Reads many ledger accounts' (posted balance, available), one BatchGetItem per 100 keys projected to
    the figures a balance needs and read as raw items (the check reads every holder's); the keys the
    store left unprocessed are asked again."""
    model = ledger_store.models.account

    def read(account_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        wanted = list(dict.fromkeys(account_ids))
        found: dict[str, tuple[int, int]] = {}
        while wanted:
            asked, wanted = wanted[:batch_get_keys_max], wanted[batch_get_keys_max:]
            keys = [{"account_id": {"S": account_id}} for account_id in asked]
            reply = model._get_connection().batch_get_item(keys, consistent_read=True,
                                                           attributes_to_get=list(BALANCE_ATTRIBUTES))
            for raw in reply.get("Responses", {}).get(model.Meta.table_name, ()):
                posted = int(raw["credits_posted"]["N"]) - int(raw["debits_posted"]["N"])
                found[raw["account_id"]["S"]] = (posted, int(raw["available_minor"]["N"]))
            left = reply.get("UnprocessedKeys", {}).get(model.Meta.table_name, {}).get("Keys", ())
            wanted += [key["account_id"]["S"] for key in left]
        return found

    return read
