"""The outbox table as the relay sees it: event partitions, their leases, and parked events.

Keys (table outbox: HASH partition, RANGE event_key):
- `<producer>-<n>` / `<time>#<event id>`: an event waiting for the relay (written by the producers,
  e.g. the ledger store, in the transaction of the change);
- `<producer>-<n>` / `~lease`: who relays that partition until when. `~` sorts after every event
  key (they start with digits), so reading events oldest first never meets the lease;
- `parked` / `<partition>#<event key>`: an event SQS refused for good, with the reason.

Events carrying audit facts are deleted (or parked) in one TransactWriteItems with the audit records
the relay sealed from them (table audit): deletes conditional on the event being there, puts
conditional on a free (chain, seq). A cancelled transaction writes nothing and says which side lost.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from finfaas.platform.audit import AuditRecord, AuditStoreError
from finfaas.platform.config import resource_name, settings
from finfaas.services.outbox_relay.errors import AuditSeqTaken, EventsGone, OutboxUnavailable
from finfaas.services.outbox_relay.model import OutboxEvent
from finfaas.store.audit_store import AuditStore
from finfaas.store.binding import (
    RETRY_ATTEMPTS_MAX,
    StoreMeta,
    bound,
)
from finfaas.store.dynamo import cancelled_by_conditions, condition_failures, conditional_write
from finfaas.store.models import OutboxRecord, format_time, parse_time
from finfaas.store.outbox_layout import ledger_outbox_partitions

OUTBOX_TABLE_LOGICAL_NAME = "outbox"
LEASE_EVENT_KEY = "~lease"
EVENT_KEY_UPPER = "~"  # exclusive upper bound of event keys
PARKED_PARTITION = "parked"
# Producers and how many partitions each spreads its events over (by crc32 of the subject).
PRODUCER_PARTITIONS = {"ledger": ledger_outbox_partitions, "transfers": 8, "payments": 8, "wallet": 8,
                       "loans": 8}
transaction_items_max = 100  # TransactWriteItems' limit


def outbox_partition(producer: str, subject: str) -> str:
    """The partition a producer writes a subject's events to: one subject, one partition, in order."""
    return f"{producer}-{zlib.crc32(subject.encode()) % PRODUCER_PARTITIONS[producer]}"


def all_partitions() -> list[str]:
    return [f"{producer}-{n}" for producer, count in PRODUCER_PARTITIONS.items() for n in range(count)]


class _LeaseItem(Model):
    Meta = StoreMeta

    partition = UnicodeAttribute(hash_key=True)
    event_key = UnicodeAttribute(range_key=True)
    holder = UnicodeAttribute()
    lease_until_ms = NumberAttribute()


class _ParkedItem(OutboxRecord):
    Meta = StoreMeta

    parked_reason = UnicodeAttribute()
    parked_at = UnicodeAttribute()


class _EventItem(OutboxRecord):
    Meta = StoreMeta


def _models(table_name: str, region: str) -> tuple[Any, Any, Any]:
    return tuple(bound(item, table_name, region) for item in (_EventItem, _LeaseItem, _ParkedItem))


class OutboxStore:
    """OutboxRepository on DynamoDB (pynamodb)."""

    def __init__(self, table_name: str | None = None, region: str | None = None,
                 partitions: Sequence[str] | None = None, audit_table: str | None = None) -> None:
        self.table_name = table_name or resource_name(OUTBOX_TABLE_LOGICAL_NAME)
        self._audit_table = audit_table
        self._audit_store: AuditStore | None = None  # built on first use: most outboxes carry no audit
        region = region or settings().region
        self._event, self._lease, self._parked = _models(self.table_name, region)
        self._connection = Connection(region=region, max_retry_attempts=RETRY_ATTEMPTS_MAX)
        self._partitions = list(partitions) if partitions is not None else all_partitions()

    def partitions(self) -> Sequence[str]:
        return self._partitions

    def acquire_lease(self, partition: str, holder: str, now_ms: int, lease_ms: int) -> bool:
        lease = self._lease
        free = (lease.partition.does_not_exist() | (lease.lease_until_ms < now_ms)
                | (lease.holder == holder))
        actions = [lease.holder.set(holder), lease.lease_until_ms.set(now_ms + lease_ms)]
        return conditional_write(
            lambda: lease(partition, LEASE_EVENT_KEY).update(actions=actions, condition=free),
        ).or_raise(lambda w: OutboxUnavailable(f"lease {partition}: {w.error}"))

    def release_lease(self, partition: str, holder: str) -> None:
        lease = self._lease
        try:
            lease(partition, LEASE_EVENT_KEY).update(actions=[lease.lease_until_ms.set(0)],
                                                     condition=lease.holder == holder)
        except PynamoDBException:
            pass  # lost to another holder, or unreachable: either way the lease runs out by itself

    def oldest(self, partition: str, limit: int) -> list[OutboxEvent]:
        event = self._event
        try:
            items = event.query(partition, event.event_key < EVENT_KEY_UPPER, consistent_read=True,
                                limit=limit, page_size=limit)
            return [_outbox_event(item) for item in items]
        except PynamoDBException as error:
            raise OutboxUnavailable(f"query {partition}: {error}") from error

    def delete(self, events: Sequence[OutboxEvent], audit: Sequence[AuditRecord] = ()) -> None:
        if audit:
            self._delete_with_audit(events, audit)
            return
        try:
            with self._event.batch_write() as batch:
                for event in events:
                    batch.delete(self._event(event.partition, event.event_key))
        except PynamoDBException as error:
            raise OutboxUnavailable(f"delete: {error}") from error

    def park(self, event: OutboxEvent, reason: str, audit: AuditRecord | None = None) -> None:
        """One transaction: the parked copy appears as the original goes, so it is never lost or doubled
        (and the audit record, when given, is appended with it; the copy then keeps no audit facts)."""
        parked = self._parked(PARKED_PARTITION, f"{event.partition}#{event.event_key}",
                              event_id=event.event_id, type=event.type, source=event.source,
                              subject=event.subject, time=format_time(event.time), data=event.data,
                              audit=None if audit is not None else event.audit,
                              parked_reason=reason[:1000], parked_at=format_time(datetime.now(UTC)))
        if audit is not None:
            self._transact([event], [audit], extra_puts=[parked])
            return
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(parked)
                transaction.delete(self._event(event.partition, event.event_key))
        except PynamoDBException as error:
            raise OutboxUnavailable(f"park {event.event_id}: {error}") from error

    def audit_head(self, chain: str) -> AuditRecord | None:
        try:
            return self._audit().head(chain)
        except AuditStoreError as error:
            raise OutboxUnavailable(f"audit head {chain}: {error}") from error

    def _delete_with_audit(self, events: Sequence[OutboxEvent], audit: Sequence[AuditRecord]) -> None:
        self._transact(events, audit, extra_puts=[])

    def _transact(self, events: Sequence[OutboxEvent], audit: Sequence[AuditRecord],
                  extra_puts: list) -> None:
        """Conditional deletes of events + extra puts + audit puts on free seqs, all or nothing."""
        assert len(events) + len(audit) + len(extra_puts) <= transaction_items_max
        audit_store, event = self._audit(), self._event

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                for outboxed in events:
                    transaction.delete(event(outboxed.partition, outboxed.event_key),
                                       condition=event.partition.exists())
                for item in extra_puts:
                    transaction.save(item)
                for record in audit:
                    transaction.save(audit_store.item_for(record), condition=audit_store.free_seq_condition())

        written = conditional_write(transact)
        _raise_lost_race(written.error, events, len(extra_puts))
        written.or_raise(lambda w: OutboxUnavailable(f"delete with audit: {w.code}"))

    def _audit(self) -> AuditStore:
        if self._audit_store is None:
            self._audit_store = AuditStore(self._audit_table)
        return self._audit_store

    def parked(self, limit: int) -> list[tuple[OutboxEvent, str]]:
        """Parked events and why (for operators)."""
        items = self._parked.query(PARKED_PARTITION, consistent_read=True, limit=limit, page_size=limit)
        return [(_outbox_event(item), item.parked_reason) for item in items]


def _outbox_event(item: OutboxRecord) -> OutboxEvent:
    return OutboxEvent(partition=item.partition, event_key=item.event_key, event_id=item.event_id,
                       type=item.type, source=item.source, subject=item.subject, time=parse_time(item.time),
                       data=item.data, audit=item.audit)


def _raise_lost_race(error: Exception | None, events: Sequence[OutboxEvent], extra_puts: int) -> None:
    """EventsGone / AuditSeqTaken when the cancellation was a lost race; returns for anything else.
    Reasons follow the order pynamodb sends: deletes, then puts (extra puts, then audit puts)."""
    if not cancelled_by_conditions(error):
        return
    failed = condition_failures(error)
    gone = {events[i].event_key for i in failed if i < len(events)}
    if gone:
        raise EventsGone(gone) from error
    if any(i >= len(events) + extra_puts for i in failed):
        raise AuditSeqTaken() from error
