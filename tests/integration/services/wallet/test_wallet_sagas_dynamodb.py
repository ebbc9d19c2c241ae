"""The wallet sagas on DynamoDB Local: the ledger, wallet, rail, idempotency and execution stores are the
real ones, so each money step is one TransactWriteItems carrying the move's put and its outbox event.
Every path ends with the full effect or none, a repeated step or delivery applies once, and two
withdrawals racing for one balance hold it once."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from finfaas.services.wallet.api import NewMoveBody
from finfaas.services.wallet.errors import WithdrawalRefused
from finfaas.services.wallet.model import MoveKind
from finfaas.services.wallet.service import Caller
from support.saga_world import OPENING_BALANCE_MINOR, SagaWorld, dynamodb_stores, outbox_types
from support.wallet_scenarios import SETTLEMENT, SETTLES, assert_outcome, run_scenario

# Every money step on the real store (credit, fail, the hold with the move's creation, post, void); the
# rail's recall paths take the same steps and run in memory (tests/unit/services/wallet).
PATHS = ("topup-settled", "topup-rejected", "withdrawal-settled", "withdrawal-rejected")


def outbox_events(move_id: str) -> Counter[str]:
    return outbox_types("wallet", move_id)


def run(scenario: str, **options) -> tuple[SagaWorld, str, int]:
    world = SagaWorld(stores=dynamodb_stores(), prefix=f"w{uuid.uuid4().hex[:8]}-", **options)
    settlement_before = world.balance(SETTLEMENT)
    return world, run_scenario(world, scenario), settlement_before


@pytest.mark.parametrize("scenario", PATHS)
def test_each_path_ends_right_on_dynamodb(embedded_aws, scenario):
    world, move_id, settlement_before = run(scenario)

    assert_outcome(world, move_id, scenario, outbox_events, settlement_before)


def test_every_message_delivered_twice_applies_once_on_dynamodb(embedded_aws):
    world, move_id, settlement_before = run("withdrawal-rejected", duplicate_deliveries=True)

    assert_outcome(world, move_id, "withdrawal-rejected", outbox_events, settlement_before)


def test_a_step_run_again_after_the_move_is_final_writes_nothing(embedded_aws):
    # GIVEN a settled top-up; WHEN its credit step runs again as a fresh request (a redrive)
    world, move_id, settlement_before = run("topup-settled")

    again = world.wallet.credit(move_id)

    assert again.version == world.move(move_id).version  # nothing new written
    assert_outcome(world, move_id, "topup-settled", outbox_events, settlement_before)


@pytest.mark.parametrize("step", ["withdrawal", "credit"])
def test_a_money_step_whose_answer_is_lost_applies_once(embedded_aws, step):
    # GIVEN the step's transaction commits but its answer never arrives (the ledger's store sends it again,
    # finds the move already written by this very request, and answers as a replay)
    from support.ledger_testing import LoseResponses

    world = SagaWorld(stores=dynamodb_stores(), prefix=f"w{uuid.uuid4().hex[:8]}-")
    caller = Caller(world.customer, "customer")
    kind = MoveKind.WITHDRAWAL if step == "withdrawal" else MoveKind.TOPUP
    body = NewMoveBody.model_validate({
        "account_id": world.prefix + ("acc-a" if step == "withdrawal" else "acc-c"), "amount": 2_500,
        "currency": "USD",
        "bank_account": {"bank_code": "BANKUS33", "account_number": SETTLES, "name": "Ada"}})
    if step == "credit":
        move_id = world.wallet.start(caller, kind, "lost-1", body)[0].move_id
    lost = LoseResponses("TransactWriteItems", times=1)
    world.ledger.register_hook("after-call.dynamodb", lost)
    try:
        if step == "withdrawal":
            move = world.wallet.start(caller, kind, "lost-1", body)[0]
        else:
            move = world.wallet.credit(move_id)
    finally:
        world.ledger.unregister_hook("after-call.dynamodb", lost)

    # THEN the answer is the move as written once: one hold, or one credit, and one event for it
    assert lost.lost == 1
    stored = world.move(move.move_id)
    assert (stored.version, stored.write_id) == (move.version, move.write_id)
    if step == "withdrawal":
        assert world.held(world.prefix + "acc-a") == 2_500
        assert outbox_events(move.move_id) == Counter({"withdrawal.created": 1})
    else:
        assert world.balance(world.prefix + "acc-c") == 2_500
        assert outbox_events(move.move_id) == Counter({"topup.created": 1, "topup.succeeded": 1})


def test_two_withdrawals_racing_for_one_balance_hold_it_once(embedded_aws):
    # GIVEN a wallet of 10,000.00 and two withdrawals of 6,000.00 sent at once under different keys
    world = SagaWorld(stores=dynamodb_stores(), prefix=f"w{uuid.uuid4().hex[:8]}-")
    body = NewMoveBody.model_validate({
        "account_id": world.prefix + "acc-a", "amount": OPENING_BALANCE_MINOR * 6 // 10, "currency": "USD",
        "bank_account": {"bank_code": "BANKUS33", "account_number": SETTLES, "name": "Ada"}})
    caller = Caller(world.customer, "customer")
    outcomes: list[object] = []
    start = threading.Barrier(2)

    def withdraw(key: str) -> None:
        start.wait()
        try:
            outcomes.append(world.wallet.start(caller, MoveKind.WITHDRAWAL, key, body)[0].move_id)
        except WithdrawalRefused as refused:
            outcomes.append(refused)

    threads = [threading.Thread(target=withdraw, args=(f"race-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # THEN exactly one is held, the other refused naming amount
    refused = [o for o in outcomes if isinstance(o, WithdrawalRefused)]
    assert len(outcomes) == 2 and len(refused) == 1
    assert refused[0].field == "amount"
    assert world.held(world.prefix + "acc-a") == OPENING_BALANCE_MINOR * 6 // 10
