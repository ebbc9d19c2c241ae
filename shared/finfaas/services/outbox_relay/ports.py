"""What the relay needs from outside: the outbox repository (the events queue: platform/events.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from finfaas.platform.audit import (
    AuditRecord,
)
from finfaas.services.outbox_relay.model import OutboxEvent


class OutboxRepository(Protocol):
    def partitions(self) -> Sequence[str]:
        """Every partition producers write to."""
        ...

    def acquire_lease(self, partition: str, holder: str, now_ms: int, lease_ms: int) -> bool:
        """Take or renew the partition's lease; False while another holder's lease runs."""
        ...

    def release_lease(self, partition: str, holder: str) -> None:
        """Best effort: a lease not released simply runs out."""
        ...

    def oldest(self, partition: str, limit: int) -> list[OutboxEvent]:
        """Up to `limit` events, oldest first (strongly consistent)."""
        ...

    def delete(self, events: Sequence[OutboxEvent], audit: Sequence[AuditRecord] = ()) -> None:
        """Delete events; with audit records, in one transaction that appends them (free seqs only)
        and deletes only events still there, else raises AuditSeqTaken / EventsGone, writing nothing."""
        ...

    def park(self, event: OutboxEvent, reason: str, audit: AuditRecord | None = None) -> None:
        """Move an event SQS will never accept out of the way, keeping it and the reason (and
        appending its audit record in the same transaction, as delete does)."""
        ...

    def audit_head(self, chain: str) -> AuditRecord | None:
        """The audit chain's newest record (strongly consistent); None for an empty chain."""
        ...
