"""Crash the orchestrator at every point of the rail refund saga (the engine's hook points), on the paths
with money at stake: the rail settles (the refund succeeds, its money stays on the rail's side) or never
answers and is recalled (the refund is reversed to the merchant). Every run ends with the full effect or
its reversal, each ledger transfer made once, one event per change and the ledger check clean; and the
rail's notices sent twice change nothing."""

from __future__ import annotations

from collections import Counter

import pytest
from finfaas.services.payments.model import RefundStatus
from finfaas.workflow.model import Status
from finfaas_dev.testing.platform import TokenMinter
from support.rail_refund_world import PAID_MINOR, RailRefundWorld
from support.saga_world import CrashAt
from support.workflow_testing import crash_case_ids, crash_cases

MINTER = TokenMinter.generate()
REFUND_MINOR = 2_500
CLEARING = "sys-settlement-USD"
# The sandbox's test account numbers decide the rail's answer (services/rail/service.py).
ACCOUNTS = {"settled": "12345678", "rejected": "99990001", "stuck-recalled": "99990003"}


def _run(scenario: str, crash: CrashAt | None = None, **options) -> tuple[RailRefundWorld, str]:
    world = RailRefundWorld(crash=crash, minter=MINTER, **options)
    payment_id = world.paid()
    body = {"refund_number": "r-1", "amount": REFUND_MINOR,
            "bank_account": {"bank_code": "BANKUS33", "account_number": ACCOUNTS[scenario], "name": "Ada"}}
    reply = world.refund_to_bank(payment_id, body)
    assert reply.status_code == 201, reply.content
    world.run()
    return world, payment_id


def assert_outcome(world: RailRefundWorld, payment_id: str, scenario: str) -> None:
    intent = world.intent(payment_id)
    refund = intent.refund("r-1")
    settled = scenario == "settled"
    assert refund.status is (RefundStatus.SUCCEEDED if settled else RefundStatus.FAILED)
    assert world.execution_status(f"payments-refund:{refund.transfer_id}") is (
        Status.SUCCEEDED if settled else Status.FAILED)
    gone = REFUND_MINOR if settled else 0
    assert intent.amount_refunded_minor == gone
    assert world.balance(intent.receivable_account_id) == PAID_MINOR - gone
    assert world.balance(CLEARING) == gone
    transfers = {step.transfer_id for step in intent.ledger if step.kind.startswith("refund")}
    assert all(world.ledger.get_transfer(t) is not None for t in transfers)
    assert len(transfers) == (1 if settled else 2)  # the refund, and its reversal when the rail refused
    final = "refund.updated" if settled else "refund.failed"
    assert world.refund_events(payment_id) == Counter({"refund.created": 1, final: 1})
    report = world.ledger_check()
    assert report.clean, report.problems


def _crash_points(scenario: str) -> list[str]:
    world, _ = _run(scenario)
    return world.crash.points


CASES = crash_cases(("settled", "stuck-recalled"), _crash_points)


@pytest.mark.parametrize(("scenario", "index", "point"), CASES, ids=crash_case_ids(CASES))
def test_a_crash_at_any_point_ends_with_the_refund_paid_or_reversed_once(scenario: str, index: int,
                                                                          point: str):
    crash = CrashAt(index)

    world, payment_id = _run(scenario, crash)

    assert crash.crashed_at == point
    assert world.processes >= 2  # the orchestrator really died and a fresh process finished the job
    assert_outcome(world, payment_id, scenario)


@pytest.mark.parametrize("scenario", ["settled", "rejected"])
def test_every_request_sent_twice_applies_once(scenario: str):
    # GIVEN a network that delivers every request (the refund, each saga step, the rail's notice) twice
    world = RailRefundWorld(minter=MINTER)

    def twice(forward, method, url, headers, data):
        forward(method, url, headers, data)
        return forward(method, url, headers, data)

    world.gateway.interceptor = twice
    payment_id = world.paid()
    body = {"refund_number": "r-1", "amount": REFUND_MINOR,
            "bank_account": {"bank_code": "BANKUS33", "account_number": ACCOUNTS[scenario], "name": "Ada"}}
    assert world.refund_to_bank(payment_id, body).status_code == 201
    world.run()

    assert world.gateway.calls.count(("rail", "POST", "/notices")) >= 2  # the callback came again
    assert_outcome(world, payment_id, scenario)
