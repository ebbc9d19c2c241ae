"""The risk function's HTTP shapes: bodies, views and the error table."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt

from finfaas.domain.errors import InvalidInput
from finfaas.domain.money import parse_currency, transfer_amount_minor_max
from finfaas.domain.risk_rules import (
    RULE_DESCRIPTIONS,
    RULE_THRESHOLDS,
    Assessment,
    Decision,
    RiskPolicy,
    RiskRequest,
    Verdict,
)
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.platform.pii import PiiKeyUnavailable
from finfaas.services.risk.errors import InvalidBlockEntry, RiskStoreUnavailable
from finfaas.services.risk.model import BlockEntry, policy_setting

identifier_chars_max = 64
destination_chars_max = 128
block_reason_chars_max = 200

Identifier = Annotated[str, Field(min_length=1, max_length=identifier_chars_max, pattern=r"^[A-Za-z0-9_-]+$")]


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


class ThresholdView(BaseModel):
    name: str
    value: int = Field(description="in effect on this stage")
    default: int = Field(description="the product's default")
    setting: str = Field(description="the environment variable that sets it")


class RuleView(BaseModel):
    rule: str
    description: str
    thresholds: list[ThresholdView]


class RiskRules(BaseModel):
    """Every rule in the order it runs, then the decision, each with the thresholds in effect."""

    rules: list[RuleView]
    amounts: str = Field(description="the unit of every *_major threshold")


def risk_rules_view(policy: RiskPolicy) -> RiskRules:
    defaults = RiskPolicy()
    return RiskRules(
        rules=[
            RuleView(rule=rule, description=RULE_DESCRIPTIONS[rule], thresholds=[
                ThresholdView(name=name, value=getattr(policy, name), default=getattr(defaults, name),
                              setting=policy_setting(name))
                for name in names
            ])
            for rule, names in RULE_THRESHOLDS.items()
        ],
        amounts="major units of the transfer's currency (100 USD is 10000 minor units)",
    )


def assessment_view(assessment: Assessment) -> AssessmentView:
    return AssessmentView(
        assessment_id=assessment.assessment_id, decision=assessment.decision, score=assessment.score,
        reasons=assessment.reasons,
        findings=[FindingView(rule=f.rule, verdict=f.verdict, score=f.score, detail=f.detail)
                  for f in assessment.findings])


def block_view(entry: BlockEntry) -> BlockView:
    return BlockView(entry=entry.entry, reason=entry.reason, blocked_at=entry.blocked_at)


ERRORS = {
    InvalidBlockEntry: ErrorSpec(422, InvalidBlockEntry.code, "Invalid block entry"),
    PiiKeyUnavailable: ErrorSpec(503, "pii_key_unavailable", "Fingerprint key unavailable"),
    InvalidInput: ErrorSpec(422, "invalid_input", "Invalid input"),
    RiskStoreUnavailable: ErrorSpec(503, RiskStoreUnavailable.code, "Risk store unavailable"),
}
