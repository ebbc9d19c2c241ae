"""Payment rules without I/O: fee schedules and their rounding, the hot merchant's receivable shards,
capture and refund bounds, the proportional refund of an application fee.

Worked examples (USD, minor units):
- fee of 290 bps + 30 fixed on 10.00 (1000): 1000 * 290 / 10000 = 29.0 -> 29 + 30 = 59 (0.59);
- on 0.55 (55): 55 * 290 / 10000 = 1.595 -> half_up 2, half_even 2, down 1, up 2; then + 30;
- a 100.00 charge with a 3.00 fee, 25.00 refunded: 300 * 2500 / 10000 = 75 -> 0.75 of fee back.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from finfaas.domain.errors import InvalidInput
from finfaas.domain.money import transfer_amount_minor_max

if TYPE_CHECKING:  # only its type: the calendar module needs tzdata, which not every image installs
    from finfaas.domain.calendar import MarketCalendar

basis_points_per_unit = 10_000
fee_bps_max = 5_000  # 50 %: above it a schedule is a mistake, not a price
fee_fixed_minor_max = 10**12
reserve_bps_max = basis_points_per_unit
receivable_shards_max = 64
# The rolling reserve is held this many business days (about 90 calendar days, as card acquirers hold it),
# at most a year of them; 0 releases it at the next settlement.
reserve_period_days_default = 60
reserve_period_days_max = 260
_SATURDAY = 5
receivable_shards_default = 8
captures_per_payment_max = 50


class Rounding(StrEnum):
    """How a fee's fraction of a minor unit is rounded (amounts are never negative here)."""

    HALF_UP = "half_up"
    HALF_EVEN = "half_even"
    DOWN = "down"
    UP = "up"


_DECIMAL_ROUNDING = {Rounding.HALF_UP: ROUND_HALF_UP, Rounding.HALF_EVEN: ROUND_HALF_EVEN,
                     Rounding.DOWN: ROUND_FLOOR, Rounding.UP: ROUND_CEILING}


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """A merchant's price: basis points of the amount, rounded by `rounding`, plus a fixed part."""

    bps: int
    fixed_minor: int
    rounding: Rounding

    def __post_init__(self) -> None:
        if not 0 <= self.bps <= fee_bps_max:
            raise InvalidInput(f"fee_schedule.bps: 0 to {fee_bps_max}", field="fee_schedule.bps")
        if not 0 <= self.fixed_minor <= fee_fixed_minor_max:
            raise InvalidInput(f"fee_schedule.fixed_minor: 0 to {fee_fixed_minor_max}",
                               field="fee_schedule.fixed_minor")


def round_minor(value: Decimal, rounding: Rounding) -> int:
    """A non-negative Decimal of minor units to an integer, by the rule."""
    return int(value.to_integral_value(rounding=_DECIMAL_ROUNDING[rounding]))


def fee_minor(amount_minor: int, schedule: FeeSchedule) -> int:
    """The fee on an amount: bps of it rounded by the schedule's rule, plus the fixed part."""
    assert 0 < amount_minor <= transfer_amount_minor_max
    share = Decimal(amount_minor) * schedule.bps / basis_points_per_unit
    return round_minor(share, schedule.rounding) + schedule.fixed_minor


def reserve_minor(amount_minor: int, reserve_bps: int) -> int:
    """The rolling reserve withheld from an amount, rounded down (the merchant is never short-paid
    by rounding; the reserve is released in full later)."""
    assert 0 <= reserve_bps <= reserve_bps_max
    return round_minor(Decimal(amount_minor) * reserve_bps / basis_points_per_unit, Rounding.DOWN)


def receivable_shard(payment_id: str, shards: int) -> int:
    """Which of a merchant's receivable sub-accounts a payment credits: stable per payment, spread
    evenly, so concurrent captures to one merchant update different items."""
    assert 1 <= shards <= receivable_shards_max
    return zlib.crc32(payment_id.encode()) % shards


class CaptureRefused(InvalidInput):
    """A capture the authorization does not cover."""

    code = "capture_refused"


class RefundRefused(InvalidInput):
    """A refund the captured amount does not cover."""

    code = "refund_refused"


def check_capture(*, amount_capturable_minor: int, amount_to_capture_minor: int, captures_done: int) -> None:
    """A capture takes at most what is still capturable, and at most captures_per_payment_max in all."""
    if amount_to_capture_minor <= 0:
        raise CaptureRefused("amount_to_capture: must be greater than zero", field="amount_to_capture")
    if amount_to_capture_minor > amount_capturable_minor:
        raise CaptureRefused(f"amount_to_capture: at most {amount_capturable_minor} is capturable",
                             field="amount_to_capture")
    if captures_done >= captures_per_payment_max:
        raise CaptureRefused(f"amount_to_capture: at most {captures_per_payment_max} captures per payment",
                             field="amount_to_capture")


class DisputeRefused(InvalidInput):
    """A dispute the payment cannot carry: nothing captured is left undisputed and unrefunded."""

    code = "dispute_refused"


def check_refund(*, amount_received_minor: int, amount_refunded_minor: int, refund_minor: int,
                 amount_disputed_minor: int = 0) -> None:
    """Refunds together never exceed what was captured less what disputes took (and kept)."""
    refundable = amount_received_minor - amount_refunded_minor - amount_disputed_minor
    if refund_minor <= 0:
        raise RefundRefused("amount: must be greater than zero", field="amount")
    if refund_minor > refundable:
        raise RefundRefused(f"amount: at most {refundable} is refundable", field="amount")


def fee_refund_minor(*, fee_minor_total: int, amount_received_minor: int, amount_refunded_minor: int,
                     fee_refunded_minor: int, refund_minor: int) -> int:
    """The application fee a refund gives back: the fee's share of what is refunded so far, rounded
    half-even, less what earlier refunds gave back. Computed on the running total, so parts add up:
    a payment refunded in full, in any number of parts, returns exactly the whole fee."""
    check_refund(amount_received_minor=amount_received_minor, amount_refunded_minor=amount_refunded_minor,
                 refund_minor=refund_minor)
    refunded_after = amount_refunded_minor + refund_minor
    owed = Decimal(fee_minor_total) * refunded_after / amount_received_minor
    due = round_minor(owed, Rounding.HALF_EVEN) - fee_refunded_minor
    return max(0, min(due, fee_minor_total - fee_refunded_minor))


def check_dispute(*, amount_received_minor: int, amount_refunded_minor: int, amount_disputed_minor: int,
                  dispute_minor: int) -> None:
    """A dispute takes at most what was captured and neither refunded nor already disputed, so that
    refunded + disputed never exceeds captured; a fully refunded payment cannot be disputed."""
    open_minor = amount_received_minor - amount_refunded_minor - amount_disputed_minor
    if amount_received_minor > 0 and amount_refunded_minor >= amount_received_minor:
        raise DisputeRefused("amount_refunded: the payment was refunded in full", field="amount_refunded")
    if dispute_minor <= 0:
        raise DisputeRefused("amount: must be greater than zero", field="amount")
    if dispute_minor > open_minor:
        raise DisputeRefused(f"amount: at most {open_minor} can be disputed", field="amount")


def fee_earned_minor(*, fee_minor_total: int, amount_minor: int, received_minor: int) -> int:
    """The application fee earned once `received_minor` of `amount_minor` is captured: the fee's share,
    rounded half-even, on the running total, so the shares of successive captures add up to the whole fee
    when all of it is captured."""
    assert 0 < amount_minor and 0 <= received_minor <= amount_minor
    return round_minor(Decimal(fee_minor_total) * received_minor / amount_minor, Rounding.HALF_EVEN)


@dataclass(frozen=True, slots=True)
class SettlementSplit:
    """What a settlement does with the merchant's net: the fees collected, the reserve withheld, the
    payout; fees_collected + reserve + payout = net, and fees_carried is what the net could not cover."""

    fees_collected_minor: int
    reserve_minor: int
    payout_minor: int
    fees_carried_minor: int


def settlement_split(*, net_minor: int, fees_minor: int, reserve_bps: int) -> SettlementSplit:
    """Fees first (a negative fee, more given back than earned, goes back to the merchant), then the
    rolling reserve on what is left, rounded down; the rest is paid out. Never pays out below zero."""
    assert net_minor >= 0
    collected = min(fees_minor, net_minor)
    left = net_minor - collected
    reserve = reserve_minor(left, reserve_bps)
    return SettlementSplit(collected, reserve, left - reserve, fees_minor - collected)


def reserve_release_date(held_on: date, business_days: int, calendar: MarketCalendar | None) -> date:
    """The business date the reserve a settlement of `held_on` withheld is released on: `business_days`
    business days later by the market's calendar; Monday to Friday in a year the calendar does not cover
    (or without one), so a missing calendar delays nothing by more than its holidays."""
    assert 0 <= business_days <= reserve_period_days_max, business_days
    day = held_on
    for _ in range(business_days):
        day += timedelta(days=1)
        while not _business_day(day, calendar):
            day += timedelta(days=1)
    return day


def _business_day(day: date, calendar: MarketCalendar | None) -> bool:
    if calendar is not None and day.year in calendar.years:
        return calendar.is_trading_day(day)
    return day.weekday() < _SATURDAY
