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
