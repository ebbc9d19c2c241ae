"""Payment rules: fees and their rounding, receivable shards, capture and refund bounds, fee refunds."""

from __future__ import annotations

import pytest
from finfaas.domain.errors import InvalidInput
from finfaas.domain.payments import (
    CaptureRefused,
    FeeSchedule,
    RefundRefused,
    Rounding,
    captures_per_payment_max,
    check_capture,
    check_refund,
    fee_minor,
    fee_refund_minor,
    receivable_shard,
    reserve_minor,
)
from hypothesis import given
from hypothesis import strategies as st

REFUND_PARTS_MAX = 40


def test_a_fee_is_its_basis_points_plus_the_fixed_part():
    # 10.00 at 2.9 % + 0.30
    assert fee_minor(1000, FeeSchedule(290, 30, Rounding.HALF_UP)) == 59


@pytest.mark.parametrize(("rounding", "fee"), [
    (Rounding.HALF_UP, 2), (Rounding.HALF_EVEN, 2), (Rounding.DOWN, 1), (Rounding.UP, 2)])
def test_the_schedule_names_how_a_fraction_of_a_cent_is_rounded(rounding, fee):
    # 0.55 at 2.9 % is 1.595 cents
    assert fee_minor(55, FeeSchedule(290, 0, rounding)) == fee


@pytest.mark.parametrize(("rounding", "fee"), [
    (Rounding.HALF_UP, 3), (Rounding.HALF_EVEN, 2), (Rounding.DOWN, 2), (Rounding.UP, 3)])
def test_an_exact_half_rounds_by_the_rule(rounding, fee):
    # 0.50 at 5 % is 2.5 cents
    assert fee_minor(50, FeeSchedule(500, 0, rounding)) == fee


@pytest.mark.parametrize(("bps", "fixed", "field"), [
    (-1, 0, "fee_schedule.bps"), (5_001, 0, "fee_schedule.bps"), (0, -1, "fee_schedule.fixed_minor")])
def test_a_schedule_outside_its_bounds_is_refused_naming_the_field(bps, fixed, field):
    with pytest.raises(InvalidInput) as refused:
        FeeSchedule(bps, fixed, Rounding.HALF_UP)
    assert refused.value.field == field


def test_the_reserve_is_rounded_down():
    assert reserve_minor(999, 1_000) == 99  # 10 % of 9.99 is 0.999


def test_a_payment_always_lands_on_the_same_receivable_shard_and_payments_spread_over_all():
    assert receivable_shard("pi_1", 8) == receivable_shard("pi_1", 8)
    assert {receivable_shard(f"pi_{n}", 8) for n in range(200)} == set(range(8))


def test_a_capture_takes_at_most_what_is_capturable():
    check_capture(amount_capturable_minor=100, amount_to_capture_minor=100, captures_done=0)
    with pytest.raises(CaptureRefused) as refused:
        check_capture(amount_capturable_minor=100, amount_to_capture_minor=101, captures_done=0)
    assert refused.value.field == "amount_to_capture"


def test_a_payment_takes_at_most_fifty_captures():
    check_capture(amount_capturable_minor=100, amount_to_capture_minor=1,
                  captures_done=captures_per_payment_max - 1)
    with pytest.raises(CaptureRefused):
        check_capture(amount_capturable_minor=100, amount_to_capture_minor=1,
                      captures_done=captures_per_payment_max)


def test_refunds_never_exceed_what_was_captured():
    check_refund(amount_received_minor=10_000, amount_refunded_minor=4_000, refund_minor=6_000)
    with pytest.raises(RefundRefused) as refused:
        check_refund(amount_received_minor=10_000, amount_refunded_minor=4_000, refund_minor=6_001)
    assert refused.value.field == "amount"


def test_a_quarter_refunded_gives_a_quarter_of_the_fee_back():
    # 100.00 charged with a 3.00 fee; 25.00 refunded
    assert fee_refund_minor(fee_minor_total=300, amount_received_minor=10_000, amount_refunded_minor=0,
                            fee_refunded_minor=0, refund_minor=2_500) == 75


def test_a_fee_share_is_rounded_half_even_on_the_running_total():
    # 1.00 fee on 3.00: each 1.00 refunded is owed 33.33 cents
    first = fee_refund_minor(fee_minor_total=100, amount_received_minor=300, amount_refunded_minor=0,
                             fee_refunded_minor=0, refund_minor=100)
    second = fee_refund_minor(fee_minor_total=100, amount_received_minor=300, amount_refunded_minor=100,
                              fee_refunded_minor=first, refund_minor=100)
    assert (first, second) == (33, 34)  # 33.33 -> 33, then 66.67 -> 67 in all


@st.composite
def refund_parts(draw, received: int) -> list[int]:
    """A split of received into positive parts, drawn as cut points: one draw per part, where drawing
    each part from what was left ran into Hypothesis's data limit on long runs of small parts."""
    cuts = draw(st.lists(st.integers(1, received - 1), unique=True,
                         max_size=min(REFUND_PARTS_MAX, received) - 1)) if received > 1 else []
    bounds = [0, *sorted(cuts), received]
    return [after - before for before, after in zip(bounds, bounds[1:], strict=False)]


@given(fee=st.integers(0, 10**6), received=st.integers(1, 10**8), data=st.data())
def test_refunded_in_parts_a_payment_returns_exactly_its_fee(fee, received, data):
    refunded = fee_refunded = 0
    for part in data.draw(refund_parts(received), label="parts"):
        back = fee_refund_minor(fee_minor_total=fee, amount_received_minor=received,
                                amount_refunded_minor=refunded, fee_refunded_minor=fee_refunded,
                                refund_minor=part)
        assert back >= 0
        refunded, fee_refunded = refunded + part, fee_refunded + back
        assert fee_refunded <= fee
    assert fee_refunded == fee
