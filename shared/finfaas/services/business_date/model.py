"""The business date, its mode, and the markets that have one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum

from finfaas.domain.calendar import DEFAULT_TIME_ZONE
from finfaas.platform.config import DEFAULT_STAGE, ConfigError

MODE_SETTING = "BUSINESS_DATE_MODE"
STAGE_SETTING = "FINFAAS_STAGE"
# Stages where an operator may move the date forward to try T+1, maturities or a month of income.
MANUAL_STAGES = frozenset({"local", "sandbox"})
DEFAULT_MARKET = "CN"
MARKET_TIME_ZONES: Mapping[str, str] = {"CN": DEFAULT_TIME_ZONE}


class BusinessDateMode(Enum):
    MANUAL = "manual"  # an operator advances it (sandbox); it never moves by itself
    CLOCK = "clock"  # the market's calendar date by the clock (production); advance is refused


def mode_from_env(environ: Mapping[str, str] | None = None) -> BusinessDateMode:
    """BUSINESS_DATE_MODE if set; else manual on the local and sandbox stages, clock on every other."""
    environ = os.environ if environ is None else environ
    raw = environ.get(MODE_SETTING, "").strip()
    if raw:
        try:
            return BusinessDateMode(raw)
        except ValueError:
            raise ConfigError(f"{MODE_SETTING} must be manual or clock, got {raw!r}") from None
    stage = environ.get(STAGE_SETTING, DEFAULT_STAGE)
    return BusinessDateMode.MANUAL if stage in MANUAL_STAGES else BusinessDateMode.CLOCK


@dataclass(frozen=True)
class BusinessDate:
    """A market's business date as the rules read it."""

    market: str
    business_date: date
    mode: BusinessDateMode
    time_zone: str


@dataclass(frozen=True)
class StoredDate:
    """The business date an operator last set for a market (manual mode)."""

    market: str
    business_date: date
    updated_at: datetime
