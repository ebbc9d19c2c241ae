"""Operators' controls on the transfer saga, through the real handlers (saga_world.py): stopping a
transfer runs the compensation its definition declares, and a transfer's executions are found by its id."""

from __future__ import annotations

from finfaas.domain.limits import Tier
from finfaas.services.transfers.service import TransfersSettings
from finfaas.workflow.model import Phase, Status
from finfaas.workflow.store import ExecutionFilter
from support.saga_world import CUSTOMER, OPENING_BALANCE_MINOR, SagaWorld

INTERNAL = {"debit_account_id": "acc-a", "credit_account_id": "acc-b", "amount": 2_500, "currency": "USD"}
EXTERNAL = {
    "debit_account_id": "acc-a",
    "amount": 2_500,
    "currency": "USD",
    "reference": "invoice 7",
    "creditor": {"bank_code": "BANKGB22", "account_number": "12345678", "name": "Carol"},
}


def started(world: SagaWorld, body: dict) -> str:
    reply = world.start_transfer(body)
    assert reply.status_code == 202, reply.content
    return reply.json()["transfer_id"]


def stop(world: SagaWorld, transfer_id: str, reason: str):
    token = world.token("ops-1", ("ops", "ops:act"))
    return world.gateway.call("POST", "orchestrator", f"/_/ops/executions/transfer:{transfer_id}/stop",
                              {"reason": reason}, token)


def test_a_transfer_stopped_while_it_awaits_review_fails_with_nothing_held_and_refuses_the_decision():
    # GIVEN a large transfer waiting for an operator's review
    world = SagaWorld()
    world.orders.set_tier(CUSTOMER, Tier.PREMIUM)
    transfer_id = started(world, {**INTERNAL, "amount": 1_000_000})
    world.run(until=lambda: world.transfer(transfer_id).task_token is not None)

    # WHEN an operator stops its saga
    reply = stop(world, transfer_id, "customer withdrew the order")
    world.run()

    # THEN the Catch of the review runs the failure path: the order is FAILED, no money moved
    assert reply.status_code == 200, reply.content
    assert world.status(transfer_id) is Status.FAILED
    assert world.path(transfer_id)[-3:] == ["AwaitReview", "RecordFailure", "Failed"]
    assert world.transfer(transfer_id).status == "FAILED"
    assert world.balance("acc-a") == OPENING_BALANCE_MINOR and world.held("acc-a") == 0
    assert world.ledger_check().clean
    assert world.decide(transfer_id, "approve").status_code != 200


def test_a_transfer_stopped_while_the_rail_holds_it_is_recalled_and_its_hold_voided():
    # GIVEN a transfer to another bank whose hold is placed and whose payment waits for the rail
    world = SagaWorld()
    transfer_id = started(world, EXTERNAL)

    def handed_off() -> bool:
        execution = world.store.get(f"transfer:{transfer_id}")
        return execution.state == "HandOffToRail" and execution.phase is Phase.CALLBACK

    world.run(until=handed_off)
    assert world.held("acc-a") == 2_500

    # WHEN an operator stops its saga
    reply = stop(world, transfer_id, "suspected fraud")
    world.run()

    # THEN the hand-off's Catch recalls the payment and the hold is voided
    assert reply.status_code == 200, reply.content
    order = world.transfer(transfer_id)
    assert "RecallFromRail" in world.path(transfer_id)
    assert world.held("acc-a") == 0 and world.balance("acc-a") == OPENING_BALANCE_MINOR
    assert order.status == "COMPENSATED"
    assert world.ledger_check().clean


def test_a_transfers_execution_is_listed_by_its_id():
    world = SagaWorld()
    transfer_id = started(world, INTERNAL)
    world.run()

    page = world.store.list(None, 10, where=ExecutionFilter(reference=transfer_id))

    assert [e.execution_id for e in page.executions] == [f"transfer:{transfer_id}"]
    assert page.executions[0].reference == transfer_id


def test_an_approval_above_the_second_approval_amount_waits_for_a_second_different_operator():
    # GIVEN a 10,000.00 transfer under review, above a 5,000 second-approval amount
    world = SagaWorld(settings=TransfersSettings(second_approval_above_major=5_000))
    world.orders.set_tier(CUSTOMER, Tier.PREMIUM)
    transfer_id = started(world, {**INTERNAL, "amount": 1_000_000})
    world.run(until=lambda: world.transfer(transfer_id).task_token is not None)

    # WHEN one operator approves it, then the same operator again under another key
    first = world.decide(transfer_id, "approve", key="k-1", operator="ops-1")
    again = world.decide(transfer_id, "approve", key="k-2", operator="ops-1")

    # THEN the first approval is only pending: the saga still waits and no money moved
    assert first.status_code == 200, first.content
    assert first.json()["pending_approval"]["operator"] == "ops-1"
    assert first.json()["status"] == "AWAITING_REVIEW"
    assert world.transfer(transfer_id).task_token is not None
    assert world.balance("acc-a") == OPENING_BALANCE_MINOR
    # ... and the same operator cannot be the second approver
    assert (again.status_code, again.json()["code"]) == (409, "second_approver_must_differ")

    # WHEN a different operator confirms
    second = world.decide(transfer_id, "approve", key="k-3", operator="ops-2")
    world.run()

    # THEN the saga takes the approval and the money moves once
    assert second.status_code == 200, second.content
    order = world.transfer(transfer_id)
    assert order.status == "COMPLETED" and order.pending_approval is None
    assert any(s.name == "decision" and "ops-1 and ops-2" in s.detail for s in order.steps)
    assert world.balance("acc-a") == OPENING_BALANCE_MINOR - 1_000_000
    assert world.ledger_check().clean


def test_one_operator_rejects_a_transfer_whose_approval_waits_for_a_second_operator():
    # GIVEN an approval above the second-approval amount, proposed by one operator
    world = SagaWorld(settings=TransfersSettings(second_approval_above_major=5_000))
    world.orders.set_tier(CUSTOMER, Tier.PREMIUM)
    transfer_id = started(world, {**INTERNAL, "amount": 1_000_000})
    world.run(until=lambda: world.transfer(transfer_id).task_token is not None)
    assert world.decide(transfer_id, "approve", key="k-1", operator="ops-1").status_code == 200

    # WHEN the same operator rejects it (nothing leaves the account: one operator is enough)
    reply = world.decide(transfer_id, "reject", key="k-2", operator="ops-1")
    world.run()

    # THEN the transfer ends without moving money and the proposal is gone
    assert reply.status_code == 200, reply.content
    order = world.transfer(transfer_id)
    assert order.status in ("REJECTED", "FAILED") and order.pending_approval is None
    assert world.balance("acc-a") == OPENING_BALANCE_MINOR and world.held("acc-a") == 0
