"""In-memory implementation of the risk repository, for tests: it passes the same contract tests
as the DynamoDB store."""

from __future__ import annotations

import threading
from datetime import datetime

from finfaas.domain.risk_rules import Assessment, RiskContext, RiskRequest
from finfaas.services.risk.errors import RiskStoreUnavailable
from finfaas.services.risk.model import BlockEntry, block_entries_for


class InMemoryRiskStore:
    """RiskRepository in dicts, for unit tests; same contract as the DynamoDB store."""

    def __init__(self) -> None:
        self._assessments: dict[str, Assessment] = {}
        self._buckets: dict[tuple[str, str], tuple[int, int]] = {}
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

    def context_for(self, request: RiskRequest, window: str) -> RiskContext:
        with self._lock:
            self._maybe_fail()
            count, amount = self._buckets.get((request.customer_id, window), (0, 0))
            blocked = tuple(e for e in block_entries_for(request) if e in self._blocks)
            seen = (request.customer_id, request.destination) in self._seen
            return RiskContext(count, amount, seen, blocked)

    def record(self, request: RiskRequest, assessment: Assessment, window: str, now: datetime) -> Assessment:
        with self._lock:
            self._maybe_fail()
            existing = self._assessments.get(assessment.assessment_id)
            if existing is not None:
                return existing
            count, amount = self._buckets.get((request.customer_id, window), (0, 0))
            self._buckets[(request.customer_id, window)] = (count + 1, amount + request.amount_minor)
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
