"""The business date's refusals and failures."""

from __future__ import annotations

from finfaas.platform.errors import Refusal


class UnknownMarket(Refusal):
    """The market has no business date (no time zone is configured for it)."""

    code = "unknown_market"


class InvalidAdvance(Refusal):
    """An advance names neither or both of days and to, or a date not after the current one."""

    code = "invalid_advance"


class BusinessDateFollowsClock(Refusal):
    """In clock mode the business date is the market's calendar date; no one moves it."""

    code = "business_date_follows_clock"


class BusinessDateChanged(Refusal):
    """Another advance moved the business date after this one read it; nothing was written."""

    code = "business_date_changed"


class BusinessDateStoreUnavailable(RuntimeError):
    """The business dates table could not be read or written."""

    code = "business_date_store_unavailable"
