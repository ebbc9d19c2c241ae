"""The markets' business calendars (`infra/calendars/<market>-<year>.json`), for the functions that date
money by them (wealth's trade dates, payments' reserve period)."""

from __future__ import annotations

import os
from pathlib import Path

from finfaas.domain.calendar import MarketCalendar, parse_calendar

CALENDARS_DIR_ENV = "FINFAAS_CALENDARS_DIR"
# shared/finfaas/platform/ -> the folder holding infra/ (the repository, or the build context where
# stack.yml's configuration.copy puts infra/calendars).
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def calendars_dir(function_dir: Path) -> Path:
    """FINFAAS_CALENDARS_DIR, else infra/calendars beside the function (its image), else the repository's."""
    configured = os.environ.get(CALENDARS_DIR_ENV)
    if configured:
        return Path(configured)
    for root in (function_dir, PROJECT_ROOT):
        if (root / "infra" / "calendars").is_dir():
            return root / "infra" / "calendars"
    return PROJECT_ROOT / "infra" / "calendars"


def load_calendars(function_dir: Path) -> dict[str, MarketCalendar]:
    """Every market's calendar found, by market: a market's files (one a year) joined as one."""
    calendars: dict[str, MarketCalendar] = {}
    for path in sorted(calendars_dir(function_dir).glob("*.json")):
        calendar = parse_calendar(path.read_text())
        known = calendars.get(calendar.market)
        calendars[calendar.market] = calendar if known is None else known.joined(calendar)
    return calendars
