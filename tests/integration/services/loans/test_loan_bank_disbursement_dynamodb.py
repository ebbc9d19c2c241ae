"""A loan disbursed to a bank account through the rail, on DynamoDB Local: the ledger, loans, rail,
idempotency and execution stores are the real ones, so each money step (the hold with the loan disbursing,
its post with the loan active, its void with the loan disbursement_failed) is one TransactWriteItems
carrying the loan's conditional put and its outbox event. Each path ends paid once or not at all, the
rail's callback sent twice applies once, a crash after each step's call and a lost transaction answer
change nothing. Balances are compared before and after: the stage's accounts are shared."""

from __future__ import annotations

import uuid
from functools import partial

import pytest
from finfaas_dev.testing.platform import TokenMinter
from support.ledger_testing import LoseResponses
from support.loan_payouts import SETTLES, Balances, LoanPayouts, assert_payout_outcome
from support.saga_world import CrashAt, SagaWorld, Stores, dynamodb_stores, outbox_types
from support.workflow_testing import crash_cases

pytestmark = pytest.mark.emulator

MINTER = TokenMinter.generate()
events = partial(outbox_types, "loans")


@pytest.fixture(scope="module")
def stores(embedded_aws) -> tuple[Stores, object]:
    """One set of stores for the module, as a function process keeps one (each store's first call sets
    up a botocore session)."""
    from finfaas.store.loans_store import LoansStore

    return dynamodb_stores(), LoansStore()


def _payouts(stores: tuple[Stores, object], **options) -> LoanPayouts:
    saga_stores, loans = stores
    world = SagaWorld(stores=saga_stores, prefix=f"l{uuid.uuid4().hex[:8]}-", minter=MINTER, **options)
    return LoanPayouts(world, loans)


@pytest.mark.parametrize("scenario", ["bank-settled", "bank-rejected"])
def test_each_path_pays_once_or_leaves_the_funding_account_whole_on_dynamodb(stores, scenario):
    payouts = _payouts(stores)
    before = Balances.of(payouts.world)

    loan_id = payouts.run_scenario(scenario)

    assert_payout_outcome(payouts, loan_id, scenario, before, events)


def test_the_rails_callback_delivered_twice_pays_once_on_dynamodb(stores):
    payouts = _payouts(stores)
    before = Balances.of(payouts.world)

    def notices_twice(forward, method, url, headers, data):
        if url.endswith("/function/rail/notices"):
            forward(method, url, headers, data)
        return forward(method, url, headers, data)

    payouts.world.gateway.interceptor = notices_twice
    loan_id = payouts.run_scenario("bank-settled")

    assert payouts.world.gateway.calls.count(("rail", "POST", "/notices")) == 2
    assert_payout_outcome(payouts, loan_id, "bank-settled", before, events)


def _after_call_points(_: str) -> list[str]:
    payouts = LoanPayouts(SagaWorld(minter=MINTER))  # the same engine in memory passes the same points
    payouts.run_scenario("bank-settled")
    return payouts.world.crash.points


# A crash right after each Task's call (the hold, the rail's hand-off, the post): the step's money has
# committed and its answer is lost with the orchestrator; a fresh process runs the step again.
AFTER_CALL = [(index, point) for _, index, point in crash_cases(["bank-settled"], _after_call_points)
              if point == "task:after_call"]


@pytest.mark.parametrize(("index", "point"), AFTER_CALL, ids=[f"{i:02d}-{p}" for i, p in AFTER_CALL])
def test_a_crash_after_each_steps_call_pays_once_on_dynamodb(stores, index, point):
    crash = CrashAt(index)
    payouts = _payouts(stores, crash=crash)
    before = Balances.of(payouts.world)

    loan_id = payouts.run_scenario("bank-settled")

    assert crash.crashed_at == point and payouts.world.processes >= 2
    assert_payout_outcome(payouts, loan_id, "bank-settled", before, events)


def test_a_hold_whose_transaction_answer_is_lost_is_made_once(stores):
    # GIVEN an approved loan to a bank account and a hold whose TransactWriteItems commits, its answer lost
    payouts = _payouts(stores)
    before = Balances.of(payouts.world)
    applied = payouts.apply(payouts.application(SETTLES))
    loan_id = applied.json()["loan_id"]
    lost = LoseResponses("TransactWriteItems", times=1)
    payouts.world.ledger.register_hook("after-call.dynamodb", lost)
    try:
        disbursing = payouts.disbursements.disburse(loan_id)
    finally:
        payouts.world.ledger.unregister_hook("after-call.dynamodb", lost)

    # THEN the step answers the loan disbursing, held once, one event for it; the step again changes nothing
    again = payouts.disbursements.disburse(loan_id)
    assert lost.lost == 1 and disbursing.status.value == "disbursing"
    assert again.version == disbursing.version == payouts.loan(loan_id).version
    assert Balances.of(payouts.world) == Balances(before.funding, before.clearing, before.held + 10_000)
    assert events(loan_id)["loan.disbursement_started"] == 1
    # AND its compensation gives the funding account back whole (no hold left on the shared stage)
    payouts.disbursements.fail_payout(loan_id, "Rail.Rejected")
    assert Balances.of(payouts.world) == before
