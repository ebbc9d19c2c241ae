"""Test doubles for the engine: a clock that moves only when told, and a crash hook.

    clock = FakeClock()                   # clock() -> seconds; clock.sleep(s) moves it
    crash = CrashAt(3)                    # Engine(..., crash_hook=crash) dies at the 4th hook point
"""

from __future__ import annotations

from datetime import UTC, datetime

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    """Seconds since the epoch that move only when told (sleep moves them too)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def ms(self) -> int:
        return int(self.now * 1000)

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


class SimulatedCrash(BaseException):
    """The orchestrator process dies here (BaseException: no `except Exception` stops it)."""


class CrashAt:
    """The engine's crash hook: records every point passed and dies at the index-th one (once)."""

    def __init__(self, index: int | None = None, point: str | None = None) -> None:
        self.index = index
        self.point = point  # or: die the first time this point is passed
        self.points: list[str] = []
        self.crashed_at: str | None = None

    def __call__(self, point: str) -> None:
        self.points.append(point)
        chosen = point == self.point if self.point is not None else len(self.points) - 1 == self.index
        if chosen and self.crashed_at is None:
            self.crashed_at = point
            raise SimulatedCrash(point)
