"""The outbox relay: publishes events written beside the changes they describe, then forgets them.

Per partition, oldest first and a bounded batch at a time: send to the `events` queue, and delete
from the outbox only what SQS accepted. A crash between the two re-sends the same events (same
ids) on the next pass, so delivery is at-least-once and nothing is lost; consumers dedupe by id.

A relay leases a partition (a conditional write) before it reads it, so concurrent relays share the
work instead of doubling it. The lease is an optimisation, not the safety: two relays on one
partition (an expired lease, clock skew) only cause duplicates, since deletes follow sends.

An event SQS can never accept (too large, invalid text) is parked beside the outbox with the reason
rather than left to block its partition.

Audit facts: an event may carry its change's audit facts (`audit`, written in the change's own
transaction, never published). The relay seals them into the audit chain of the partition
(`<producer>-outbox-<n>`, same record format as every chain) in the SAME transaction that deletes
(or parks) the event: audit puts conditional on a free (chain, seq), outbox deletes conditional on
the event still being there. So a crash after the send re-sends the event but appends its audit
record exactly once, and two relays on one partition cannot both append it: the second one's delete
finds the event gone and its transaction is cancelled whole. Under its lease a relay is the chain's
only writer; it reads the head once per lease and, after a lost race, again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from finfaas.platform.audit import (
    AuditEventInvalid,
    AuditKey,
    AuditRecord,
    audit_facts_from_json,
    audit_key_from_secret,
    seal_record,
)
from finfaas.platform.events import (
    BatchOutcome,
    EventMac,
    EventQueue,
    EventRejected,
    QueueMessage,
    event_message,
)
from finfaas.platform.logging import get_logger
from finfaas.services.outbox_relay.errors import AuditSeqTaken, EventsGone, OutboxUnavailable
from finfaas.services.outbox_relay.model import OutboxEvent, outbox_audit_chain
from finfaas.services.outbox_relay.ports import OutboxRepository

batch_events_max = 10  # one SendMessageBatch
batches_per_lease_max = 50  # then the partition is released so others get a turn
lease_seconds = 30
idle_sleep_seconds_min = 0.1
idle_sleep_seconds_max = 2.0
failure_sleep_seconds_max = 10.0
# Tries to delete a batch and append its audit records when another writer keeps winning the race.
settle_attempts_max = 4

_log = get_logger("outbox_relay")


@dataclass
class RelayPass:
    """What one pass over every partition did."""

    sent: int = 0
    parked: int = 0
    failed: int = 0
    partitions_busy: int = 0  # leased by another relay

    def add(self, other: RelayPass) -> None:
        self.sent += other.sent
        self.parked += other.parked
        self.failed += other.failed
        self.partitions_busy += other.partitions_busy


def _now_ms() -> int:
    return int(time.time() * 1000)


class OutboxRelay:
    """One relay instance; `holder` names it in leases (unique per process)."""

    def __init__(self, outbox: OutboxRepository, queue: EventQueue, mac: EventMac, holder: str, *,
                 clock_ms: Callable[[], int] = _now_ms, batch_size: int = batch_events_max,
                 batches_per_lease: int = batches_per_lease_max, lease_ms: int = lease_seconds * 1000,
                 after_send: Callable[[list[OutboxEvent]], None] | None = None,
                 audit_key: AuditKey | None | Callable[[], AuditKey | None] = audit_key_from_secret) -> None:
        assert 0 < batch_size <= batch_events_max and batches_per_lease > 0
        self.outbox = outbox
        self.queue = queue
        self.mac = mac
        self.holder = holder
        self._clock_ms = clock_ms
        self._batch_size = batch_size
        self._batches_per_lease = batches_per_lease
        self._lease_ms = lease_ms
        # Runs between the send and the delete: tests stop a relay exactly there.
        self._after_send = after_send
        self._audit = _ChainSealer(outbox, audit_key)
        self._resume_at = 0  # the partition a pass cut short by its deadline did not reach

    def relay_once(self, stop: Callable[[], bool] | None = None) -> RelayPass:
        """One pass: every partition this relay can lease, drained up to the per-lease bound. Once `stop()`
        is true (a run's deadline) no batch or partition is started, and the next pass begins at the
        first partition this one did not reach, so a deadline never starves the last partitions."""
        total = RelayPass()
        partitions = list(self.outbox.partitions())
        start = self._resume_at % len(partitions) if partitions else 0
        for n, partition in enumerate(partitions[start:] + partitions[:start]):
            if stop is not None and stop():
                self._resume_at = start + n
                return total
            total.add(self.relay_partition(partition, stop))
        self._resume_at = 0
        return total

    def relay_partition(self, partition: str, stop: Callable[[], bool] | None = None) -> RelayPass:
        result = RelayPass()
        if not self.outbox.oldest(partition, 1):
            return result  # an idle partition costs one read, not a lease write and its release
        if not self.outbox.acquire_lease(partition, self.holder, self._clock_ms(), self._lease_ms):
            result.partitions_busy += 1
            return result
        self._audit.forget_head(outbox_audit_chain(partition))  # another relay may have appended since
        try:
            for _ in range(self._batches_per_lease):
                events = self.outbox.oldest(partition, self._batch_size)
                if not events or not self._relay_batch(events, result):
                    break
                if stop is not None and stop():
                    break  # the run's deadline: the rest waits for the next pass
                if not self.outbox.acquire_lease(partition, self.holder, self._clock_ms(), self._lease_ms):
                    break  # the lease ran out meanwhile and someone else holds it now
        finally:
            self.outbox.release_lease(partition, self.holder)
        return result

    def _relay_batch(self, events: list[OutboxEvent], result: RelayPass) -> bool:
        """Send, then delete what was sent and park what never can be; False after a failure."""
        messages, unreadable = self._messages(events)
        outcome = self.queue.send_batch(messages) if messages else BatchOutcome()
        outcome.refused.update(unreadable)
        by_id = {e.event_id: e for e in events}
        sent = [by_id[key] for key in outcome.sent]
        if self._after_send is not None:
            self._after_send(sent)
        unsealable = self._settle(sent)
        outcome.refused.update(unsealable)
        for key, reason in outcome.refused.items():
            _log.error("outbox event parked", event_id=key, reason=reason)
            self._park(by_id[key], reason, seal=key not in unsealable)
        result.sent += len(sent) - len(unsealable)
        result.parked += len(outcome.refused)
        result.failed += len(outcome.failed)
        if outcome.failed:
            _log.warning("outbox events not sent; retried on the next pass", count=len(outcome.failed),
                         reasons=sorted(set(outcome.failed.values()))[:3])
        return not outcome.failed

    def _settle(self, sent: list[OutboxEvent]) -> dict[str, str]:
        """Delete the sent events, appending their audit records in the same transaction; returns the
        events whose audit facts cannot be sealed (left for parking), by id with the reason."""
        unsealable = {e.event_id: "audit facts invalid" for e in sent if not self._audit.sealable(e)}
        events = [e for e in sent if e.event_id not in unsealable]
        for _ in range(settle_attempts_max):
            if not events:
                return unsealable
            records = self._audit.records_for(events)
            try:
                self._delete(events, records)
            except AuditSeqTaken:
                self._audit.forget_head(outbox_audit_chain(events[0].partition))
                continue
            except EventsGone as gone:
                events = [e for e in events if e.event_key not in gone.event_keys]
                continue
            self._audit.advance(records)
            return unsealable
        raise OutboxUnavailable(f"lost {settle_attempts_max} races for the audit chain; retried next pass")

    def _delete(self, events: list[OutboxEvent], records: list[AuditRecord]) -> None:
        if records:
            self.outbox.delete(events, records)
        else:
            self.outbox.delete(events)  # nothing to append: repositories may batch-delete unconditionally

    def _park(self, event: OutboxEvent, reason: str, seal: bool) -> None:
        """Park an event, sealing its audit record in the same transaction (the change did happen)."""
        if not seal or event.audit is None:
            self.outbox.park(event, reason)
            return
        for _ in range(settle_attempts_max):
            [record] = self._audit.records_for([event])
            try:
                self.outbox.park(event, reason, record)
            except AuditSeqTaken:
                self._audit.forget_head(outbox_audit_chain(event.partition))
                continue
            except EventsGone:
                return  # another relay parked it, and sealed its record
            self._audit.advance([record])
            return
        raise OutboxUnavailable(f"lost {settle_attempts_max} races for the audit chain; retried next pass")

    def _messages(self, events: list[OutboxEvent]) -> tuple[list[QueueMessage], dict[str, str]]:
        messages, unreadable = [], {}
        for event in events:
            try:
                messages.append(event_message(event.event_id, event.envelope(), self.mac))
            except EventRejected as error:
                unreadable[event.event_id] = str(error)
        return messages, unreadable


_UNREAD = object()


class _ChainSealer:
    """Seals events' audit facts into their partition's chain, after a head read once per lease."""

    def __init__(self, outbox: OutboxRepository,
                 key: AuditKey | None | Callable[[], AuditKey | None]) -> None:
        self._outbox = outbox
        self._key_source = key
        self._key_loaded = not callable(key)
        self._key: AuditKey | None = None if callable(key) else key
        self._heads: dict[str, object] = {}

    def sealable(self, event: OutboxEvent) -> bool:
        if event.audit is None:
            return True
        try:
            audit_facts_from_json(event.audit)
        except AuditEventInvalid:
            _log.error("outbox event with invalid audit facts", event_id=event.event_id)
            return False
        return True

    def records_for(self, events: Sequence[OutboxEvent]) -> list[AuditRecord]:
        """The records the audited events append, in event order, following the chain's head."""
        records: list[AuditRecord] = []
        for event in events:
            if event.audit is None:
                continue
            chain = outbox_audit_chain(event.partition)
            head = records[-1] if records and records[-1].chain == chain else self._head(chain)
            facts, at = audit_facts_from_json(event.audit)
            records.append(seal_record(chain, head, facts, at, self._signing_key()))
        return records

    def advance(self, records: Sequence[AuditRecord]) -> None:
        for record in records:
            self._heads[record.chain] = record

    def forget_head(self, chain: str) -> None:
        self._heads.pop(chain, None)

    def _head(self, chain: str) -> AuditRecord | None:
        head = self._heads.get(chain, _UNREAD)
        if head is _UNREAD:
            head = self._heads[chain] = self._outbox.audit_head(chain)
        assert head is None or isinstance(head, AuditRecord)
        return head

    def _signing_key(self) -> AuditKey | None:
        if not self._key_loaded:
            assert callable(self._key_source)
            self._key = self._key_source()
            self._key_loaded = True
        return self._key


class RelayLoop:
    """Runs passes until stopped: at once while there is work, with growing sleeps while idle or failing."""

    def __init__(self, relay: OutboxRelay, *, sleep: Callable[[float], None] | None = None,
                 idle_seconds_min: float = idle_sleep_seconds_min,
                 idle_seconds_max: float = idle_sleep_seconds_max) -> None:
        self.relay = relay
        self.stopping = threading.Event()
        self._sleep = sleep or self.stopping.wait
        self._idle_min = idle_seconds_min
        self._idle_max = idle_seconds_max
        self.totals = RelayPass()
        self.passes = 0

    def run(self, deadline_seconds: float | None = None, passes_max: int | None = None) -> RelayPass:
        """Passes until stop(), the deadline (monotonic seconds from now) or `passes_max`."""
        ends_at = None if deadline_seconds is None else time.monotonic() + deadline_seconds
        delay = self._idle_min
        while not self.stopping.is_set():
            if ends_at is not None and time.monotonic() >= ends_at:
                break
            if passes_max is not None and self.passes >= passes_max:
                break
            busy, failed = self._one_pass(ends_at)
            if busy and not failed:
                delay = self._idle_min
                continue
            pause = delay if ends_at is None else min(delay, max(ends_at - time.monotonic(), 0))
            self._sleep(pause)
            delay = min(delay * 2, failure_sleep_seconds_max if failed else self._idle_max)
        return self.totals

    def stop(self) -> None:
        self.stopping.set()

    def _one_pass(self, ends_at: float | None = None) -> tuple[bool, bool]:
        """(did work, hit a failure); a pass stops starting batches at the run's deadline."""
        self.passes += 1
        stop = None if ends_at is None else (lambda: self.stopping.is_set() or time.monotonic() >= ends_at)
        try:
            result = self.relay.relay_once(stop)
        except OutboxUnavailable as error:
            _log.warning("outbox unavailable", error=str(error))
            return False, True
        except Exception:  # the loop outlives any one pass: log it, back off, try again
            _log.exception("relay pass failed")
            return False, True
        self.totals.add(result)
        return result.sent + result.parked > 0, result.failed > 0
