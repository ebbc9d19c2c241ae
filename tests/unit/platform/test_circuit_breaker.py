"""The circuit breaker that guards calls to the risk function (platform/resilience.py)."""

from __future__ import annotations

import pytest
from finfaas.platform.resilience import BreakerState, CircuitBreaker, CircuitOpen
from finfaas_dev.testing.workflow import FakeClock

CLOCK_START_S = 1000.0


class Down(Exception):
    pass


def failing() -> None:
    raise Down()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(CLOCK_START_S)


@pytest.fixture
def breaker(clock) -> CircuitBreaker:
    return CircuitBreaker("risk", failures_to_open=3, open_seconds=30, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Down):
            breaker.call(failing)


def test_consecutive_failures_open_the_circuit_and_then_nothing_is_called(breaker):
    fail(breaker, 3)
    calls = []

    with pytest.raises(CircuitOpen) as refused:
        breaker.call(lambda: calls.append(1))

    assert breaker.state is BreakerState.OPEN
    assert calls == []
    assert refused.value.retry_in_seconds == 30


def test_a_success_resets_the_count(breaker):
    fail(breaker, 2)
    assert breaker.call(lambda: "ok") == "ok"
    fail(breaker, 2)

    assert breaker.state is BreakerState.CLOSED


def test_after_the_open_time_one_trial_passes_and_its_success_closes_the_circuit(breaker, clock):
    fail(breaker, 3)
    clock.now += 30

    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_trial_opens_the_circuit_again_for_the_full_time(breaker, clock):
    fail(breaker, 3)
    clock.now += 30
    fail(breaker, 1)

    assert breaker.state is BreakerState.OPEN
    clock.now += 29
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: "ok")


def test_only_one_trial_runs_while_half_open(breaker, clock):
    fail(breaker, 3)
    clock.now += 30
    seen = []

    def trial() -> str:
        with pytest.raises(CircuitOpen):
            breaker.call(lambda: seen.append("second"))
        return "trial"

    assert breaker.call(trial) == "trial"
    assert seen == []


def test_errors_that_do_not_count_pass_through_without_opening(clock):
    breaker = CircuitBreaker(
        "risk",
        failures_to_open=1,
        clock=clock,
        counts_as_failure=lambda error: not isinstance(error, ValueError),
    )
    with pytest.raises(ValueError):
        breaker.call(lambda: int("x"))

    assert breaker.state is BreakerState.CLOSED
