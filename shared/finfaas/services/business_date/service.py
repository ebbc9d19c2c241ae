"""The business date's use cases: read it, and (manual mode) move it forward.

Every date rule of a business line (T+1 confirmations, maturities, accrual days, loan due dates)
reads `current()`, never the wall clock: in the sandbox an operator advances it to try a month in
seconds, and in production it is the market's calendar date by the clock. An advance is a write
conditional on the date it read, so of two concurrent advances one wins and the other is refused
with nothing written: a day is never skipped twice by two operators who each meant one day.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta

from finfaas.domain.calendar import zone
from finfaas.services.business_date.errors import (
    BusinessDateChanged,
    BusinessDateFollowsClock,
    InvalidAdvance,
    UnknownMarket,
)
from finfaas.services.business_date.model import (
    MARKET_TIME_ZONES,
    BusinessDate,
    BusinessDateMode,
)
from finfaas.services.business_date.ports import BusinessDateRepository

# One advance moves at most a year: a typo of 3650 for 365 should not jump a decade of batches.
advance_days_max = 366


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BusinessDateService:
    """The business date per market, in manual or clock mode."""

    def __init__(self, store: BusinessDateRepository, mode: BusinessDateMode,
                 clock: Callable[[], datetime] = _utc_now,
                 time_zones: Mapping[str, str] = MARKET_TIME_ZONES) -> None:
        self._store = store
        self._mode = mode
        self._clock = clock
        self._time_zones = dict(time_zones)
        for name in self._time_zones.values():
            zone(name)

    @property
    def mode(self) -> BusinessDateMode:
        return self._mode

    def _time_zone(self, market: str) -> str:
        found = self._time_zones.get(market)
        if found is None:
            raise UnknownMarket(f"no business date for market {market!r}; known: {sorted(self._time_zones)}",
                                errors=(("market", "unknown market"),))
        return found

    def _clock_date(self, time_zone: str) -> date:
        return self._clock().astimezone(zone(time_zone)).date()

    def current(self, market: str) -> BusinessDate:
        """The market's business date: the stored one (manual; the clock's date until the first advance)
        or the clock's date in the market's time zone (clock)."""
        time_zone = self._time_zone(market)
        if self._mode is BusinessDateMode.MANUAL:
            stored = self._store.stored(market)
            if stored is not None:
                return BusinessDate(market, stored.business_date, self._mode, time_zone)
        return BusinessDate(market, self._clock_date(time_zone), self._mode, time_zone)

    def advance(self, market: str, *, days: int | None = None, to: date | None = None) -> BusinessDate:
        """Move the business date forward by days or to a later date (manual mode only)."""
        time_zone = self._time_zone(market)
        if self._mode is not BusinessDateMode.MANUAL:
            raise BusinessDateFollowsClock("the business date follows the clock on this stage; "
                                           "set BUSINESS_DATE_MODE=manual to move it by hand")
        if (days is None) == (to is None):
            raise InvalidAdvance("give either days or to", errors=(("days", "give either days or to"),))
        stored = self._store.stored(market)
        previous = stored.business_date if stored is not None else None
        current = previous if previous is not None else self._clock_date(time_zone)
        field = "days" if days is not None else "to"
        target = current + timedelta(days=days) if days is not None else to
        assert target is not None
        step = (target - current).days
        if step < 1:
            raise InvalidAdvance(f"the business date only moves forward: {target.isoformat()} is not "
                                 f"after {current.isoformat()}",
                                 errors=((field, "must be after the current date"),))
        if step > advance_days_max:
            raise InvalidAdvance(f"one advance moves at most {advance_days_max} days",
                                 errors=((field, f"at most {advance_days_max} days ahead"),))
        if not self._store.replace(market, previous, target, self._clock()):
            raise BusinessDateChanged(f"the business date of {market} moved from {current.isoformat()} while "
                                      "this advance ran; read it again", errors=((field, "stale"),))
        return BusinessDate(market, target, self._mode, time_zone)
