"""Block-list entries, velocity windows, what a screening looks up, and the stored form of an assessment."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from finfaas.domain.risk_rules import (
    Assessment,
    Decision,
    Finding,
    HourCount,
    InvalidThreshold,
    RiskPolicy,
    RiskRequest,
    Verdict,
)
from finfaas.platform import jsonio
from finfaas.platform.config import ConfigError, env_int
from finfaas.services.risk.errors import InvalidBlockEntry

RISK_SETTING_PREFIX = "RISK_"
BLOCK_KINDS = ("customer", "account", "destination")
_ENTRY_VALUE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def policy_setting(threshold: str) -> str:
    """The environment variable of a RiskPolicy threshold: RISK_<NAME>, e.g. RISK_HOURLY_TRANSFERS_FLAG."""
    return RISK_SETTING_PREFIX + threshold.upper()


def policy_from_env(environ: Mapping[str, str] | None = None) -> RiskPolicy:
    """The stage's thresholds: each RISK_<NAME> that is set, the product's default for the others.
    A value that is not an integer in its range is a ConfigError naming the variable."""
    environ = os.environ if environ is None else environ
    defaults = RiskPolicy()
    values = {t.name: env_int(policy_setting(t.name), getattr(defaults, t.name), environ)
              for t in fields(RiskPolicy)}
    try:
        return RiskPolicy(**values)
    except InvalidThreshold as error:
        variable = policy_setting(error.name)
        raise ConfigError(f"{variable}={values[error.name]}: {error}") from None


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


@dataclass(frozen=True)
class BlockEntry:
    entry: str
    reason: str
    blocked_at: datetime


@dataclass(frozen=True)
class Lookup:
    """What one read tells of a transfer before it is counted: its recorded assessment if it has one,
    whether its customer has paid its payee before, the block-list entries that match it, and (when a
    window was read) its customer's window as it stood: its totals, and this transfer's place if an
    earlier attempt counted it there."""

    recorded: Assessment | None
    destination_seen: bool
    blocked: tuple[str, ...]
    window_before: HourCount = HourCount(0, 0)  # the window's transfers and amount as read
    place: HourCount | None = None

    def next_place(self, request: RiskRequest) -> HourCount:
        """The place this transfer takes if nothing else is counted in its window before it is written."""
        if self.place is not None:
            return self.place
        before = self.window_before
        return HourCount(before.transfers + 1, before.amount_minor + request.amount_minor)


@dataclass(frozen=True)
class AssessmentToRecord:
    """An assessment judged on the place `before` promises, not yet written: its write counts the transfer in
    `window` on condition that the window still holds `before` (see RiskRepository.count_and_record). The
    transfers function carries it in its own order's transaction."""

    request: RiskRequest
    window: str
    before: HourCount
    transfers_max: int
    assessment: Assessment
    at: datetime


def assessment_to_json(assessment: Assessment) -> str:
    """The stored form: the same JSON as the API's assessment view, so the two never drift apart."""
    return json.dumps({
        "assessment_id": assessment.assessment_id, "decision": assessment.decision.value,
        "score": assessment.score, "reasons": assessment.reasons,
        "findings": [{"rule": f.rule, "verdict": f.verdict.value, "score": f.score, "detail": f.detail}
                     for f in assessment.findings],
    }, separators=(",", ":"), ensure_ascii=False)


def assessment_from_json(text: str) -> Assessment:
    raw: dict[str, Any] = jsonio.loads(text)
    findings = tuple(Finding(f["rule"], Verdict(f["verdict"]), int(f["score"]), f["detail"])
                     for f in raw["findings"])
    return Assessment(raw["assessment_id"], Decision(raw["decision"]), int(raw["score"]), findings)
