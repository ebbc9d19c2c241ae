"""Crash the orchestrator at every point of a saga, systematically: every run ends in the right terminal
state with each effect applied exactly once. Also: every message delivered twice, and a slow step
that outlives its lease.

The saga is infra/statemachines/demo-transfer.asl.json: Debit, (CoolingOff), Credit, and the
compensation Refund when the credit is refused. Crash points are the engine's own hook points
(start, checkpoint, task call, wake-up send; before and after each), enumerated by a clean run.
"""

from __future__ import annotations

import threading

import pytest
from finfaas.workflow.engine import EngineLimits
from finfaas.workflow.model import Status
from finfaas.workflow.tasks import TaskBusy, TaskCall
from support.workflow_testing import (
    CRASH_POINT_KINDS,
    CrashAt,
    ToyBank,
    World,
    crash_case_ids,
    crash_cases,
    registry,
)

EXECUTION = "demo-transfer:tr-1"
SMALL = {"from": "alice", "to": "bob", "amount_minor": 1250}
LARGE = {"from": "alice", "to": "bob", "amount_minor": 150_000}  # takes the CoolingOff wait
REFUSED = {"from": "alice", "to": "closed", "amount_minor": 1250}
SCENARIOS = {
    "credited": (
        SMALL,
        Status.SUCCEEDED,
        {"debits": 1, "credits": 1},
        ["Debit", "NeedsCoolingOff", "Credit", "Transferred"],
    ),
    "cooling-off-then-credited": (
        LARGE,
        Status.SUCCEEDED,
        {"debits": 1, "credits": 1},
        ["Debit", "NeedsCoolingOff", "CoolingOff", "Credit", "Transferred"],
    ),
    "credit-refused-refunded": (
        REFUSED,
        Status.FAILED,
        {"debits": 1, "refunds": 1},
        ["Debit", "NeedsCoolingOff", "Credit", "Refund", "CreditRefused"],
    ),
}


def _world(crash: CrashAt | None = None, **options) -> tuple[World, ToyBank]:
    bank = ToyBank(refuse_credits_to={"closed"})
    return World(registry(repository=True), bank, crash=crash, **options), bank


def _run(input_value: dict, crash: CrashAt | None = None, **options) -> tuple[World, ToyBank]:
    world, bank = _world(crash, **options)
    world.start("demo-transfer", "tr-1", input_value)
    world.run()
    return world, bank


def _crash_points(scenario: str) -> list[str]:
    world, _ = _run(SCENARIOS[scenario][0])
    return world.crash.points


CASES = crash_cases(SCENARIOS, _crash_points)


def _inline_crash_points(scenario: str) -> list[str]:
    world, _ = _run(SCENARIOS[scenario][0], inline=True)
    return world.crash.points


# The same matrix with starts driven in the orchestrator's own process (backed by a delayed wake-up).
INLINE_CASES = crash_cases(SCENARIOS, _inline_crash_points)


def test_the_clean_runs_pass_every_kind_of_crash_point():
    points = {point for _, _, point in CASES}

    assert CRASH_POINT_KINDS <= points
    # Every task call of every scenario, compensation included, is bracketed by crash points.
    assert sum(1 for s, _, p in CASES if s == "credit-refused-refunded" and p == "task:after_call") == 3


@pytest.mark.parametrize(("scenario", "index", "point"), CASES, ids=crash_case_ids(CASES))
def test_a_crash_at_any_point_ends_right_with_each_effect_once(scenario: str, index: int, point: str):
    input_value, status, effects, path = SCENARIOS[scenario]
    crash = CrashAt(index)

    world, bank = _run(input_value, crash)

    assert crash.crashed_at == point
    assert world.status(EXECUTION) is status
    assert bank.effects(EXECUTION) == effects
    assert world.path(EXECUTION) == path
    assert sum(bank.balances.values()) == 0


@pytest.mark.parametrize(
    ("scenario", "index", "point"), INLINE_CASES, ids=crash_case_ids(INLINE_CASES)
)
def test_a_crash_at_any_point_of_an_in_process_drive_ends_right_with_each_effect_once(
    scenario: str, index: int, point: str
):
    input_value, status, effects, path = SCENARIOS[scenario]
    crash = CrashAt(index)

    world, bank = _run(input_value, crash, inline=True)

    assert crash.crashed_at == point
    assert world.status(EXECUTION) is status
    assert bank.effects(EXECUTION) == effects
    assert world.path(EXECUTION) == path
    assert sum(bank.balances.values()) == 0


def test_an_in_process_start_creates_the_execution_with_its_first_lease_and_needs_no_wake_up():
    # GIVEN the in-process world of the inline matrix
    world, bank = _world(inline=True)

    # WHEN a transfer starts, with no queue delivery at all
    started = world.start("demo-transfer", "tr-1", SMALL)

    # THEN it is done within the start, with no wake-up sent
    assert started.created
    assert world.status(EXECUTION) is Status.SUCCEEDED
    assert bank.effects(EXECUTION) == {"debits": 1, "credits": 1}
    assert world.waker.queued == []
    # AND the write that created it already held the Debit's lease: one write per task, plus the end
    assert started.execution.state == "Debit" and started.execution.lease_owner is not None
    assert (world.store.calls["create"], world.store.calls["save"]) == (1, 2)
    first = [e.type for e in world.store.history(EXECUTION, 0, 3)]
    assert first == ["ExecutionStarted", "StateEntered", "TaskScheduled"]


def test_an_in_process_start_of_an_existing_name_returns_it_and_runs_nothing():
    # GIVEN a finished transfer
    world, bank = _world(inline=True)
    world.start("demo-transfer", "tr-1", SMALL)

    # WHEN it is started again with the same name and input
    again = world.start("demo-transfer", "tr-1", SMALL)

    # THEN the existing execution comes back and no task ran again
    assert not again.created
    assert again.execution.status is Status.SUCCEEDED
    assert bank.effects(EXECUTION) == {"debits": 1, "credits": 1}
    assert len(bank.calls) == 2


def _queued_start(world):
    """Starts tr-1 while no in-process slot is free; its wake-up, taken off the queue."""
    world.inline.room = False
    world.start("demo-transfer", "tr-1", SMALL)
    [queued] = world.waker.queued
    world.waker.queued.clear()
    return queued.wakeup


def test_a_queue_wake_up_is_driven_on_an_in_process_slot():
    # GIVEN a start that went through the queue (no room then), and room now
    world, bank = _world(inline=True)
    wakeup = _queued_start(world)
    world.inline.room = True

    # WHEN its wake-up is delivered
    outcome = world.engine.wake(wakeup.execution_id, wakeup.reason)

    # THEN a slot drove it to the end
    assert outcome == "driving"
    assert world.inline.run == 1
    assert world.status(EXECUTION) is Status.SUCCEEDED
    assert bank.effects(EXECUTION) == {"debits": 1, "credits": 1}


def test_a_queue_wake_up_finding_no_free_slot_goes_back_to_the_queue_delayed():
    # GIVEN a queued start, and a process whose slots are all taken
    world, bank = _world(inline=True)
    wakeup = _queued_start(world)

    # WHEN its wake-up is delivered
    outcome = world.engine.wake(wakeup.execution_id, wakeup.reason)

    # THEN nothing ran; the same wake-up is back in the queue a little later
    assert outcome == "requeued"
    assert bank.calls == []
    [again] = world.waker.queued
    assert again.wakeup == wakeup
    assert again.deliver_at_ms == world.clock.ms() + EngineLimits().busy_wake_delay_seconds * 1000


def test_without_a_free_in_process_slot_a_start_goes_through_the_queue():
    # GIVEN a process with no room for another in-process drive
    world, bank = _world(inline=True)
    world.inline.room = False

    # WHEN a transfer starts
    world.start("demo-transfer", "tr-1", SMALL)

    # THEN it waits for its queued wake-up, which then drives it to the end
    assert world.status(EXECUTION) is Status.RUNNING
    assert len(world.waker.queued) == 1
    world.run()
    assert world.status(EXECUTION) is Status.SUCCEEDED
    assert bank.effects(EXECUTION) == {"debits": 1, "credits": 1}


@pytest.mark.parametrize("inline", [False, True], ids=["queue", "in-process"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_message_delivered_twice_changes_nothing(scenario: str, inline: bool):
    input_value, status, effects, path = SCENARIOS[scenario]

    world, bank = _run(input_value, duplicate_deliveries=True, inline=inline)

    assert world.status(EXECUTION) is status
    assert bank.effects(EXECUTION) == effects
    assert world.path(EXECUTION) == path


def test_crashed_drives_pick_up_where_the_last_checkpoint_left_and_reuse_the_key():
    # GIVEN a crash right after the bank applied the debit, before the engine saved it
    index = next(i for s, i, p in CASES if s == "credited" and p == "task:after_call")

    world, bank = _run(SMALL, CrashAt(index))

    # THEN the debit was asked twice with one key (the second answer was the replay)
    debit_keys = [call.idempotency_key for call in bank.calls if call.state == "Debit"]
    assert debit_keys == [f"{EXECUTION}#Debit#1"] * 2
    assert bank.effects(EXECUTION)["debits"] == 1
    history_types = [e.type for e in world.store.history(EXECUTION, 0, 1000)]
    assert "TaskRedriven" in history_types


class SlowBank(ToyBank):
    """The first Debit call is slow: while it runs, another process takes the lapsed lease over."""

    def __init__(self, during_slow_call) -> None:
        super().__init__()
        self.during_slow_call = during_slow_call
        self.running: set[str] = set()

    def run(self, call: TaskCall):
        if call.idempotency_key in self.running:
            self.calls.append(call)
            return TaskBusy(retry_after_seconds=1.0)  # what the function's idempotency guard answers
        if call.state == "Debit" and not self.calls:
            self.running.add(call.idempotency_key)
            try:
                self.during_slow_call()
            finally:
                self.running.discard(call.idempotency_key)
        return super().run(call)


def test_a_slow_step_that_outlives_its_lease_is_applied_once():
    # GIVEN a debit slower than the attempt's lease (TimeoutSeconds 20 + 15 s grace)
    limits = EngineLimits()
    holder: dict = {}

    def second_process_takes_over():
        world = holder["world"]
        world.clock.sleep(20 + limits.lease_grace_seconds + 1)
        world.sweeper.sweep()  # the sweeper sees the lapsed lease and wakes the execution
        other = world._new_process()
        queued = world.waker.pop_visible()
        assert other.drive(queued.wakeup.execution_id, queued.wakeup.reason) == "parked"  # busy: ask later

    bank = SlowBank(second_process_takes_over)
    world = World(registry(repository=True), bank, limits=limits)
    holder["world"] = world

    # WHEN the first process gets the debit's answer only after the takeover
    world.start("demo-transfer", "tr-1", SMALL)
    world.run()

    # THEN the late result was not saved by the first process, the taker got the replay, and all is once
    assert world.status(EXECUTION) is Status.SUCCEEDED
    assert bank.effects(EXECUTION) == {"debits": 1, "credits": 1}
    types = [e.type for e in world.store.history(EXECUTION, 0, 1000)]
    assert types.count("TaskRedriven") == 1 and types.count("TaskBusy") == 1


# --- the overlap window: the next call sent while its checkpoint is written --------------------------


def _overlap_window(points: list[str]) -> list[int]:
    """Indexes of the crash points between an overlapped call's send and its answer: the checkpoint
    written while that call is in flight (before and after its write) and the answer itself."""
    window, sent = [], False
    for index, point in enumerate(points):
        if point == "task:before_call":
            sent = True
        elif point == "task:after_call":
            if sent and window and window[-1] == index - 1:
                window.append(index)
            sent = False
        elif sent and point.startswith("checkpoint:"):
            window.append(index)
    return window


@pytest.mark.parametrize("inline", [False, True], ids=["queue", "in-process"])
def test_the_next_call_is_sent_before_its_checkpoint_and_both_matrices_crash_inside_that_window(inline):
    # GIVEN the clean run of a saga whose Credit follows the Debit in the same drive
    points = _inline_crash_points("credited") if inline else _crash_points("credited")

    # THEN Credit's request goes out before the checkpoint that leases it, which the matrix crashes at
    window = _overlap_window(points)
    expected = ["checkpoint:before_save", "checkpoint:after_save", "task:after_call"]
    assert [points[i] for i in window] == expected
    cases = INLINE_CASES if inline else CASES
    assert {i for s, i, _ in cases if s == "credited"} >= set(window)


@pytest.mark.parametrize("duplicates", [False, True], ids=["once", "delivered-twice"])
@pytest.mark.parametrize("scenario", ["credited", "credit-refused-refunded"])  # Credit follows Debit at once
def test_a_crash_after_the_next_call_was_sent_and_before_its_checkpoint_applies_it_once(scenario, duplicates):
    # GIVEN a crash after the next task's request went out, before the checkpoint that leases it committed
    input_value, status, effects, path = SCENARIOS[scenario]
    clean, _ = _run(input_value, duplicate_deliveries=duplicates)
    first_window = _overlap_window(clean.crash.points)[0]
    crash = CrashAt(first_window)

    # WHEN the orchestrator dies there (every message delivered twice in one variant) and is resumed
    world, bank = _run(input_value, crash, duplicate_deliveries=duplicates)

    # THEN the request was asked again under the same key, and every effect happened once
    assert crash.crashed_at == "checkpoint:before_save"
    assert world.status(EXECUTION) is status
    assert bank.effects(EXECUTION) == effects
    assert world.path(EXECUTION) == path
    credit_keys = {call.idempotency_key for call in bank.calls if call.state == "Credit"}
    assert credit_keys == {f"{EXECUTION}#Credit#1"}
    assert sum(1 for call in bank.calls if call.state == "Credit") >= 2


class LockedBank(ToyBank):
    """The toy bank answering one call at a time, as a function's idempotency guard claims a key."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self._lock = threading.Lock()

    def run(self, call: TaskCall):
        with self._lock:
            return super().run(call)


class TakeoverInOverlap:
    """The crash hook's place: while the first overlapped checkpoint is being written, the lease lapses
    and another process drives the execution to its end, so that checkpoint's condition fails."""

    def __init__(self) -> None:
        self.points: list[str] = []
        self.world: World | None = None
        self.taken_over = False
        self.crashed_at = None

    def __call__(self, point: str) -> None:
        self.points.append(point)
        if self.taken_over or point != "checkpoint:before_save" or self.points[-2:-1] != ["task:before_call"]:
            return
        self.taken_over = True
        world = self.world
        assert world is not None
        world.clock.sleep(world.limits.lease_seconds + 1)
        world.sweeper.sweep()
        queued = world.waker.pop_visible()
        world._new_process().drive(queued.wakeup.execution_id, queued.wakeup.reason)


@pytest.mark.parametrize("duplicates", [False, True], ids=["once", "delivered-twice"])
@pytest.mark.parametrize("inline", [False, True], ids=["queue", "in-process"])
def test_an_overlapped_checkpoint_lost_to_another_drive_applies_nothing_and_each_effect_happens_once(
    inline, duplicates
):
    # GIVEN a drive whose Credit request is in flight when another process takes the execution over
    hook = TakeoverInOverlap()
    bank = LockedBank()
    world = World(registry(repository=True), bank, crash=hook, inline=inline, duplicate_deliveries=duplicates)
    hook.world = world

    # WHEN the first drive's checkpoint then meets the version the other one wrote
    world.start("demo-transfer", "tr-1", SMALL)
    world.run()

    # THEN the other drive finished the saga, the first applied nothing, and each effect happened once
    assert hook.taken_over
    assert world.status(EXECUTION) is Status.SUCCEEDED
    assert bank.effects(EXECUTION) == {"debits": 1, "credits": 1}
    assert world.path(EXECUTION) == ["Debit", "NeedsCoolingOff", "Credit", "Transferred"]
    credit_keys = [call.idempotency_key for call in bank.calls if call.state == "Credit"]
    assert credit_keys == [f"{EXECUTION}#Credit#1"] * 2
    types = [e.type for e in world.store.history(EXECUTION, 0, 1000)]
    assert types.count("TaskRedriven") == 1 and types.count("ExecutionSucceeded") == 1
