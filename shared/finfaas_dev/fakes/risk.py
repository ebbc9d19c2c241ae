"""In-memory implementation of the risk repository, for tests: it passes the same contract tests
as the DynamoDB store."""

from __future__ import annotations

import threading
from datetime import datetime

from finfaas.domain.risk_rules import Assessment, HourCount, RiskRequest
from finfaas.services.risk.errors import RiskStoreUnavailable
from finfaas.services.risk.model import BlockEntry, Lookup, block_entries_for


class InMemoryRiskStore:
    """RiskRepository in dicts, for unit tests; same contract as the DynamoDB store."""

    def __init__(self) -> None:
        self._assessments: dict[str, Assessment] = {}
        self._buckets: dict[tuple[str, str], HourCount] = {}
        self._places: dict[tuple[str, str, str], HourCount] = {}  # (customer, window, assessment id)
        self._seen: set[tuple[str, str]] = set()
        self._blocks: dict[str, BlockEntry] = {}
        self._lock = threading.Lock()
        self.fail_next: int = 0  # calls that raise RiskStoreUnavailable (fault injection)

    def _maybe_fail(self) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise RiskStoreUnavailable("risk store unavailable (test)")

    def stored_assessment(self, assessment_id: str) -> Assessment | None:
        with self._lock:
            self._maybe_fail()
            return self._assessments.get(assessment_id)

    def look_up(self, request: RiskRequest, window: str | None = None) -> Lookup:
        with self._lock:
            self._maybe_fail()
            blocked = tuple(e for e in block_entries_for(request) if e in self._blocks)
            seen = (request.customer_id, request.destination) in self._seen
            recorded = self._assessments.get(request.assessment_id)
            if window is None:
                return Lookup(recorded, seen, blocked)
            before = self._buckets.get((request.customer_id, window), HourCount(0, 0))
            place = self._places.get((request.customer_id, window, request.assessment_id))
            return Lookup(recorded, seen, blocked, before, place)

    def count_and_record(self, request: RiskRequest, window: str, before: HourCount, transfers_max: int,
                         assessment: Assessment, now: datetime) -> Assessment | None:
        with self._lock:
            self._maybe_fail()
            existing = self._assessments.get(assessment.assessment_id)
            if existing is not None:
                return existing
            place = (request.customer_id, window, request.assessment_id)
            bucket = self._buckets.get((request.customer_id, window), HourCount(0, 0))
            if bucket != before or place in self._places:
                return None  # the window moved since it was read: nothing written
            if bucket.transfers < transfers_max:
                counted = HourCount(bucket.transfers + 1, bucket.amount_minor + request.amount_minor)
                self._buckets[(request.customer_id, window)] = self._places[place] = counted
            self._seen.add((request.customer_id, request.destination))
            self._assessments[assessment.assessment_id] = assessment
            return assessment

    def count(self, request: RiskRequest, window: str, transfers_max: int) -> HourCount:
        with self._lock:
            self._maybe_fail()
            place = (request.customer_id, window, request.assessment_id)
            if place in self._places:
                return self._places[place]
            bucket = self._buckets.get((request.customer_id, window), HourCount(0, 0))
            counted = HourCount(bucket.transfers + 1, bucket.amount_minor + request.amount_minor)
            if bucket.transfers >= transfers_max:
                return counted  # the place it would take, not taken: the window is full
            self._buckets[(request.customer_id, window)] = self._places[place] = counted
            return counted

    def record(self, request: RiskRequest, assessment: Assessment, now: datetime) -> Assessment:
        with self._lock:
            self._maybe_fail()
            existing = self._assessments.get(assessment.assessment_id)
            if existing is not None:
                return existing
            self._seen.add((request.customer_id, request.destination))
            self._assessments[assessment.assessment_id] = assessment
            return assessment

    def block(self, entry: BlockEntry) -> None:
        with self._lock:
            self._blocks[entry.entry] = entry

    def unblock(self, entry: str) -> bool:
        with self._lock:
            return self._blocks.pop(entry, None) is not None

    def blocked(self, limit: int) -> list[BlockEntry]:
        with self._lock:
            return sorted(self._blocks.values(), key=lambda e: e.entry)[:limit]
