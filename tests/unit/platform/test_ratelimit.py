"""RateLimiter over the in-memory store: allow, refuse with Retry-After, leases and outages."""

from __future__ import annotations

import pytest
from finfaas.platform.errors import TooManyRequests
from finfaas.platform.ratelimit import (
    FAIL_CLOSED_RETRY_AFTER_SECONDS,
    LIMITS,
    RateLimit,
    RateLimiter,
    RateLimitStoreError,
    SignInAttempt,
    SignInThrottle,
    bucket_name,
)
from finfaas_dev.fakes.platform import InMemoryRateLimitStore

WINDOW_START_S = 1_700_000_040.0  # a multiple of 60: the start of a one-minute window


class FakeClock:
    def __init__(self) -> None:
        self.now_s = WINDOW_START_S

    def __call__(self) -> float:
        return self.now_s


class CountingStore(InMemoryRateLimitStore):
    """The fake store, counting round trips (what the limiter costs per request)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def take(self, bucket, tokens, capacity, expires_at_s):
        self.calls += 1
        return super().take(bucket, tokens, capacity, expires_at_s)


class DownStore:
    def take(self, bucket, tokens, capacity, expires_at_s):
        raise RateLimitStoreError("table unreachable")

    def count(self, bucket):
        raise RateLimitStoreError("table unreachable")


class UnreadableStore(InMemoryRateLimitStore):
    """Takes work, reads fail: the failure counts cannot be known."""

    def count(self, bucket):
        raise RateLimitStoreError("table unreachable")


def limiter_with(store, clock, **limit_fields) -> RateLimiter:
    limit = RateLimit("test", **{"requests_max": 5, "window_seconds": 60, **limit_fields})
    return RateLimiter(store, {"test": limit}, clock=clock)


def allowed_count(limiter: RateLimiter, principal: str, attempts: int) -> int:
    return sum(limiter.check(principal, "test").allowed for _ in range(attempts))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_allows_the_limit_then_refuses_until_the_window_ends(clock):
    limiter = limiter_with(InMemoryRateLimitStore(), clock)
    assert allowed_count(limiter, "cus_1", 5) == 5
    clock.now_s += 20.5

    refused = limiter.check("cus_1", "test")

    assert not refused.allowed
    assert refused.retry_after_s == 40  # 39.5 s left in the window, rounded up
    clock.now_s += 40
    assert limiter.check("cus_1", "test").allowed


def test_principals_have_separate_allowances(clock):
    limiter = limiter_with(InMemoryRateLimitStore(), clock)
    allowed_count(limiter, "cus_1", 5)

    assert limiter.check("cus_2", "test").allowed


def test_a_lease_cuts_store_writes_per_request(clock):
    # GIVEN a limit that leases 10 tokens per write
    store = CountingStore()
    limiter = limiter_with(store, clock, requests_max=100, tokens_per_call=10)

    allowed = allowed_count(limiter, "cus_1", 100)

    assert allowed == 100
    assert store.calls == 10


def test_two_instances_with_leases_never_exceed_the_limit_and_strand_nothing_near_it(clock):
    # GIVEN two instances sharing one store, each leasing 4 of 10 tokens at a time
    store = InMemoryRateLimitStore()
    first, second = (limiter_with(store, clock, requests_max=10, tokens_per_call=4) for _ in range(2))

    # WHEN requests alternate between them
    decisions = [(first if i % 2 == 0 else second).check("cus_1", "test").allowed for i in range(14)]

    # THEN exactly the limit is allowed: leases shrink to one token near the end
    assert sum(decisions) == 10


def test_a_full_window_is_refused_without_another_store_write(clock):
    store = CountingStore()
    limiter = limiter_with(store, clock, requests_max=2)
    allowed_count(limiter, "cus_1", 3)
    writes_when_full = store.calls

    allowed_count(limiter, "cus_1", 50)

    assert store.calls == writes_when_full


def test_a_fail_open_limit_allows_while_the_store_is_down(clock):
    assert limiter_with(DownStore(), clock, fail_open=True).check("cus_1", "test").allowed


def test_a_fail_closed_limit_refuses_while_the_store_is_down(clock):
    decision = limiter_with(DownStore(), clock, fail_open=False).check("cus_1", "test")

    assert not decision.allowed
    assert decision.retry_after_s == FAIL_CLOSED_RETRY_AFTER_SECONDS


def test_enforce_raises_429_with_retry_after(clock):
    limiter = limiter_with(InMemoryRateLimitStore(), clock, requests_max=1)
    limiter.enforce("cus_1", "test")

    with pytest.raises(TooManyRequests) as raised:
        limiter.enforce("cus_1", "test")

    assert raised.value.status == 429
    assert raised.value.headers["Retry-After"] == "60"


def test_sign_in_is_stricter_than_the_default_and_fails_closed():
    assert LIMITS["sign_in"].requests_max / LIMITS["sign_in"].window_seconds < (
        LIMITS["default"].requests_max / LIMITS["default"].window_seconds)
    assert LIMITS["sign_in"].tokens_per_call == 1
    assert not LIMITS["sign_in"].fail_open


def test_bucket_names_do_not_carry_the_principal_in_clear():
    name = bucket_name(LIMITS["sign_in"], "alice@example.com", 7)

    assert "alice" not in name and name.startswith("sign_in:") and name.endswith(":7")


@pytest.mark.parametrize("fields", [{"requests_max": 0}, {"window_seconds": 0}, {"tokens_per_call": 6}])
def test_nonsense_limits_are_refused(fields):
    with pytest.raises(ValueError):
        RateLimit("bad", **{"requests_max": 5, "window_seconds": 60, **fields})


def test_sign_in_refuses_when_its_failure_counts_cannot_be_read(clock):
    throttle = SignInThrottle(RateLimiter(UnreadableStore(), LIMITS, clock=clock))

    with pytest.raises(TooManyRequests) as raised:
        throttle.admit("alice", "203.0.113.9")

    assert raised.value.headers["Retry-After"] == str(FAIL_CLOSED_RETRY_AFTER_SECONDS)


def test_a_failure_that_cannot_be_counted_does_not_fail_the_answer(clock):
    throttle = SignInThrottle(RateLimiter(DownStore(), LIMITS, clock=clock))

    throttle.failed(SignInAttempt("alice", "203.0.113.9", pair_failures=5))
