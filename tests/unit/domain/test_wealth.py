"""Wealth arithmetic (domain/wealth.py): worked examples of every formula, computed with Decimal."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from finfaas.domain.calendar import Cutoff, parse_calendar
from finfaas.domain.wealth import (
    BelowMinimum,
    DayCount,
    FastRedemptionCapExceeded,
    FeeTier,
    FixedTerm,
    InsufficientUnits,
    InvalidFeeTable,
    InvalidFigure,
    Lot,
    MaturityInstruction,
    PartialRedemptionUsed,
    Rounding,
    WealthError,
    check_fast_redemption,
    check_purchase,
    early_redemption,
    mature,
    maturity_date,
    mmf_compound,
    mmf_distribute,
    mmf_income,
    mmf_last_income_day_of_redemption,
    nav_redemption,
    nav_subscription,
    order_dates,
    seven_day_yield_percent,
    simple_interest,
)

SAMPLE = Path(__file__).resolve().parents[3] / "infra" / "calendars" / "cn-2027.json"
CN = parse_calendar(SAMPLE.read_text())
D = Decimal


def shanghai(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone(timedelta(hours=8)))


# --- MMF income ------------------------------------------------------------------------------------


def test_a_days_income_is_units_over_10000_times_the_figure():
    # 1,000,000.00 units × 0.6512 ÷ 10,000 = 65.12 exactly
    assert mmf_income(100_000_000, D("0.6512"), Rounding.TRUNCATE) == 6_512


def test_the_products_rule_decides_the_cent():
    # 10,000.00 units × 0.6587 ÷ 10,000 = 0.6587: truncated 0.65, half-up 0.66
    assert mmf_income(1_000_000, D("0.6587"), Rounding.TRUNCATE) == 65
    assert mmf_income(1_000_000, D("0.6587"), Rounding.HALF_UP) == 66
    # exactly half a cent rounds up: 10,000.00 × 0.0050 ÷ 10,000 = 0.005
    assert mmf_income(1_000_000, D("0.0050"), Rounding.HALF_UP) == 1
    assert mmf_income(1_000_000, D("0.0050"), Rounding.TRUNCATE) == 0


def test_income_is_carried_forward_as_units():
    # 10,000,000.00 units: day 1 earns 651.20; day 2 earns on 10,000,651.20 units: 651.2424 -> 651.24
    units, incomes = mmf_compound(1_000_000_000, [D("0.6512"), D("0.6512")], Rounding.HALF_UP)
    assert incomes == (65_120, 65_124)
    assert units == 1_000_000_000 + 65_120 + 65_124


def test_the_distribution_books_the_rounding_remainder_to_the_fund():
    # 3 holders of 10,000.00 units at 0.6587: each 0.6587 -> 0.65 truncated; the fund's 30,000.00 units
    # earn 1.9761 -> 1.97; the remainder 0.02 goes to the fund's rounding account
    day = mmf_distribute([1_000_000] * 3, D("0.6587"), Rounding.TRUNCATE)
    assert (day.incomes_minor, day.distributable_minor, day.remainder_minor) == ((65, 65, 65), 197, 2)
    # half-up: each 0.66, and the fund's 1.9761 -> 1.98: nothing left over
    day = mmf_distribute([1_000_000] * 3, D("0.6587"), Rounding.HALF_UP)
    assert (day.incomes_minor, day.distributable_minor, day.remainder_minor) == ((66, 66, 66), 198, 0)
    day = mmf_distribute([1_000_000] * 4, D("0.0050"), Rounding.HALF_UP)
    # each 0.005 -> 0.01, the fund's 40,000.00 units earn 0.02: the fund's account pays -0.02
    assert (day.incomes_minor, day.distributable_minor, day.remainder_minor) == ((1, 1, 1, 1), 2, -2)


@pytest.mark.parametrize("figure", [D("0.65121"), D("-0.0001"), D("100.0001"), D("NaN"), D("Infinity")])
def test_an_income_figure_with_the_wrong_precision_or_range_is_refused_naming_it(figure):
    with pytest.raises(InvalidFigure) as caught:
        mmf_income(1_000_000, figure, Rounding.TRUNCATE)
    assert caught.value.field == "income_per_10k_units"


def test_trailing_zeros_are_the_same_figure():
    assert mmf_income(1_000_000, D("0.651200"), Rounding.TRUNCATE) == 65


# --- the 7-day annualised yield --------------------------------------------------------------------


def test_the_issues_worked_example_gives_2_376_percent():
    figures = [D(x) for x in "0.6512 0.6498 0.6530 0.6487 0.6521 0.6479 0.6540".split()]
    # Σ 4.5567 ÷ 7 × 365 ÷ 10,000 × 100 = 2.375991... -> 2.376
    assert seven_day_yield_percent(figures) == D("2.376")


def test_the_yield_rounds_half_up_at_the_third_decimal():
    # 0.1400 a day: 0.14 × 365 ÷ 100 = 0.511; 0.0100 a day: 0.0365 -> 0.037 (half up; half even: 0.036)
    assert seven_day_yield_percent([D("0.1400")] * 7) == D("0.511")
    assert seven_day_yield_percent([D("0.0100")] * 7) == D("0.037")


def test_the_yield_needs_exactly_seven_days():
    with pytest.raises(WealthError):
        seven_day_yield_percent([D("0.6512")] * 6)


# --- order dates on the calendar -------------------------------------------------------------------


def test_thursday_before_the_cut_off_is_confirmed_friday_and_earns_the_weekend():
    dates = order_dates(CN, shanghai(2027, 3, 4, 14, 59))  # Thursday
    assert (dates.trade_date, dates.confirmation_date) == (date(2027, 3, 4), date(2027, 3, 5))


def test_friday_after_the_cut_off_belongs_to_monday_and_is_confirmed_tuesday():
    dates = order_dates(CN, shanghai(2027, 3, 5, 15, 1))
    assert (dates.trade_date, dates.confirmation_date) == (date(2027, 3, 8), date(2027, 3, 9))


def test_a_holiday_pushes_t_plus_1_past_it():
    # Thursday 1 April after the cut-off: T is Friday 2 April, Monday 5 April is Qingming, T+1 Tuesday
    dates = order_dates(CN, shanghai(2027, 4, 1, 16, 0))
    assert (dates.trade_date, dates.confirmation_date) == (date(2027, 4, 2), date(2027, 4, 6))


def test_a_products_own_cut_off_applies():
    dates = order_dates(CN, shanghai(2027, 3, 4, 14, 0), Cutoff(at=datetime(2027, 1, 1, 13, 30).time()))
    assert dates.trade_date == date(2027, 3, 5)


def test_a_standard_redemption_earns_through_the_day_before_the_cash():
    # redeemed Thursday: Thursday earned, cash Friday; redeemed Friday: the weekend earned, cash Monday
    assert mmf_last_income_day_of_redemption(order_dates(CN, shanghai(2027, 3, 4, 10, 0))) == date(2027, 3, 4)
    assert mmf_last_income_day_of_redemption(order_dates(CN, shanghai(2027, 3, 5, 10, 0))) == date(2027, 3, 7)


def test_fast_redemption_is_capped_per_day():
    assert check_fast_redemption(1_000_000, 0) == 1_000_000
    assert check_fast_redemption(1, 999_999) == 1
    with pytest.raises(FastRedemptionCapExceeded) as caught:
        check_fast_redemption(2, 999_999)
    assert caught.value.field == "amount"
    with pytest.raises(FastRedemptionCapExceeded):
        check_fast_redemption(500_001, 0, cap_minor=500_000)


# --- NAV funds -------------------------------------------------------------------------------------


def test_the_issues_subscription_example():
    # 100,000.00 at 1.2 %, NAV 1.1800: net 98,814.23, fee 1,185.77, units 83,740.87
    sub = nav_subscription(10_000_000, D("0.012"), D("1.1800"))
    assert (sub.net_minor, sub.fee_minor, sub.units_minor) == (9_881_423, 118_577, 8_374_087)


def test_a_subscription_without_fee_buys_units_at_nav():
    sub = nav_subscription(1_000_000, D("0"), D("1.0000"))
    assert (sub.net_minor, sub.fee_minor, sub.units_minor) == (1_000_000, 0, 1_000_000)


@pytest.mark.parametrize(("nav", "field"), [(D("0"), "nav"), (D("1.18001"), "nav")])
def test_a_nav_of_zero_or_with_five_decimals_is_refused(nav, field):
    with pytest.raises(InvalidFigure) as caught:
        nav_subscription(10_000, D("0.012"), nav)
    assert caught.value.field == field


TIERS = [FeeTier(0, D("0.015")), FeeTier(7, D("0.005")), FeeTier(365, D("0.0025")), FeeTier(730, D("0"))]


def test_a_redemption_charges_each_lot_by_its_holding_period_first_in_first_out():
    # GIVEN 50,000.00 units confirmed 1 March and 10,000.00 confirmed 10 March
    lots = [Lot(1_000_000, date(2027, 3, 10)), Lot(5_000_000, date(2027, 3, 1))]
    # WHEN 55,000.00 units are redeemed on T = 12 March at NAV 1.2345
    red = nav_redemption(lots, 5_500_000, D("1.2345"), TIERS, date(2027, 3, 12))
    # THEN gross = 55,000.00 × 1.2345 = 67,897.50; the old lot (11 days) pays 0.5 % of 61,725.00 =
    # 308.625 -> 308.63, 5,000.00 of the new lot (2 days) 1.5 % of 6,172.50 = 92.5875 -> 92.59
    assert (red.gross_minor, red.fee_minor, red.net_minor) == (6_789_750, 40_122, 6_749_628)
    assert red.remaining == (Lot(500_000, date(2027, 3, 10)),)


def test_seven_days_held_leaves_the_short_holding_tier():
    lots = [Lot(1_000_000, date(2027, 3, 1))]
    # 10,000.00 × 1.0000 held 7 days: 0.5 % = 50.00; held 6 days: 1.5 % = 150.00
    assert nav_redemption(lots, 1_000_000, D("1"), TIERS, date(2027, 3, 8)).fee_minor == 5_000
    assert nav_redemption(lots, 1_000_000, D("1"), TIERS, date(2027, 3, 7)).fee_minor == 15_000


def test_redeeming_more_units_than_held_is_refused():
    with pytest.raises(InsufficientUnits):
        nav_redemption([Lot(100, date(2027, 3, 1))], 101, D("1"), TIERS, date(2027, 3, 8))
    with pytest.raises(WealthError) as caught:
        nav_redemption([Lot(-100, date(2027, 3, 1)), Lot(300, date(2027, 3, 2))], 150, D("1"), TIERS,
                       date(2027, 3, 8))
    assert caught.value.field == "lots"


@pytest.mark.parametrize("tiers", [
    [FeeTier(0, D("0.010"))],  # short holdings under the 1.5 % floor
    [FeeTier(0, D("0.015")), FeeTier(5, D("0.005"))],  # day 5 and 6 under the floor
    [FeeTier(1, D("0.015"))],  # does not start at day 0
    [FeeTier(0, D("0.015")), FeeTier(0, D("0.02"))],  # repeated day
])
def test_a_fee_table_that_lets_short_holdings_pay_less_than_the_floor_is_refused(tiers):
    with pytest.raises(InvalidFeeTable):
        nav_redemption([Lot(100, date(2027, 3, 1))], 100, D("1"), tiers, date(2027, 3, 8))


# --- fixed-term products ---------------------------------------------------------------------------

TERM = FixedTerm(rate=D("0.035"), demand_rate=D("0.0035"), term_days=90, day_count=DayCount.ACT_365,
                 minimum_minor=1_000_000)


def test_interest_at_maturity_follows_the_day_count():
    # 100,000.00 × 3.5 % × 90 ÷ 365 = 863.0137 -> 863.01; over 360: 875.00
    assert simple_interest(10_000_000, D("0.035"), 90, DayCount.ACT_365) == 86_301
    assert simple_interest(10_000_000, D("0.035"), 90, DayCount.ACT_360) == 87_500
    assert maturity_date(TERM, date(2027, 3, 1)) == date(2027, 5, 30)


@pytest.mark.parametrize(("instruction", "payout", "rolled"), [
    (MaturityInstruction.PAY_OUT, 10_086_301, 0),
    (MaturityInstruction.ROLL_OVER_ALL, 0, 10_086_301),
    (MaturityInstruction.ROLL_OVER_PRINCIPAL, 86_301, 10_000_000),
])
def test_the_maturity_instruction_splits_principal_and_interest(instruction, payout, rolled):
    result = mature(TERM, 10_000_000, instruction)
    assert (result.interest_minor, result.payout_minor, result.rolled_over_minor) == (86_301, payout, rolled)


def test_an_amount_under_the_minimum_is_refused():
    assert check_purchase(TERM, 1_000_000) == 1_000_000
    with pytest.raises(BelowMinimum) as caught:
        check_purchase(TERM, 999_999)
    assert caught.value.field == "amount"


def test_early_redemption_earns_the_demand_rate_and_one_partial_is_allowed():
    # 40,000.00 of 100,000.00 redeemed after 30 days: 40,000.00 × 0.35 % × 30 ÷ 365 = 11.5068 -> 11.51
    first = early_redemption(TERM, 10_000_000, 4_000_000, date(2027, 3, 1), date(2027, 3, 31))
    assert (first.interest_minor, first.remaining_principal_minor, first.partial_redemptions) == (
        1_151, 6_000_000, 1)
    with pytest.raises(PartialRedemptionUsed):
        early_redemption(TERM, 6_000_000, 1_000_000, date(2027, 3, 1), date(2027, 4, 10),
                         partial_redemptions=1)
    # the rest may still be redeemed in full: 60,000.00 × 0.35 % × 40 ÷ 365 = 23.0137 -> 23.01
    rest = early_redemption(TERM, 6_000_000, 6_000_000, date(2027, 3, 1), date(2027, 4, 10),
                            partial_redemptions=1)
    assert (rest.interest_minor, rest.remaining_principal_minor) == (2_301, 0)


def test_a_partial_redemption_must_leave_the_minimum_and_come_before_maturity():
    with pytest.raises(BelowMinimum):
        early_redemption(TERM, 10_000_000, 9_500_000, date(2027, 3, 1), date(2027, 3, 31))
    with pytest.raises(WealthError) as caught:
        early_redemption(TERM, 10_000_000, 10_000_000, date(2027, 3, 1), date(2027, 5, 30))
    assert caught.value.field == "on"


def test_a_demand_rate_above_the_term_rate_is_refused():
    with pytest.raises(InvalidFigure) as caught:
        FixedTerm(D("0.01"), D("0.02"), 90, DayCount.ACT_365, 100)
    assert caught.value.field == "demand_rate"
