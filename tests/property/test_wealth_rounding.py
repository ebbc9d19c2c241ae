"""Conservation and rounding bounds of the wealth arithmetic (domain/wealth.py), over random holders.

The daily batch relies on these: every holder's income is within a cent of the exact figure, the
posted incomes and the remainder add up to the fund's distributable income to the cent, the remainder
is bounded by the number of holders, and paging the holders changes nothing.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from finfaas.domain.wealth import (
    DayCount,
    FeeTier,
    FixedTerm,
    Lot,
    Rounding,
    early_redemption,
    mmf_distribute,
    mmf_income,
    nav_redemption,
    nav_subscription,
    simple_interest,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

EXAMPLES_MAX = 300
HOLDERS_MAX = 60

units = st.integers(min_value=0, max_value=10**13)  # up to 100 billion units, in hundredths
figures = st.integers(min_value=0, max_value=1_000_000).map(lambda n: Decimal(n).scaleb(-4))
navs = st.integers(min_value=1, max_value=100_000).map(lambda n: Decimal(n).scaleb(-4))
rates = st.integers(min_value=0, max_value=100_000).map(lambda n: Decimal(n).scaleb(-6))
roundings = st.sampled_from(list(Rounding))


def exact_income(units_minor: int, figure: Decimal) -> Fraction:
    return Fraction(units_minor) * Fraction(figure) / 10_000


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(units, figures, roundings)
@example(1_000_000, Decimal("0.0050"), Rounding.HALF_UP)  # exactly half a cent
def test_a_holders_income_is_within_the_rules_cent_of_the_exact_income(units_minor, figure, rounding):
    income, exact = mmf_income(units_minor, figure, rounding), exact_income(units_minor, figure)
    if rounding is Rounding.TRUNCATE:
        assert 0 <= exact - income < 1  # never more than earned
    else:
        assert -Fraction(1, 2) <= exact - income < Fraction(1, 2)  # half a cent rounds up


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(st.lists(units, max_size=HOLDERS_MAX), figures, roundings)
def test_postings_plus_remainder_are_the_funds_distributable_income_to_the_cent(holders, figure, rounding):
    day = mmf_distribute(holders, figure, rounding)
    assert sum(day.incomes_minor) + day.remainder_minor == day.distributable_minor
    assert day.distributable_minor == mmf_income(sum(holders), figure, rounding)
    if rounding is Rounding.TRUNCATE:
        # each holder loses under a cent, and the fund's own total is truncated once
        assert 0 <= day.remainder_minor <= max(len(holders) - 1, 0)
    else:
        # each holder is within half a cent, and so is the fund's total
        assert 2 * abs(day.remainder_minor) <= len(holders)


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(st.lists(units, max_size=HOLDERS_MAX), figures, roundings, st.integers(min_value=1, max_value=10))
def test_paging_the_holders_posts_the_same_incomes(holders, figure, rounding, page_size):
    whole = mmf_distribute(holders, figure, rounding)
    paged = [income for start in range(0, len(holders), page_size)
             for income in mmf_distribute(holders[start:start + page_size], figure, rounding).incomes_minor]
    assert tuple(paged) == whole.incomes_minor


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(st.integers(min_value=1, max_value=10**14), rates.filter(lambda r: r <= Decimal("0.1")), navs)
def test_a_subscription_splits_the_amount_exactly_and_units_are_worth_the_net_within_half_a_unit(
        amount, fee_rate, nav):
    sub = nav_subscription(amount, fee_rate, nav)
    assert sub.net_minor + sub.fee_minor == amount
    assert 0 <= sub.fee_minor <= amount
    assert abs(Fraction(sub.units_minor) - Fraction(sub.net_minor) / Fraction(nav)) <= Fraction(1, 2)


ages_days = st.integers(min_value=0, max_value=800)
lots = st.lists(st.tuples(st.integers(min_value=1, max_value=10**10), ages_days), min_size=1, max_size=8)
TIERS = [FeeTier(0, Decimal("0.015")), FeeTier(7, Decimal("0.005")), FeeTier(365, Decimal("0"))]


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(lots, navs, st.data())
def test_a_redemption_conserves_units_and_gross_is_net_plus_fee(raw_lots, nav, data):
    trade = date(2027, 12, 31)
    held = [Lot(u, trade - timedelta(days=age)) for u, age in raw_lots]
    total = sum(lot.units_minor for lot in held)
    redeemed = data.draw(st.integers(min_value=1, max_value=total))
    red = nav_redemption(held, redeemed, nav, TIERS, trade)
    assert sum(lot.units_minor for lot in red.remaining) + redeemed == total
    assert red.net_minor + red.fee_minor == red.gross_minor
    assert 0 <= red.fee_minor <= red.gross_minor * Decimal("0.015") + len(held)


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(st.integers(min_value=100, max_value=10**12), st.integers(min_value=0, max_value=364))
def test_early_redemption_never_pays_more_than_the_term_rate_for_the_same_days(principal, held_days):
    terms = FixedTerm(Decimal("0.035"), Decimal("0.0035"), 365, DayCount.ACT_365, minimum_minor=100)
    start = date(2027, 1, 1)
    early = early_redemption(terms, principal, principal, start, start + timedelta(days=held_days))
    assert early.interest_minor <= simple_interest(principal, terms.rate, held_days, terms.day_count)
