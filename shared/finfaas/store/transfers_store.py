"""The transfer orders table (HASH pk, RANGE sk): orders, daily usage and customer tiers.

Items:
- `order#<transfer id>` / `-`: the order as JSON text (`doc`), its `version` and `status`;
- `usage#<owner>#<UTC day>#<currency>` / `-`: the day's total (`total_minor`, ADD);
- `usage#<owner>#<UTC day>#<currency>` / `tr#<transfer id>`: the amount one transfer counted;
- `tier#<owner>` / `-`: the customer's limits tier.

An order change is a put conditional on the stored version; when it comes with an event or with
daily usage, one TransactWriteItems carries the order, the outbox event and the usage items, so
the three move together or not at all. A transfer's usage marker makes counting and giving back
happen once each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from finfaas.domain.creditor import SealedCreditor
from finfaas.domain.ledger import entry_key_prefix, micros
from finfaas.domain.limits import TIER_DEFAULT, Tier
from finfaas.platform import jsonio
from finfaas.platform.config import resource_name, settings
from finfaas.services.transfers.errors import TransferStoreUnavailable
from finfaas.services.transfers.model import (
    DailyUsage,
    OrderEvent,
    Step,
    TaskKind,
    TransferOrder,
    TransferStatus,
    UsageOutcome,
)
from finfaas.store.binding import (
    RETRY_ATTEMPTS_MAX,
    StoreMeta,
    bound,
)
from finfaas.store.dynamo import any_condition_failed, condition_flags, conditional_write
from finfaas.store.models import OutboxRecord, format_time, parse_time
from finfaas.store.outbox_store import outbox_partition

TRANSFER_ORDERS_TABLE_LOGICAL_NAME = "transferorders"
OUTBOX_TABLE_LOGICAL_NAME = "outbox"
EVENT_SOURCE = "finfaas/transfers"
OUTBOX_PRODUCER = "transfers"
NO_RANGE = "-"


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


class _OutboxItem(OutboxRecord):
    Meta = StoreMeta


def _models(table_name: str, outbox_table_name: str, region: str) -> tuple[Any, Any]:
    return bound(_OrderItem, table_name, region), bound(_OutboxItem, outbox_table_name, region)


def _order_key(transfer_id: str) -> tuple[str, str]:
    return f"order#{transfer_id}", NO_RANGE


def _usage_partition(usage: DailyUsage) -> str:
    return f"usage#{usage.owner_id}#{usage.day}#{usage.currency}"


def _tier_key(owner_id: str) -> tuple[str, str]:
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
        steps=tuple(
            Step(s["name"], s["outcome"], parse_time(s["at"]), s.get("detail", ""))
            for s in raw.get("steps", ())
        ),
    )


class TransfersStore:
    """TransferOrders on DynamoDB (pynamodb). Thread-safe; share one per process."""

    def __init__(
        self, table_name: str | None = None, outbox_table_name: str | None = None, region: str | None = None
    ) -> None:
        self.table_name = table_name or resource_name(TRANSFER_ORDERS_TABLE_LOGICAL_NAME)
        self.outbox_table_name = outbox_table_name or resource_name(OUTBOX_TABLE_LOGICAL_NAME)
        region = region or settings().region
        self._item, self._outbox = _models(self.table_name, self.outbox_table_name, region)
        self._connection = Connection(region=region, max_retry_attempts=RETRY_ATTEMPTS_MAX)

    # -- orders -----------------------------------------------------------------------------------

    def create(self, order: TransferOrder, event: OrderEvent) -> TransferOrder:
        item = self._order_item(order)

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(item, condition=self._item.pk.does_not_exist())
                transaction.save(self._event_item(order, event))

        written = conditional_write(transact)
        if written.taken:
            return order
        if any_condition_failed(written.error):
            existing = self.get(order.transfer_id)
            if existing is not None:
                return existing
        raise TransferStoreUnavailable(f"create {order.transfer_id}: {written.error}") from written.error

    def get(self, transfer_id: str) -> TransferOrder | None:
        try:
            item = self._item.get(*_order_key(transfer_id), consistent_read=True)
        except self._item.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise TransferStoreUnavailable(f"read {transfer_id}: {error}") from error
        return order_from_json(item.doc)

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

    # -- daily usage ------------------------------------------------------------------------------

    def reserve_usage(self, order: TransferOrder, usage: DailyUsage) -> UsageOutcome:
        item = self._item
        partition = _usage_partition(usage)
        fits = item.total_minor.does_not_exist() | (item.total_minor <= usage.headroom_minor)
        if usage.headroom_minor < 0:
            return UsageOutcome.EXCEEDED

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                # Puts, then updates: the cancellation reasons come back in this order.
                transaction.save(self._order_item(order), condition=item.version == order.version - 1)
                transaction.save(
                    item(partition, f"tr#{order.transfer_id}", amount_minor=usage.amount_minor),
                    condition=item.pk.does_not_exist(),
                )
                transaction.update(
                    item(partition, NO_RANGE),
                    actions=[item.total_minor.add(usage.amount_minor)],
                    condition=fits,
                )

        written = conditional_write(transact)
        if written.taken:
            return UsageOutcome.RESERVED
        flags = condition_flags(written.error)
        if flags is not None:
            order_conflict, marker_exists, over_limit = flags
            if order_conflict or marker_exists:
                return UsageOutcome.CONFLICT
            if over_limit:
                return UsageOutcome.EXCEEDED
        cause = written.error
        raise TransferStoreUnavailable(f"reserve usage {order.transfer_id}: {cause}") from cause

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

    def day_total(self, owner_id: str, day: str, currency: str) -> int:
        """The day's counted total (tests and operators)."""
        partition = _usage_partition(DailyUsage(owner_id, day, currency, 0, 0))
        try:
            found = self._item.get(partition, NO_RANGE, consistent_read=True)
        except self._item.DoesNotExist:
            return 0
        return int(found.total_minor or 0)

    # -- tiers ------------------------------------------------------------------------------------

    def tier_of(self, owner_id: str) -> Tier:
        try:
            found = self._item.get(*_tier_key(owner_id), consistent_read=True)
        except self._item.DoesNotExist:
            return TIER_DEFAULT
        except PynamoDBException as error:
            raise TransferStoreUnavailable(f"read tier: {error}") from error
        return Tier(found.tier)

    def set_tier(self, owner_id: str, tier: Tier) -> None:
        try:
            self._item(*_tier_key(owner_id), tier=tier.value).save()
        except PynamoDBException as error:
            raise TransferStoreUnavailable(f"set tier: {error}") from error

    # -- items ------------------------------------------------------------------------------------

    def _order_item(self, order: TransferOrder) -> Any:
        return self._item(
            *_order_key(order.transfer_id),
            doc=order_to_json(order),
            version=order.version,
            status=order.status.value,
            owner_id=order.owner_id,
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


def _plain(data: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(data)))
