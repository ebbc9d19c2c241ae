"""Helpers shared by the ledger's integration and property tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class SessionClock:
    """Real time plus a test-controlled offset, strictly increasing (1 µs at least per call)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = timedelta(0)
        self._last = datetime(1970, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        with self._lock:
            now = max(datetime.now(UTC) + self._offset, self._last + timedelta(microseconds=1))
            self._last = now
            return now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += timedelta(seconds=seconds)
