"""GET /_/ops/resilience: a replica's circuit breakers and the requests its rate limiter refused."""

from __future__ import annotations

import pytest
from finfaas.platform.http import FunctionApp, Request
from finfaas.platform.ratelimit import RateLimit, RateLimiter
from finfaas.platform.resilience import CircuitBreaker, CircuitOpen, breaker_states
from finfaas_dev.fakes.platform import InMemoryRateLimitStore
from finfaas_dev.testing.platform import TokenMinter, call
from finfaas_dev.testing.workflow import FakeClock


class Down(Exception):
    pass


def failing() -> None:
    raise Down()


@pytest.fixture(scope="module")
def minter() -> TokenMinter:
    return TokenMinter.generate()


def test_a_breaker_reports_its_state_failures_and_next_trial():
    clock = FakeClock(100.0)
    breaker = CircuitBreaker("bureau-under-test", failures_to_open=2, open_seconds=30, clock=clock)
    with pytest.raises(Down):
        breaker.call(failing)
    assert breaker.snapshot()["state"] == "CLOSED" and breaker.snapshot()["failures"] == 1

    with pytest.raises(Down):
        breaker.call(failing)
    clock.sleep(10)
    with pytest.raises(CircuitOpen):
        breaker.call(failing)

    (state,) = [s for s in breaker_states() if s["name"] == "bureau-under-test"]
    assert state == {"name": "bureau-under-test", "state": "OPEN", "failures": 2, "failures_to_open": 2,
                     "retry_in_seconds": 20.0}


def test_the_limiter_counts_what_it_refused_by_limit():
    limits = {"test": RateLimit("test", requests_max=2, window_seconds=60)}
    limiter = RateLimiter(InMemoryRateLimitStore(), limits, clock=lambda: 1000.0)

    decisions = [limiter.check("cus_1", "test").allowed for _ in range(5)]

    assert decisions == [True, True, False, False, False]
    assert limiter.rejections() == {"test": 3}


def test_the_route_answers_operators_with_this_replicas_breakers_and_refusals(minter):
    # GIVEN a function with a rate limiter that refused a request and a breaker that opened
    limits = {"tight": RateLimit("tight", requests_max=1, window_seconds=60)}
    limiter = RateLimiter(InMemoryRateLimitStore(), limits)
    app = FunctionApp("payments", verifier=minter.verifier(), limiter=limiter)

    @app.route("GET", "/ping", rate_limit="tight")
    def ping(req: Request) -> dict:
        return {}

    breaker = CircuitBreaker("risk-under-test", failures_to_open=1, open_seconds=30)
    with pytest.raises(Down):
        breaker.call(failing)
    customer = {"Authorization": "Bearer " + minter.sign(minter.claims(scopes=["x"]))}
    assert call(app.handle, "GET", "/ping", headers=customer).status == 200
    assert call(app.handle, "GET", "/ping", headers=customer).status == 429

    # WHEN an operator asks, and a customer asks
    ops_token = minter.sign(minter.claims(sub="op", kind="client", scopes=["ops"]))
    operator = {"Authorization": f"Bearer {ops_token}"}
    answer = call(app.handle, "GET", "/_/ops/resilience", headers=operator)
    refused = call(app.handle, "GET", "/_/ops/resilience", headers=customer)

    # THEN the operator sees both figures; the customer is refused
    assert answer.status == 200, answer.body
    figures = answer.json()
    assert figures["function"] == "payments" and figures["rate_limit_rejections"] == {"tight": 1}
    assert {"name": "risk-under-test", "state": "OPEN"}.items() <= next(
        b for b in figures["breakers"] if b["name"] == "risk-under-test").items()
    assert refused.status == 403
