"""The one retry policy and the read-change-conditional-save loop: bounded, backing off, never re-sending."""

from __future__ import annotations

import pytest
from finfaas.platform.retry import Change, RetryPolicy, Unchanged, read_change_save

POLICY = RetryPolicy(attempts_max=4, wait_ms_base=10.0, wait_ms_max=25.0)


class KeptChanging(Exception):
    pass


class Versioned:
    """A stored counter whose conditional save loses to another writer the first `races` times."""

    def __init__(self, races: int) -> None:
        self.value, self.version, self.races = 0, 0, races
        self.reads: list[int] = []
        self.saves: list[tuple[int, int]] = []

    def read(self) -> tuple[int, int]:
        self.reads.append(self.version)
        return self.value, self.version

    def save(self, change: tuple[int, int]) -> bool:
        value, expected_version = change
        self.saves.append(change)
        if self.races:
            self.races -= 1
            self.value, self.version = self.value + 100, self.version + 1  # the other writer
            return False
        if expected_version != self.version:
            return False
        self.value, self.version = value, self.version + 1
        return True


def add_one(state: tuple[int, int]) -> Change[tuple[int, int], int]:
    value, version = state
    return Change((value + 1, version), value + 1)


def test_a_lost_race_is_read_again_and_the_change_applied_to_the_new_state():
    store, pauses = Versioned(races=2), []

    result = read_change_save(store.read, add_one, store.save, policy=POLICY, sleep=pauses.append,
                              exhausted=KeptChanging)

    assert result == 201  # built on the other writer's 200, not on the stale 0
    assert store.reads == [0, 1, 2]
    assert store.saves == [(1, 0), (101, 1), (201, 2)]  # each save carries a fresh read, never a re-send
    assert len(pauses) == 2


def test_the_loop_gives_up_after_attempts_max_lost_races_with_backoff_between():
    store, pauses = Versioned(races=100), []

    with pytest.raises(KeptChanging):
        read_change_save(store.read, add_one, store.save, policy=POLICY, sleep=pauses.append,
                         exhausted=KeptChanging)

    assert len(store.saves) == POLICY.attempts_max
    assert len(pauses) == POLICY.attempts_max - 1
    bounds = [0.010, 0.020, 0.025]  # doubling from wait_ms_base, capped at wait_ms_max
    assert all(0 <= pause <= bound for pause, bound in zip(pauses, bounds, strict=True))


def test_nothing_to_write_answers_at_once_without_saving():
    store = Versioned(races=0)

    result = read_change_save(store.read, lambda state: Unchanged("done"), store.save, policy=POLICY,
                              sleep=lambda _: pytest.fail("no pause"), exhausted=KeptChanging)

    assert result == "done"
    assert store.saves == []


def test_an_error_of_the_save_is_not_retried():
    calls = []

    def broken_save(_change):
        calls.append(1)
        raise ConnectionError("store down")

    with pytest.raises(ConnectionError):
        read_change_save(lambda: (0, 0), add_one, broken_save, policy=POLICY, sleep=lambda _: None,
                         exhausted=KeptChanging)
    assert calls == [1]


def test_a_policy_refuses_nonsense_limits():
    with pytest.raises(ValueError):
        RetryPolicy(attempts_max=0, wait_ms_base=1.0, wait_ms_max=2.0)
    with pytest.raises(ValueError):
        RetryPolicy(attempts_max=3, wait_ms_base=5.0, wait_ms_max=1.0)
