"""The business calendar (domain/calendar.py): trading days, T+n, the cut-off, accrual days, the file."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from finfaas.domain.calendar import (
    CalendarError,
    Cutoff,
    DateOutsideCalendar,
    InvalidCalendar,
    MarketCalendar,
    calendar_days,
    parse_calendar,
)

SAMPLE = Path(__file__).resolve().parents[3] / "infra" / "calendars" / "cn-2027.json"
CN = parse_calendar(SAMPLE.read_text())
# 2026's New Year's Eve and 2027's first days, for the year end: 2027-01-01 is a holiday (Friday).
YEAR_END = MarketCalendar("CN", frozenset({2026, 2027}), frozenset({date(2027, 1, 1)}))


def shanghai(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone(timedelta(hours=8)))


def test_the_sample_calendar_is_cn_2027_in_shanghai_and_says_it_is_a_sample():
    assert (CN.market, CN.time_zone, CN.years) == ("CN", "Asia/Shanghai", frozenset({2027}))
    assert "SAMPLE" in json.loads(SAMPLE.read_text())["note"]
    assert len(CN.holidays) == 18


def test_weekends_and_holidays_are_not_trading_days():
    assert CN.is_trading_day(date(2027, 3, 5))  # a Friday
    assert not CN.is_trading_day(date(2027, 3, 6))  # Saturday
    assert not CN.is_trading_day(date(2027, 4, 5))  # Qingming, a Monday
    assert not CN.is_trading_day(date(2027, 1, 1))


def test_t_plus_one_over_a_weekend_and_a_holiday_block():
    # Friday T: T+1 is Monday; Thursday before National Day: T+1 is the Friday after, a week later.
    assert CN.add_trading_days(date(2027, 3, 5), 1) == date(2027, 3, 8)
    assert CN.add_trading_days(date(2027, 9, 30), 1) == date(2027, 10, 8)
    # the Spring Festival block: Thursday 4 Feb to Monday 15 Feb (5 Feb and 8-12 Feb closed)
    assert CN.next_trading_day(date(2027, 2, 4)) == date(2027, 2, 15)
    assert CN.previous_trading_day(date(2027, 2, 15)) == date(2027, 2, 4)
    assert CN.add_trading_days(date(2027, 2, 3), 2) == date(2027, 2, 15)
    assert CN.add_trading_days(date(2027, 3, 5), 0) == date(2027, 3, 5)


def test_t_must_be_a_trading_day():
    with pytest.raises(CalendarError) as refused:
        CN.add_trading_days(date(2027, 3, 6), 1)
    assert refused.value.field == "trade_day"


def test_the_cut_off_is_15_00_in_shanghai_whatever_zone_the_moment_is_given_in():
    # Thursday 2027-03-04 14:59:59 in Shanghai is 06:59:59 UTC: that day; 15:00:00 is the next.
    assert CN.trade_date(datetime(2027, 3, 4, 6, 59, 59, tzinfo=UTC)) == date(2027, 3, 4)
    assert CN.trade_date(datetime(2027, 3, 4, 7, 0, 0, tzinfo=UTC)) == date(2027, 3, 5)
    # Friday after the cut-off and Saturday go to Monday; 23:30 UTC Sunday is already Monday in Shanghai.
    assert CN.trade_date(shanghai(2027, 3, 5, 15, 1)) == date(2027, 3, 8)
    assert CN.trade_date(shanghai(2027, 3, 6, 10, 0)) == date(2027, 3, 8)
    assert CN.trade_date(datetime(2027, 3, 7, 23, 30, tzinfo=UTC)) == date(2027, 3, 8)


def test_a_product_may_have_its_own_cut_off_and_zone():
    early = Cutoff(time(11, 30), "Asia/Shanghai")
    assert CN.trade_date(shanghai(2027, 3, 4, 11, 29), early) == date(2027, 3, 4)
    assert CN.trade_date(shanghai(2027, 3, 4, 11, 30), early) == date(2027, 3, 5)
    with pytest.raises(CalendarError) as refused:
        Cutoff(time(15, 0), "Mars/Olympus")
    assert refused.value.field == "time_zone"


def test_a_moment_without_its_offset_is_refused():
    with pytest.raises(CalendarError) as refused:
        CN.trade_date(datetime(2027, 3, 4, 14, 0))  # noqa: DTZ001 - the point of the test
    assert refused.value.field == "moment"


def test_the_year_end_crosses_into_the_next_year_when_both_are_configured():
    # Thursday 2026-12-31 15:00 in Shanghai: New Year's Day, then the weekend, so Monday 4 January.
    assert YEAR_END.trade_date(shanghai(2026, 12, 31, 15, 0)) == date(2027, 1, 4)
    assert YEAR_END.trade_date(shanghai(2026, 12, 31, 14, 59, 59)) == date(2026, 12, 31)
    assert YEAR_END.previous_trading_day(date(2027, 1, 4)) == date(2026, 12, 31)


def test_a_date_in_a_year_the_calendar_does_not_cover_is_refused_not_guessed():
    with pytest.raises(DateOutsideCalendar):
        CN.next_trading_day(date(2027, 12, 31))  # Friday; Monday 2028-01-03 is not configured
    with pytest.raises(DateOutsideCalendar):
        CN.is_trading_day(date(2026, 6, 1))


def test_income_accrues_on_every_calendar_day_weekends_and_holidays_included():
    # Confirmed Friday 2027-04-02, the first income day; until Tuesday: Fri, Sat, Sun, Qingming Monday.
    days = list(calendar_days(date(2027, 4, 2), date(2027, 4, 6)))
    assert days == [date(2027, 4, 2), date(2027, 4, 3), date(2027, 4, 4), date(2027, 4, 5)]
    assert list(calendar_days(date(2027, 4, 6), date(2027, 4, 6))) == []
    assert len(list(calendar_days(date(2026, 12, 30), date(2027, 1, 2)))) == 3


def _file(**changes: object) -> str:
    raw = json.loads(SAMPLE.read_text())
    raw.update(changes)
    return json.dumps(raw)


@pytest.mark.parametrize(("changes", "field"), [
    ({"holidays": [{"date": "2027-02-30", "name": "x"}]}, "holidays.0.date"),
    ({"holidays": [{"date": "2027-01-01", "name": "a"}, {"date": "2027-01-01", "name": "b"}]}, "holidays"),
    ({"holiday": []}, "holiday"),
    ({"holidays": [{"date": "2027-01-01", "name": "a", "closed": True}]}, "holidays.0.closed"),
    ({"time_zone": "Asia/Nowhere"}, "time_zone"),
    ({"holidays": [{"date": "2028-01-03", "name": "a"}]}, "holidays"),
    ({"years": []}, "years"),
])
def test_a_bad_calendar_file_is_refused_naming_the_field(changes: dict[str, object], field: str):
    with pytest.raises(InvalidCalendar) as refused:
        parse_calendar(_file(**changes))
    assert field in [name for name, _ in refused.value.errors]
