"""Risk rules: each rule explains itself, and the decision follows the documented policy."""

from __future__ import annotations

import pytest
from finfaas.domain.risk_rules import (
    RULE_THRESHOLDS,
    RULES,
    Decision,
    HourCount,
    InvalidThreshold,
    RiskContext,
    RiskPolicy,
    RiskRequest,
    Verdict,
    assess,
)

POLICY = RiskPolicy()


def request(amount_minor: int = 5_000, currency: str = "USD", destination: str = "acc-b") -> RiskRequest:
    return RiskRequest("tr_1", "cust-1", "acc-a", destination, amount_minor, currency)


def finding(assessment, rule):
    return next(f for f in assessment.findings if f.rule == rule)


def test_a_small_transfer_to_a_known_payee_is_approved_with_every_rule_explained():
    assessment = assess(request(), RiskContext(destination_seen=True))
    assert assessment.decision is Decision.APPROVE
    assert assessment.reasons == []
    assert {f.rule for f in assessment.findings} == {
        "blocked_party",
        "amount_threshold",
        "velocity_count",
        "velocity_amount",
        "new_payee",
    }
    assert all(f.detail for f in assessment.findings)


def test_any_block_list_hit_declines_whatever_the_score():
    assessment = assess(request(), RiskContext(destination_seen=True, blocked=("destination:acc-b",)))
    assert assessment.decision is Decision.DECLINE
    assert assessment.reasons == ["blocked_party"]
    assert "destination:acc-b" in finding(assessment, "blocked_party").detail


def test_an_amount_at_the_review_threshold_goes_to_review_and_just_below_does_not():
    threshold_minor = POLICY.amount_review_major * 100
    assert assess(request(threshold_minor), RiskContext(destination_seen=True)).decision is Decision.REVIEW
    assert (
        assess(request(threshold_minor - 1), RiskContext(destination_seen=True)).decision is Decision.APPROVE
    )


def test_thresholds_are_in_major_units_of_the_transfer_currency():
    # GIVEN the same major amount in JPY (exponent 0) and in KWD (exponent 3)
    jpy = assess(request(POLICY.amount_review_major, "JPY"), RiskContext(destination_seen=True))
    kwd = assess(request(POLICY.amount_review_major * 1000 - 1, "KWD"), RiskContext(destination_seen=True))
    assert finding(jpy, "amount_threshold").verdict is Verdict.FLAG
    assert finding(kwd, "amount_threshold").verdict is Verdict.PASS


def test_velocity_flags_then_blocks_as_the_hourly_count_grows():
    flagged = assess(
        request(), RiskContext(hourly_transfers=POLICY.hourly_transfers_flag - 1, destination_seen=True)
    )
    blocked = assess(
        request(), RiskContext(hourly_transfers=POLICY.hourly_transfers_block - 1, destination_seen=True)
    )
    assert finding(flagged, "velocity_count").verdict is Verdict.FLAG
    assert flagged.decision is Decision.REVIEW
    assert blocked.decision is Decision.DECLINE


def test_a_transfer_is_judged_on_its_counted_place_in_the_hour():
    # GIVEN the store counted this transfer as the customer's Nth of the hour, with the hour's total
    policy = RiskPolicy(hourly_transfers_flag=3)
    third = RiskContext.counted(request(5_000), HourCount(3, 15_000), True, ())
    second = RiskContext.counted(request(5_000), HourCount(2, 10_000), True, ())

    assert (third.hourly_transfers, third.hourly_amount_minor) == (2, 10_000)
    assert finding(assess(request(5_000), third, policy), "velocity_count").detail.startswith("3 transfers")
    assert assess(request(5_000), third, policy).decision is Decision.REVIEW
    assert assess(request(5_000), second, policy).decision is Decision.APPROVE


@pytest.mark.parametrize("hour", [HourCount(0, 0), HourCount(1, 4_999)])
def test_a_count_that_leaves_the_transfer_out_is_refused(hour):
    with pytest.raises(AssertionError):
        RiskContext.counted(request(5_000), hour, True, ())


def test_the_hourly_amount_counts_this_transfer_too():
    context = RiskContext(
        hourly_amount_minor=POLICY.hourly_amount_flag_major * 100 - 5_000, destination_seen=True
    )
    assert finding(assess(request(5_000), context), "velocity_amount").verdict is Verdict.FLAG
    assert finding(assess(request(4_999), context), "velocity_amount").verdict is Verdict.PASS


@pytest.mark.parametrize(("amount_minor", "verdict"), [(99_999, Verdict.PASS), (100_000, Verdict.FLAG)])
def test_a_new_payee_is_flagged_only_for_large_amounts(amount_minor, verdict):
    assessment = assess(request(amount_minor), RiskContext(destination_seen=False))
    assert finding(assessment, "new_payee").verdict is verdict


def test_flags_add_up_to_a_review():
    # GIVEN a large first transfer to a new payee (40) while velocity is at its flag (50)
    context = RiskContext(hourly_transfers=POLICY.hourly_transfers_flag - 1, destination_seen=False)
    assessment = assess(request(100_000), context)
    assert assessment.score == POLICY.new_payee_large_score + POLICY.hourly_transfers_score
    assert assessment.decision is Decision.REVIEW
    assert set(assessment.reasons) == {"new_payee", "velocity_count"}


@pytest.mark.parametrize("changes", [
    {"hourly_transfers_flag": 0},
    {"amount_review_major": -1},
    {"new_payee_score": 1_001},
    {"review_score_min": 0},
    {"hourly_transfers_flag": 31},  # above the block count
    {"hourly_transfers_block": 1_001},  # more than an hour's bucket keeps places for
    {"amount_review_score": True},
])
def test_a_policy_out_of_range_is_refused_naming_the_threshold(changes):
    with pytest.raises(InvalidThreshold) as refused:
        RiskPolicy(**changes)
    assert refused.value.name == next(iter(changes))


def test_every_rule_lists_its_thresholds_and_every_threshold_belongs_to_one():
    listed = [name for names in RULE_THRESHOLDS.values() for name in names]
    assert [rule.__name__ for rule in RULES] + ["decision"] == list(RULE_THRESHOLDS)
    assert sorted(listed) == sorted(POLICY.__dataclass_fields__)
