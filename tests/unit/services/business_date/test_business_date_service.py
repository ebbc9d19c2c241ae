"""The business date (services/business_date): manual and clock modes, forward-only advances, races.

`BusinessDateStoreContract` is written once: the in-memory fake runs it here, the DynamoDB store runs it
in tests/integration/services/business_date against DynamoDB Local.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest
from finfaas.platform.config import ConfigError
from finfaas.services.business_date.errors import (
    BusinessDateChanged,
    BusinessDateFollowsClock,
    InvalidAdvance,
    UnknownMarket,
)
from finfaas.services.business_date.model import BusinessDateMode, mode_from_env
from finfaas.services.business_date.service import BusinessDateService, advance_days_max
from finfaas_dev.fakes.business_date import InMemoryBusinessDateStore

# 2027-03-04 17:30 UTC is already Friday 5 March 01:30 in Shanghai.
LATE_THURSDAY_UTC = datetime(2027, 3, 4, 17, 30, tzinfo=UTC)
AT = datetime(2027, 3, 5, 1, 0, tzinfo=UTC)
BARRIER_TIMEOUT_SECONDS = 10


class BusinessDateStoreContract:
    """Behaviour every BusinessDateRepository must show; subclasses provide the `store` fixture."""

    def test_nothing_is_stored_before_the_first_advance(self, store, market):
        assert store.stored(market) is None

    def test_the_first_write_needs_no_item_and_later_ones_the_date_they_read(self, store, market):
        assert store.replace(market, None, date(2027, 3, 5), AT)
        assert not store.replace(market, None, date(2027, 3, 9), AT)
        assert not store.replace(market, date(2027, 3, 4), date(2027, 3, 9), AT)
        assert store.replace(market, date(2027, 3, 5), date(2027, 3, 8), AT)
        found = store.stored(market)
        assert (found.market, found.business_date, found.updated_at) == (market, date(2027, 3, 8), AT)

    def test_of_concurrent_advances_from_the_same_date_exactly_one_wins(self, store, market):
        store.replace(market, None, date(2027, 3, 5), AT)
        barrier = threading.Barrier(4, timeout=BARRIER_TIMEOUT_SECONDS)
        won: list[date] = []

        def advance(days: int) -> None:
            target = date(2027, 3, 5 + days)
            barrier.wait()
            if store.replace(market, date(2027, 3, 5), target, AT):
                won.append(target)

        threads = [threading.Thread(target=advance, args=(days,)) for days in (1, 2, 3, 4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BARRIER_TIMEOUT_SECONDS)
        assert len(won) == 1
        assert store.stored(market).business_date == won[0]


class TestInMemoryBusinessDateStore(BusinessDateStoreContract):
    @pytest.fixture
    def store(self):
        return InMemoryBusinessDateStore()

    @pytest.fixture
    def market(self):
        return "CN"


def manual(store=None, now: datetime = LATE_THURSDAY_UTC) -> BusinessDateService:
    store = store or InMemoryBusinessDateStore()
    return BusinessDateService(store, BusinessDateMode.MANUAL, clock=lambda: now)


def test_in_manual_mode_the_date_starts_at_the_markets_date_by_the_clock_then_moves_only_by_hand():
    store = InMemoryBusinessDateStore()
    service = manual(store)
    first = service.current("CN")
    assert (first.business_date, first.mode, first.time_zone) == (date(2027, 3, 5), BusinessDateMode.MANUAL,
                                                                  "Asia/Shanghai")
    assert service.advance("CN", days=3).business_date == date(2027, 3, 8)
    # a month later by the clock, the date is still where the operator left it
    later = manual(store, now=datetime(2027, 4, 9, tzinfo=UTC))
    assert later.current("CN").business_date == date(2027, 3, 8)
    assert later.advance("CN", to=date(2027, 3, 31)).business_date == date(2027, 3, 31)


def test_an_advance_goes_forward_only_naming_the_field():
    service = manual()
    service.advance("CN", to=date(2027, 3, 10))
    for kwargs, field in (({"to": date(2027, 3, 10)}, "to"), ({"to": date(2027, 3, 1)}, "to"),
                          ({"days": 0}, "days"), ({"days": advance_days_max + 1}, "days"), ({}, "days"),
                          ({"days": 1, "to": date(2027, 3, 11)}, "days")):
        with pytest.raises(InvalidAdvance) as refused:
            service.advance("CN", **kwargs)
        assert refused.value.errors[0][0] == field
    assert service.current("CN").business_date == date(2027, 3, 10)


def test_an_advance_that_lost_a_race_is_refused_and_writes_nothing():
    class RacedStore(InMemoryBusinessDateStore):
        """Another operator's advance lands between this one's read and its write."""

        def replace(self, market, previous, new, at):
            super().replace(market, previous, date(2027, 3, 6), at)
            return super().replace(market, previous, new, at)

    store = RacedStore()
    with pytest.raises(BusinessDateChanged):
        manual(store).advance("CN", days=2)
    assert store.stored("CN").business_date == date(2027, 3, 6)


def test_in_clock_mode_the_date_is_the_markets_date_and_no_one_advances_it():
    store = InMemoryBusinessDateStore()
    store.replace("CN", None, date(2030, 1, 1), AT)  # left over from a manual stage: ignored
    service = BusinessDateService(store, BusinessDateMode.CLOCK, clock=lambda: LATE_THURSDAY_UTC)
    assert service.current("CN").business_date == date(2027, 3, 5)
    with pytest.raises(BusinessDateFollowsClock):
        service.advance("CN", days=1)
    assert store.stored("CN").business_date == date(2030, 1, 1)


def test_an_unknown_market_is_refused_naming_it():
    with pytest.raises(UnknownMarket) as refused:
        manual().current("XX")
    assert refused.value.errors[0][0] == "market"


@pytest.mark.parametrize(("environ", "mode"), [
    ({}, BusinessDateMode.MANUAL),  # the default stage is local
    ({"FINFAAS_STAGE": "sandbox"}, BusinessDateMode.MANUAL),
    ({"FINFAAS_STAGE": "prod"}, BusinessDateMode.CLOCK),
    ({"FINFAAS_STAGE": "prod", "BUSINESS_DATE_MODE": "manual"}, BusinessDateMode.MANUAL),
    ({"FINFAAS_STAGE": "local", "BUSINESS_DATE_MODE": "clock"}, BusinessDateMode.CLOCK),
])
def test_the_mode_follows_the_stage_unless_set(environ, mode):
    assert mode_from_env(environ) is mode


def test_a_misspelt_mode_is_a_configuration_error():
    with pytest.raises(ConfigError, match="BUSINESS_DATE_MODE"):
        mode_from_env({"BUSINESS_DATE_MODE": "manaul"})
