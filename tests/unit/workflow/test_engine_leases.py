"""Short leases renewed while a task runs: a drive that died is re-driven within seconds, a slow call
that is still running keeps its attempt, and a crash around a renewal still applies each effect once.

The saga is infra/statemachines/demo-transfer.asl.json on the toy bank (tests/support/workflow_testing.py).
"""

from __future__ import annotations

import time

from finfaas.workflow.engine import EngineLimits
from finfaas.workflow.model import Status
from finfaas.workflow.sweeper import Sweeper, sweep_interval_seconds_default
from finfaas.workflow.tasks import TaskCall
from support.workflow_testing import CrashAt, ToyBank, World, registry

EXECUTION = "demo-transfer:tr-1"
SMALL = {"from": "alice", "to": "bob", "amount_minor": 1250}
RECOVERY_SECONDS_MAX = 10  # the goal: a saga whose driver died takes its next step within this
RENEW_SECONDS = 0.01  # real seconds between renewals, so the tests wait little for the thread
WAIT_SECONDS_MAX = 5.0  # the most a test waits (real time) for the renewal thread


def _wait_until(condition, seconds_max: float = WAIT_SECONDS_MAX) -> None:
    deadline = time.monotonic() + seconds_max
    while not condition():
        assert time.monotonic() < deadline, "the renewal thread did not act in time"
        time.sleep(RENEW_SECONDS)


def _events(world: World) -> list:
    return world.store.history(EXECUTION, 0, 1000)


def test_a_drive_that_died_mid_task_is_redriven_within_seconds():
    # GIVEN an orchestrator process that dies right after the bank applied the debit (in-process start)
    crash = CrashAt(point="task:after_call")
    world = World(registry(repository=True), ToyBank(), crash=crash, inline=True)
    bank = world.tasks

    world.start("demo-transfer", "tr-1", SMALL)
    died_at_ms = world.clock.ms()
    assert crash.crashed_at == "task:after_call"

    # WHEN nothing but the sweeper's ticks move it on
    world.run()

    # THEN the attempt was taken over within the lease and one sweep interval, with the debit once
    [redriven] = [e for e in _events(world) if e.type == "TaskRedriven"]
    limits = EngineLimits()
    assert redriven.at_ms - died_at_ms <= (limits.lease_seconds + sweep_interval_seconds_default) * 1000
    assert redriven.at_ms - died_at_ms <= RECOVERY_SECONDS_MAX * 1000
    assert world.status(EXECUTION) is Status.SUCCEEDED
    assert bank.effects(EXECUTION) == {"debits": 1, "credits": 1}


class SlowDebitBank(ToyBank):
    """The first Debit call runs while `during` does its part (moving time, sweeping)."""

    def __init__(self) -> None:
        super().__init__()
        self.during = lambda: None
        self.slowed = False

    def run(self, call: TaskCall):
        if call.state == "Debit" and not self.slowed:
            self.slowed = True
            self.during()
        return super().run(call)


def test_a_call_slower_than_its_lease_keeps_it_while_its_drive_renews():
    # GIVEN leases renewed often, and a debit that runs three leases long while sweeps look for lapses
    limits = EngineLimits(lease_renew_seconds=RENEW_SECONDS)
    bank = SlowDebitBank()
    world = World(registry(repository=True), bank, limits=limits)
    woken: list[int] = []

    def slow_call() -> None:
        for _ in range(3):
            renewals = world.store.calls.get("renew_lease", 0)
            world.clock.sleep(limits.lease_seconds - 1)
            _wait_until(lambda renewals=renewals: world.store.calls.get("renew_lease", 0) > renewals + 1)
            woken.append(world.sweeper.sweep())

    bank.during = slow_call

    # WHEN it runs to the end
    world.start("demo-transfer", "tr-1", SMALL)
    world.run()

    # THEN no sweep found the attempt lapsed, nobody took it over, and the debit happened once
    assert woken == [0, 0, 0]
    assert "TaskRedriven" not in [e.type for e in _events(world)]
    assert world.status(EXECUTION) is Status.SUCCEEDED
    assert bank.effects(EXECUTION) == {"debits": 1, "credits": 1}


def _crash_around_a_renewal(point: str) -> tuple[World, ToyBank, CrashAt]:
    limits = EngineLimits(lease_renew_seconds=RENEW_SECONDS)
    crash = CrashAt(point=point)
    bank = SlowDebitBank()
    world = World(registry(repository=True), bank, renewal_crash=crash, limits=limits)
    bank.during = lambda: _wait_until(lambda: crash.crashed_at is not None)
    world.start("demo-transfer", "tr-1", SMALL)
    world.run()
    return world, bank, crash


def test_a_crash_before_or_after_a_renewal_applies_each_effect_once():
    for point in ("lease:before_renew", "lease:after_renew"):
        # WHEN the process dies at a renewal while the debit runs (the debit completes, nothing is saved)
        world, bank, crash = _crash_around_a_renewal(point)

        # THEN another process re-drove the attempt with the same key: the bank replayed, once in all
        assert crash.crashed_at == point
        assert world.status(EXECUTION) is Status.SUCCEEDED
        assert bank.effects(EXECUTION) == {"debits": 1, "credits": 1}
        debit_keys = {call.idempotency_key for call in bank.calls if call.state == "Debit"}
        assert debit_keys == {f"{EXECUTION}#Debit#1"}
        assert [e.type for e in _events(world)].count("TaskRedriven") == 1


def test_a_drive_whose_lease_was_taken_over_saves_nothing_after_its_call():
    # GIVEN a debit call during which the lease lapses and another process takes the attempt over
    limits = EngineLimits(lease_renew_seconds=RENEW_SECONDS)
    bank = SlowDebitBank()
    world = World(registry(repository=True), bank, limits=limits)
    outcomes: list[str] = []

    def taken_over() -> None:
        execution = world.store.get(EXECUTION)
        world.store._executions[EXECUTION] = execution.bumped(lease_owner="another-process")
        renewals = world.store.calls.get("renew_lease", 0)
        _wait_until(lambda: world.store.calls.get("renew_lease", 0) > renewals)

    bank.during = taken_over
    world.start("demo-transfer", "tr-1", SMALL)
    queued = world.waker.pop_visible()

    # WHEN the first drive's call returns
    outcomes.append(world.engine.drive(queued.wakeup.execution_id, queued.wakeup.reason))

    # THEN it stopped at once: the stored execution is the other process's, untouched
    assert outcomes == ["lease_lost"]
    stored = world.store.get(EXECUTION)
    assert stored.lease_owner == "another-process" and stored.state == "Debit"


def test_a_sweep_hands_overdue_executions_to_this_process_without_a_queue_round_trip():
    # GIVEN a drive that died mid-task, its lease now lapsed, and a sweeper that drives in process
    crash = CrashAt(point="task:after_call")
    world = World(registry(repository=True), ToyBank(), crash=crash, inline=True)
    world.start("demo-transfer", "tr-1", SMALL)
    world.clock.sleep(EngineLimits().lease_seconds)
    driven: list[str] = []
    sweeper = Sweeper(world.store, world.waker, clock=world.clock, drive=lambda i: driven.append(i))

    # WHEN it sweeps
    woken = sweeper.sweep()

    # THEN the execution went straight to a drive, and nothing to the queue
    assert (woken, driven) == (1, [EXECUTION])
    assert world.waker.queued == []


def test_a_start_right_after_the_tick_chain_stopped_arms_it_again():
    # GIVEN a process whose sweeper armed the chain, then ran its tick while nothing was running
    world = World(registry(repository=True), ToyBank())
    world.sweeper.ensure_armed()
    world.clock.sleep(sweep_interval_seconds_default)
    world.sweeper.ensure_armed()  # a start's check just before the tick: the chain looked fine
    world.waker.queued.clear()
    assert not world.sweeper.tick().next_tick

    # WHEN an execution starts within the same interval and the process checks the chain
    world.engine.start("demo-transfer", "tr-1", SMALL)
    world.waker.queued.clear()
    world.sweeper.ensure_armed()

    # THEN a tick is on its way, so a drive that dies now is still found by a sweep
    assert [q.wakeup.kind for q in world.waker.queued] == ["sweep"]
