"""`finfaas loans check` over the loans function's fakes and the reference ledger: clean after
repayments, a reversal and a write-off, and with money in transit to a bank account; a tampered loan, a
lost ledger leg, a hold released behind its loan or a failed disbursement paid out is named."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from finfaas.domain.loans import Dues
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.ledger.service import LedgerService
from finfaas.services.loans.service import LedgerAccounts
from finfaas_dev.loans_check import check, transfer_reader
from finfaas_dev.testing.platform import call
from support.loans_world import LoansWorld


def run_check(world: LoansWorld) -> tuple[int, list[str]]:
    ledger = LedgerAccounts(LedgerService(world.ledger))
    return check(world.loans.scan_loans(), world.products.get, transfer_reader(ledger.ledger), ledger.account)


def busy_world() -> tuple[LoansWorld, list[str]]:
    """Three loans: one repaid twice with the first reversed, one written off, one untouched."""
    world = LoansWorld()
    reversed_loan, lost, untouched = (world.active_loan() for _ in range(3))
    world.business_date = date(2024, 2, 1)
    for loan_id, key in ((reversed_loan, "a"), (lost, "b")):
        assert world.repay(loan_id, "17.25", key=key).status == 200
    world.business_date = date(2024, 3, 1)
    assert world.repay(reversed_loan, "17.25", key="c").status == 200
    bounced = world.loan(reversed_loan)["transactions"][1]["transfer_id"]
    reply = call(world.handler.handle, "POST", f"/_/ops/loans/{reversed_loan}/repayments/{bounced}/reversal",
                 token=world.operator, json_body={"reason": "bounced"})
    assert reply.status == 200, reply.body
    reply = call(world.handler.handle, "POST", f"/_/ops/loans/{lost}/write-off", token=world.operator,
                 json_body={"reason": "insolvent"})
    assert reply.status == 200, reply.body
    return world, [reversed_loan, lost, untouched]


def test_loans_after_repayments_a_reversal_and_a_write_off_reconcile():
    world, _ = busy_world()

    checked, problems = run_check(world)

    assert (checked, problems) == (3, [])


def test_a_loan_whose_stored_figures_were_tampered_with_is_named():
    world, (_, _, untouched) = busy_world()
    stored = world.loans.get_loan(untouched)
    world.loans.tamper(replace(stored, paid=(Dues(0, 0, 0, 500),) + stored.paid[1:]))

    _, problems = run_check(world)

    assert problems == [f"loan {untouched}: stored figures differ from the replay of its transactions"]


def test_a_payment_leg_missing_from_the_ledger_is_named():
    world, (reversed_loan, _, _) = busy_world()
    later = world.loan(reversed_loan)["transactions"][2]["transfer_id"]
    assert world.loan(reversed_loan)["transactions"][2]["kind"] == "repayment"
    del world.ledger.transfers[f"{later}-principal"]

    _, problems = run_check(world)

    assert any(p.startswith(f"loan {reversed_loan}: transaction {later}'s ledger legs") for p in problems)


def test_money_moved_into_the_loans_funding_account_from_elsewhere_breaks_the_identity():
    world, _ = busy_world()
    LedgerService(world.ledger).transfer(TransferRequest("sys-funding-EUR", "sys-loans-EUR", 1, "EUR", "top"))

    _, problems = run_check(world)

    # outstanding principal: 100.00 untouched, 83.75 (the later payment took the reversed one's place)
    assert problems == ["account sys-loans-EUR: balance -18374, loans say -18375"]


def test_money_in_transit_to_a_bank_account_counts_once_and_a_hold_released_behind_its_loan_is_named():
    from support.loan_payouts import FUNDING, SETTLES, LoanPayouts
    from support.saga_world import SagaWorld

    # GIVEN a loan disbursing to a bank account: its principal held from the funding account
    payouts = LoanPayouts(SagaWorld())
    loan_id = payouts.apply(payouts.application(SETTLES)).json()["loan_id"]
    disbursing = payouts.disbursements.disburse(loan_id)
    clean = payouts.check(loan_id)
    # WHEN the hold is released while the loan still says it is disbursing
    ledger = LedgerService(payouts.world.ledger, clock=payouts.world.clock.utc)
    ledger.void_pending(disbursing.disbursement_hold_id)

    assert clean == []
    assert payouts.check(loan_id) == [f"account {FUNDING}: 0 held, loans disbursing say 10000"]


def test_a_loan_whose_failed_disbursement_was_paid_out_is_named():
    from finfaas.services.loans.model import LoanStatus
    from support.loan_payouts import LoanPayouts
    from support.saga_world import SagaWorld

    payouts = LoanPayouts(SagaWorld())
    loan_id = payouts.run_scenario("bank-settled")
    paid = payouts.loan(loan_id)
    payouts.loans.tamper(replace(paid, status=LoanStatus.DISBURSEMENT_FAILED, disbursed_on=None))

    problems = payouts.check(loan_id)

    assert f"loan {loan_id}: its disbursement failed, yet {loan_id}-disbursement paid it out" in problems
