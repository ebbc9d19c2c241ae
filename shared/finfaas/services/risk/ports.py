"""What risk needs from outside: its repository; and what a caller running risk's use case in its own
process (payments, transfers) needs of it."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from finfaas.domain.risk_rules import Assessment, HourCount, RiskRequest
from finfaas.platform.logging import StructuredLogger
from finfaas.platform.resilience import CircuitBreaker
from finfaas.services.risk.model import AssessmentToRecord, BlockEntry, Lookup


class RiskRepository(Protocol):
    """Assessments, velocity buckets, payees seen and block lists (DynamoDB: store/risk_store.py)."""

    def stored_assessment(self, assessment_id: str) -> Assessment | None: ...

    def look_up(self, request: RiskRequest, window: str | None = None) -> Lookup:
        """In one read: the transfer's recorded assessment, whether its payee was seen, its block hits and,
        given a window, the customer's count there and this transfer's place if it has one."""
        ...

    def count_and_record(self, request: RiskRequest, window: str, before: HourCount, transfers_max: int,
                         assessment: Assessment, now: datetime) -> Assessment | None:
        """In one write: count the transfer in its window (unless transfers_max are counted there) and
        record its assessment with the payee seen, on condition that the window still holds `before` and
        the transfer has no place there; the stored assessment if one was recorded first; None when the
        window moved since it was read (nothing written: count, then record)."""
        ...

    def count(self, request: RiskRequest, window: str, transfers_max: int) -> HourCount:
        """Count the transfer in its customer's window once, atomically, and say its place there; a
        repeat of the same assessment_id in that window answers the first place and counts nothing.
        Once transfers_max are counted, counts nothing more and answers the place the transfer would
        take (uncounted, so every later one is answered past transfers_max too)."""
        ...

    def record(self, request: RiskRequest, assessment: Assessment, now: datetime) -> Assessment:
        """Store the assessment and the payee seen at once; the stored assessment if it already exists."""
        ...

    def block(self, entry: BlockEntry) -> None: ...

    def unblock(self, entry: str) -> bool: ...

    def blocked(self, limit: int) -> list[BlockEntry]: ...


class RiskDecider(Protocol):
    """Risk's use case run in the caller's process (services/risk/in_process.py), on a lookup the caller's
    own read made, its decision written in the caller's own write (a transfer's validation, a payment)."""

    def decide(self, request: RiskRequest, known: Lookup, window: str) -> Assessment | AssessmentToRecord:
        """The recorded assessment, or one decided and not yet written."""
        ...

    def record(self, pending: AssessmentToRecord) -> Assessment:
        """Write a decided assessment alone (the step that decided it was refused, or its window moved)."""
        ...


def record_refused(breaker: CircuitBreaker, decider: RiskDecider | None, pending: AssessmentToRecord,
                   log: StructuredLogger, subject: str) -> None:
    """Risk counts a `subject` (payment, transfer) its caller refused after risk decided it, as it counts any
    it was asked about; when it cannot (the breaker counts the failure), the refusal stands."""
    assert decider is not None
    try:
        breaker.call(lambda: decider.record(pending))
    except Exception as error:  # the caller's step is refused either way
        log.warning(f"risk did not record a refused {subject}", error=type(error).__name__,
                    **{f"{subject}_id": pending.request.assessment_id})
