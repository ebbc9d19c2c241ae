"""Transfer limits by customer tier: the most one transfer may move, and the most per UTC day.

Limits are set in major units of the transfer's own currency and compared in minor units, so
10,000 USD is 1,000,000 minor units and 10,000 JPY is 10,000 (no exchange rates: a limit is per
currency). The daily total counts every transfer that passed validation and was not failed or
compensated afterwards (a released transfer gives its amount back).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from finfaas.domain.money import currency_exponent


class Tier(StrEnum):
    BASIC = "BASIC"
    STANDARD = "STANDARD"
    PREMIUM = "PREMIUM"
    BUSINESS = "BUSINESS"


TIER_DEFAULT = Tier.STANDARD


@dataclass(frozen=True, slots=True)
class TierLimits:
    """A tier's limits in major units of any currency."""

    per_transfer_major_max: int
    daily_major_max: int

    def per_transfer_minor_max(self, currency: str) -> int:
        return self.per_transfer_major_max * 10 ** currency_exponent(currency)

    def daily_minor_max(self, currency: str) -> int:
        return self.daily_major_max * 10 ** currency_exponent(currency)


LIMITS_BY_TIER: dict[Tier, TierLimits] = {
    Tier.BASIC: TierLimits(per_transfer_major_max=1_000, daily_major_max=2_000),
    Tier.STANDARD: TierLimits(per_transfer_major_max=10_000, daily_major_max=25_000),
    Tier.PREMIUM: TierLimits(per_transfer_major_max=50_000, daily_major_max=200_000),
    Tier.BUSINESS: TierLimits(per_transfer_major_max=1_000_000, daily_major_max=5_000_000),
}


class LimitExceeded(Exception):
    """A transfer is above a limit of the customer's tier."""

    code = "limit_exceeded"

    def __init__(self, detail: str, *, limit: str, limit_minor: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.limit = limit
        self.limit_minor = limit_minor


class PerTransferLimitExceeded(LimitExceeded):
    code = "per_transfer_limit_exceeded"


class DailyLimitExceeded(LimitExceeded):
    code = "daily_limit_exceeded"


def limits_for(tier: Tier) -> TierLimits:
    return LIMITS_BY_TIER[tier]


def check_per_transfer(tier: Tier, amount_minor: int, currency: str) -> None:
    """Raises PerTransferLimitExceeded when one transfer is above the tier's per-transfer limit."""
    limit_minor = limits_for(tier).per_transfer_minor_max(currency)
    if amount_minor > limit_minor:
        raise PerTransferLimitExceeded(
            f"{amount_minor} is above the {tier.value} per-transfer limit of {limit_minor} {currency} "
            "minor units",
            limit="per_transfer", limit_minor=limit_minor)


def daily_headroom_minor(tier: Tier, amount_minor: int, currency: str) -> int:
    """The most the day's total may already be for this amount to fit (negative: never fits).

    The store adds the amount with the condition `total <= headroom`, since DynamoDB conditions
    cannot add."""
    return limits_for(tier).daily_minor_max(currency) - amount_minor


def daily_limit_error(tier: Tier, currency: str) -> DailyLimitExceeded:
    limit_minor = limits_for(tier).daily_minor_max(currency)
    return DailyLimitExceeded(
        f"the {tier.value} daily limit of {limit_minor} {currency} minor units would be exceeded",
        limit="daily", limit_minor=limit_minor)


def usage_day(moment: datetime) -> str:
    """The UTC day a transfer's amount counts against (YYYY-MM-DD)."""
    assert moment.tzinfo is not None, "limits count UTC days"
    return moment.astimezone(UTC).strftime("%Y-%m-%d")
