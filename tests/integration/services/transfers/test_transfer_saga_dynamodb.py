"""The transfer saga on DynamoDB Local: the ledger, orders, risk, rail, idempotency and execution stores are
the real ones, wired as the transfers function wires them (risk in process, its lookup in the validation's
one read and its decision in its one write); the orchestrator is crashed at every hook point of two paths
(one completing, one compensating), every message is delivered twice, and `finfaas ledger check` passes
afterwards."""

from __future__ import annotations

import uuid
from functools import partial

import pytest
from support.ledger_testing import finfaas_ledger_check
from support.saga_scenarios import SCENARIOS, SETTLEMENT, assert_outcome, run_scenario
from support.saga_world import CrashAt, SagaWorld, Stores, dynamodb_stores, outbox_types

CRASHED_SCENARIOS = ("internal-completed", "rail-rejected-compensated")


outbox_events = partial(outbox_types, "transfers")


@pytest.fixture(scope="module")
def stores(embedded_aws) -> Stores:
    """One set of stores for every world of the module, as a function process keeps one: each store's
    first call sets up a botocore session (its JSON service models), which per world cost seconds."""
    return dynamodb_stores()


def world_on_dynamodb(stores: Stores, **options) -> SagaWorld:
    """As the transfers function runs: risk's rules in process, its items read and written with the order's
    (the world's orders store writes in this risk store)."""
    return SagaWorld(stores=stores, prefix=f"i{uuid.uuid4().hex[:8]}-", risk_in_process=True, **options)


def run(stores: Stores, scenario: str, **options) -> tuple[SagaWorld, str, int]:
    world = world_on_dynamodb(stores, **options)
    settlement_before = world.balance(SETTLEMENT)
    return world, run_scenario(world, scenario), settlement_before


@pytest.fixture(scope="module")
def crash_cases(stores) -> dict[str, int]:
    """How many crash points each crashed scenario passes on DynamoDB."""
    return {scenario: len(run(stores, scenario)[0].crash.points) for scenario in CRASHED_SCENARIOS}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_path_ends_right_on_dynamodb(stores, scenario):
    world, transfer_id, settlement_before = run(stores, scenario)

    assert_outcome(world, transfer_id, scenario, outbox_events, settlement_before)


@pytest.mark.parametrize("scenario", CRASHED_SCENARIOS)
def test_a_crash_at_every_point_ends_with_the_full_effect_or_none(stores, crash_cases, scenario):
    # A path that passed no crash point would make the loop below assert nothing.
    assert crash_cases[scenario] > 0, f"{scenario} passed no crash point"
    for index in range(crash_cases[scenario]):
        crash = CrashAt(index)
        world, transfer_id, settlement_before = run(stores, scenario, crash=crash)

        assert crash.crashed_at is not None, index
        assert_outcome(world, transfer_id, scenario, outbox_events, settlement_before, check_ledger=False)
    # The worlds share the stage's ledger tables, which every earlier test of the session has filled too:
    # one check of the whole ledger after all the crashes, not one per crash, each reading everything.
    report = world.ledger_check()
    assert report.clean, report.problems


@pytest.mark.parametrize("scenario", CRASHED_SCENARIOS)
def test_every_message_delivered_twice_changes_nothing_on_dynamodb(stores, scenario):
    world, transfer_id, settlement_before = run(stores, scenario, duplicate_deliveries=True)

    assert_outcome(world, transfer_id, scenario, outbox_events, settlement_before)


def test_finfaas_ledger_check_passes_after_the_sagas(embedded_aws, stores):
    # GIVEN the sagas above (and one more here, so the check never runs on an empty ledger)
    run(stores, "internal-completed")

    result = finfaas_ledger_check(embedded_aws.env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("OK")
