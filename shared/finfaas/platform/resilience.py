"""Resilience helpers: a circuit breaker for calls to another function.

    breaker = CircuitBreaker("risk", failures_to_open=5, open_seconds=30)
    try:
        result = breaker.call(lambda: risk_client.assess(request))
    except CircuitOpen:
        ...  # degrade: the dependency is known to be failing, so it is not called at all

The state is kept per process, as resilience4j and Hystrix keep it: a breaker exists to stop
waiting on a dependency that is failing, and every instance learns that from its own next few
calls. Shared state (a DynamoDB item) would add a round trip to every protected call and make the
degraded path depend on one more service being up. For the same reason `breaker_states()` answers
this process's breakers only (a function's `GET /_/ops/resilience`, one replica at a time).

CLOSED: calls go through; `failures_to_open` consecutive failures open the circuit.
OPEN: calls fail at once with CircuitOpen for `open_seconds`.
HALF_OPEN: one trial call goes through; success closes the circuit, failure opens it again.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

T = TypeVar("T")
failures_to_open_default = 5
open_seconds_default = 30.0
# Every breaker of this process, for operators; weak, so a breaker built by a test or a rebuilt service
# leaves with its owner.
_breakers: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()
_breakers_lock = threading.Lock()


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitOpen(Exception):
    """The circuit is open: the dependency was not called."""

    def __init__(self, name: str, retry_in_seconds: float) -> None:
        super().__init__(f"circuit {name} is open; next trial in {retry_in_seconds:.1f} s")
        self.name = name
        self.retry_in_seconds = retry_in_seconds


class CircuitBreaker:
    """Counts consecutive failures of calls to one dependency; thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        failures_to_open: int = failures_to_open_default,
        open_seconds: float = open_seconds_default,
        clock: Callable[[], float] = time.monotonic,
        counts_as_failure: Callable[[BaseException], bool] = lambda error: True,
    ) -> None:
        if failures_to_open < 1 or open_seconds <= 0:
            raise ValueError("failures_to_open >= 1 and open_seconds > 0")
        self.name = name
        self._failures_to_open = failures_to_open
        self._open_seconds = open_seconds
        self._clock = clock
        self._counts_as_failure = counts_as_failure
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False
        with _breakers_lock:
            _breakers.add(self)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current_state()

    def snapshot(self) -> dict[str, Any]:
        """The state, consecutive failures and seconds until the next trial (0 unless OPEN)."""
        with self._lock:
            state = self._current_state()
            retry_in = max(self._opened_at + self._open_seconds - self._clock(), 0.0)
            return {"name": self.name, "state": str(state), "failures": self._failures,
                    "failures_to_open": self._failures_to_open,
                    "retry_in_seconds": round(retry_in, 1) if state is BreakerState.OPEN else 0.0}

    def call(self, operation: Callable[[], T]) -> T:
        """Run operation unless the circuit is open; its exceptions pass through after being counted."""
        trial = self._admit()
        try:
            result = operation()
        except BaseException as error:
            self._record(success=not self._counts_as_failure(error), trial=trial)
            raise
        self._record(success=True, trial=trial)
        return result

    def _admit(self) -> bool:
        """True when this call is the half-open trial; CircuitOpen when no call may pass."""
        with self._lock:
            state = self._current_state()
            if state is BreakerState.CLOSED:
                return False
            if state is BreakerState.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return True
            retry_in = max(self._opened_at + self._open_seconds - self._clock(), 0.0)
            raise CircuitOpen(self.name, retry_in)

    def _record(self, *, success: bool, trial: bool) -> None:
        with self._lock:
            if trial:
                self._trial_running = False
            if success:
                self._state, self._failures = BreakerState.CLOSED, 0
                return
            self._failures += 1
            if trial or self._failures >= self._failures_to_open:
                self._state, self._opened_at = BreakerState.OPEN, self._clock()

    def _current_state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_at + self._open_seconds:
            self._state = BreakerState.HALF_OPEN
        return self._state


def breaker_states() -> list[dict[str, Any]]:
    """Each live breaker of this process, by name."""
    with _breakers_lock:
        breakers = list(_breakers)
    return sorted((breaker.snapshot() for breaker in breakers), key=lambda state: str(state["name"]))
