"""The business date's HTTP shapes and error table (served by the ledger function under /_/ops/)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, Field, StrictInt

from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.services.business_date.errors import (
    BusinessDateChanged,
    BusinessDateFollowsClock,
    BusinessDateStoreUnavailable,
    InvalidAdvance,
    UnknownMarket,
)
from finfaas.services.business_date.model import DEFAULT_MARKET, BusinessDate, BusinessDateMode
from finfaas.services.business_date.service import advance_days_max

Market = Annotated[str, Field(min_length=2, max_length=16, pattern=r"^[A-Z]+$")]


class MarketQuery(StrictModel):
    market: Market = DEFAULT_MARKET


class AdvanceBody(StrictModel):
    """Move the business date forward: by `days`, or to the later date `to` (one of the two)."""

    market: Market = DEFAULT_MARKET
    days: Annotated[StrictInt, Field(ge=1, le=advance_days_max)] | None = None
    to: date | None = None


class BusinessDateView(BaseModel):
    market: str
    business_date: date
    mode: BusinessDateMode = Field(description="manual: moved by an operator; clock: the market's date")
    time_zone: str


def business_date_view(found: BusinessDate) -> BusinessDateView:
    return BusinessDateView(market=found.market, business_date=found.business_date, mode=found.mode,
                            time_zone=found.time_zone)


ERRORS = {
    UnknownMarket: ErrorSpec(422, UnknownMarket.code, "Unknown market"),
    InvalidAdvance: ErrorSpec(422, InvalidAdvance.code, "Invalid advance"),
    BusinessDateFollowsClock: ErrorSpec(409, BusinessDateFollowsClock.code,
                                        "Business date follows the clock"),
    BusinessDateChanged: ErrorSpec(409, BusinessDateChanged.code, "Business date changed"),
    BusinessDateStoreUnavailable: ErrorSpec(503, BusinessDateStoreUnavailable.code,
                                            "Business date store unavailable"),
}
