"""Crash the orchestrator at every point of the transfer saga, systematically, on every path with money
at stake: before and after each step and each compensation (the engine's hook points: start,
checkpoint, task call and wake-up send, before and after). Every run must end COMPLETED with the full
effect, or COMPENSATED / FAILED with zero net effect, each ledger transfer made once, one event per
outcome, and the ledger check clean. Also: every message delivered twice, and a step so slow that its
lease lapses and another orchestrator process runs it again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from finfaas.domain.risk_rules import HourCount, RiskRequest
from finfaas.services.risk.model import hour_window
from support.saga_scenarios import SCENARIOS, assert_outcome, run_scenario
from support.saga_world import CrashAt, SagaWorld
from support.workflow_testing import CRASH_POINT_KINDS, crash_case_ids, crash_cases


def _events_in_memory(world: SagaWorld) -> Callable[[str], list[str]]:
    return lambda transfer_id: [e.type for e in world.orders.events if e.data["transfer_id"] == transfer_id]


def _run(scenario: str, crash: CrashAt | None = None, **options) -> tuple[SagaWorld, str]:
    world = SagaWorld(crash=crash, **options)
    return world, run_scenario(world, scenario)


def _crash_points(scenario: str) -> list[str]:
    world, _ = _run(scenario)
    return world.crash.points


CASES = crash_cases(SCENARIOS, _crash_points)


def assert_right(world: SagaWorld, transfer_id: str, scenario: str) -> None:
    assert_outcome(world, transfer_id, scenario, _events_in_memory(world))


def test_the_clean_runs_pass_every_kind_of_crash_point_around_every_step():
    points = Counter(point for _, _, point in CASES)

    assert CRASH_POINT_KINDS <= set(points)
    # The stuck rail's run calls: validate (with the screening), reserve, hand-off, recall, void, record:
    # 6 tasks.
    stuck = [p for s, _, p in CASES if s == "rail-stuck-recalled-compensated"]
    assert stuck.count("task:after_call") == 6


@pytest.mark.parametrize(("scenario", "index", "point"), CASES, ids=crash_case_ids(CASES))
def test_a_crash_at_any_point_ends_with_the_full_effect_or_none(scenario: str, index: int, point: str):
    crash = CrashAt(index)

    world, transfer_id = _run(scenario, crash)

    assert crash.crashed_at == point
    assert world.processes >= 2  # the orchestrator really died and a fresh process finished the job
    assert_right(world, transfer_id, scenario)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_message_delivered_twice_changes_nothing(scenario: str):
    world, transfer_id = _run(scenario, duplicate_deliveries=True)

    assert_right(world, transfer_id, scenario)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_step_request_sent_twice_applies_once(scenario: str):
    # GIVEN a network that delivers every request of the saga to its function twice (same key)
    world = SagaWorld()

    def twice(forward, method, url, headers, data):
        forward(method, url, headers, data)
        return forward(method, url, headers, data)

    world.gateway.interceptor = twice
    reply = world.start_transfer(SCENARIOS[scenario].body(""))
    world.run()

    assert world.gateway.calls.count(("ledger", "POST", "/pending")) == 2  # the hold was asked for twice
    assert_right(world, reply.json()["transfer_id"], scenario)


@pytest.mark.parametrize("applied_first", [True, False], ids=["answer-late", "request-late"])
def test_a_step_slower_than_its_lease_is_run_again_by_another_process_and_applies_once(applied_first: bool):
    # GIVEN a Reserve call that takes longer than its lease (timeout 20 s + grace): meanwhile the sweeper
    # finds the attempt overdue and a second orchestrator process runs it again with the same key
    world = SagaWorld()
    slow = {"pending": True}

    def slow_reserve(forward, method, url, headers, data):
        if not (url.endswith("/function/ledger/pending") and slow.pop("pending", False)):
            return forward(method, url, headers, data)
        answer = forward(method, url, headers, data) if applied_first else None
        world.clock.sleep(20 + world.limits.lease_grace_seconds + 1)
        other = world._new_engine()
        for execution_id in world.store.due(world.clock.ms(), 10):
            other.drive(execution_id, "sweep")
        return answer or forward(method, url, headers, data)

    world.gateway.interceptor = slow_reserve
    reply = world.start_transfer(SCENARIOS["internal-completed"].body(""))
    world.run()

    transfer_id = reply.json()["transfer_id"]
    history = [e.type for e in world.store.history(f"transfer:{transfer_id}", 0, 1000)]
    assert "TaskRedriven" in history
    assert_right(world, transfer_id, "internal-completed")


# --- risk in process (as the transfers function runs it): its decision rides in the validation's write ----

IN_PROCESS_SCENARIOS = ("internal-completed", "rail-rejected-compensated")


def _run_in_process(scenario: str, crash: CrashAt | None = None, **options) -> tuple[SagaWorld, str]:
    return _run(scenario, crash, risk_in_process=True, **options)


IN_PROCESS_CASES = crash_cases(IN_PROCESS_SCENARIOS, lambda s: _run_in_process(s)[0].crash.points)


def assert_counted_once_by_risk(world: SagaWorld, transfer_id: str) -> None:
    """Risk recorded the decision the order carries, and counted the transfer once in its customer's hour."""
    order = world.transfer(transfer_id)
    request = RiskRequest(transfer_id, order.owner_id, order.debit_account_id, order.destination,
                          order.amount_minor, order.currency)
    known = world.risk_store.look_up(request, hour_window(order.created_at))
    assert known.recorded is not None and order.screening is not None
    assert known.recorded.decision.value == order.screening["decision"]
    assert known.place == HourCount(1, order.amount_minor) == known.window_before


@pytest.mark.parametrize(("scenario", "index", "point"), IN_PROCESS_CASES,
                         ids=crash_case_ids(IN_PROCESS_CASES))
def test_with_risk_in_process_a_crash_at_any_point_ends_with_the_full_effect_or_none(scenario, index, point):
    crash = CrashAt(index)

    world, transfer_id = _run_in_process(scenario, crash)

    assert crash.crashed_at == point
    assert_right(world, transfer_id, scenario)
    assert_counted_once_by_risk(world, transfer_id)


@pytest.mark.parametrize("scenario", IN_PROCESS_SCENARIOS)
def test_with_risk_in_process_every_message_delivered_twice_counts_and_records_once(scenario: str):
    world, transfer_id = _run_in_process(scenario, duplicate_deliveries=True)

    assert_right(world, transfer_id, scenario)
    assert_counted_once_by_risk(world, transfer_id)
