"""The business dates table on DynamoDB Local: the store contract (concurrent advances included), and
the service over it."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime

import pytest
from finfaas.services.business_date.errors import BusinessDateChanged
from finfaas.services.business_date.model import BusinessDateMode
from finfaas.services.business_date.service import BusinessDateService
from finfaas.store.business_date_store import BusinessDateStore
from unit.services.business_date.test_business_date_service import (
    BARRIER_TIMEOUT_SECONDS,
    BusinessDateStoreContract,
)

pytestmark = pytest.mark.emulator

NOW = datetime(2027, 3, 4, 17, 30, tzinfo=UTC)  # Friday 5 March in Shanghai


@pytest.fixture
def store(embedded_aws) -> BusinessDateStore:
    return BusinessDateStore()


@pytest.fixture
def market() -> str:
    """A market of each test's own, so tests share the session's table without seeing each other."""
    return "T" + uuid.uuid4().hex[:12].upper()


class TestDynamoDBBusinessDateStore(BusinessDateStoreContract):
    """The same contract the in-memory fake passes."""


def test_two_operators_advancing_at_once_one_wins_the_other_is_refused(store, market):
    # GIVEN two services (two function processes) reading the same business date, Monday 8 March
    zones = {market: "Asia/Shanghai"}
    service = BusinessDateService(store, BusinessDateMode.MANUAL, clock=lambda: NOW, time_zones=zones)
    service.advance(market, to=date(2027, 3, 8))
    barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT_SECONDS)
    outcomes: list[str] = []

    class Racing(BusinessDateStore):
        def replace(self, market, previous, new, at):
            barrier.wait()  # both have read `start` before either writes
            return super().replace(market, previous, new, at)

    def advance() -> None:
        racing = BusinessDateService(Racing(), BusinessDateMode.MANUAL, clock=lambda: NOW, time_zones=zones)
        try:
            racing.advance(market, days=1)
            outcomes.append("advanced")
        except BusinessDateChanged:
            outcomes.append("refused")

    # WHEN each advances by one day at the same moment
    threads = [threading.Thread(target=advance) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BARRIER_TIMEOUT_SECONDS)

    # THEN the date moved one day, not two
    assert sorted(outcomes) == ["advanced", "refused"]
    assert service.current(market).business_date == date(2027, 3, 9)
