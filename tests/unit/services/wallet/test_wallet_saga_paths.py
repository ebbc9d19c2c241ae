"""The wallet sagas end to end in one process (real handlers, in-memory stores, the sandbox rail): each
path with money at stake ends with the full effect or none."""

from __future__ import annotations

import pytest
from support.saga_world import SagaWorld
from support.wallet_scenarios import SCENARIOS, assert_outcome, run_scenario


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_path_ends_with_the_full_effect_or_none(scenario: str):
    world = SagaWorld()

    move_id = run_scenario(world, scenario)

    assert_outcome(world, move_id, scenario)


def test_a_top_up_the_wallet_cannot_take_after_the_rail_collected_waits_for_an_operator():
    # GIVEN a top-up the rail will collect, to an account closed after the request was accepted
    from collections import Counter

    from finfaas.domain.ledger import AccountStatus
    from support.wallet_scenarios import move_events

    world = SagaWorld()
    reply = world.start_move("topups", SCENARIOS["topup-settled"].body(""))
    move_id = reply.json()["id"]
    world.set_status("acc-c", AccountStatus.CLOSED)

    world.run()

    # THEN nothing is credited, and the move says an operator must decide (the money sits in clearing)
    assert world.move(move_id).status.value == "needs_attention"
    assert world.balance("acc-c") == 0
    assert world.ledger.get_transfer(f"{move_id}-credit") is None
    assert move_events(world, move_id) == Counter({"topup.created": 1, "topup.needs_attention": 1})


def test_an_operator_ends_a_withdrawal_whose_payout_is_unknown_and_only_once():
    # GIVEN a withdrawal the rail never answers, whose recall fails too: it needs attention, still held
    from support.wallet_scenarios import AMOUNT_MINOR, OPENING_BALANCE_MINOR

    world = SagaWorld()
    world.gateway.faults[("rail", "/recall")] = [(500, {"code": "internal_error"})]
    move_id = world.start_move("withdrawals", SCENARIOS["withdrawal-stuck-recalled"].body("")).json()["id"]
    world.run()
    assert world.move(move_id).status.value == "needs_attention"
    assert world.held("acc-a") == AMOUNT_MINOR
    ops = world.token("ops-1", ("ops", "ops:act"))

    def decide(decision: str, key: str, token: str = ops):
        return world.gateway.call("POST", "wallet", f"/_/ops/withdrawals/{move_id}/decision",
                                  {"decision": decision}, token, {"Idempotency-Key": key})

    # WHEN a customer, a wrong decision, then the operator's void (the rail confirmed no payout), then a post
    customer = world.token(world.customer, ("payments:write",), kind="customer")
    assert decide("void", "d-0", customer).status_code == 403
    wrong = decide("credit", "d-1")
    voided = decide("void", "d-2")
    late = decide("post", "d-3")

    # THEN only the void applies: the hold is released, and an ended move takes no other decision
    assert wrong.status_code == 409 and [e["field"] for e in wrong.json()["errors"]] == ["decision"]
    assert voided.status_code == 200 and voided.json()["status"] == "failed", voided.content
    assert late.status_code == 409
    assert world.held("acc-a") == 0
    assert world.balance("acc-a") == OPENING_BALANCE_MINOR
    assert world.ledger_check().clean


def test_a_withdrawal_whose_payout_is_unknown_stays_held_past_any_expiry_until_an_operator_posts_it():
    # GIVEN a withdrawal the rail never answers, whose recall fails too, and weeks passing with the ledger's
    # expiry sweep running (the rail may have paid: nothing may release the money but a decision)
    from finfaas.services.ledger.service import LedgerService
    from support.wallet_scenarios import AMOUNT_MINOR, OPENING_BALANCE_MINOR

    world = SagaWorld()
    world.gateway.faults[("rail", "/recall")] = [(500, {"code": "internal_error"})]
    move_id = world.start_move("withdrawals", SCENARIOS["withdrawal-stuck-recalled"].body("")).json()["id"]
    world.run()
    world.clock.sleep(60 * 24 * 3600)

    expired = LedgerService(world.ledger, clock=world.clock.utc).expire_due_holds()

    # THEN the money is still held, and the operator's post (the rail did pay) takes it from the wallet once
    assert expired == []
    assert world.held("acc-a") == AMOUNT_MINOR
    ops = world.token("ops-1", ("ops", "ops:act"))
    posted = world.gateway.call("POST", "wallet", f"/_/ops/withdrawals/{move_id}/decision",
                                {"decision": "post"}, ops, {"Idempotency-Key": "d-post"})
    assert posted.status_code == 200 and posted.json()["status"] == "succeeded", posted.content
    assert world.held("acc-a") == 0
    assert world.balance("acc-a") == OPENING_BALANCE_MINOR - AMOUNT_MINOR
    assert world.ledger_check().clean


def test_a_hold_written_to_expire_and_expired_is_recorded_as_released_by_an_operators_void(monkeypatch):
    # GIVEN a withdrawal held with the 7-day expiry holds were once written with, stuck, and expired since
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.wallet import service as wallet_service
    from support.wallet_scenarios import OPENING_BALANCE_MINOR

    monkeypatch.setattr(wallet_service, "withdrawal_hold_seconds", 7 * 24 * 3600)
    world = SagaWorld()
    world.gateway.faults[("rail", "/recall")] = [(500, {"code": "internal_error"})]
    move_id = world.start_move("withdrawals", SCENARIOS["withdrawal-stuck-recalled"].body("")).json()["id"]
    world.run()
    world.clock.sleep(8 * 24 * 3600)
    assert len(LedgerService(world.ledger, clock=world.clock.utc).expire_due_holds()) == 1

    # WHEN the operator voids it
    ops = world.token("ops-1", ("ops", "ops:act"))
    voided = world.gateway.call("POST", "wallet", f"/_/ops/withdrawals/{move_id}/decision",
                                {"decision": "void"}, ops, {"Idempotency-Key": "d-void"})

    # THEN the move fails naming the ledger's expiry as its release, and the money came back once
    assert voided.status_code == 200 and voided.json()["status"] == "failed", voided.content
    release = world.move(move_id).ledger[-1]
    assert (release.kind, release.transfer_id) == ("void", f"{move_id}-hold.expiry")
    assert world.balance("acc-a") == OPENING_BALANCE_MINOR and world.held("acc-a") == 0
    assert world.ledger_check().clean
