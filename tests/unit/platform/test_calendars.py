"""The functions' calendars (platform/calendars.py): one file a market and year, joined by market."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from finfaas.domain.calendar import CalendarError
from finfaas.platform.calendars import CALENDARS_DIR_ENV, load_calendars


def _write(folder: Path, name: str, market: str, year: int, holidays: list[str],
           time_zone: str = "Asia/Shanghai") -> None:
    document = {"market": market, "time_zone": time_zone, "years": [year],
                "holidays": [{"date": day, "name": "holiday"} for day in holidays]}
    (folder / name).write_text(json.dumps(document))


def test_a_markets_yearly_files_are_one_calendar_across_the_year_end(tmp_path, monkeypatch):
    # GIVEN CN's 2027 and 2028 in a file each (New Year's Eve 2027 a Friday holiday, 3 January 2028 too)
    _write(tmp_path, "cn-2027.json", "CN", 2027, ["2027-12-31"])
    _write(tmp_path, "cn-2028.json", "CN", 2028, ["2028-01-03"])
    _write(tmp_path, "hk-2027.json", "HK", 2027, [], time_zone="Asia/Hong_Kong")
    monkeypatch.setenv(CALENDARS_DIR_ENV, str(tmp_path))

    calendars = load_calendars(tmp_path)

    # THEN both years' holidays count, and a date rolls from one year into the next
    cn = calendars["CN"]
    assert cn.years == {2027, 2028}
    assert cn.next_trading_day(date(2027, 12, 30)) == date(2028, 1, 4)
    assert sorted(calendars) == ["CN", "HK"]


@pytest.mark.parametrize(("second", "time_zone"), [(2027, "Asia/Shanghai"), (2028, "Europe/London")])
def test_a_year_listed_twice_or_another_time_zone_is_refused(tmp_path, monkeypatch, second, time_zone):
    _write(tmp_path, "cn-a.json", "CN", 2027, [])
    _write(tmp_path, "cn-b.json", "CN", second, [], time_zone=time_zone)
    monkeypatch.setenv(CALENDARS_DIR_ENV, str(tmp_path))

    with pytest.raises(CalendarError):
        load_calendars(tmp_path)
