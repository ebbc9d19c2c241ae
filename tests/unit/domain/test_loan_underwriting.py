"""Loan underwriting rules (domain/loan_underwriting.py): each rule's verdict and reason, and the worst
verdict deciding."""

from __future__ import annotations

import pytest
from finfaas.domain.loan_underwriting import (
    Application,
    BureauReport,
    Outcome,
    UnderwritingPolicy,
    Verdict,
    bureau_findings,
    decide,
    internal_findings,
    risk_findings,
)

POLICY = UnderwritingPolicy()
# 10,000.00 over 12 months at 12 %: an installment of 888.49; a monthly income of 5,000.00.
GOOD = Application(principal_minor=1_000_000, installment_minor=88_849, monthly_income_minor=500_000,
                   monthly_debt_minor=100_000)
CLEAN_BUREAU = BureauReport(score=700, delinquencies=0)


def verdicts(findings) -> dict[str, Verdict]:
    return {f.rule: f.verdict for f in findings}


def test_an_affordable_loan_passes_every_internal_rule():
    assert set(verdicts(internal_findings(GOOD, POLICY)).values()) == {Verdict.PASS}


@pytest.mark.parametrize(("changes", "rule"), [
    ({"installment_minor": 200_001, "monthly_debt_minor": 0}, "income"),  # above 40 % of 5,000.00
    ({"monthly_debt_minor": 211_152}, "existing_debt"),  # 2,111.52 + 888.49 = 3,000.01 > 60 %
    ({"principal_minor": 6_000_001}, "amount_vs_income"),  # above a year's 60,000.00
])
def test_each_internal_limit_declines_just_above_it(changes, rule):
    application = Application(**{**GOOD.__dict__, **changes})

    found = verdicts(internal_findings(application, POLICY))

    assert found[rule] is Verdict.DECLINE
    assert [r for r, v in found.items() if v is not Verdict.PASS] == [rule]


def test_limits_are_inclusive():
    at_limits = Application(principal_minor=6_000_000, installment_minor=200_000,
                            monthly_income_minor=500_000, monthly_debt_minor=100_000)

    assert set(verdicts(internal_findings(at_limits, POLICY)).values()) == {Verdict.PASS}


def test_no_income_declines_with_a_reason():
    found = internal_findings(Application(1_000_000, 88_849, 0, 0), POLICY)

    assert {f.verdict for f in found} == {Verdict.DECLINE}
    assert all("no monthly income" in f.detail for f in found)


def test_the_risk_functions_block_list_declines_and_velocity_goes_to_an_operator():
    found = risk_findings([
        {"rule": "blocked_party", "verdict": "BLOCK", "detail": "on a block list: customer"},
        {"rule": "velocity_count", "verdict": "FLAG", "detail": "12 transfers this hour"},
        {"rule": "velocity_amount", "verdict": "PASS", "detail": "0 minor units this hour"},
        {"rule": "new_payee", "verdict": "FLAG", "detail": "not a loan's concern"},
    ])

    assert verdicts(found) == {"blocked_party": Verdict.DECLINE, "velocity_count": Verdict.REVIEW,
                               "velocity_amount": Verdict.PASS}


@pytest.mark.parametrize(("report", "expected"), [
    (BureauReport(549, 0), {"bureau_score": Verdict.DECLINE, "bureau_delinquencies": Verdict.PASS}),
    (BureauReport(550, 0), {"bureau_score": Verdict.REVIEW, "bureau_delinquencies": Verdict.PASS}),
    (BureauReport(620, 0), {"bureau_score": Verdict.PASS, "bureau_delinquencies": Verdict.PASS}),
    (BureauReport(700, 1), {"bureau_score": Verdict.PASS, "bureau_delinquencies": Verdict.REVIEW}),
])
def test_the_bureaus_score_and_delinquencies(report, expected):
    assert verdicts(bureau_findings(report, 1_000_000, 0, POLICY)) == expected


def test_without_a_bureau_a_loan_up_to_the_waiver_is_flagged_and_a_larger_one_waits_for_an_operator():
    assert verdicts(bureau_findings(None, 100_000, 100_000, POLICY)) == {"bureau_unavailable": Verdict.FLAG}
    assert verdicts(bureau_findings(None, 100_001, 100_000, POLICY)) == {"bureau_unavailable": Verdict.REVIEW}


def test_the_worst_verdict_decides_and_the_decision_lists_the_rules_that_fired():
    internal = internal_findings(GOOD, POLICY)

    approved = decide([*internal, *bureau_findings(CLEAN_BUREAU, GOOD.principal_minor, 0, POLICY)])
    flagged = decide([*internal, *bureau_findings(None, GOOD.principal_minor, GOOD.principal_minor, POLICY)])
    review = decide([*internal, *bureau_findings(BureauReport(600, 0), GOOD.principal_minor, 0, POLICY)])
    declined = decide([*internal, *bureau_findings(BureauReport(600, 3), GOOD.principal_minor, 0, POLICY),
                       *risk_findings([{"rule": "blocked_party", "verdict": "BLOCK", "detail": "x"}])])

    assert (approved.outcome, approved.fired, approved.bureau_unavailable) == (Outcome.APPROVE, (), False)
    assert (flagged.outcome, flagged.fired, flagged.bureau_unavailable) == (
        Outcome.APPROVE, ("bureau_unavailable",), True)
    assert (review.outcome, review.fired) == (Outcome.REVIEW, ("bureau_score",))
    assert (declined.outcome, declined.fired) == (
        Outcome.DECLINE, ("bureau_score", "bureau_delinquencies", "blocked_party"))
