"""Rate limits against DynamoDB Local: the store contract and one limit shared by two instances."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from finfaas.platform.ratelimit import RateLimit, RateLimiter
from finfaas.store.ratelimit_store import RateLimitStore
from finfaas_dev.testing.workflow import FakeClock
from unit.platform.test_ratelimit_contract import RateLimitStoreContract

pytestmark = pytest.mark.emulator

# Now, at a window's start: a bucket expires (DynamoDB TTL) a while after its window ends, and DynamoDB
# Local deletes expired items as DynamoDB does, so a clock in the past would see its buckets vanish
# mid-test and let more through than the limit.
WINDOW_START_S = float(int(time.time()) // 60 * 60)
THREADS_PER_INSTANCE = 3
CHECKS_PER_THREAD = 15


@pytest.fixture
def store(table_names) -> RateLimitStore:
    return RateLimitStore(table_names["ratelimits"])


class TestDynamoDBRateLimitStore(RateLimitStoreContract):
    """The same contract the in-memory fake passes."""


def two_instances(store, clock, **limit_fields) -> list[RateLimiter]:
    limit = RateLimit("test", **{"requests_max": 20, "window_seconds": 60, **limit_fields})
    return [RateLimiter(store, {"test": limit}, clock=clock) for _ in range(2)]


@pytest.mark.parametrize("tokens_per_call", [1, 4])
def test_a_limit_holds_across_two_instances_under_concurrency(store, tokens_per_call):
    # GIVEN two instances (two limiters) sharing the table, each serving three threads at once
    clock = FakeClock(WINDOW_START_S)
    instances = two_instances(store, clock, tokens_per_call=tokens_per_call)
    principal = f"cus_{uuid.uuid4().hex}"
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer(limiter: RateLimiter) -> None:
        for _ in range(CHECKS_PER_THREAD):
            decision = limiter.check(principal, "test")
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=hammer, args=(limiter,))
               for limiter in instances for _ in range(THREADS_PER_INSTANCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN together they allowed the limit, not a request more (90 tried, 20 allowed)
    assert sum(allowed) == 20
    assert len(allowed) == 2 * THREADS_PER_INSTANCE * CHECKS_PER_THREAD


def test_a_refusal_by_one_instance_names_the_seconds_left_in_the_window(store):
    clock = FakeClock(WINDOW_START_S)
    first, second = two_instances(store, clock, requests_max=3)
    principal = f"cus_{uuid.uuid4().hex}"
    for _ in range(3):
        assert first.check(principal, "test").allowed
    clock.now += 15

    refused = second.check(principal, "test")

    assert not refused.allowed and refused.retry_after_s == 45
    clock.now += 45
    assert second.check(principal, "test").allowed
