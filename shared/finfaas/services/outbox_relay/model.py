"""An outbox item as stored, and the audit chain its partition's relay appends to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from finfaas.platform import jsonio
from finfaas.platform.events import (
    EventEnvelope,
    EventRejected,
)


@dataclass(frozen=True)
class OutboxEvent:
    """An outbox item as stored: where it sits, and the event it holds (`data` is JSON text)."""

    partition: str
    event_key: str
    event_id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: str
    audit: str | None = None  # the change's audit facts (JSON text); never part of the published event

    def envelope(self) -> EventEnvelope:
        try:
            data = jsonio.loads(self.data)
        except ValueError:
            raise EventRejected(f"outbox event {self.event_id}: data is not JSON") from None
        if not isinstance(data, dict):
            raise EventRejected(f"outbox event {self.event_id}: data is not a JSON object")
        return EventEnvelope(self.event_id, self.source, self.type, self.subject, self.time, data)


def outbox_audit_chain(partition: str) -> str:
    """The audit chain a partition's relay appends to: `ledger-3` -> `ledger-outbox-3`."""
    producer, _, number = partition.rpartition("-")
    return f"{producer}-outbox-{number}"
