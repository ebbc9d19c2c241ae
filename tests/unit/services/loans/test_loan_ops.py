"""Operators' corrections through the loans function, on fakes and the reference ledger: a repayment
reversed (the loan ends as if it never happened, the ledger moves undone in the loan's transaction, a
second reversal a 409) and a write-off (principal to the loan-losses account, status written_off,
repayments refused)."""

from __future__ import annotations

from datetime import date

import pytest
from finfaas.services.ledger.service import LedgerService
from finfaas_dev.testing.platform import call
from support.loans_world import LoansWorld

FIRST_DUE, SECOND_DUE = date(2024, 2, 1), date(2024, 3, 1)
FIGURES = ("status", "outstanding_minor", "schedule", "days_past_due", "bucket")


@pytest.fixture
def world() -> LoansWorld:
    return LoansWorld()


def reverse(world: LoansWorld, loan_id: str, repayment_id: str, reason: str = "payment bounced") -> object:
    return call(world.handler.handle, "POST", f"/_/ops/loans/{loan_id}/repayments/{repayment_id}/reversal",
                token=world.operator, json_body={"reason": reason})


def write_off(world: LoansWorld, loan_id: str) -> object:
    return call(world.handler.handle, "POST", f"/_/ops/loans/{loan_id}/write-off", token=world.operator,
                json_body={"reason": "customer insolvent"})


def balances(world: LoansWorld) -> tuple[int, ...]:
    return tuple(world.account_minor(a) for a in ("acc-cust-1", "sys-loans-EUR", "sys-fees-EUR",
                                                  "sys-loan_losses-EUR"))


def test_a_reversed_repayment_leaves_the_loan_and_the_ledger_as_if_it_never_happened():
    # GIVEN two identical loans paid the same way, except that one also received a bounced 17.25
    paid, never = LoansWorld(), LoansWorld()
    figures = []
    for world, bounced in ((paid, True), (never, False)):
        loan_id = world.active_loan()
        world.business_date = FIRST_DUE
        if bounced:
            bounce = world.repay(loan_id, "17.25", key="bounced")
            assert bounce.status == 200, bounce.body
        world.business_date = SECOND_DUE
        assert world.repay(loan_id, "10.00", key="later").status == 200
        world.business_date = date(2024, 3, 5)

        # WHEN an operator reverses the bounced payment (backdated: a later payment was allocated after it)
        if bounced:
            repayment_id = world.loan(loan_id)["transactions"][1]["transfer_id"]
            reply = reverse(world, loan_id, repayment_id)
            assert reply.status == 200, reply.body
        figures.append(({k: world.loan(loan_id)[k] for k in FIGURES}, balances(world)))

    # THEN the loan's figures and every ledger balance equal the loan that never had the payment
    assert figures[0] == figures[1]
    [paid_loan] = {subject for subject, _, _ in paid.loans.events}
    assert paid.event_types(paid_loan)[-1] == "loan.repayment_reversed"


def test_reversing_a_repayment_twice_is_a_409_and_moves_nothing_more(world):
    loan_id = world.active_loan()
    world.business_date = FIRST_DUE
    world.repay(loan_id, "17.25", key="r-1")
    repayment_id = world.loan(loan_id)["transactions"][1]["transfer_id"]
    first = reverse(world, loan_id, repayment_id)
    after_first = balances(world)

    again = reverse(world, loan_id, repayment_id)

    assert first.status == 200, first.body
    assert again.status == 409 and again.json()["code"] == "repayment_already_reversed"
    assert [e["field"] for e in again.json()["errors"]] == ["repayment_id"]
    assert balances(world) == after_first == (10_000, -10_000, 0, 0)


def test_reversing_an_unknown_repayment_is_a_404_naming_it(world):
    loan_id = world.active_loan()

    reply = reverse(world, loan_id, f"{loan_id}-disbursement")

    assert reply.status == 404 and [e["field"] for e in reply.json()["errors"]] == ["repayment_id"]


def test_a_write_off_moves_the_outstanding_principal_to_losses_and_refuses_later_repayments(world):
    # GIVEN a loan whose first installment (16.25 of principal) was paid
    loan_id = world.active_loan()
    world.business_date = FIRST_DUE
    world.repay(loan_id, "17.25", key="r-1")
    world.business_date = date(2024, 4, 20)

    # WHEN an operator writes it off
    reply = write_off(world, loan_id)
    later = world.repay(loan_id, "17.25", key="r-2")

    # THEN the 83.75 of principal left is a loss, the loans funding account holds only live loans
    assert reply.status == 200, reply.body
    assert (reply.json()["status"], reply.json()["outstanding_minor"]) == ("written_off", 0)
    assert balances(world)[1:] == (0, 100, -8_375)
    assert later.status == 409 and [e["field"] for e in later.json()["errors"]] == ["status"]
    assert write_off(world, loan_id).status == 409
    assert world.event_types(loan_id)[-1] == "loan.written_off"


def test_reversing_a_repayment_of_a_written_off_loan_writes_off_the_principal_it_had_repaid(world):
    loan_id = world.active_loan()
    LedgerService(world.ledger).deposit("acc-cust-1", 1_000, "EUR", transfer_id="top-up")
    world.business_date = FIRST_DUE
    world.repay(loan_id, "17.25", key="r-1")
    repayment_id = world.loan(loan_id)["transactions"][1]["transfer_id"]
    world.business_date = date(2024, 4, 20)
    write_off(world, loan_id)

    reply = reverse(world, loan_id, repayment_id)

    assert reply.status == 200, reply.body
    assert reply.json()["status"] == "written_off"
    assert balances(world) == (11_000, 0, 0, -10_000)


def test_a_write_off_on_the_day_of_a_repayment_waits_for_the_days_close(world):
    loan_id = world.active_loan()
    world.business_date = FIRST_DUE
    world.repay(loan_id, "17.25", key="r-1")

    today = write_off(world, loan_id)
    world.business_date = date(2024, 2, 2)
    tomorrow = write_off(world, loan_id)

    assert today.status == 409 and today.json()["code"] == "loan_busy"
    assert tomorrow.status == 200 and balances(world)[1:] == (0, 100, -8_375)
