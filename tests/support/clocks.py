"""A clock for services that stamp what they write: every read is a new, later instant."""

from __future__ import annotations

from datetime import datetime, timedelta


class SteppingClock:
    """Starts at `start` and moves forward by `step` before each read, so no two writes share a moment."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.now = start
        self._step = step

    def __call__(self) -> datetime:
        self.now += self._step
        return self.now
