"""Business calendars: trading days per market, order cut-offs and calendar-day iteration.

Pure rules: no clock. A moment or a date is always passed in, and every date rule of a business line
reads the business date (services/business_date), never the wall clock. A calendar knows the years
it was configured for and refuses any other date, because treating an unconfigured year's holidays
as trading days would confirm orders and pay income on days the market is shut.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_CUTOFF_TIME = time(15, 0)
DEFAULT_TIME_ZONE = "Asia/Shanghai"
# A run of non-trading days longer than this means a misconfigured calendar, not a market.
closed_days_max = 31
trading_days_step_max = 366  # T+n: n at most one year of trading days
accrual_days_max = 3_660  # calendar days iterated at once: ten years
calendar_file_chars_max = 100_000
_SATURDAY = 5


class CalendarError(ValueError):
    """A date rule was asked something the calendar cannot answer; `field` names the input at fault."""

    code = "calendar_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DateOutsideCalendar(CalendarError):
    """The date falls in a year the market's calendar was not configured for."""

    code = "date_outside_calendar"


class InvalidCalendar(CalendarError):
    """A calendar file is malformed; `errors` holds (field, message) pairs."""

    code = "invalid_calendar"

    def __init__(self, message: str, errors: tuple[tuple[str, str], ...]) -> None:
        super().__init__(message, field=errors[0][0] if errors else None)
        self.errors = errors


def zone(name: str) -> ZoneInfo:
    """The IANA time zone called name; CalendarError if this machine's tz database lacks it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise CalendarError(f"unknown IANA time zone {name!r}", field="time_zone") from error


@dataclass(frozen=True)
class Cutoff:
    """An order cut-off: orders at or after `at` (local time in `time_zone`) go to the next trading day."""

    at: time = DEFAULT_CUTOFF_TIME
    time_zone: str = DEFAULT_TIME_ZONE

    def __post_init__(self) -> None:
        zone(self.time_zone)
        if self.at.tzinfo is not None:
            raise CalendarError("a cut-off is a local time without an offset", field="cutoff")


@dataclass(frozen=True)
class MarketCalendar:
    """Trading days of one market: weekdays minus holidays, plus extra trading days (weekend sessions)."""

    market: str
    years: frozenset[int]
    holidays: frozenset[date] = field(default_factory=frozenset)
    extra_trading_days: frozenset[date] = field(default_factory=frozenset)
    time_zone: str = DEFAULT_TIME_ZONE

    def __post_init__(self) -> None:
        zone(self.time_zone)
        if not self.years:
            raise CalendarError("a calendar covers at least one year", field="years")
        for day in self.holidays | self.extra_trading_days:
            self._covered(day, "holidays")
        if self.holidays & self.extra_trading_days:
            raise CalendarError("a day cannot be both a holiday and an extra trading day",
                                field="extra_trading_days")

    def joined(self, other: MarketCalendar) -> MarketCalendar:
        """This calendar and another year's of the same market (one file a year) as one."""
        if other.market != self.market or other.time_zone != self.time_zone:
            raise CalendarError(f"{other.market} ({other.time_zone}) cannot join the {self.market} calendar "
                                f"({self.time_zone})", field="market")
        if self.years & other.years:
            raise CalendarError(f"the {self.market} calendar lists {min(self.years & other.years)} twice",
                                field="years")
        return MarketCalendar(self.market, self.years | other.years, self.holidays | other.holidays,
                              self.extra_trading_days | other.extra_trading_days, self.time_zone)

    def _covered(self, day: date, name: str = "date") -> date:
        if day.year not in self.years:
            raise DateOutsideCalendar(f"{day.isoformat()} is outside the {self.market} calendar "
                                      f"(years {sorted(self.years)})", field=name)
        return day

    def is_trading_day(self, day: date) -> bool:
        self._covered(day)
        if day in self.extra_trading_days:
            return True
        return day.weekday() < _SATURDAY and day not in self.holidays

    def next_trading_day(self, day: date) -> date:
        """The first trading day strictly after day."""
        return self._step(day, 1)

    def previous_trading_day(self, day: date) -> date:
        """The last trading day strictly before day."""
        return self._step(day, -1)

    def _step(self, day: date, direction: int) -> date:
        candidate = day
        for _ in range(closed_days_max + 1):
            candidate += timedelta(days=direction)
            if self.is_trading_day(candidate):
                return candidate
        raise CalendarError(f"no trading day within {closed_days_max} days of {day.isoformat()}")

    def add_trading_days(self, trade_day: date, n: int) -> date:
        """T+n: the n-th trading day after the trading day T (T+0 is T itself)."""
        if not 0 <= n <= trading_days_step_max:
            raise CalendarError(f"n must be 0-{trading_days_step_max}", field="n")
        if not self.is_trading_day(trade_day):
            raise CalendarError(f"T must be a trading day; {trade_day.isoformat()} is not", field="trade_day")
        for _ in range(n):
            trade_day = self.next_trading_day(trade_day)
        return trade_day

    def trade_date(self, moment: datetime, cutoff: Cutoff = Cutoff()) -> date:
        """The trading day T an order placed at moment belongs to: that day if it is a trading day and
        the order came before the cut-off in the cut-off's time zone, else the next trading day."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise CalendarError("an order's moment must carry its offset", field="moment")
        local = moment.astimezone(zone(cutoff.time_zone))
        day = local.date()
        if self.is_trading_day(day) and local.time() < cutoff.at:
            return day
        return self.next_trading_day(day)


def calendar_days(first: date, until: date) -> Iterator[date]:
    """Every calendar day from first up to, not including, until (income accrues on each, holidays too)."""
    count = (until - first).days
    if count > accrual_days_max:
        raise CalendarError(f"at most {accrual_days_max} days at once", field="until")
    for offset in range(max(count, 0)):
        yield first + timedelta(days=offset)


# --- the calendar file ------------------------------------------------------------------------------


class _Holiday(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    date: date
    name: Annotated[str, Field(min_length=1, max_length=64)]


class _CalendarFile(BaseModel):
    """A market's calendar as configured (infra/calendars/<market>-<year>.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    market: Annotated[str, Field(pattern=r"^[A-Z]{2,16}$")]
    time_zone: Annotated[str, Field(min_length=1, max_length=64)]
    years: Annotated[list[Annotated[int, Field(ge=1970, le=2199)]], Field(min_length=1, max_length=10)]
    holidays: Annotated[list[_Holiday], Field(max_length=400)]
    extra_trading_days: Annotated[list[date], Field(max_length=100)] = []
    note: Annotated[str, Field(max_length=500)] = ""

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("holidays")
    @classmethod
    def _distinct_holidays(cls, value: list[_Holiday]) -> list[_Holiday]:
        days = [h.date for h in value]
        repeated = sorted({d for d in days if days.count(d) > 1})
        if repeated:
            raise ValueError(f"holiday listed twice: {repeated[0].isoformat()}")
        return value

    @field_validator("extra_trading_days", "years")
    @classmethod
    def _distinct(cls, value: list[date] | list[int]) -> list[date] | list[int]:
        if len(set(value)) != len(value):
            raise ValueError("a value is listed twice")
        return value


def parse_calendar(text: str) -> MarketCalendar:
    """A MarketCalendar from a calendar file's JSON text; InvalidCalendar naming each bad field."""
    if len(text) > calendar_file_chars_max:
        raise InvalidCalendar("calendar file too large", (("", f"at most {calendar_file_chars_max} chars"),))
    try:
        raw = _CalendarFile.model_validate_json(text)
    except ValidationError as error:
        errors = tuple((".".join(str(p) for p in e["loc"]), e["msg"]) for e in error.errors())
        raise InvalidCalendar(f"invalid calendar: {errors[0][0]}: {errors[0][1]}", errors) from None
    try:
        return MarketCalendar(raw.market, frozenset(raw.years), frozenset(h.date for h in raw.holidays),
                              frozenset(raw.extra_trading_days), raw.time_zone)
    except CalendarError as error:
        field_name = error.field or ""
        raise InvalidCalendar(f"invalid calendar: {field_name}: {error}",
                              ((field_name, str(error)),)) from None
