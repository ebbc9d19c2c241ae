"""Loan applications and disbursements on DynamoDB Local: the wallet read from the ledger's store, the
loan and its outbox event written in one transaction, a key sent by two requests at once making one loan,
two disbursements of one loan at once moving the principal once, and two repayments at once both applied
once, each in the ledger's transaction with the loan's conditional put."""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, date, datetime

import pytest
from finfaas.domain.ledger import NewAccount
from finfaas.services.ledger.service import LedgerService
from finfaas.services.loans.api import ProductBody
from finfaas.services.loans.model import LoanApplication
from finfaas.services.loans.ops import LoanOpsService
from finfaas.services.loans.service import (
    Caller,
    LedgerAccounts,
    LoanApplicationService,
    LoanDisbursementService,
    LoanProductsService,
    LoanQuoteService,
    LoanRepaymentService,
)
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas.store.loans_store import OUTBOX_PRODUCER, LoansStore
from finfaas.store.outbox_store import OutboxStore, outbox_partition
from finfaas_dev.fakes.loans import FakeBureau, FakeRisk
from finfaas_dev.loans_check import check, transfer_reader
from support.loans_world import FakeOrchestrator

pytestmark = pytest.mark.emulator


@pytest.fixture
def world(embedded_aws):
    store = LoansStore()
    product_id = f"p-{secrets.token_hex(4)}"
    LoanProductsService(store).create(ProductBody(
        product_id=product_id, name="Personal loan", currency="USD", principal_minor_min=10_000,
        principal_minor_max=5_000_000, term_months_min=3, term_months_max=60, annual_rate="0.12").to_product)
    customer_id, account_id = "cust-1", f"acc-{secrets.token_hex(6)}"  # cust-1: a clean sandbox file
    ledger_store_from_config().open_account(NewAccount(account_id, customer_id, "USD"), datetime.now(UTC))
    quotes = LoanQuoteService(store, lambda: date(2026, 1, 5))
    ledger = LedgerAccounts(LedgerService(ledger_store_from_config()))
    ledger.ledger.ensure_system_accounts("USD")
    service = LoanApplicationService(store, store, ledger, quotes, FakeRisk(), FakeBureau(),
                                     orchestrator=FakeOrchestrator())
    application = LoanApplication(product_id, "1000.00", 6, account_id, "3000.00", "0")
    return service, store, Caller(customer_id, "customer"), application, ledger


def test_two_disbursements_of_one_loan_at_once_move_the_principal_once(world):
    service, store, caller, application, ledger = world
    loan, _ = service.apply(caller, secrets.token_hex(8), application)
    disbursements = LoanDisbursementService(store, store, ledger, lambda: date(2026, 1, 5), orchestrator=None)
    answers = []

    def disburse() -> None:
        answers.append(disbursements.disburse(loan.loan_id))

    threads = [threading.Thread(target=disburse) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [a.status.value for a in answers] == ["active", "active"]
    stored = store.get_loan(loan.loan_id)
    assert stored.disbursed_on == date(2026, 1, 5) and len(stored.installments) == 6
    assert ledger.account(application.account_id).balance_minor == 100_000
    assert ledger.ledger.get_transfer(loan.disbursement_transfer_id).amount_minor == 100_000
    events = OutboxStore().oldest(outbox_partition(OUTBOX_PRODUCER, loan.loan_id), 1000)
    assert [e.type for e in events if e.subject == loan.loan_id] == ["loan.approved", "loan.disbursed"]
    # and again, later: the active loan, nothing moved
    assert disbursements.disburse(loan.loan_id) == stored
    assert ledger.account(application.account_id).balance_minor == 100_000


def test_an_approved_loan_is_stored_with_its_event(world):
    service, store, caller, application, _ = world

    loan, repeated = service.apply(caller, secrets.token_hex(8), application)

    assert not repeated and loan.status.value == "approved"
    assert store.get_loan(loan.loan_id) == loan
    events = OutboxStore().oldest(outbox_partition(OUTBOX_PRODUCER, loan.loan_id), 1000)
    assert [e.type for e in events if e.subject == loan.loan_id] == ["loan.approved"]


def test_one_key_sent_twice_at_once_makes_one_loan(world):
    service, store, caller, application, _ = world
    key, answers = secrets.token_hex(8), []

    def apply() -> None:
        answers.append(service.apply(caller, key, application))

    threads = [threading.Thread(target=apply) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(answers) == 2 and answers[0][0] == answers[1][0]
    loan_id = answers[0][0].loan_id
    events = OutboxStore().oldest(outbox_partition(OUTBOX_PRODUCER, loan_id), 1000)
    assert [e.type for e in events if e.subject == loan_id] == ["loan.approved"]


def test_two_repayments_of_one_loan_at_once_are_both_applied_once(world):
    service, store, caller, application, ledger = world
    loan, _ = service.apply(caller, secrets.token_hex(8), application)
    loan = LoanDisbursementService(store, store, ledger, lambda: date(2026, 1, 5), orchestrator=None) \
        .disburse(loan.loan_id)
    second_due = loan.installments[1].due_on
    repayments = LoanRepaymentService(store, store, ledger, lambda: second_due)
    each = loan.installments[0].total_minor
    answers = []

    def repay(key: str) -> None:
        answers.append(repayments.repay(caller, loan.loan_id, key, each, "USD"))

    threads = [threading.Thread(target=repay, args=(secrets.token_hex(8),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(answers) == 2
    stored = store.get_loan(loan.loan_id)
    payments = [t.kind for t in stored.transactions if t.kind != "penalty_accrual"]  # not the close marker
    assert payments == ["disbursement", "repayment", "repayment"]
    assert [d.total_minor for d in stored.owed()[:2]] == [0, 0]
    assert ledger.account(application.account_id).balance_minor == 100_000 - 2 * each
    events = OutboxStore().oldest(outbox_partition(OUTBOX_PRODUCER, loan.loan_id), 1000)
    assert [e.type for e in events if e.subject == loan.loan_id].count("loan.repaid") == 2
    # and `finfaas loans check` over the table finds the loan equal to its replay and to the ledger
    _, problems = check(store.scan_loans(), store.get, transfer_reader(ledger.ledger), ledger.account)
    assert [p for p in problems if loan.loan_id in p] == []


def test_a_reversal_and_a_write_off_commit_with_the_loan_in_one_ledger_transaction(world):
    service, store, caller, application, ledger = world
    loan, _ = service.apply(caller, secrets.token_hex(8), application)
    loan = LoanDisbursementService(store, store, ledger, lambda: date(2026, 1, 5), orchestrator=None) \
        .disburse(loan.loan_id)
    first_due = loan.installments[0].due_on
    repayments = LoanRepaymentService(store, store, ledger, lambda: first_due)
    paid = repayments.repay(caller, loan.loan_id, secrets.token_hex(8), loan.installments[0].total_minor,
                            "USD").loan
    ops = LoanOpsService(store, store, ledger, lambda: first_due, repayments)

    reversed_loan = ops.reverse(loan.loan_id, paid.transactions[1].transaction_id, "bounced")
    written = ops.write_off(loan.loan_id, "insolvent")

    assert sum(d.total_minor for d in reversed_loan.owed()) == sum(i.total_minor for i in loan.installments)
    assert store.get_loan(loan.loan_id) == written and written.status.value == "written_off"
    assert ledger.account(application.account_id).balance_minor == 100_000
    _, problems = check(store.scan_loans(), store.get, transfer_reader(ledger.ledger), ledger.account)
    assert [p for p in problems if loan.loan_id in p] == []
