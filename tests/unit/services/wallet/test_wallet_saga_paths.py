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
