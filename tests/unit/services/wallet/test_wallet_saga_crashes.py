"""Crash the orchestrator at every point of the top-up and withdrawal sagas (the engine's hook points:
start, checkpoint, task call and wake-up send, before and after), on every path with money at stake.
Every run must end with the full effect (credited once, paid out and posted once) or none (nothing
credited, the hold released), each ledger transfer made once, one event per change, no hold left and the
ledger check clean. Also: every message and every step request delivered twice, and the rail's callbacks
for an unknown or already-final move."""

from __future__ import annotations

from collections import Counter

import pytest
from finfaas.services.wallet.model import MoveKind
from finfaas_dev.testing.platform import TokenMinter
from support.saga_world import CrashAt, SagaWorld
from support.wallet_scenarios import AMOUNT_MINOR, SCENARIOS, assert_outcome, move_events, run_scenario
from support.workflow_testing import CRASH_POINT_KINDS, crash_case_ids, crash_cases

MINTER = TokenMinter.generate()


def _run(scenario: str, crash: CrashAt | None = None, **options) -> tuple[SagaWorld, str]:
    world = SagaWorld(crash=crash, minter=MINTER, **options)
    return world, run_scenario(world, scenario)


def _crash_points(scenario: str) -> list[str]:
    world, _ = _run(scenario)
    return world.crash.points


# Between them these paths enter every state of both definitions (the rail's wait and its recall, credit,
# fail, post, void); a rejection's path is a shorter run of the same states, so it is left to the
# duplicate-delivery tests below, which keeps this file within the suite's time budget.
CRASH_SCENARIOS = ("topup-settled", "topup-stuck-recalled", "withdrawal-settled", "withdrawal-stuck-recalled")
CASES = crash_cases(CRASH_SCENARIOS, _crash_points)


def test_the_clean_runs_pass_every_kind_of_crash_point_around_every_step():
    points = Counter(point for _, _, point in CASES)

    assert CRASH_POINT_KINDS <= set(points)
    # The stuck withdrawal's run calls: pay-out hand-off, recall, void: 3 tasks.
    stuck = [p for s, _, p in CASES if s == "withdrawal-stuck-recalled"]
    assert stuck.count("task:after_call") == 3


@pytest.mark.parametrize(("scenario", "index", "point"), CASES, ids=crash_case_ids(CASES))
def test_a_crash_at_any_point_ends_with_the_full_effect_or_none(scenario: str, index: int, point: str):
    crash = CrashAt(index)

    world, move_id = _run(scenario, crash)

    assert crash.crashed_at == point
    assert world.processes >= 2  # the orchestrator really died and a fresh process finished the job
    assert_outcome(world, move_id, scenario)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_message_delivered_twice_changes_nothing(scenario: str):
    world, move_id = _run(scenario, duplicate_deliveries=True)

    assert_outcome(world, move_id, scenario)


@pytest.mark.parametrize("scenario", ["topup-settled", "withdrawal-settled", "withdrawal-rejected"])
def test_every_step_request_sent_twice_applies_once(scenario: str):
    # GIVEN a network that delivers every request (the customer's POST, each saga step, the rail's notice)
    # to its function twice
    world = SagaWorld(minter=MINTER)

    def twice(forward, method, url, headers, data):
        forward(method, url, headers, data)
        return forward(method, url, headers, data)

    world.gateway.interceptor = twice
    move_id = run_scenario(world, scenario)

    assert world.gateway.calls.count(("rail", "POST", "/notices")) >= 2  # the callback came again
    assert_outcome(world, move_id, scenario)


def _notice(world: SagaWorld, move_id: str) -> int:
    """The sandbox bank sends its signed notice of the payment again (as a retrying bank would)."""
    bank = world.gateway.handlers["rail"].services.get().bank
    payment = world.rail_store.get(move_id)
    assert payment is not None
    bank._notify(payment)
    return world.gateway.calls.count(("rail", "POST", "/notices"))


@pytest.mark.parametrize("scenario", ["topup-settled", "topup-rejected", "withdrawal-settled"])
def test_a_callback_for_an_already_final_move_is_harmless(scenario: str):
    # GIVEN a move its saga finished
    world, move_id = _run(scenario)
    before = _notice(world, move_id) - 1

    # WHEN the rail's signed notice arrives again, twice
    _notice(world, move_id)
    world.run()

    # THEN the notices were taken and nothing moved again
    assert world.gateway.calls.count(("rail", "POST", "/notices")) == before + 2
    assert_outcome(world, move_id, scenario)


def test_a_callback_for_an_unknown_payment_is_harmless():
    world, move_id = _run("topup-settled")
    bank = world.gateway.handlers["rail"].services.get().bank
    payment = world.rail_store.get(move_id)

    # A signed notice (the bank's own key) for a payment no saga handed off
    from dataclasses import replace

    bank._notify(replace(payment, payment_id="tu_unknown"))
    world.run()

    assert_outcome(world, move_id, "topup-settled")


def test_a_top_up_is_credited_once_even_when_the_credit_step_is_asked_again_after_success():
    # GIVEN a settled top-up; WHEN the saga's credit step is called again (a redrive, an operator's retry)
    world, move_id = _run("topup-settled")
    token = world.token("orchestrator", ("wallet:saga",))

    again = world.gateway.call("POST", "wallet", "/saga/credit", {"move_id": move_id}, token)
    refused = world.gateway.call("POST", "wallet", "/saga/fail",
                                 {"move_id": move_id, "error": {"Error": "Rail.Rejected"}}, token)

    # THEN the wallet holds the amount once and a late failure cannot undo a credit
    assert again.status_code == 200
    assert refused.status_code == 409
    assert world.balance(world.prefix + "acc-c") == AMOUNT_MINOR
    assert move_events(world, move_id)["topup.succeeded"] == 1


def test_a_failed_top_up_is_never_credited_by_a_late_step():
    world, move_id = _run("topup-rejected")
    token = world.token("orchestrator", ("wallet:saga",))

    late = world.gateway.call("POST", "wallet", "/saga/credit", {"move_id": move_id}, token)

    assert late.status_code == 409
    assert world.move(move_id).kind is MoveKind.TOPUP
    assert_outcome(world, move_id, "topup-rejected")
