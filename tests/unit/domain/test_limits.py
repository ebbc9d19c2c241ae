"""Tier limits (domain/limits.py): per transfer and per UTC day, in major units of the transfer's currency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from finfaas.domain.limits import (
    PerTransferLimitExceeded,
    Tier,
    check_per_transfer,
    daily_headroom_minor,
    daily_limit_error,
    usage_day,
)


def test_the_per_transfer_limit_is_inclusive_and_scaled_by_the_currency_exponent():
    check_per_transfer(Tier.BASIC, 100_000, "USD")  # 1,000.00 USD: allowed
    check_per_transfer(Tier.BASIC, 1_000, "JPY")
    with pytest.raises(PerTransferLimitExceeded) as refused:
        check_per_transfer(Tier.BASIC, 1_000_001, "KWD")  # 1,000.001 KWD
    assert refused.value.limit_minor == 1_000_000
    assert refused.value.code == "per_transfer_limit_exceeded"


def test_the_daily_headroom_is_what_the_day_may_already_hold():
    assert daily_headroom_minor(Tier.BASIC, 50_000, "USD") == 200_000 - 50_000
    assert daily_headroom_minor(Tier.BASIC, 250_000, "USD") < 0
    assert daily_limit_error(Tier.PREMIUM, "USD").limit_minor == 20_000_000


def test_higher_tiers_allow_more():
    amounts = [
        daily_headroom_minor(tier, 1, "USD")
        for tier in (Tier.BASIC, Tier.STANDARD, Tier.PREMIUM, Tier.BUSINESS)
    ]
    assert amounts == sorted(amounts)


def test_the_day_is_the_utc_day():
    late_in_new_york = datetime(2026, 1, 15, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert usage_day(late_in_new_york) == "2026-01-16"
    assert usage_day(datetime(2026, 1, 15, 0, 0, tzinfo=UTC)) == "2026-01-15"
