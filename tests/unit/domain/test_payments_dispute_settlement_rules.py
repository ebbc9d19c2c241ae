"""The dispute bound and the settlement arithmetic of domain/payments.py."""

from __future__ import annotations

from datetime import date

import pytest
from finfaas.domain.calendar import MarketCalendar
from finfaas.domain.payments import (
    DisputeRefused,
    check_dispute,
    fee_earned_minor,
    reserve_release_date,
    settlement_split,
)
from hypothesis import given
from hypothesis import strategies as st


def test_a_dispute_takes_at_most_what_is_neither_refunded_nor_disputed():
    check_dispute(amount_received_minor=10_000, amount_refunded_minor=6_000, amount_disputed_minor=1_000,
                  dispute_minor=3_000)
    with pytest.raises(DisputeRefused, match="^amount: at most 3000"):
        check_dispute(amount_received_minor=10_000, amount_refunded_minor=6_000, amount_disputed_minor=1_000,
                      dispute_minor=3_001)


def test_a_payment_refunded_in_full_cannot_be_disputed_and_says_so():
    with pytest.raises(DisputeRefused) as refused:
        check_dispute(amount_received_minor=10_000, amount_refunded_minor=10_000, amount_disputed_minor=0,
                      dispute_minor=1)
    assert refused.value.field == "amount_refunded"


@given(amount=st.integers(1, 10**9), fee_share=st.integers(0, 100),
       captures=st.lists(st.integers(1, 10**6), min_size=1, max_size=50))
def test_the_fee_earned_by_each_capture_adds_up_to_the_whole_fee_once_all_is_captured(amount, fee_share,
                                                                                      captures):
    fee = amount * fee_share // 100
    received, earned = 0, 0
    for part in captures:
        part = min(part, amount - received)
        if part == 0:
            break
        earned += (fee_earned_minor(fee_minor_total=fee, amount_minor=amount, received_minor=received + part)
                   - fee_earned_minor(fee_minor_total=fee, amount_minor=amount, received_minor=received))
        received += part
    earned += (fee_earned_minor(fee_minor_total=fee, amount_minor=amount, received_minor=amount)
               - fee_earned_minor(fee_minor_total=fee, amount_minor=amount, received_minor=received))
    assert earned == fee


@given(net=st.integers(0, 10**12), fees=st.integers(-10**6, 10**12), reserve_bps=st.integers(0, 10_000))
def test_a_settlement_split_pays_out_what_fees_and_reserve_leave_and_never_below_zero(net, fees, reserve_bps):
    split = settlement_split(net_minor=net, fees_minor=fees, reserve_bps=reserve_bps)

    assert split.fees_collected_minor + split.reserve_minor + split.payout_minor == net
    assert split.fees_collected_minor + split.fees_carried_minor == fees
    assert split.payout_minor >= 0 and split.reserve_minor >= 0 and split.fees_carried_minor >= 0


CN_2027 = MarketCalendar("CN", frozenset({2027}),
                         holidays=frozenset({date(2027, 10, day) for day in range(1, 8)}),
                         extra_trading_days=frozenset({date(2027, 9, 26)}))


def test_the_reserve_is_held_business_days_of_the_markets_calendar():
    # Friday + 2 business days: over the weekend to Tuesday; 0 days: the same day
    assert reserve_release_date(date(2027, 3, 5), 2, CN_2027) == date(2027, 3, 9)
    assert reserve_release_date(date(2027, 3, 5), 0, CN_2027) == date(2027, 3, 5)
    # the National Day week is closed, and the Sunday before it is a trading day
    assert reserve_release_date(date(2027, 9, 24), 1, CN_2027) == date(2027, 9, 26)
    assert reserve_release_date(date(2027, 9, 30), 1, CN_2027) == date(2027, 10, 8)


def test_a_year_the_calendar_does_not_cover_counts_weekdays():
    assert reserve_release_date(date(2026, 12, 31), 2, CN_2027) == date(2027, 1, 4)  # Thu -> Mon
    assert reserve_release_date(date(2026, 3, 6), 1, None) == date(2026, 3, 9)
