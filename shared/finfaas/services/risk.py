"""The risk function's use cases: assess a transfer once (explainably), and keep the block lists.

A payee at another bank reaches risk only as its keyed fingerprint (pf_<hex>, see domain/creditor.py),
never as an account number: the payees seen and the block list hold fingerprints, and an operator's
`destination:<bank>:<account>` entry is fingerprinted with the same stage key before it is stored.

An assessment is recorded with the counters it adds to (the customer's hourly velocity bucket and
the payees seen) in one atomic write, keyed by assessment_id (the transfer id): assessing the same
transfer again returns the recorded answer and counts nothing twice.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, Field, StrictBool, StrictInt

from finfaas.domain.money import parse_currency, transfer_amount_minor_max
from finfaas.domain.risk_rules import (
    Assessment,
    Decision,
    Finding,
    RiskContext,
    RiskPolicy,
    RiskRequest,
    Verdict,
    assess,
)
from finfaas.platform import jsonio
from finfaas.platform.http import StrictModel

identifier_chars_max = 64
destination_chars_max = 128
block_reason_chars_max = 200
blocklist_page_max = 100
BLOCK_KINDS = ("customer", "account", "destination")
_ENTRY_VALUE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

Identifier = Annotated[str, Field(min_length=1, max_length=identifier_chars_max, pattern=r"^[A-Za-z0-9_-]+$")]


class InvalidBlockEntry(ValueError):
    """A block-list entry is not <kind>:<value> with a known kind."""

    code = "invalid_block_entry"


class RiskStoreUnavailable(RuntimeError):
    """The risk table could not be read or written."""

    code = "risk_store_unavailable"


def hour_window(moment: datetime) -> str:
    """The fixed one-hour velocity window a moment falls in (UTC), e.g. 2026-01-15T09."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def block_entries_for(request: RiskRequest) -> tuple[str, ...]:
    """The block-list entries that would stop this transfer."""
    return (f"customer:{request.customer_id}", f"account:{request.debit_account_id}",
            f"destination:{request.destination}")


def check_block_entry(kind: str, value: str) -> str:
    if kind not in BLOCK_KINDS or not _ENTRY_VALUE.match(value):
        raise InvalidBlockEntry(f"a block entry is one of {BLOCK_KINDS} and 1-128 of A-Z a-z 0-9 _ . : -")
    return f"{kind}:{value}"


# --- the repository --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockEntry:
    entry: str
    reason: str
    blocked_at: datetime


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


# --- HTTP shapes -------------------------------------------------------------------------------------


class AssessmentBody(StrictModel):
    """A transfer to assess; assessment_id is the transfer id, so a retry is recognised."""

    assessment_id: Identifier
    customer_id: Identifier
    debit_account_id: Identifier
    destination: Annotated[str, Field(min_length=1, max_length=destination_chars_max,
                                      pattern=r"^[A-Za-z0-9_.:-]+$")]
    amount_minor: Annotated[StrictInt, Field(ge=1, le=transfer_amount_minor_max)]
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    external: StrictBool = False

    def request(self) -> RiskRequest:
        return RiskRequest(self.assessment_id, self.customer_id, self.debit_account_id, self.destination,
                           self.amount_minor, parse_currency(self.currency), self.external)


class FindingView(BaseModel):
    rule: str
    verdict: Verdict
    score: int
    detail: str


class AssessmentView(BaseModel):
    """The decision, the total score, and every rule's finding (why)."""

    assessment_id: str
    decision: Decision
    score: int
    reasons: list[str]
    findings: list[FindingView]


class BlockBody(StrictModel):
    reason: Annotated[str, Field(min_length=1, max_length=block_reason_chars_max)]


class NewBlockBody(BlockBody):
    """A block given in the body, so a payee's account number never appears in a URL or request log."""

    kind: Literal["customer", "account", "destination"]
    value: Annotated[str, Field(min_length=1, max_length=destination_chars_max,
                                pattern=r"^[A-Za-z0-9_.:-]+$")]


class BlockView(BaseModel):
    entry: str
    reason: str
    blocked_at: datetime


class BlockList(BaseModel):
    entries: list[BlockView]


def assessment_view(assessment: Assessment) -> AssessmentView:
    return AssessmentView(
        assessment_id=assessment.assessment_id, decision=assessment.decision, score=assessment.score,
        reasons=assessment.reasons,
        findings=[FindingView(rule=f.rule, verdict=f.verdict, score=f.score, detail=f.detail)
                  for f in assessment.findings])


def assessment_to_json(assessment: Assessment) -> str:
    return assessment_view(assessment).model_dump_json()


def assessment_from_json(text: str) -> Assessment:
    raw: dict[str, Any] = jsonio.loads(text)
    findings = tuple(Finding(f["rule"], Verdict(f["verdict"]), int(f["score"]), f["detail"])
                     for f in raw["findings"])
    return Assessment(raw["assessment_id"], Decision(raw["decision"]), int(raw["score"]), findings)


# --- use cases ---------------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RiskService:
    """Assess transfers against the rules; manage the block lists."""

    def __init__(self, store: RiskRepository, policy: RiskPolicy = RiskPolicy(),
                 clock: Callable[[], datetime] = _utc_now,
                 payee_fingerprint: Callable[[str, str], str] | None = None) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._payee_fingerprint = payee_fingerprint  # (bank code, account number) -> pf_<hex>

    def assess(self, request: RiskRequest) -> Assessment:
        """The recorded assessment of this transfer, made now if there is none."""
        existing = self._store.stored_assessment(request.assessment_id)
        if existing is not None:
            return existing
        now = self._clock()
        window = hour_window(now)
        assessment = assess(request, self._store.context_for(request, window), self._policy)
        return self._store.record(request, assessment, window, now)

    def get(self, assessment_id: str) -> Assessment | None:
        return self._store.stored_assessment(assessment_id)

    def block(self, kind: str, value: str, reason: str) -> BlockEntry:
        entry = BlockEntry(check_block_entry(kind, self._stored_value(kind, value)), reason, self._clock())
        self._store.block(entry)
        return entry

    def unblock(self, kind: str, value: str) -> bool:
        return self._store.unblock(check_block_entry(kind, self._stored_value(kind, value)))

    @staticmethod
    def check_path_value(kind: str, value: str) -> None:
        """A payee at another bank is named in a path only by its fingerprint (as the list shows it)."""
        if kind == "destination" and ":" in value:
            raise InvalidBlockEntry(
                "a payee at another bank goes in the body of POST /_/ops/blocklist, never in a URL; "
                "lift its block by the fingerprint the list shows"
            )

    def blocked(self, limit: int = blocklist_page_max) -> list[BlockEntry]:
        return self._store.blocked(min(limit, blocklist_page_max))

    def _stored_value(self, kind: str, value: str) -> str:
        """A payee at another bank (<bank>:<account>) is kept as its fingerprint, as transfers send it."""
        if kind != "destination" or ":" not in value:
            return value
        if self._payee_fingerprint is None:
            raise InvalidBlockEntry("payees at other banks cannot be blocked here: no fingerprint key")
        bank_code, account_number = value.split(":", 1)
        check_block_entry(kind, value)
        return self._payee_fingerprint(bank_code, account_number)


def block_view(entry: BlockEntry) -> BlockView:
    return BlockView(entry=entry.entry, reason=entry.reason, blocked_at=entry.blocked_at)

