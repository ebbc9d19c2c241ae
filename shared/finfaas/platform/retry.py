"""The one retry policy: tenacity with named limits, and the read-change-conditional-save loop.

Only two kinds of retry are allowed. A call known to be safe to repeat (a conditional transaction
whose guard turns a second application into a no-op, a read) is re-run on a transient error. A
conditional write that lost a race is never re-sent: the state is read again, the change is
re-applied to it and the new write is tried (`read_change_save`). Both wait with exponential backoff
and full jitter between attempts, so racing writers spread out instead of the fastest winning every
round, and both are bounded in attempts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

# A conditional save lost to another writer: re-read and re-apply, a few times, briefly. These were
# loops without backoff before; the pause spreads racing saga steps over at most ~35 ms in all.
save_race_attempts_max = 4
save_race_wait_ms_base = 5.0
save_race_wait_ms_max = 100.0

_R = TypeVar("_R")
_S = TypeVar("_S")
_W = TypeVar("_W")


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts (the first included) and the bounds of the jittered exponential pause between them."""

    attempts_max: int
    wait_ms_base: float  # the first pause is at most this; each next one doubles the bound
    wait_ms_max: float  # no single pause is longer

    def __post_init__(self) -> None:
        if self.attempts_max < 1 or self.wait_ms_base < 0 or self.wait_ms_max < self.wait_ms_base:
            raise ValueError("attempts_max >= 1 and 0 <= wait_ms_base <= wait_ms_max")

    def with_attempts(self, attempts_max: int) -> RetryPolicy:
        return replace(self, attempts_max=attempts_max)

    def retrying(
        self, retry_on: type[BaseException] | tuple[type[BaseException], ...],
        sleep: Callable[[float], None] = time.sleep,
    ) -> Retrying:
        """A tenacity Retrying that re-runs on `retry_on` only; exhaustion raises tenacity's RetryError."""
        return Retrying(
            stop=stop_after_attempt(self.attempts_max),
            wait=wait_random_exponential(multiplier=self.wait_ms_base / 1000, max=self.wait_ms_max / 1000),
            retry=retry_if_exception_type(retry_on),
            sleep=sleep,
            reraise=False,
        )


SAVE_RACE_POLICY = RetryPolicy(save_race_attempts_max, save_race_wait_ms_base, save_race_wait_ms_max)


@dataclass(frozen=True)
class Unchanged(Generic[_R]):
    """What a change answers when the state read needs no write (already done, or nothing to do)."""

    result: _R


@dataclass(frozen=True)
class Change(Generic[_W, _R]):
    """What a change answers when `value` must be saved; `result` is returned once it is."""

    value: _W
    result: _R


class _LostRace(Exception):
    """The conditional save found the state changed since it was read."""


def read_change_save(
    read: Callable[[], _S],
    change: Callable[[_S], Unchanged[_R] | Change[_W, _R]],
    save: Callable[[_W], bool],
    *,
    exhausted: Callable[[], Exception],
    policy: RetryPolicy = SAVE_RACE_POLICY,
    sleep: Callable[[float], None] = time.sleep,
) -> _R:
    """Read, apply `change`, save conditionally (False: lost a race); re-read and retry with backoff.

    Raises exhausted() after policy.attempts_max lost races; errors of read, change or save pass through."""

    def attempt() -> _R:
        step = change(read())
        if isinstance(step, Unchanged):
            return step.result
        if not save(step.value):
            raise _LostRace
        return step.result

    try:
        return policy.retrying(_LostRace, sleep)(attempt)
    except RetryError as error:
        raise exhausted() from error
