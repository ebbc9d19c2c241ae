"""Helpers shared by the ledger's integration, property and end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

from botocore.exceptions import ConnectionClosedError

LEDGER_CHECK_SECONDS_MAX = 120


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


def finfaas_ledger_check(aws_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`finfaas ledger check` run as an operator runs it, against the emulators of `aws_env`."""
    return subprocess.run(
        [sys.executable, "-m", "finfaas_dev.cli", "ledger", "check"],
        env={**os.environ, **aws_env},
        capture_output=True,
        text=True,
        timeout=LEDGER_CHECK_SECONDS_MAX,
        check=False,
    )


class LoseResponses:
    """A botocore 'after-call' handler: the server has committed, then the connection drops."""

    def __init__(self, operation: str, times: int) -> None:
        self.operation, self.remaining, self.lost = operation, times, 0

    def __call__(self, model, **_):
        if model.name == self.operation and self.remaining > 0:
            self.remaining -= 1
            self.lost += 1
            raise ConnectionClosedError(endpoint_url="http://dynamodb.local (response lost)")
