"""What the outbox can answer besides success: unavailable, or a transaction that wrote nothing."""

from __future__ import annotations


class OutboxUnavailable(Exception):
    """The outbox table did not answer; the pass stops and the next one retries."""


class AuditSeqTaken(Exception):
    """Another writer took a seq of the audit chain: nothing of the transaction was written."""


class EventsGone(Exception):
    """Some events were already deleted (relayed by another relay): nothing of the transaction was written."""

    def __init__(self, event_keys: set[str]) -> None:
        super().__init__(f"{len(event_keys)} event(s) no longer in the outbox")
        self.event_keys = event_keys
