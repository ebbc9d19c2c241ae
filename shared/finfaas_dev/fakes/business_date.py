"""In-memory business dates, for tests: the same contract as store/business_date_store.py."""

from __future__ import annotations

import threading
from datetime import date, datetime

from finfaas.services.business_date.model import StoredDate


class InMemoryBusinessDateStore:
    """BusinessDateRepository in a dict, with the store's compare-and-set."""

    def __init__(self) -> None:
        self._dates: dict[str, StoredDate] = {}
        self._lock = threading.Lock()

    def stored(self, market: str) -> StoredDate | None:
        with self._lock:
            return self._dates.get(market)

    def replace(self, market: str, previous: date | None, new: date, at: datetime) -> bool:
        with self._lock:
            found = self._dates.get(market)
            if (found.business_date if found is not None else None) != previous:
                return False
            self._dates[market] = StoredDate(market, new, at)
            return True
