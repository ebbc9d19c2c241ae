"""Repayments of a disbursed loan through the loans function, on fakes and the reference ledger: partial,
exact and more than due (refused, or prepaid for a smaller installment, per product), allocated by the
product's order oldest installment first; each a ledger transaction carrying the loan's change
(principal back to sys-loans-<CUR>, interest to sys-fees-<CUR>); the payoff quote; standing; refusals
naming the field."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from finfaas.services.ledger.service import LedgerService
from finfaas_dev.testing.platform import call
from support.loans_world import PRODUCT, LoansWorld

# 100.00 at 12 % over 6 months, 30/360, disbursed 2024-01-01: 17.25 x 5 then 17.28; January's interest 1.00.
FIRST_DUE = date(2024, 2, 1)


@pytest.fixture
def world() -> LoansWorld:
    return LoansWorld()


def ledger_changes(world: LoansWorld) -> tuple[int, int, int]:
    return (world.account_minor("acc-cust-1"), world.account_minor("sys-loans-EUR"),
            world.account_minor("sys-fees-EUR"))


def test_an_exact_repayment_on_the_due_date_pays_the_first_installment_interest_first(world):
    loan_id = world.active_loan()
    world.business_date = FIRST_DUE

    reply = world.repay(loan_id, "17.25", key="r-1")

    assert reply.status == 200, reply.body
    first = reply.json()["schedule"][0]
    paid = (first["paid_interest_minor"], first["paid_principal_minor"], first["owed_minor"])
    assert paid == (100, 1625, 0)
    assert reply.json()["outstanding_minor"] == 10_353 - 1_725
    assert reply.json()["transactions"][-1]["kind"] == "repayment"
    # the wallet paid 17.25: 16.25 of principal back to the funding account, 1.00 of interest to income
    assert ledger_changes(world) == (10_000 - 1_725, -10_000 + 1_625, 100)
    assert world.event_types(loan_id)[-1] == "loan.repaid"


def test_the_same_key_again_answers_the_loan_and_moves_nothing_more(world):
    loan_id = world.active_loan()
    world.business_date = FIRST_DUE
    first = world.repay(loan_id, "17.25", key="r-1")

    again = world.repay(loan_id, "17.25", key="r-1")

    assert again.status == 200 and again.json()["outstanding_minor"] == first.json()["outstanding_minor"]
    assert ledger_changes(world)[0] == 10_000 - 1_725


def test_a_partial_repayment_goes_to_interest_before_principal(world):
    loan_id = world.active_loan()
    world.business_date = FIRST_DUE

    first = world.repay(loan_id, "0.50").json()["schedule"][0]

    assert (first["paid_interest_minor"], first["paid_principal_minor"], first["owed_minor"]) == (50, 0, 1675)


def test_more_than_is_due_is_refused_on_a_product_that_refuses_overpayments_and_nothing_moves(world):
    loan_id = world.active_loan()
    world.business_date = FIRST_DUE

    reply = world.repay(loan_id, "17.26")
    world.business_date = date(2024, 1, 15)
    before_due = world.repay(loan_id, "1.00")

    assert reply.status == 422 and reply.json()["code"] == "repayment_exceeds_due"
    assert [e["field"] for e in reply.json()["errors"]] == ["amount"]
    assert before_due.status == 422  # nothing is due before the first due date
    assert ledger_changes(world) == (10_000, -10_000, 0)
    assert world.loan(loan_id)["outstanding_minor"] == 10_353


def prepaying_product_loan(world: LoansWorld) -> str:
    """An active loan of a product that prepays overpayments (created by an operator)."""
    body = {**PRODUCT, "product_id": "prepay-eur", "overpayment": "prepay"}
    created = call(world.handler.handle, "POST", "/_/ops/loan-products", token=world.operator,
                   headers={"Idempotency-Key": "p-prepay"}, json_body=body)
    assert created.status == 201, created.body
    return world.active_loan(product_id="prepay-eur")


def test_an_overpayment_prepays_for_a_smaller_installment_on_a_prepaying_product(world):
    loan_id = prepaying_product_loan(world)
    world.business_date = FIRST_DUE

    reply = world.repay(loan_id, "37.25")  # the first installment, and 20.00 of principal ahead

    assert reply.status == 200, reply.body
    schedule = reply.json()["schedule"]
    assert len(schedule) == 6 and schedule[0]["owed_minor"] == 0
    rest = [i["total_minor"] for i in schedule[1:]]
    assert all(total < 1725 for total in rest)  # the same term, each installment smaller
    assert sum(i["principal_minor"] for i in schedule) == 10_000 - 2_000
    assert schedule[-1]["balance_minor"] == 0
    assert ledger_changes(world) == (10_000 - 3_725, -10_000 + 1_625 + 2_000, 100)


@pytest.mark.parametrize("pay", ["repay", "prepay"])
def test_a_payment_reads_the_business_date_once_and_the_product_once_per_instance(world, pay):
    # Each read is a GetItem in the function: the date is the request's own; the product's terms never
    # change in place, so an instance that read them once reads them no more
    loan_id = prepaying_loan(world)
    world.business_date_reads = world.products.reads = 0

    if pay == "repay":
        reply = world.repay(loan_id, "17.25")
    else:
        reply = world.prepay(loan_id, "47.25", "shorter_term")

    assert reply.status == 200, reply.body
    assert world.business_date_reads == 1 and world.products.reads <= 1
    product_reads = world.products.reads

    assert world.repay(loan_id, "1.00").status == 200
    assert (world.business_date_reads, world.products.reads) == (2, product_reads)


def test_more_than_the_wallet_holds_is_a_422_naming_the_amount(world):
    loan_id = world.active_loan()
    world.business_date = date(2024, 7, 1)  # every installment due: 103.53, the wallet holds 100.00

    reply = world.repay(loan_id, "103.53")

    assert reply.status == 422 and [e["field"] for e in reply.json()["errors"]] == ["amount"]
    assert ledger_changes(world) == (10_000, -10_000, 0)


def test_a_loan_paid_in_full_closes_and_takes_no_more_repayments(world):
    loan_id = world.active_loan()
    LedgerService(world.ledger).deposit("acc-cust-1", 1_000, "EUR", transfer_id="top-up")
    world.business_date = date(2024, 7, 1)  # every installment due
    owed = world.loan(loan_id)["outstanding_minor"]

    paid = world.repay(loan_id, owed)
    more = world.repay(loan_id, 1)

    assert paid.status == 200 and paid.json()["status"] == "closed" and paid.json()["outstanding_minor"] == 0
    assert more.status == 409 and more.json()["code"] == "loan_not_repayable"
    assert [e["field"] for e in more.json()["errors"]] == ["status"]
    assert world.account_minor("sys-loans-EUR") == 0  # every cent of principal came back


def test_an_overdue_loan_shows_its_days_past_due_and_bucket(world):
    loan_id = world.active_loan()
    world.business_date = date(2024, 2, 20)

    body = world.loan(loan_id)

    assert (body["days_past_due"], body["bucket"]) == (19, "11-30")


def test_the_payoff_quote_counts_interest_to_the_date(world):
    loan_id = world.active_loan()

    reply = call(world.handler.handle, "GET", f"/loans/{loan_id}/payoff", token=world.customer,
                 query={"on": "2024-01-16"})

    assert reply.status == 200, reply.body
    # 30/360: 15 of January's 30 days of 1.00 of interest
    assert (reply.json()["principal_minor"], reply.json()["interest_minor"], reply.json()["total_minor"]) == (
        10_000, 50, 10_050)


@pytest.mark.parametrize(("amount", "currency", "field"), [
    ("-1.00", "EUR", "amount"),
    ("1.001", "EUR", "amount"),
    (0, "EUR", "amount"),
    ("1.00", "USD", "currency"),
])
def test_a_bad_repayment_is_a_422_naming_the_field_and_moves_nothing(world, amount, currency, field):
    loan_id = world.active_loan()
    world.business_date = FIRST_DUE

    reply = world.repay(loan_id, amount, currency=currency)

    assert reply.status == 422, reply.body
    assert field in {e["field"] for e in reply.json()["errors"]}
    assert ledger_changes(world) == (10_000, -10_000, 0)


def test_another_customers_loan_is_a_404(world):
    loan_id = world.active_loan()
    other = world.minter.mint("cust-2", ["loans:read", "loans:write"])

    assert world.repay(loan_id, "1.00", token=other).status == 404
    assert call(world.handler.handle, "GET", f"/loans/{loan_id}/payoff", token=other).status == 404


def test_two_repayments_of_one_loan_at_once_are_both_applied_once(world):
    loan_id = world.active_loan()
    world.business_date = date(2024, 3, 1)  # two installments due
    replies = []

    def repay(key: str) -> None:
        replies.append(world.repay(loan_id, "17.25", key=key))

    threads = [threading.Thread(target=repay, args=(f"r-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(r.status for r in replies) == [200, 200]
    schedule = world.loan(loan_id)["schedule"]
    assert [i["owed_minor"] for i in schedule[:2]] == [0, 0]
    assert world.account_minor("acc-cust-1") == 10_000 - 2 * 1_725
    assert len(world.loan(loan_id)["transactions"]) == 3


def pay_off(world: LoansWorld, loan_id: str, amount, key: str = "payoff-1") -> object:
    return call(world.handler.handle, "POST", f"/loans/{loan_id}/payoff", token=world.customer,
                headers={"Idempotency-Key": key}, json_body={"amount": amount, "currency": "EUR"})


def test_paying_off_mid_period_charges_interest_to_the_date_and_closes_the_loan(world):
    loan_id = world.active_loan()
    LedgerService(world.ledger).deposit("acc-cust-1", 1_000, "EUR", transfer_id="top-up")
    world.business_date = date(2024, 1, 16)

    wrong = pay_off(world, loan_id, "100.00", key="payoff-0")
    paid = pay_off(world, loan_id, "100.50")  # 100.00 and 15 days of January's 1.00 of interest
    again = pay_off(world, loan_id, "100.50")

    assert wrong.status == 422 and [e["field"] for e in wrong.json()["errors"]] == ["amount"]
    assert paid.status == 200, paid.body
    body = paid.json()
    assert (body["status"], body["outstanding_minor"]) == ("closed", 0)
    # the schedule stays as disbursed; later periods' interest is waived, not paid and not owed
    assert [i["paid_interest_minor"] for i in body["schedule"]] == [50, 0, 0, 0, 0, 0]
    assert [i["owed_minor"] for i in body["schedule"]] == [0] * 6
    assert sum(i["paid_principal_minor"] for i in body["schedule"]) == 10_000
    assert body["transactions"][-1]["kind"] == "prepayment"
    assert again.status == 200 and again.json()["outstanding_minor"] == 0
    assert ledger_changes(world) == (11_000 - 10_050, 0, 50)


def test_a_payoff_adds_the_products_prepayment_penalty_on_principal_not_yet_due(world):
    body = {**PRODUCT, "product_id": "penalty-eur", "prepayment_penalty_rate": "0.02"}
    call(world.handler.handle, "POST", "/_/ops/loan-products", token=world.operator,
         headers={"Idempotency-Key": "p-3"}, json_body=body)
    loan_id = world.active_loan(product_id="penalty-eur")
    LedgerService(world.ledger).deposit("acc-cust-1", 1_000, "EUR", transfer_id="top-up")
    world.business_date = date(2024, 1, 16)

    quote = call(world.handler.handle, "GET", f"/loans/{loan_id}/payoff", token=world.customer).json()
    paid = pay_off(world, loan_id, quote["total_minor"])

    assert (quote["prepayment_penalty_minor"], quote["total_minor"]) == (200, 10_250)
    assert paid.json()["status"] == "closed"
    assert ledger_changes(world) == (11_000 - 10_250, 0, 250)


def penalty_loan(world: LoansWorld) -> str:
    """An active loan of a product charging 0.1 % a day on overdue principal."""
    product = {**PRODUCT, "product_id": "penalty-eur", "daily_penalty_rate": "0.001"}
    created = call(world.handler.handle, "POST", "/_/ops/loan-products", token=world.operator,
                   headers={"Idempotency-Key": "p-penalty"}, json_body=product)
    assert created.status == 201, created.body
    return world.active_loan(product_id="penalty-eur")


def test_a_late_repayment_pays_the_penalty_the_closed_days_accrued_and_is_stored_as_its_fold(world):
    # GIVEN the first installment (16.25 of principal) 10 days overdue on a penalty product
    loan_id = penalty_loan(world)
    world.business_date = date(2024, 2, 11)

    # WHEN the customer pays the installment
    reply = world.repay(loan_id, "17.25", key="late-1")

    # THEN the penalty of the days before comes first, and the stored loan is its transactions' replay
    assert reply.status == 200, reply.body
    first = reply.json()["schedule"][0]
    assert first["paid_penalty_minor"] > 0 and first["owed_minor"] == first["paid_penalty_minor"]
    stored = world.loans.get_loan(loan_id)
    product = world.handler.services.get().products.product("penalty-eur")
    assert stored.stored_like(stored.account(product))
    assert stored.figures.closed_through == date(2024, 2, 10)


# --- partial prepayment ---------------------------------------------------------------------------

SECOND_DUE = date(2024, 3, 1)


def prepaying_loan(world: LoansWorld) -> str:
    """A loan of a product that prepays overpayments, its first installment repaid on its due date."""
    loan_id = prepaying_product_loan(world)
    world.business_date = FIRST_DUE
    assert world.repay(loan_id, "17.25").status == 200
    world.business_date = SECOND_DUE
    return loan_id


def test_a_partial_prepayment_for_a_shorter_term_keeps_the_installment_and_ends_sooner(world):
    # GIVEN installment 1 repaid; on installment 2's due date 17.25 is due and the balance after it 67.34
    loan_id = prepaying_loan(world)

    # WHEN the customer pays 47.25 asking for a shorter term: 17.25 due, 30.00 prepaid
    reply = world.prepay(loan_id, "47.25", "shorter_term", key="pp-1")

    # THEN (tests/unit/domain/test_loans.py works it) 37.34 left at 17.25 a month: 17.25, 17.25, 3.44
    assert reply.status == 200, reply.body
    schedule = reply.json()["schedule"]
    assert [i["total_minor"] for i in schedule] == [1725, 1725, 1725, 1725, 344]
    assert [i["owed_minor"] for i in schedule[:2]] == [0, 0]
    assert sum(i["principal_minor"] for i in schedule) == 10_000 - 3_000
    assert schedule[-1]["balance_minor"] == 0
    assert reply.json()["transactions"][-1] | {"transfer_id": ""} == {
        "kind": "prepayment", "transfer_id": "", "on": "2024-03-01", "amount_minor": 4_725, "reverses": None,
        "mode": "shorter_term"}
    # principal of #1 (16.25), #2 (16.41) and the 30.00 prepaid back to funding; interest 1.00 + 0.84
    assert ledger_changes(world) == (10_000 - 1_725 - 4_725, -10_000 + 1_625 + 1_641 + 3_000, 100 + 84)


def test_a_partial_prepayment_for_a_smaller_installment_keeps_the_term(world):
    loan_id = prepaying_loan(world)

    reply = world.prepay(loan_id, "47.25", "smaller_installment")
    again = world.prepay(loan_id, "10.00", "smaller_installment", key="pp-2")

    # 37.34 over the 4 months left at 1 %: 9.57 three times, then 9.56
    assert reply.status == 200, reply.body
    assert [i["total_minor"] for i in reply.json()["schedule"]][2:] == [957, 957, 957, 956]
    # a second prepayment with nothing due prepays all of it: 27.34 over 4 months, each smaller again
    assert again.status == 200, again.body
    assert all(i["total_minor"] < 957 for i in again.json()["schedule"][2:])
    assert world.account_minor("sys-loans-EUR") == -10_000 + 1_625 + 1_641 + 3_000 + 1_000


def test_the_same_prepayment_key_again_prepays_once(world):
    loan_id = prepaying_loan(world)
    first = world.prepay(loan_id, "47.25", "shorter_term", key="pp-1")

    again = world.prepay(loan_id, "47.25", "shorter_term", key="pp-1")

    assert again.status == 200 and again.json()["schedule"] == first.json()["schedule"]
    assert ledger_changes(world)[0] == 10_000 - 1_725 - 4_725


def test_a_prepayment_is_refused_where_the_product_refuses_overpayments_and_nothing_moves(world):
    loan_id = world.active_loan()  # PRODUCT refuses overpayments
    world.business_date = FIRST_DUE

    reply = world.prepay(loan_id, "37.25", "shorter_term")

    assert reply.status == 422 and reply.json()["code"] == "repayment_exceeds_due", reply.body
    assert [e["field"] for e in reply.json()["errors"]] == ["amount"]
    assert ledger_changes(world) == (10_000, -10_000, 0)


@pytest.mark.parametrize(("amount", "mode", "field"), [
    ("17.25", "shorter_term", "amount"),  # only what is due: a repayment, not a prepayment
    ("84.59", "smaller_installment", "amount"),  # everything left: a payoff
    ("47.25", "sooner", "mode"),
])
def test_a_prepayment_that_prepays_nothing_or_everything_is_a_422_naming_the_field(world, amount, mode,
                                                                                   field):
    loan_id = prepaying_loan(world)
    before = ledger_changes(world)

    reply = world.prepay(loan_id, amount, mode)

    assert reply.status == 422, reply.body
    assert [e["field"] for e in reply.json()["errors"]] == [field]
    assert ledger_changes(world) == before


def test_a_repayment_from_a_frozen_wallet_is_a_409_naming_the_account_state_and_moves_nothing(world):
    # GIVEN an installment due and the customer's wallet frozen after the loan was disbursed
    from finfaas.services.ledger.service import LedgerService

    loan_id = world.active_loan()
    world.business_date = FIRST_DUE
    LedgerService(world.ledger).freeze("acc-cust-1")
    before = ledger_changes(world)

    # WHEN the customer repays from it
    reply = world.repay(loan_id, "17.25", key="r-frozen")

    # THEN the ledger's refusal is answered as the ledger function answers it, not as a server error
    assert (reply.status, reply.json()["code"]) == (409, "account_frozen"), reply.body
    assert ledger_changes(world) == before and world.event_types(loan_id)[-1] != "loan.repaid"
