"""What risk needs from outside: its repository."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from finfaas.domain.risk_rules import (
    Assessment,
    RiskContext,
    RiskRequest,
)
from finfaas.services.risk.model import BlockEntry


class RiskRepository(Protocol):
    """Assessments, velocity buckets, payees seen and block lists (DynamoDB: store/risk_store.py)."""

    def stored_assessment(self, assessment_id: str) -> Assessment | None: ...

    def context_for(self, request: RiskRequest, window: str) -> RiskContext: ...

    def record(self, request: RiskRequest, assessment: Assessment, window: str, now: datetime) -> Assessment:
        """Store the assessment and add to the counters at once; the stored one if it already exists."""
        ...

    def block(self, entry: BlockEntry) -> None: ...

    def unblock(self, entry: str) -> bool: ...

    def blocked(self, limit: int) -> list[BlockEntry]: ...
