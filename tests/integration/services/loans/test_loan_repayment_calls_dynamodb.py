"""A repayment through the loans function on DynamoDB Local: the reads, then one TransactWriteItems
carrying the ledger legs, the loan's conditional put, the Idempotency-Key's record and the audit facts;
the same key again repays once, also when the transaction's answer was lost; a refusal moves nothing."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ConnectionClosedError
from finfaas.domain.ledger import NewAccount
from finfaas.services.business_date.model import DEFAULT_MARKET, mode_from_env
from finfaas.services.business_date.service import BusinessDateService
from finfaas.services.ledger.service import LedgerService
from finfaas.services.loans.api import ProductBody
from finfaas.services.loans.model import LoanApplication
from finfaas.services.loans.service import (
    Caller,
    LedgerAccounts,
    LoanApplicationService,
    LoanDisbursementService,
    LoanProductsService,
    LoanQuoteService,
    LoanRepaymentService,
)
from finfaas.store.business_date_store import BusinessDateStore
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas.store.loans_store import LoansStore
from finfaas_dev.fakes.loans import FakeBureau, FakeRisk
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler
from support.loans_world import FakeOrchestrator

pytestmark = pytest.mark.emulator

CUSTOMER = "cust-1"  # a clean sandbox bureau file
# The goal of the repayment path: reads (the loan, its product, the business date), one transaction.
REPAYMENT_TRANSACTIONS = 1
DAYS_SINCE_DISBURSEMENT = 35  # one installment due on the repayment's business date


class LoansFunction:
    """The loans function's handler on this stage's tables, with a loan disbursed to a customer."""

    def __init__(self) -> None:
        self.module = load_function_handler("loans")
        minter = TokenMinter.generate()
        self.module.verifier.use(minter.verifier())
        self.token = minter.mint(CUSTOMER, ["loans:read", "loans:write"])
        self.services = self.module.build_services(suite=object())
        self.module.services.use(self.services)
        self.ledger_store = ledger_store_from_config()
        self.ledger = LedgerAccounts(LedgerService(self.ledger_store))
        self.ledger.ledger.ensure_system_accounts("USD")
        store = LoansStore()
        dates = BusinessDateService(BusinessDateStore(), mode_from_env())
        today = dates.current(DEFAULT_MARKET).business_date
        disbursed_on = today - timedelta(days=DAYS_SINCE_DISBURSEMENT)
        product_id = f"p-{secrets.token_hex(4)}"
        LoanProductsService(store).create(ProductBody(
            product_id=product_id, name="Personal loan", currency="USD", principal_minor_min=10_000,
            principal_minor_max=5_000_000, term_months_min=3, term_months_max=60,
            annual_rate="0.12").to_product)
        self.account_id = f"acc-{secrets.token_hex(6)}"
        self.ledger_store.open_account(NewAccount(self.account_id, CUSTOMER, "USD"), datetime.now(UTC))
        quotes = LoanQuoteService(store, lambda: disbursed_on)
        applications = LoanApplicationService(store, store, self.ledger, quotes, FakeRisk(), FakeBureau(),
                                              orchestrator=FakeOrchestrator())
        loan, _ = applications.apply(Caller(CUSTOMER, "customer"), secrets.token_hex(8), LoanApplication(
            product_id, "1000.00", 6, self.account_id, "3000.00", "0"))
        LoanDisbursementService(store, store, self.ledger, lambda: disbursed_on, orchestrator=None).disburse(
            loan.loan_id)
        self.loan_id = loan.loan_id
        self.store = store

    def repay(self, key: str, amount: str = "1.00", currency: str = "USD"):
        return call(self.module.handle, "POST", f"/loans/{self.loan_id}/repayments", token=self.token,
                    headers={"Idempotency-Key": key}, json_body={"amount": amount, "currency": currency})

    def calls(self, before: dict[str, int]) -> dict[str, int]:
        after = self.services.dynamodb_calls()
        return {name: after[name] - before.get(name, 0) for name in after
                if after[name] != before.get(name, 0)}

    def repayments(self) -> list[str]:
        loan = self.store.get_loan(self.loan_id)
        assert loan is not None
        return [t.transaction_id for t in loan.transactions if t.kind.value == "repayment"]

    def wallet_minor(self) -> int:
        account = self.ledger.account(self.account_id)
        assert account is not None
        return account.balance_minor


@pytest.fixture
def loans(embedded_aws) -> LoansFunction:
    return LoansFunction()


def test_a_repayment_is_one_transaction_with_its_key_and_audit_and_one_read_of_the_loan(loans):
    assert loans.repay(secrets.token_hex(8)).status == 200  # a warm instance: the product's terms are kept
    before = loans.services.dynamodb_calls()

    reply = loans.repay(secrets.token_hex(8))

    calls = loans.calls(before)
    assert reply.status == 200, reply.body
    assert calls.pop("TransactWriteItems (transaction)") == REPAYMENT_TRANSACTIONS
    assert calls.pop(f"GetItem {loans.store.table_name}") == 1  # the loan; not its product again
    # the key's record and the audit facts ride in the transaction: no write of their own; what is left
    # is the business date's read and at most a rate-limit lease
    assert not any("idempotency" in name or "audit" in name for name in calls), calls
    assert all(name.endswith(("businessdates", "ratelimits")) for name in calls), calls
    outbox = [item for item in loans.ledger_store.models.outbox.scan() if item.audit
              and f"loan:{loans.loan_id}" in item.audit]
    assert len(outbox) == 2 and all("repay" in item.audit for item in outbox)


def test_the_same_key_again_repays_once_and_answers_as_the_first(loans):
    key = secrets.token_hex(8)
    first = loans.repay(key)
    wallet = loans.wallet_minor()

    again = loans.repay(key)

    assert (first.status, again.status) == (200, 200)
    assert again.header("Idempotency-Replayed") == "true"
    assert again.json() == first.json()
    assert len(loans.repayments()) == 1 and loans.wallet_minor() == wallet


def test_a_lost_transaction_answer_repays_once(loans):
    wallet = loans.wallet_minor()
    lost: list[str] = []

    def lose_first_commit(model, **_):
        # The transaction committed in DynamoDB; its answer never reaches the function.
        if model.name == "TransactWriteItems" and not lost:
            lost.append(model.name)
            raise ConnectionClosedError(endpoint_url="http://dynamodb.local (response lost)")

    # The function's repayments on a ledger store whose answers this test can lose.
    loans.module.services.use(replace(loans.services, repayments=LoanRepaymentService(
        loans.store, loans.store, loans.ledger, loans.services.repayments._business_date)))
    loans.ledger_store.register_hook("after-call.dynamodb", lose_first_commit)
    try:
        reply = loans.repay(secrets.token_hex(8))
    finally:
        loans.ledger_store.unregister_hook("after-call.dynamodb", lose_first_commit)

    assert lost and reply.status == 200, reply.body
    assert len(loans.repayments()) == 1
    assert loans.wallet_minor() == wallet - 100


def test_a_repayment_in_another_currency_is_refused_and_moves_nothing(loans):
    wallet = loans.wallet_minor()
    before = loans.services.dynamodb_calls()

    reply = loans.repay(secrets.token_hex(8), currency="EUR")

    assert reply.status == 422 and reply.json()["errors"][0]["field"] == "currency", reply.body
    assert "TransactWriteItems (transaction)" not in loans.calls(before)
    assert loans.repayments() == [] and loans.wallet_minor() == wallet
