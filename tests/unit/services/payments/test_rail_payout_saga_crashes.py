"""Crash the orchestrator at every point of the payout saga (the engine's hook points) after a merchant's
settlement: the rail settles the payout (payout.paid) or never answers and is recalled (the payout back in
the merchant's reserve, payout.failed). Every run ends with one outcome, the payout moved once, one event
per change and the ledger check clean; a rerun of the day pays nothing twice."""

from __future__ import annotations

import pytest
from finfaas.workflow.model import Status
from finfaas_dev.testing.platform import TokenMinter
from support.rail_refund_world import RailRefundWorld
from support.saga_world import CrashAt
from support.workflow_testing import crash_case_ids, crash_cases

MINTER = TokenMinter.generate()
CLEARING = "sys-settlement-USD"
# The sandbox's test account numbers decide the rail's answer (services/rail/service.py).
ACCOUNTS = {"settled": "12345678", "rejected": "99990001", "stuck-recalled": "99990003"}


def _run(scenario: str, crash: CrashAt | None = None, **options) -> tuple[RailRefundWorld, object]:
    world = RailRefundWorld(crash=crash, minter=MINTER, **options)
    world.paid(ACCOUNTS[scenario])
    day = world.clock.utc().date()
    world.settlement.settle("m-books", day)
    world.run()
    # a rerun of the day (an operator, or the next day's run for its previous day) hands over a payout
    # whose saga start a crash lost; a started one it only finds
    world.settlement.settle("m-books", day)
    world.run()
    return world, day


def assert_outcome(world: RailRefundWorld, day, scenario: str) -> None:
    settlement = world.settlements.get("m-books", day)
    paid = scenario == "settled"
    assert settlement.payout_minor > 0
    assert settlement.payout_status == ("paid" if paid else "failed")
    assert world.execution_status(f"payments-payout:{settlement.payout_rail_id}") is (
        Status.SUCCEEDED if paid else Status.FAILED)
    reserve = world.merchants.get("m-books").accounts.reserve
    returned = 0 if paid else settlement.payout_minor
    assert world.balance(reserve) == settlement.reserve_minor + returned
    assert world.balance(CLEARING) == settlement.payout_minor - returned
    final = "payout.paid" if paid else "payout.failed"
    assert [e.type for *_, e in world.settlements.events] == ["payout.created", final]
    # a rerun of the day: the same settlement, nothing moved or written again
    assert world.settlement.settle("m-books", day) == settlement
    world.run()
    assert world.balance(CLEARING) == settlement.payout_minor - returned
    assert len(world.settlements.events) == 2
    report = world.ledger_check()
    assert report.clean, report.problems


def _crash_points(scenario: str) -> list[str]:
    world, _ = _run(scenario)
    return world.crash.points


CASES = crash_cases(("settled", "stuck-recalled"), _crash_points)


@pytest.mark.parametrize(("scenario", "index", "point"), CASES, ids=crash_case_ids(CASES))
def test_a_crash_at_any_point_ends_with_the_payout_paid_or_returned_once(scenario: str, index: int,
                                                                          point: str):
    crash = CrashAt(index)

    world, day = _run(scenario, crash)

    assert crash.crashed_at == point
    assert world.processes >= 2  # the orchestrator really died and a fresh process finished the job
    assert_outcome(world, day, scenario)


@pytest.mark.parametrize("scenario", ["settled", "rejected"])
def test_every_request_sent_twice_applies_once(scenario: str):
    world = RailRefundWorld(minter=MINTER)

    def twice(forward, method, url, headers, data):
        forward(method, url, headers, data)
        return forward(method, url, headers, data)

    world.gateway.interceptor = twice
    world.paid(ACCOUNTS[scenario])
    day = world.clock.utc().date()
    world.settlement.settle("m-books", day)
    world.run()

    assert world.gateway.calls.count(("rail", "POST", "/notices")) >= 2  # the callback came again
    assert_outcome(world, day, scenario)
