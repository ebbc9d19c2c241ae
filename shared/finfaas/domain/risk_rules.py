"""Explainable transfer risk rules: each rule returns a finding (verdict, score, why); the decision
follows from the findings by a fixed, documented policy.

Rules:
* blocked_party: the customer, the source account or the destination is on a block list -> BLOCK.
* amount_threshold: the amount is at or above the review threshold -> FLAG.
* velocity_count: transfers in the current hour at or above the flag / block counts.
* velocity_amount: the hour's total (this transfer included) at or above the flag threshold.
* new_payee: the first transfer to a destination; FLAG when it is also large.

Decision: any BLOCK -> DECLINE; else a total score of review_score_min or more -> REVIEW; else APPROVE.
Thresholds are in major units of the transfer's currency (see domain/limits.py for why). Every one is a
setting of the deployment (services/risk/model.py reads them); RULE_THRESHOLDS says which rule uses which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum

from finfaas.domain.money import currency_exponent


class Verdict(StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FLAG = "FLAG"
    BLOCK = "BLOCK"


class Decision(StrEnum):
    APPROVE = "approve"
    REVIEW = "review"
    DECLINE = "decline"


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """Every threshold of the rules; the defaults are the product's."""

    review_score_min: int = 50
    amount_review_major: int = 10_000
    amount_review_score: int = 60
    hourly_transfers_flag: int = 10
    hourly_transfers_block: int = 30
    hourly_transfers_score: int = 50
    hourly_amount_flag_major: int = 20_000
    hourly_amount_score: int = 50
    new_payee_large_major: int = 1_000
    new_payee_large_score: int = 40
    new_payee_score: int = 10

    def __post_init__(self) -> None:
        for threshold in fields(self):
            value = getattr(self, threshold.name)
            low, high = threshold_bounds(threshold.name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidThreshold(threshold.name, f"an integer from {low} to {high}")
        if self.hourly_transfers_flag > self.hourly_transfers_block:
            raise InvalidThreshold("hourly_transfers_flag", "at most hourly_transfers_block")


score_max = 1_000  # a rule's score, and the review score; the rules' scores add up to a few hundred
# The highest velocity count a stage may set. The store keeps every counted transfer's place in its
# customer's hour bucket (one DynamoDB item, 400 KB at most) until the block count, so the count is bounded.
hourly_transfers_max = 1_000
threshold_major_max = 10**12  # in major units: beyond any amount the ledger holds (money.py's bound)


def threshold_bounds(name: str) -> tuple[int, int]:
    """The inclusive range a threshold may take: scores may be 0 (a rule that only explains), counts
    and amounts start at 1 (0 would flag every transfer: say so with a score instead)."""
    if name.endswith("_score") or name.endswith("_score_min"):
        return (0, score_max) if name.endswith("_score") else (1, score_max)
    if name.endswith("_major"):
        return 1, threshold_major_max
    return 1, hourly_transfers_max


class InvalidThreshold(ValueError):
    """A risk policy threshold out of its range."""

    def __init__(self, name: str, expected: str) -> None:
        super().__init__(f"{name} must be {expected}")
        self.name = name


# The rules in the order they run, what each checks, and the thresholds it reads; the decision's own
# threshold comes last.
RULE_DESCRIPTIONS: Mapping[str, str] = {
    "blocked_party": "the customer, the source account or the payee is on a block list: decline",
    "amount_threshold": "the amount is at or above amount_review_major: flag",
    "velocity_count": "the customer's transfers this hour, this one included, at or above "
                      "hourly_transfers_flag: flag; at or above hourly_transfers_block: decline",
    "velocity_amount": "the customer's total this hour, this transfer included, at or above "
                       "hourly_amount_flag_major: flag",
    "new_payee": "the first transfer to a payee scores new_payee_score; flag it when it is also at or "
                 "above new_payee_large_major",
    "decision": "any decline wins; else a total score of review_score_min or more: review; else approve",
}
RULE_THRESHOLDS: Mapping[str, tuple[str, ...]] = {
    "blocked_party": (),
    "amount_threshold": ("amount_review_major", "amount_review_score"),
    "velocity_count": ("hourly_transfers_flag", "hourly_transfers_block", "hourly_transfers_score"),
    "velocity_amount": ("hourly_amount_flag_major", "hourly_amount_score"),
    "new_payee": ("new_payee_large_major", "new_payee_large_score", "new_payee_score"),
    "decision": ("review_score_min",),
}


@dataclass(frozen=True, slots=True)
class RiskRequest:
    """The transfer to assess; `destination` names the payee (an account id, or a payee fingerprint)."""

    assessment_id: str
    customer_id: str
    debit_account_id: str
    destination: str
    amount_minor: int
    currency: str
    external: bool = False


@dataclass(frozen=True, slots=True)
class HourCount:
    """A transfer's place in its customer's hour, as the store counted it with the transfer: the hour's
    transfers and amount up to and including this one, each transfer counted once."""

    transfers: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class RiskContext:
    """What the store knew before this assessment: the hour's activity, payees seen, block hits."""

    hourly_transfers: int = 0
    hourly_amount_minor: int = 0
    destination_seen: bool = False
    blocked: tuple[str, ...] = ()  # block-list entries that match, e.g. "destination:bank1:0001"

    @classmethod
    def counted(cls, request: RiskRequest, hour: HourCount, destination_seen: bool,
                blocked: tuple[str, ...]) -> RiskContext:
        """The context of a transfer the store has just counted: the hour before it is its count less it."""
        assert hour.transfers >= 1, "a counted transfer is at least the first of its hour"
        assert hour.amount_minor >= request.amount_minor, "a counted transfer's hour includes its amount"
        return cls(hour.transfers - 1, hour.amount_minor - request.amount_minor, destination_seen, blocked)


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    verdict: Verdict
    score: int
    detail: str


@dataclass(frozen=True, slots=True)
class Assessment:
    assessment_id: str
    decision: Decision
    score: int
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def reasons(self) -> list[str]:
        """The rules that did not pass, most serious first."""
        order = {Verdict.BLOCK: 0, Verdict.FLAG: 1, Verdict.PASS: 2}
        ranked = sorted(self.findings, key=lambda f: order[f.verdict])
        return [f.rule for f in ranked if f.verdict is not Verdict.PASS]


def _major(amount_major: int, currency: str) -> int:
    return amount_major * 10 ** currency_exponent(currency)


def blocked_party(request: RiskRequest, context: RiskContext, policy: RiskPolicy) -> Finding:
    if context.blocked:
        return Finding("blocked_party", Verdict.BLOCK, 0, f"on a block list: {', '.join(context.blocked)}")
    return Finding("blocked_party", Verdict.PASS, 0, "no party is on a block list")


def amount_threshold(request: RiskRequest, context: RiskContext, policy: RiskPolicy) -> Finding:
    threshold = _major(policy.amount_review_major, request.currency)
    if request.amount_minor >= threshold:
        return Finding("amount_threshold", Verdict.FLAG, policy.amount_review_score,
                       f"amount {request.amount_minor} is at or above {threshold} minor units")
    return Finding("amount_threshold", Verdict.PASS, 0, f"amount below {threshold} minor units")


def velocity_count(request: RiskRequest, context: RiskContext, policy: RiskPolicy) -> Finding:
    count = context.hourly_transfers + 1
    if count >= policy.hourly_transfers_block:
        return Finding("velocity_count", Verdict.BLOCK, 0, f"{count} transfers this hour (block at "
                                                            f"{policy.hourly_transfers_block})")
    if count >= policy.hourly_transfers_flag:
        return Finding("velocity_count", Verdict.FLAG, policy.hourly_transfers_score,
                       f"{count} transfers this hour (flag at {policy.hourly_transfers_flag})")
    return Finding("velocity_count", Verdict.PASS, 0, f"{count} transfers this hour")


def velocity_amount(request: RiskRequest, context: RiskContext, policy: RiskPolicy) -> Finding:
    total = context.hourly_amount_minor + request.amount_minor
    threshold = _major(policy.hourly_amount_flag_major, request.currency)
    if total >= threshold:
        return Finding("velocity_amount", Verdict.FLAG, policy.hourly_amount_score,
                       f"{total} minor units this hour (flag at {threshold})")
    return Finding("velocity_amount", Verdict.PASS, 0, f"{total} minor units this hour")


def new_payee(request: RiskRequest, context: RiskContext, policy: RiskPolicy) -> Finding:
    if context.destination_seen:
        return Finding("new_payee", Verdict.PASS, 0, "payee seen before")
    large = _major(policy.new_payee_large_major, request.currency)
    if request.amount_minor >= large:
        return Finding("new_payee", Verdict.FLAG, policy.new_payee_large_score,
                       f"first transfer to this payee, at or above {large} minor units")
    return Finding("new_payee", Verdict.PASS, policy.new_payee_score,
                   "first transfer to this payee, small amount")


RULES = (blocked_party, amount_threshold, velocity_count, velocity_amount, new_payee)


def assess(request: RiskRequest, context: RiskContext, policy: RiskPolicy = RiskPolicy()) -> Assessment:
    """Every rule's finding and the decision they lead to."""
    assert request.amount_minor > 0, "a transfer moves a positive amount"
    findings = tuple(rule(request, context, policy) for rule in RULES)
    score = sum(f.score for f in findings)
    return Assessment(request.assessment_id, decide(findings, policy), score, findings)


def decide(findings: Sequence[Finding], policy: RiskPolicy) -> Decision:
    if any(f.verdict is Verdict.BLOCK for f in findings):
        return Decision.DECLINE
    if sum(f.score for f in findings) >= policy.review_score_min:
        return Decision.REVIEW
    return Decision.APPROVE
