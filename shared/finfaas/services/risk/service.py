"""The risk function's use cases: assess a transfer once (explainably), and keep the block lists.

A payee at another bank reaches risk only as its keyed fingerprint (pf_<hex>, see domain/creditor.py),
never as an account number: the payees seen and the block list hold fingerprints, and an operator's
`destination:<bank>:<account>` entry is fingerprinted with the same stage key before it is stored.

A transfer is judged on its place in its customer's hour as the store counted it, atomically, before the
rules run: concurrent transfers of one customer each see every one counted before them (a count read
before the write would let them all see the same stale number). The count is kept per assessment_id (the
transfer id), so a repeat counts nothing twice; the decision is recorded once, and a repeat returns it.
The read that looks for a recorded decision also reads the customer's window, and the count rides in the
decision's write on condition that the window is as read: two calls, or four when another transfer of the
same customer was counted in between (then the count is taken alone first, as it answers the place).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from finfaas.domain.risk_rules import (
    Assessment,
    HourCount,
    RiskContext,
    RiskPolicy,
    RiskRequest,
    assess,
)
from finfaas.services.risk.errors import InvalidBlockEntry
from finfaas.services.risk.model import (
    AssessmentToRecord,
    BlockEntry,
    Lookup,
    check_block_entry,
    hour_window,
)
from finfaas.services.risk.ports import RiskRepository

blocklist_page_max = 100


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

    @property
    def policy(self) -> RiskPolicy:
        """The thresholds this service assesses with."""
        return self._policy

    def assess(self, request: RiskRequest) -> Assessment:
        """The recorded assessment of this transfer, made now if there is none."""
        now = self._clock()
        window = hour_window(now)
        known = self._store.look_up(request, window)
        if known.recorded is not None:
            return known.recorded
        # Past the block count every transfer of the hour is declined: the store stops counting there,
        # which bounds the hour's bucket (domain/risk_rules.py hourly_transfers_max).
        transfers_max = self._policy.hourly_transfers_block
        if known.place is None:
            # Judged on the place the read promises; the write counts it only if the window still holds
            # what was read, so the place is exact or nothing is written and it is counted the other way.
            assessment = self._judge(request, known.next_place(request), known)
            recorded = self._store.count_and_record(request, window, known.window_before, transfers_max,
                                                    assessment, now)
            if recorded is not None:
                return recorded
            hour = self._store.count(request, window, transfers_max)
        else:
            hour = known.place  # counted by an earlier attempt that died before recording its decision
        return self._store.record(request, self._judge(request, hour, known), now)

    def window(self) -> str:
        """The hour window a transfer assessed now is counted in."""
        return hour_window(self._clock())

    def decide(self, request: RiskRequest, known: Lookup, window: str) -> Assessment | AssessmentToRecord:
        """`assess` on a lookup another read made (the transfers function's one read of a validation): the
        recorded assessment, or one judged on the place the lookup promises, for the caller to write with
        its own items (RiskRepository.count_and_record's items and conditions). A transfer counted by an
        earlier attempt whose decision was never recorded is assessed and recorded here, alone."""
        if known.recorded is not None:
            return known.recorded
        if known.place is not None:
            return self.assess(request)
        assessment = self._judge(request, known.next_place(request), known)
        return AssessmentToRecord(request, window, known.window_before, self._policy.hourly_transfers_block,
                                  assessment, self._clock())

    def record(self, pending: AssessmentToRecord) -> Assessment:
        """Write a decided assessment alone: counted on the place promised, or (the window moved since
        the lookup) assessed again the usual way, on the place the store counts."""
        recorded = self._store.count_and_record(pending.request, pending.window, pending.before,
                                                pending.transfers_max, pending.assessment, pending.at)
        return recorded if recorded is not None else self.assess(pending.request)

    def _judge(self, request: RiskRequest, hour: HourCount, known: Lookup) -> Assessment:
        context = RiskContext.counted(request, hour, known.destination_seen, known.blocked)
        return assess(request, context, self._policy)

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

