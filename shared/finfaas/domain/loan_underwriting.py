"""Loan underwriting: the internal rules with their reasons, the risk screen's and the credit bureau's.

Pure rules: amounts in minor units, ratios as `Decimal`. Each rule gives a finding (pass, flag, review or
decline, with why); the decision is the worst of them, and lists every finding, so an applicant and an
operator see which rules fired. A bureau that did not answer is a finding of its own: a principal up to
the product's waiver is decided by the internal rules alone (flagged), a larger one waits for an operator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

# The risk function's rules an application is judged by (its velocity and block-list rules).
RISK_RULES = ("blocked_party", "velocity_count", "velocity_amount")
bureau_score_min, bureau_score_max = 300, 850


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FLAG = "flag"  # decided without it, and marked so for later review
    REVIEW = "review"  # an operator decides
    DECLINE = "decline"


_SEVERITY = {Verdict.PASS: 0, Verdict.FLAG: 1, Verdict.REVIEW: 2, Verdict.DECLINE: 3}


class Outcome(StrEnum):
    APPROVE = "approve"
    REVIEW = "review"
    DECLINE = "decline"


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on an application, and why."""

    rule: str
    verdict: Verdict
    detail: str

    @property
    def fired(self) -> bool:
        return self.verdict is not Verdict.PASS


@dataclass(frozen=True)
class UnderwritingPolicy:
    """The internal rules' limits (ratios of the applicant's declared monthly income)."""

    installment_to_income_max: Decimal = Decimal("0.4")  # the new installment alone
    debt_to_income_max: Decimal = Decimal("0.6")  # existing monthly debt plus the new installment
    principal_to_annual_income_max: Decimal = Decimal(1)  # the amount borrowed against a year's income
    bureau_decline_below: int = 550
    bureau_review_below: int = 620
    bureau_delinquencies_max: int = 0  # more past-due accounts than this: an operator looks


@dataclass(frozen=True)
class Application:
    """What the rules read: the applicant's declared figures and the loan's first full installment."""

    principal_minor: int
    installment_minor: int
    monthly_income_minor: int
    monthly_debt_minor: int


@dataclass(frozen=True)
class BureauReport:
    """A credit bureau's answer about one customer."""

    score: int
    delinquencies: int


@dataclass(frozen=True)
class Decision:
    """The outcome, every finding behind it, and whether the bureau was missing (flagged)."""

    outcome: Outcome
    findings: tuple[Finding, ...]
    bureau_unavailable: bool

    @property
    def fired(self) -> tuple[str, ...]:
        return tuple(f.rule for f in self.findings if f.fired)


def internal_findings(application: Application, policy: UnderwritingPolicy) -> tuple[Finding, ...]:
    """Income, existing debt and amount against income."""
    income = application.monthly_income_minor
    if income <= 0:
        return tuple(Finding(rule, Verdict.DECLINE, "no monthly income declared")
                     for rule in ("income", "existing_debt", "amount_vs_income"))
    installment_share = Decimal(application.installment_minor) / income
    debt_share = Decimal(application.monthly_debt_minor + application.installment_minor) / income
    annual_share = Decimal(application.principal_minor) / (income * 12)
    return (
        _limit("income", installment_share, policy.installment_to_income_max, "the installment"),
        _limit("existing_debt", debt_share, policy.debt_to_income_max, "existing debt plus the installment"),
        _limit("amount_vs_income", annual_share, policy.principal_to_annual_income_max,
               "the principal, of a year's income,"),
    )


def _limit(rule: str, share: Decimal, limit: Decimal, what: str) -> Finding:
    shown = f"{what} is {share:.2%} of income (at most {limit:.0%})"
    return Finding(rule, Verdict.DECLINE if share > limit else Verdict.PASS, shown)


def risk_findings(findings: Iterable[Mapping[str, str]]) -> tuple[Finding, ...]:
    """The risk function's block-list and velocity findings: BLOCK declines, FLAG goes to an operator."""
    verdicts = {"PASS": Verdict.PASS, "FLAG": Verdict.REVIEW, "BLOCK": Verdict.DECLINE}
    found = []
    for finding in findings:
        if finding.get("rule") in RISK_RULES:
            verdict = verdicts.get(str(finding.get("verdict")), Verdict.REVIEW)
            found.append(Finding(str(finding["rule"]), verdict, str(finding.get("detail", ""))[:200]))
    return tuple(found)


def bureau_findings(report: BureauReport | None, principal_minor: int, waiver_principal_minor_max: int,
                    policy: UnderwritingPolicy) -> tuple[Finding, ...]:
    """The bureau's score and delinquencies; without a report, a flag (small loans) or an operator."""
    if report is None:
        small = principal_minor <= waiver_principal_minor_max
        where = "within" if small else "above"
        return (Finding("bureau_unavailable", Verdict.FLAG if small else Verdict.REVIEW,
                        f"no bureau report; principal {where} the product's waiver "
                        f"({waiver_principal_minor_max} minor units)"),)
    if report.score < policy.bureau_decline_below:
        score = Finding("bureau_score", Verdict.DECLINE,
                        f"score {report.score} below {policy.bureau_decline_below}")
    elif report.score < policy.bureau_review_below:
        score = Finding("bureau_score", Verdict.REVIEW,
                        f"score {report.score} below {policy.bureau_review_below}")
    else:
        score = Finding("bureau_score", Verdict.PASS, f"score {report.score}")
    late = report.delinquencies > policy.bureau_delinquencies_max
    delinquencies = Finding("bureau_delinquencies", Verdict.REVIEW if late else Verdict.PASS,
                            f"{report.delinquencies} past-due accounts")
    return score, delinquencies


def decide(findings: Iterable[Finding]) -> Decision:
    """The worst verdict decides: any decline declines, then any review waits for an operator."""
    found = tuple(findings)
    assert found, "a decision rests on at least one finding"
    worst = max((f.verdict for f in found), key=_SEVERITY.__getitem__)
    outcome = {Verdict.DECLINE: Outcome.DECLINE, Verdict.REVIEW: Outcome.REVIEW}.get(worst, Outcome.APPROVE)
    unavailable = any(f.rule == "bureau_unavailable" for f in found)
    return Decision(outcome, found, unavailable)
