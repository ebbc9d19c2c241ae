"""Per-principal rate limits that hold across function instances (ARCHITECTURE §4: 429 + Retry-After).

Algorithm: a fixed-window counter per (limit, principal, window) in DynamoDB, taken with one
conditional ADD (`hits <= requests_max - n`), so any number of instances share one exact count and
the limit is never exceeded. A fixed window lets a client send up to twice the limit across a window
boundary (end of one, start of the next); for abuse protection that is the accepted price of one
write per decision and no clock coordination between instances.

Cost and the allowance lease: every decision taken from DynamoDB is one write (~1-3 ms on DynamoDB
Local here, a few ms in AWS). `RateLimit.tokens_per_call = n` takes n tokens per write and spends
them in process, so the cost per request falls to 1/n writes. The trade-off: tokens leased by an
instance that then goes idle are lost to the principal for the rest of the window (at most n - 1
per instance), so under many instances a principal may be refused slightly before the limit; the
limit is never exceeded. Near the limit the lease shrinks to one token per write so nothing is
stranded. Sign-in uses n = 1 (exact, one write per attempt); the money path uses a lease so the
limiter adds well under one write per transfer.

When the table cannot be reached, a limit either lets requests through (fail open: an outage of
the limiter must not become an outage of payments) or refuses them (fail closed: sign-in, where
the limiter is what stops password guessing).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from threading import Lock
from typing import Protocol

from finfaas.platform.errors import TooManyRequests
from finfaas.platform.logging import get_logger

# In-process leases kept at once (one per recently seen principal and limit); oldest go first.
LOCAL_LEASES_MAX = 10_000
# What a fail-closed limit tells clients while the limiter's table is unreachable.
FAIL_CLOSED_RETRY_AFTER_SECONDS = 5
# Buckets outlive their window by this much before DynamoDB's TTL may delete them.
BUCKET_KEPT_AFTER_WINDOW_SECONDS = 60
# What the in-process lease answers besides "ask the store for n tokens".
SPENT_FROM_LEASE = 0
WINDOW_FULL = -1

log = get_logger("ratelimit")


@dataclass(frozen=True)
class RateLimit:
    """At most requests_max requests per principal per window_seconds."""

    name: str
    requests_max: int
    window_seconds: int
    tokens_per_call: int = 1
    fail_open: bool = True

    def __post_init__(self) -> None:
        if self.requests_max < 1 or self.window_seconds < 1:
            raise ValueError(f"rate limit {self.name!r} needs requests_max and window_seconds >= 1")
        if not 1 <= self.tokens_per_call <= self.requests_max:
            raise ValueError(f"rate limit {self.name!r}: tokens_per_call must be in 1..requests_max")


DEFAULT_LIMIT = RateLimit("default", requests_max=300, window_seconds=60, tokens_per_call=10)
MONEY_LIMIT = RateLimit("money", requests_max=60, window_seconds=60, tokens_per_call=5)
# Sign-in attempts from one source address, whatever the usernames (see SignInThrottle).
SIGN_IN_LIMIT = RateLimit("sign_in", requests_max=30, window_seconds=300, tokens_per_call=1, fail_open=False)
LIMITS: Mapping[str, RateLimit] = {limit.name: limit for limit in (DEFAULT_LIMIT, MONEY_LIMIT, SIGN_IN_LIMIT)}


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: int = 0


class RateLimitStoreError(RuntimeError):
    """The rate-limit table could not be written (network, throttling, missing table)."""


class RateLimitRepository(Protocol):
    def take(self, bucket: str, tokens: int, capacity: int, expires_at_s: int) -> bool:
        """Add tokens to the bucket's count if the total stays <= capacity; else change nothing and
        return False. Raises RateLimitStoreError when the store cannot answer."""
        ...

    def count(self, bucket: str) -> int:
        """The bucket's count (strongly consistent); 0 for a bucket never taken from.
        Raises RateLimitStoreError when the store cannot answer."""
        ...


@dataclass
class _Lease:
    window: int
    tokens: int = 0
    batch: int = 1
    # A window's count never goes down, so once full it stays full: refuse without a write.
    full: bool = False


def bucket_name(limit: RateLimit, principal: str, window: int) -> str:
    """One counter per limit, principal and window; the principal is hashed (it may be a user name)."""
    digest = hashlib.sha256(principal.encode()).hexdigest()[:32]
    return f"{limit.name}:{digest}:{window}"


class RateLimiter:
    """Decides allow / refuse for a principal under a named limit, shared by every instance."""

    def __init__(
        self,
        store: RateLimitRepository,
        limits: Mapping[str, RateLimit] = LIMITS,
        *,
        clock: Callable[[], float] = time.time,
        leases_max: int = LOCAL_LEASES_MAX,
    ) -> None:
        self._store = store
        self._limits = dict(limits)
        self._clock = clock
        self._leases: OrderedDict[tuple[str, str], _Lease] = OrderedDict()
        self._leases_max = leases_max
        self._lock = Lock()
        self._refused: dict[str, int] = {}

    def rejections(self) -> dict[str, int]:
        """Requests refused (429) in this process since it started, by limit name."""
        with self._lock:
            return dict(sorted(self._refused.items()))

    def _count_refusal(self, limit: RateLimit, decision: RateDecision) -> RateDecision:
        if not decision.allowed:
            with self._lock:
                self._refused[limit.name] = self._refused.get(limit.name, 0) + 1
        return decision

    def check(self, principal: str, limit_name: str = DEFAULT_LIMIT.name) -> RateDecision:
        """Spend one request of principal's allowance under the named limit."""
        return self.check_limit(self._limits[limit_name], principal)

    def check_limit(self, limit: RateLimit, principal: str) -> RateDecision:
        """check() under a limit given by value (e.g. one whose window a policy computes)."""
        return self._count_refusal(limit, self._decide(limit, principal))

    def _decide(self, limit: RateLimit, principal: str) -> RateDecision:
        now_s = self._clock()
        window = int(now_s // limit.window_seconds)
        lease_key = (limit.name, principal)
        batch = self._spend_leased(limit, lease_key, window)
        if batch == SPENT_FROM_LEASE:
            return RateDecision(True)
        if batch == WINDOW_FULL:
            return RateDecision(False, self._seconds_to_window_end(limit, window, now_s))
        try:
            granted = self._take(limit, principal, window, batch)
        except RateLimitStoreError:
            return self._store_down(limit)
        self._keep(lease_key, window, granted)
        if granted == 0:
            return RateDecision(False, self._seconds_to_window_end(limit, window, now_s))
        return RateDecision(True)

    def enforce(self, principal: str, limit_name: str = DEFAULT_LIMIT.name) -> None:
        """check(), raising the 429 problem (with Retry-After) when refused."""
        self.enforce_limit(self._limits[limit_name], principal)

    def enforce_limit(self, limit: RateLimit, principal: str) -> None:
        """check_limit(), raising the 429 problem (with Retry-After) when refused."""
        decision = self.check_limit(limit, principal)
        if not decision.allowed:
            raise too_many_requests(limit.name, decision.retry_after_s)

    def count(self, limit: RateLimit, principal: str) -> int:
        """How many times principal was counted under limit in the current window (see add)."""
        window = int(self._clock() // limit.window_seconds)
        return self._store.count(bucket_name(limit, principal, window))

    def add(self, limit: RateLimit, principal: str) -> None:
        """Count one event (e.g. a failure) for principal; the count stops at limit.requests_max."""
        window = int(self._clock() // limit.window_seconds)
        expires_at_s = (window + 1) * limit.window_seconds + BUCKET_KEPT_AFTER_WINDOW_SECONDS
        self._store.take(bucket_name(limit, principal, window), 1, limit.requests_max, expires_at_s)

    def _spend_leased(self, limit: RateLimit, lease_key: tuple[str, str], window: int) -> int:
        """SPENT_FROM_LEASE, WINDOW_FULL, or how many tokens to ask the store for."""
        with self._lock:
            lease = self._leases.get(lease_key)
            if lease is None or lease.window != window:
                return limit.tokens_per_call
            self._leases.move_to_end(lease_key)
            if lease.tokens > 0:
                lease.tokens -= 1
                return SPENT_FROM_LEASE
            return WINDOW_FULL if lease.full else lease.batch

    def _take(self, limit: RateLimit, principal: str, window: int, batch: int) -> int:
        """Tokens granted by the store: batch, 1 when only a few are left, or 0 when the window is full."""
        bucket = bucket_name(limit, principal, window)
        expires_at_s = (window + 1) * limit.window_seconds + BUCKET_KEPT_AFTER_WINDOW_SECONDS
        if self._store.take(bucket, batch, limit.requests_max, expires_at_s):
            return batch
        if batch > 1 and self._store.take(bucket, 1, limit.requests_max, expires_at_s):
            return 1
        return 0

    def _keep(self, lease_key: tuple[str, str], window: int, granted: int) -> None:
        """Bank the granted tokens beyond the one spent now; remember a full window."""
        with self._lock:
            lease = self._leases.get(lease_key)
            if lease is None or lease.window != window:
                lease = self._leases[lease_key] = _Lease(window)
            if granted == 0:
                lease.full = True
            else:
                lease.tokens += granted - 1
                lease.batch = granted  # after a short grant keep asking for one: the window is nearly full
            self._leases.move_to_end(lease_key)
            while len(self._leases) > self._leases_max:
                self._leases.popitem(last=False)

    def _store_down(self, limit: RateLimit) -> RateDecision:
        log.exception("rate limit store unavailable", limit=limit.name, fail_open=limit.fail_open)
        if limit.fail_open:
            return RateDecision(True)
        return RateDecision(False, FAIL_CLOSED_RETRY_AFTER_SECONDS)

    @staticmethod
    def _seconds_to_window_end(limit: RateLimit, window: int, now_s: float) -> int:
        return max(1, math.ceil((window + 1) * limit.window_seconds - now_s))


def too_many_requests(limit_name: str, retry_after_s: int) -> TooManyRequests:
    """The 429 problem for a refused request, with its Retry-After."""
    return TooManyRequests(
        f"Rate limit '{limit_name}' reached; retry in {retry_after_s} s.",
        retry_after_seconds=retry_after_s,
    )


# --- sign-in: failures slow down where they come from; nothing locks the owner out ----------------

# Where a request's source address is unknown (no edge header): one shared source, limited as one.
UNKNOWN_SOURCE = "unknown"
sign_in_failures_window_seconds = 3600  # failures are counted per fixed hour
sign_in_failures_counted_max = 100_000  # a count stops here; every threshold is far below
sign_in_pair_failures_free = 3  # typos: the first failures of a (username, source) cost nothing
sign_in_pair_delay_seconds_base = 1
sign_in_pair_delay_seconds_max = 300
sign_in_username_failures_slow_after = 100  # from all sources together, in one window
sign_in_username_slowed_interval_seconds = 2
SIGN_IN_PAIR_FAILURES = RateLimit(
    "sign_in_pair_failures", sign_in_failures_counted_max, sign_in_failures_window_seconds, fail_open=False
)
SIGN_IN_USERNAME_FAILURES = RateLimit(
    "sign_in_username_failures", sign_in_failures_counted_max, sign_in_failures_window_seconds,
    fail_open=False,
)
SIGN_IN_USERNAME_SLOWED = RateLimit(
    "sign_in_username_slowed", 1, sign_in_username_slowed_interval_seconds, fail_open=False
)


def sign_in_pair_delay_seconds(failures: int) -> int:
    """The spacing a (username, source) must keep after this many failures: 0, then 1, 2, 4 ... 300 s."""
    if failures < sign_in_pair_failures_free:
        return 0
    exponent = min(failures - sign_in_pair_failures_free, sign_in_pair_delay_seconds_max.bit_length())
    return min(sign_in_pair_delay_seconds_base << exponent, sign_in_pair_delay_seconds_max)


def _pair_gate(failures: int) -> RateLimit:
    """One attempt per delay window at this failure level (a new level starts with its slot spent)."""
    return RateLimit(
        f"sign_in_pair_delay_{failures}", 1, sign_in_pair_delay_seconds(failures), fail_open=False
    )


@dataclass(frozen=True)
class SignInAttempt:
    """An admitted attempt: what failed() needs to count it."""

    username: str
    source: str
    pair_failures: int

    @property
    def pair(self) -> str:
        return f"{self.source}|{self.username}"


class SignInThrottle:
    """The sign-in policy: a flood from one place never locks the owner out from another.

    - Per source address, any usernames: SIGN_IN_LIMIT attempts per window, then 429.
    - Per (username, source): the first sign_in_pair_failures_free failures in an hour are free;
      after f failures that pair gets at most one attempt per sign_in_pair_delay_seconds(f)
      (exponential, capped), its slot for the current window spent by the failure itself.
    - Per username, from all sources: past sign_in_username_failures_slow_after failures in an
      hour, one attempt per sign_in_username_slowed_interval_seconds: slowed, never locked.
    Refusals are 429 with Retry-After; every limit fails closed (the store is what stops guessing).
    """

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    def admit(self, username: str, source: str | None) -> SignInAttempt:
        """Raise the 429 problem if this attempt must wait; else the attempt to report failed() on."""
        source = source or UNKNOWN_SOURCE
        self._limiter.enforce_limit(SIGN_IN_LIMIT, f"ip:{source}")
        attempt = SignInAttempt(username, source, 0)
        try:
            attempt = replace(attempt, pair_failures=self._limiter.count(SIGN_IN_PAIR_FAILURES, attempt.pair))
            username_failures = self._limiter.count(SIGN_IN_USERNAME_FAILURES, username)
        except RateLimitStoreError:
            log.exception("sign-in failure counts unavailable")
            raise too_many_requests(SIGN_IN_LIMIT.name, FAIL_CLOSED_RETRY_AFTER_SECONDS) from None
        if attempt.pair_failures >= sign_in_pair_failures_free:
            self._limiter.enforce_limit(_pair_gate(attempt.pair_failures), attempt.pair)
        if username_failures >= sign_in_username_failures_slow_after:
            self._limiter.enforce_limit(SIGN_IN_USERNAME_SLOWED, f"username:{username}")
        return attempt

    def failed(self, attempt: SignInAttempt) -> None:
        """Count a failed attempt; the next one from its pair waits out the new delay."""
        try:
            self._limiter.add(SIGN_IN_PAIR_FAILURES, attempt.pair)
            self._limiter.add(SIGN_IN_USERNAME_FAILURES, attempt.username)
        except RateLimitStoreError:  # the attempt is answered already; admit() fails closed meanwhile
            log.exception("sign-in failure not counted")
            return
        failures = attempt.pair_failures + 1
        if failures >= sign_in_pair_failures_free:
            self._limiter.check_limit(_pair_gate(failures), attempt.pair)  # spend this window's slot
