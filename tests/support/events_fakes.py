"""In-memory stand-ins for the outbox table, SQS queues, the subscriptions table and HTTP receivers.

Each keeps the contract of the real adapter that matters to the code under test: conditional
leases, oldest-first reads, SendMessageBatch's per-message outcome.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from finfaas.platform.audit import AuditRecord
from finfaas.platform.events import BatchOutcome, QueueMessage, QueueUnavailable
from finfaas.services.outbox_relay.errors import AuditSeqTaken, EventsGone
from finfaas.services.outbox_relay.model import OutboxEvent
from finfaas.services.webhooks.model import Subscription, SubscriptionStatus
from finfaas_dev.fakes.platform import InMemoryAuditStore

T0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)


def outbox_event(n: int, partition: str = "ledger-0", type_: str = "ledger.account.status_changed",
                 data: Mapping | str | None = None, audit: str | None = None) -> OutboxEvent:
    moment = T0 + timedelta(microseconds=n)
    text = data if isinstance(data, str) else json.dumps(data or {"status": "FROZEN"})
    event_id = f"{type_}:acc-{n}:{n}"
    return OutboxEvent(partition, f"{n:020d}#{event_id}", event_id, type_, "finfaas/ledger", f"acc-{n}",
                       moment, text, audit)


class FakeOutbox:
    """OutboxRepository in memory, safe for concurrent relays; audit records go to `audit_log`."""

    def __init__(self, partitions: Sequence[str] = ("ledger-0", "ledger-1"),
                 audit_log: InMemoryAuditStore | None = None) -> None:
        self.audit_log = audit_log or InMemoryAuditStore()
        self.audit_transactions = 0
        self._partitions = list(partitions)
        self.events: dict[str, dict[str, OutboxEvent]] = {p: {} for p in partitions}
        self.leases: dict[str, tuple[str, int]] = {}
        self.parked_events: list[tuple[OutboxEvent, str]] = []
        self.lease_calls = 0
        self._lock = threading.Lock()

    def add(self, *events: OutboxEvent) -> None:
        with self._lock:
            for event in events:
                self.events[event.partition][event.event_key] = event

    def remaining(self) -> list[OutboxEvent]:
        with self._lock:
            return [e for events in self.events.values() for e in events.values()]

    def partitions(self) -> Sequence[str]:
        return self._partitions

    def acquire_lease(self, partition: str, holder: str, now_ms: int, lease_ms: int) -> bool:
        with self._lock:
            self.lease_calls += 1
            current = self.leases.get(partition)
            if current is not None and current[0] != holder and current[1] >= now_ms:
                return False
            self.leases[partition] = (holder, now_ms + lease_ms)
            return True

    def release_lease(self, partition: str, holder: str) -> None:
        with self._lock:
            if self.leases.get(partition, ("", 0))[0] == holder:
                self.leases[partition] = (holder, 0)

    def oldest(self, partition: str, limit: int) -> list[OutboxEvent]:
        with self._lock:
            return [self.events[partition][k] for k in sorted(self.events[partition])[:limit]]

    def delete(self, events: Sequence[OutboxEvent], audit: Sequence[AuditRecord] = ()) -> None:
        with self._lock:
            if audit:
                self._check_transaction(events, audit)
            for event in events:
                self.events[event.partition].pop(event.event_key, None)
            self._append(audit)

    def park(self, event: OutboxEvent, reason: str, audit: AuditRecord | None = None) -> None:
        with self._lock:
            if audit is not None:
                self._check_transaction([event], [audit])
            if self.events[event.partition].pop(event.event_key, None) is not None:
                self.parked_events.append((event, reason))
                self._append([audit] if audit is not None else [])

    def audit_head(self, chain: str) -> AuditRecord | None:
        return self.audit_log.head(chain)

    def _check_transaction(self, events: Sequence[OutboxEvent], audit: Sequence[AuditRecord]) -> None:
        """The conditions of the DynamoDB transaction: every event still there, every seq free."""
        self.audit_transactions += 1
        gone = {e.event_key for e in events if e.event_key not in self.events[e.partition]}
        if gone:
            raise EventsGone(gone)
        taken = {(r.chain, r.seq) for r in audit} & {(r.chain, r.seq) for c in {r.chain for r in audit}
                                                      for r in self.audit_log.records(c)}
        if taken:
            raise AuditSeqTaken()

    def _append(self, audit: Sequence[AuditRecord]) -> None:
        for record in audit:
            assert self.audit_log.append(record)


@dataclass
class FakeQueue:
    """An SQS queue that records what it accepted; failures and refusals are chosen per message key."""

    sent: list[QueueMessage] = field(default_factory=list)
    failing: bool = False
    refuse: Callable[[QueueMessage], bool] = lambda message: False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send_batch(self, messages: Sequence[QueueMessage]) -> BatchOutcome:
        outcome = BatchOutcome()
        with self._lock:
            for message in messages:
                if self.failing:
                    outcome.failed[message.key] = "ServiceUnavailable"
                elif self.refuse(message):
                    outcome.refused[message.key] = "InvalidMessageContents"
                else:
                    self.sent.append(message)
                    outcome.sent.append(message.key)
        return outcome

    def send(self, message: QueueMessage) -> None:
        outcome = self.send_batch([message])
        if not outcome.all_sent:
            raise QueueUnavailable("fake queue failing")

    def documents(self) -> list[dict]:
        return [json.loads(m.body) for m in self.sent]


class FakeSubscriptions:
    """SubscriptionRepository in memory."""

    def __init__(self) -> None:
        self.items: dict[str, Subscription] = {}
        self.reads = 0

    def create(self, subscription: Subscription) -> Subscription:
        return self.items.setdefault(subscription.subscription_id, subscription)

    def get(self, subscription_id: str) -> Subscription | None:
        self.reads += 1
        return self.items.get(subscription_id)

    def list_owner(self, owner: str) -> list[Subscription]:
        return sorted((s for s in self.items.values() if s.owner == owner), key=lambda s: s.subscription_id)

    def list_active(self) -> list[Subscription]:
        self.reads += 1
        return [s for s in self.items.values() if s.status is SubscriptionStatus.ACTIVE]

    def mark_deleted(self, subscription_id: str, owner: str) -> bool:
        found = self.items.get(subscription_id)
        if found is None or found.owner != owner or found.status is not SubscriptionStatus.ACTIVE:
            return False
        self.items[subscription_id] = replace(found, status=SubscriptionStatus.DELETED)
        return True


@dataclass
class PostedRequest:
    url: str
    address: str  # where the connection would have gone
    headers: dict[str, str]
    body: bytes


@dataclass
class FakePoster:
    """An HTTP receiver answering the given statuses in turn (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    received: list[PostedRequest] = field(default_factory=list)

    def post(self, url: str, address: str, headers: Mapping[str, str], body: bytes) -> int:
        self.received.append(PostedRequest(url, address, dict(headers), body))
        return self.statuses[min(len(self.received), len(self.statuses)) - 1]
