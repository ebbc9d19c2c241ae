"""Loan disbursement: accepting an approved loan starts its saga (infra/statemachines/
loan-disbursement.asl.json), whose one step pays the principal from the loans funding account into the
wallet and fixes the schedule on the business date in one ledger transaction. The orchestrator is killed
at every point of the run: the principal moves exactly once and the loan ends active."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from finfaas.services.loans.model import LoanStatus
from finfaas.services.loans.service import REVIEW_EXPIRED
from finfaas.workflow.model import Status
from finfaas_dev.testing.platform import call
from finfaas_dev.testing.workflow import CrashAt
from support.loans_world import BUSINESS_DATE, LoansWorld
from support.workflow_testing import crash_case_ids, crash_cases

SCENARIO = "disburse"
REVIEW_SECONDS = 7 * 24 * 3600  # AwaitReview's TimeoutSeconds


def _clean_run_points(_: str) -> list[str]:
    world = LoansWorld()
    loan_id = world.approved_loan()
    world.accept(loan_id)
    world.run_saga(loan_id)
    return world.engine.crash.points


CASES = crash_cases([SCENARIO], _clean_run_points)


def assert_disbursed_once(world: LoansWorld, loan_id: str, execution_id: str) -> None:
    assert world.engine.status(execution_id) is Status.SUCCEEDED
    loan = world.loans.get_loan(loan_id)
    assert loan.status.value == "active" and loan.disbursed_on == BUSINESS_DATE
    assert world.disbursements(loan_id) == [f"{loan_id}-disbursement"]
    assert world.wallet_minor() == 10_000
    assert world.ledger.accounts["sys-loans-EUR"].balance_minor == -10_000
    assert world.event_types(loan_id) == ["loan.approved", "loan.disbursed"]


def test_accepting_an_approved_loan_disburses_it_with_the_schedule_fixed_on_the_business_date():
    world = LoansWorld()
    loan_id = world.approved_loan()
    world.business_date = date(2024, 3, 15)  # the schedule runs from the day the money moves

    accepted = world.accept(loan_id)
    execution_id = world.run_saga(loan_id)
    read = call(world.handler.handle, "GET", f"/loans/{loan_id}", token=world.customer)

    assert accepted.status == 202, accepted.body
    assert world.orchestrator.started == [("loan-disbursement", loan_id, {"loan_id": loan_id})]
    assert world.engine.status(execution_id) is Status.SUCCEEDED
    body = read.json()
    assert (body["status"], body["disbursed_on"]) == ("active", "2024-03-15")
    assert [i["due_date"] for i in body["schedule"]][:2] == ["2024-04-15", "2024-05-15"]
    assert [i["total_minor"] for i in body["schedule"]] == [1725] * 5 + [1728]
    assert sum(i["principal_minor"] for i in body["schedule"]) == 10_000
    assert body["transactions"] == [{"kind": "disbursement", "transfer_id": f"{loan_id}-disbursement",
                                     "on": "2024-03-15", "amount_minor": 10_000, "reverses": None,
                                     "mode": None}]
    assert world.wallet_minor() == 10_000


def test_an_active_loan_accepted_again_starts_nothing_and_the_step_again_moves_nothing():
    world = LoansWorld()
    loan_id = world.approved_loan()
    world.accept(loan_id)
    world.run_saga(loan_id)
    saga = world.minter.mint("orchestrator", ["loans:saga"], kind="client")

    again = world.accept(loan_id)
    step = call(world.handler.handle, "POST", "/saga/disburse", token=saga, json_body={"loan_id": loan_id})

    assert again.status == 200 and again.json()["status"] == "active"
    assert len(world.orchestrator.started) == 1
    assert step.status == 200 and step.json()["transfer_id"] == f"{loan_id}-disbursement"
    assert world.disbursements(loan_id) == [f"{loan_id}-disbursement"] and world.wallet_minor() == 10_000


def test_only_an_approved_loan_of_the_caller_is_disbursed():
    world = LoansWorld()
    loan_id = world.approved_loan()
    other = world.minter.mint("cust-2", ["loans:read", "loans:write"])
    approved = world.loans.get_loan(loan_id)
    in_review = replace(approved, status=LoanStatus.REVIEW, version=2)
    assert world.loans.save_loan(in_review, world.loans.events[0][2])
    saga = world.minter.mint("orchestrator", ["loans:saga"], kind="client")

    hidden = call(world.handler.handle, "POST", f"/loans/{loan_id}/disburse", token=other)
    in_review = world.accept(loan_id)
    step = call(world.handler.handle, "POST", "/saga/disburse", token=saga, json_body={"loan_id": loan_id})
    customer_step = call(world.handler.handle, "POST", "/saga/disburse", token=world.customer,
                         json_body={"loan_id": loan_id})

    assert hidden.status == 404
    assert in_review.status == 409 and in_review.json()["code"] == "loan_not_approved"
    assert step.status == 409 and customer_step.status == 403
    assert world.orchestrator.started == [] and world.disbursements(loan_id) == []


def test_the_clean_run_passes_every_kind_of_crash_point():
    points = {point for _, _, point in CASES}

    assert {"task:before_call", "task:after_call"} <= points


@pytest.mark.parametrize(("scenario", "index", "point"), CASES, ids=crash_case_ids(CASES))
def test_a_crash_at_any_point_disburses_exactly_once(scenario: str, index: int, point: str):
    crash = CrashAt(index)
    world = LoansWorld(crash=crash)
    loan_id = world.approved_loan()
    world.accept(loan_id)

    execution_id = world.run_saga(loan_id)

    assert crash.crashed_at == point
    assert world.engine.processes >= 2  # the orchestrator really died and a fresh process finished
    assert_disbursed_once(world, loan_id, execution_id)


def test_every_message_delivered_twice_disburses_once():
    world = LoansWorld(duplicate_deliveries=True)
    loan_id = world.approved_loan()
    world.accept(loan_id)

    assert_disbursed_once(world, loan_id, world.run_saga(loan_id))


def test_a_review_no_operator_decides_within_its_seven_days_declines_the_loan_and_moves_nothing():
    # GIVEN a loan in review whose saga waits at AwaitReview, and no operator answering
    world = LoansWorld()
    approved = world.loans.get_loan(world.approved_loan())
    in_review = replace(approved, status=LoanStatus.REVIEW, decided_by=None, version=approved.version + 1)
    assert world.loans.save_loan(in_review, None)

    # WHEN the review's 7 days pass
    started = world.engine.start("loan-disbursement", in_review.loan_id,
                                 {"loan_id": in_review.loan_id, "review": True})
    world.engine.settle()
    world.engine.clock.sleep(REVIEW_SECONDS + 1)
    world.engine.run()

    # THEN the saga records the loan declined as expired (no longer stuck in review), and nothing moved
    execution_id = started.execution.execution_id
    assert len(world.reviews.sent) == 1
    assert world.engine.status(execution_id) is Status.SUCCEEDED
    loan = world.loans.get_loan(in_review.loan_id)
    assert (loan.status, loan.decided_by, loan.review_token) == (LoanStatus.DECLINED, REVIEW_EXPIRED, None)
    assert world.event_types(in_review.loan_id) == ["loan.approved", "loan.declined"]
    assert world.disbursements(in_review.loan_id) == [] and world.wallet_minor() == 0
    again = call(world.handler.handle, "POST", f"/_/ops/loans/{in_review.loan_id}/decision",
                 token=world.operator, json_body={"decision": "approve", "note": "too late"})
    assert again.status == 409 and again.json()["code"] == "loan_not_in_review"
