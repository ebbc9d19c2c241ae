"""The transfer orders table (HASH pk, RANGE sk): orders, daily usage and customer tiers.

Items:
- `order#<transfer id>` / `-`: the order as JSON text (`doc`), its `version` and `status`;
- `usage#<owner>#<UTC day>#<currency>` / `-`: the day's total (`total_minor`, ADD);
- `usage#<owner>#<UTC day>#<currency>` / `tr#<transfer id>`: the amount one transfer counted;
- `tier#<owner>` / `-`: the customer's limits tier.

Two sparse indexes hold order items only (the others lack their keys), projecting little, so that an
order's many saves rewrite an index entry only when a projected value changes (its status), never
for the document:
- `by-owner-created` (owner_id, created_at; status and the accounts a list filters on): a customer's
  transfers newest first, a Query of one partition;
- `by-open-status` (open_status, created_at; keys only): orders not yet final, per status, for the
  operators' lists and counts. `open_status` is removed when an order becomes final, so the index
  holds only the open orders, whatever the table's size. Each status is one partition, and every
  transfer writes to ACCEPTED and to PROCESSING twice (in, then out): 2 writes per saga on each.
  DynamoDB throttles a partition at 1,000 writes a second and the transfer saga runs at about 10 a
  second here (docs/workflows.md), a margin of 50 times. Past a few hundred sagas a second, shard the
  key (`PROCESSING#<n>`, n from the transfer id) and query the shards.
Lists read the index for keys and the orders themselves with one consistent BatchGetItem a page.

An order change is a put conditional on the stored version; when it comes with an event or with
daily usage, one TransactWriteItems carries the order, the outbox event and the usage items, so
the three move together or not at all. A transfer's usage marker makes counting and giving back
happen once each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache, reduce
from typing import Any, Literal

from botocore.exceptions import BotoCoreError
from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.expressions.condition import Condition
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from finfaas.domain.creditor import SealedCreditor
from finfaas.domain.ledger import entry_key_prefix, micros
from finfaas.domain.limits import TIER_DEFAULT, Tier
from finfaas.platform import jsonio
from finfaas.platform.config import resource_name, settings
from finfaas.services.risk.model import AssessmentToRecord
from finfaas.services.transfers.errors import TransferStoreUnavailable
from finfaas.services.transfers.model import (
    OPEN_STATUSES,
    DailyUsage,
    ListPosition,
    OrderEvent,
    OrderFilter,
    OrderPage,
    StatusCount,
    Step,
    TaskKind,
    TransferOrder,
    TransferStatus,
    UsageOutcome,
    list_entries_examined_max,
)
from finfaas.store.binding import (
    BOUND_MODELS_MAX,
    RETRY_ATTEMPTS_MAX,
    StoreMeta,
    bound,
)
from finfaas.store.dynamo import (
    any_condition_failed,
    condition_flags,
    conditional_write,
    consistent_get,
    create_with_event,
    transient,
)
from finfaas.store.models import OutboxRecord, format_time, parse_time
from finfaas.store.outbox_store import outbox_partition
from finfaas.store.risk_store import RecordWrites, RiskStore

TRANSFER_ORDERS_TABLE_LOGICAL_NAME = "transferorders"
OUTBOX_TABLE_LOGICAL_NAME = "outbox"
EVENT_SOURCE = "finfaas/transfers"
OUTBOX_PRODUCER = "transfers"
NO_RANGE = "-"
ORDER_PREFIX = "order#"
BY_OWNER_INDEX = "by-owner-created"
BY_OWNER_INDEX_ATTRIBUTES = ("status", "debit_account_id", "payee_account_id")  # what lists filter on
BY_OPEN_STATUS_INDEX = "by-open-status"
index_page_entries_max = 100  # one Query of a filtered list reads at most this many index entries
# Counting a status reads its index partition in pages of up to 1 MB (about 7,000 keys-only entries);
# past this many pages the count is given as incomplete rather than read on.
count_pages_max = 10
_TIME_STEP = timedelta(microseconds=1)  # created_at's precision: strict bounds become inclusive ones


class _ByOwner(GlobalSecondaryIndex):
    class Meta:
        index_name = BY_OWNER_INDEX
        projection = IncludeProjection(list(BY_OWNER_INDEX_ATTRIBUTES))

    owner_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class _ByOpenStatus(GlobalSecondaryIndex):
    class Meta:
        index_name = BY_OPEN_STATUS_INDEX
        projection = KeysOnlyProjection()

    open_status = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class _OrderItem(Model):
    """Every item of the table; which attributes are set depends on the item's kind."""

    Meta = StoreMeta

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = UnicodeAttribute(null=True)
    version = NumberAttribute(null=True)
    status = UnicodeAttribute(null=True)
    owner_id = UnicodeAttribute(null=True)
    total_minor = NumberAttribute(null=True)
    amount_minor = NumberAttribute(null=True)
    tier = UnicodeAttribute(null=True)
    # Orders only: the indexes' keys and what lists filter on.
    created_at = UnicodeAttribute(null=True)
    open_status = UnicodeAttribute(null=True)  # the status while not final; absent once final
    debit_account_id = UnicodeAttribute(null=True)
    payee_account_id = UnicodeAttribute(null=True)  # a payee's account here; absent for another bank


class _OutboxItem(OutboxRecord):
    Meta = StoreMeta


@lru_cache(maxsize=BOUND_MODELS_MAX)
def _models(table_name: str, outbox_table_name: str, region: str) -> tuple[Any, Any]:
    # pynamodb ties an index to the model class that declares it, so each bound order model declares
    # indexes of its own (as executions_store.py does).
    indexes = {
        "by_owner": type("ByOwner", (_ByOwner,), {"Meta": type("Meta", (_ByOwner.Meta,), {})})(),
        "by_open_status": type("ByOpenStatus", (_ByOpenStatus,),
                               {"Meta": type("Meta", (_ByOpenStatus.Meta,), {})})(),
    }
    meta = type("Meta", (StoreMeta,), {"table_name": table_name, "region": region})
    order_model = type("OrderItem", (_OrderItem,), {"Meta": meta, **indexes, "__module__": __name__})
    return order_model, bound(_OutboxItem, outbox_table_name, region)


def order_key(transfer_id: str) -> tuple[str, str]:
    return f"{ORDER_PREFIX}{transfer_id}", NO_RANGE


def _usage_partition(usage: DailyUsage) -> str:
    return usage_partition(usage.owner_id, usage.day, usage.currency)


def usage_partition(owner_id: str, day: str, currency: str) -> str:
    return f"usage#{owner_id}#{day}#{currency}"


def tier_key(owner_id: str) -> tuple[str, str]:
    return f"tier#{owner_id}", NO_RANGE


# --- orders <-> JSON ---------------------------------------------------------------------------------


def order_to_json(order: TransferOrder) -> str:
    creditor = order.creditor.to_json() if order.creditor is not None else None
    document = {
        "transfer_id": order.transfer_id,
        "owner_id": order.owner_id,
        "debit_account_id": order.debit_account_id,
        "credit_account_id": order.credit_account_id,
        "amount_minor": str(order.amount_minor),
        "currency": order.currency,
        "created_at": format_time(order.created_at),
        "updated_at": format_time(order.updated_at) if order.updated_at else None,
        "status": order.status.value,
        "reference": order.reference,
        "creditor": creditor,
        "version": order.version,
        "tier": order.tier,
        "usage_day": order.usage_day,
        "screening": dict(order.screening) if order.screening is not None else None,
        "flags": list(order.flags),
        "failure": dict(order.failure) if order.failure is not None else None,
        "task_token": order.task_token,
        "task_kind": order.task_kind.value if order.task_kind else None,
        "decision": dict(order.decision) if order.decision is not None else None,
        "pending_approval": dict(order.pending_approval) if order.pending_approval is not None else None,
        "steps": [
            {"name": s.name, "outcome": s.outcome, "at": format_time(s.at), "detail": s.detail}
            for s in order.steps
        ],
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def order_from_json(text: str) -> TransferOrder:
    raw: dict[str, Any] = jsonio.loads(text)
    creditor = raw.get("creditor")
    return TransferOrder(
        transfer_id=raw["transfer_id"],
        owner_id=raw["owner_id"],
        debit_account_id=raw["debit_account_id"],
        credit_account_id=raw["credit_account_id"],
        amount_minor=int(raw["amount_minor"]),
        currency=raw["currency"],
        created_at=parse_time(raw["created_at"]),
        status=TransferStatus(raw["status"]),
        updated_at=parse_time(raw["updated_at"]) if raw.get("updated_at") else None,
        reference=raw.get("reference", ""),
        creditor=SealedCreditor.from_json(creditor) if creditor else None,
        version=int(raw["version"]),
        tier=raw.get("tier"),
        usage_day=raw.get("usage_day"),
        screening=raw.get("screening"),
        flags=tuple(raw.get("flags", ())),
        failure=raw.get("failure"),
        task_token=raw.get("task_token"),
        task_kind=TaskKind(raw["task_kind"]) if raw.get("task_kind") else None,
        decision=raw.get("decision"),
        pending_approval=raw.get("pending_approval"),
        steps=tuple(
            Step(s["name"], s["outcome"], parse_time(s["at"]), s.get("detail", ""))
            for s in raw.get("steps", ())
        ),
    )


class TransfersStore:
    """TransferOrders on DynamoDB (pynamodb). Thread-safe; share one per process."""

    def __init__(
        self, table_name: str | None = None, outbox_table_name: str | None = None, region: str | None = None,
        risk: RiskStore | None = None,
    ) -> None:
        # Given risk's store, a validation's one write also records the risk decision (reserve_usage), and
        # its one read looks risk's items up (store/transfer_reads.py).
        self.risk = risk
        self.table_name = table_name or resource_name(TRANSFER_ORDERS_TABLE_LOGICAL_NAME)
        self.outbox_table_name = outbox_table_name or resource_name(OUTBOX_TABLE_LOGICAL_NAME)
        region = region or settings().region
        self._item, self._outbox = _models(self.table_name, self.outbox_table_name, region)
        self._connection = Connection(region=region, max_retry_attempts=RETRY_ATTEMPTS_MAX)

    @property
    def item_model(self) -> Any:
        """The bound model of the table's items (orders, tiers, day totals), for reads across tables."""
        return self._item

    # -- orders -----------------------------------------------------------------------------------

    def create(self, order: TransferOrder, event: OrderEvent) -> TransferOrder:
        return create_with_event(
            self._connection, self._order_item(order), self._item.pk.does_not_exist(),
            self._event_item(order, event), order, lambda: self.get(order.transfer_id),
            lambda written: TransferStoreUnavailable(f"create {order.transfer_id}: {written.error}"))

    def get(self, transfer_id: str) -> TransferOrder | None:
        item = consistent_get(self._item, order_key(transfer_id),
                              lambda error: TransferStoreUnavailable(f"read {transfer_id}: {error}"))
        return None if item is None else order_from_json(item.doc)

    def save(self, order: TransferOrder, event: OrderEvent | None = None) -> bool:
        item = self._order_item(order)
        condition = self._item.version == order.version - 1

        def write() -> None:
            if event is None:
                item.save(condition=condition)
                return
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(item, condition=condition)
                transaction.save(self._event_item(order, event))

        written = conditional_write(write)
        if written.taken:
            return True
        if any_condition_failed(written.error):
            return False
        raise TransferStoreUnavailable(f"save {order.transfer_id}: {written.error}") from written.error

    def get_many(self, transfer_ids: Sequence[str]) -> dict[str, TransferOrder]:
        """The orders that exist among these ids, read consistently in BatchGetItem calls of 100 keys
        (pynamodb pages them and asks again for any key DynamoDB left unprocessed)."""
        keys = [order_key(transfer_id) for transfer_id in dict.fromkeys(transfer_ids)]
        try:
            items = list(self._item.batch_get(keys, consistent_read=True))
        except PynamoDBException as error:
            raise TransferStoreUnavailable(f"read {len(keys)} orders: {error}") from error
        orders = (order_from_json(item.doc) for item in items)
        return {order.transfer_id: order for order in orders}

    # -- daily usage ------------------------------------------------------------------------------

    def reserve_usage(self, order: TransferOrder, usage: DailyUsage,
                      screening: AssessmentToRecord | None = None) -> UsageOutcome:
        item = self._item
        partition = _usage_partition(usage)
        fits = item.total_minor.does_not_exist() | (item.total_minor <= usage.headroom_minor)
        if usage.headroom_minor < 0:
            return UsageOutcome.EXCEEDED
        risk = None if screening is None else self._risk_writes(screening)

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                # Puts, then updates: the cancellation reasons come back in this order (order, marker, the
                # assessment, its payee; the day's total, the risk bucket).
                transaction.save(self._order_item(order), condition=item.version == order.version - 1)
                transaction.save(
                    item(partition, f"tr#{order.transfer_id}", amount_minor=usage.amount_minor),
                    condition=item.pk.does_not_exist(),
                )
                for put, condition in [] if risk is None else risk.puts:
                    transaction.save(put, condition=condition)
                transaction.update(
                    item(partition, NO_RANGE),
                    actions=[item.total_minor.add(usage.amount_minor)],
                    condition=fits,
                )
                if risk is not None and risk.bucket is not None:
                    bucket, actions, condition = risk.bucket
                    transaction.update(bucket, actions=actions, condition=condition,
                                       add_version_condition=False)

        written = conditional_write(transact)
        if written.taken:
            return UsageOutcome.RESERVED
        flags = condition_flags(written.error)
        if flags is not None:
            order_conflict, marker_exists = flags[0], flags[1]
            over_limit = flags[4] if risk is not None else flags[2]
            if order_conflict or marker_exists:
                return UsageOutcome.CONFLICT
            if over_limit:
                return UsageOutcome.EXCEEDED
            if risk is not None:
                # The assessment was recorded alone meanwhile, or the customer's hour was counted into.
                return UsageOutcome.SCREENING_MOVED
        if risk is not None and transient(written.error):
            # Another transfer of the customer counted in the same instant, most likely: screen the usual way.
            return UsageOutcome.SCREENING_MOVED
        cause = written.error
        raise TransferStoreUnavailable(f"reserve usage {order.transfer_id}: {cause}") from cause

    def _risk_writes(self, screening: AssessmentToRecord) -> RecordWrites:
        if self.risk is None:
            raise ValueError("a screening rides only in a store given the risk store")
        return self.risk.record_writes(screening)

    def release_usage(self, order: TransferOrder, usage: DailyUsage, event: OrderEvent | None) -> bool:
        item = self._item
        partition = _usage_partition(usage)

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.delete(item(partition, f"tr#{order.transfer_id}"), condition=item.pk.exists())
                transaction.save(self._order_item(order), condition=item.version == order.version - 1)
                if event is not None:
                    transaction.save(self._event_item(order, event))
                transaction.update(
                    item(partition, NO_RANGE), actions=[item.total_minor.add(-usage.amount_minor)]
                )

        written = conditional_write(transact)
        if written.taken:
            return True
        flags = condition_flags(written.error)
        if flags is not None:
            marker_missing, order_conflict = flags[0], flags[1]
            if order_conflict:
                return False
            if marker_missing:
                return self.save(order, event)  # given back already (or never counted): only the order moves
        cause = written.error
        raise TransferStoreUnavailable(f"release usage {order.transfer_id}: {cause}") from cause

    # -- lists ------------------------------------------------------------------------------------

    def list_by_owner(
        self, owner_id: str, where: OrderFilter, limit: int, after: ListPosition | None
    ) -> OrderPage:
        item = self._item
        conditions: list[Condition] = []
        if where.statuses:
            conditions.append(item.status.is_in(*sorted(s.value for s in where.statuses)))
        if where.account_id is not None:
            conditions.append((item.debit_account_id == where.account_id)
                              | (item.payee_account_id == where.account_id))
        start = None if after is None else _index_key(after, "owner_id", owner_id)
        filtered = reduce(lambda a, b: a & b, conditions) if conditions else None
        page = self._page(BY_OWNER_INDEX, owner_id, where, filtered, False, limit, start)
        return OrderPage(tuple(o for o in page.orders if o.owner_id == owner_id), page.resume_after)

    def list_open(
        self, status: TransferStatus, where: OrderFilter, limit: int, after: ListPosition | None
    ) -> OrderPage:
        assert status in OPEN_STATUSES, "the status index holds open orders only"
        start = None if after is None else _index_key(after, "open_status", status.value)
        only = OrderFilter(frozenset({status}), where.account_id, where.created_after, where.created_before)
        return self._page(BY_OPEN_STATUS_INDEX, status.value, only, None, True, limit, start)

    def count_open(self, status: TransferStatus, created_before: datetime | None = None) -> StatusCount:
        assert status in OPEN_STATUSES, "the status index holds open orders only"
        condition = None if created_before is None else self._item.created_at < format_time(created_before)
        total, start = 0, None
        for _ in range(count_pages_max):
            page = self._query(BY_OPEN_STATUS_INDEX, status.value, condition, None, True, None, start,
                               select="COUNT")
            total += int(page.get("Count", 0))
            start = page.get("LastEvaluatedKey")
            if start is None:
                return StatusCount(total)
        return StatusCount(total, complete=False)

    def _page(self, index: str, hash_value: str, where: OrderFilter, filtered: Condition | None,
              forward: bool, limit: int, start: dict[str, Any] | None) -> OrderPage:
        """Index entries until limit + 1 match (so has_more is exact) or the examined bound is reached,
        then the orders themselves; any the index showed in a state they have since left are dropped."""
        created = _created_condition(self._item, where)
        if isinstance(created, bool):
            return OrderPage((), None)
        entries: list[dict[str, Any]] = []
        examined = 0
        while len(entries) <= limit and examined < list_entries_examined_max:
            # Unfiltered, every entry read is kept: read no more than the page needs.
            wanted = index_page_entries_max if filtered is not None else limit + 1 - len(entries)
            page = self._query(index, hash_value, created, filtered, forward,
                               min(wanted, list_entries_examined_max - examined), start)
            examined += int(page.get("ScannedCount", 0))
            entries += page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if start is None:
                break
        if len(entries) > limit:
            entries = entries[:limit]
            resume: ListPosition | None = _position(entries[-1])
        else:
            resume = _position(start) if start is not None else None
        orders = [o for o in self._orders_of(entries) if where.matches(o)]
        return OrderPage(tuple(orders), resume)

    def _query(self, index: str, hash_value: str, created: Condition | None, filtered: Condition | None,
               forward: bool, limit: int | None, start: dict[str, Any] | None,
               select: str | None = None) -> dict[str, Any]:
        try:
            # The model's own connection knows the indexes (a bare Connection would need DescribeTable).
            page: dict[str, Any] = self._item._get_connection().query(
                hash_value, range_key_condition=created, filter_condition=filtered,
                index_name=index, limit=limit, exclusive_start_key=start, scan_index_forward=forward,
                select=select,
            )
        except (PynamoDBException, BotoCoreError) as error:
            raise TransferStoreUnavailable(f"query {index}: {error}") from error
        return page

    def _orders_of(self, entries: list[dict[str, Any]]) -> list[TransferOrder]:
        """The orders of index entries, in the entries' order (one consistent BatchGetItem)."""
        if not entries:
            return []
        keys = [(e["pk"]["S"], e["sk"]["S"]) for e in entries]
        try:
            found = {i.pk: i for i in self._item.batch_get(keys, consistent_read=True)}
        except (PynamoDBException, BotoCoreError) as error:
            raise TransferStoreUnavailable(f"read orders: {error}") from error
        return [order_from_json(found[pk].doc) for pk, _ in keys if pk in found and found[pk].doc]

    # -- tiers ------------------------------------------------------------------------------------

    def tier_of(self, owner_id: str) -> Tier:
        found = consistent_get(self._item, tier_key(owner_id),
                               lambda error: TransferStoreUnavailable(f"read tier: {error}"))
        return TIER_DEFAULT if found is None else Tier(found.tier)

    def day_total_minor(self, owner_id: str, day: str, currency: str) -> int:
        key = (usage_partition(owner_id, day, currency), NO_RANGE)
        found = consistent_get(self._item, key,
                               lambda error: TransferStoreUnavailable(f"read usage: {error}"))
        return 0 if found is None or found.total_minor is None else int(found.total_minor)

    def set_tier(self, owner_id: str, tier: Tier) -> None:
        try:
            self._item(*tier_key(owner_id), tier=tier.value).save()
        except PynamoDBException as error:
            raise TransferStoreUnavailable(f"set tier: {error}") from error

    # -- items ------------------------------------------------------------------------------------

    def _order_item(self, order: TransferOrder) -> Any:
        return self._item(
            *order_key(order.transfer_id),
            doc=order_to_json(order),
            version=order.version,
            status=order.status.value,
            owner_id=order.owner_id,
            created_at=format_time(order.created_at),
            open_status=order.status.value if order.status in OPEN_STATUSES else None,
            debit_account_id=order.debit_account_id,
            payee_account_id=None if order.external else order.credit_account_id,
        )

    def _event_item(self, order: TransferOrder, event: OrderEvent) -> Any:
        """The outbox record; its id is the same on every attempt, so a transfer has one event of a type."""
        now = order.updated_at or order.created_at
        event_id = f"{event.type}:{order.transfer_id}"
        return self._outbox(
            outbox_partition(OUTBOX_PRODUCER, order.transfer_id),
            f"{entry_key_prefix(micros(now))}#{event_id}",
            event_id=event_id,
            type=event.type,
            source=EVENT_SOURCE,
            subject=order.transfer_id,
            time=format_time(now),
            data=json.dumps(_plain(event.data), separators=(",", ":"), sort_keys=True),
        )


def _index_key(after: ListPosition, hash_name: str, hash_value: str) -> dict[str, Any]:
    """The ExclusiveStartKey of an index entry: the table's keys and the index's."""
    pk, sk = order_key(after.transfer_id)
    return {"pk": {"S": pk}, "sk": {"S": sk}, hash_name: {"S": hash_value},
            "created_at": {"S": format_time(after.created_at)}}


def _position(key: Mapping[str, Any]) -> ListPosition:
    return ListPosition(parse_time(key["created_at"]["S"]), key["pk"]["S"].removeprefix(ORDER_PREFIX))


def _created_condition(item: Any, where: OrderFilter) -> Condition | None | Literal[False]:
    """The index's sort-key condition for where's strict bounds; False when no moment fits both."""
    low = where.created_after + _TIME_STEP if where.created_after is not None else None
    high = where.created_before - _TIME_STEP if where.created_before is not None else None
    if low is not None and high is not None:
        if low > high:
            return False
        return item.created_at.between(format_time(low), format_time(high))
    if low is not None:
        return item.created_at >= format_time(low)
    if high is not None:
        return item.created_at <= format_time(high)
    return None


def _plain(data: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(data)))
