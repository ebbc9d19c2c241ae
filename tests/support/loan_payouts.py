"""Loans disbursed to a bank account through the rail: the loans function joins the suite of
support/saga_world.py (orchestrator, rail sandbox, ledger, in-process gateway, crash points), in memory or
on the DynamoDB stores, with a USD product and a clean bureau; the paths with money at stake and what each
must leave behind."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.services.ledger.service import LedgerService
from finfaas.services.loans.model import Loan
from finfaas.services.loans.service import (
    DISBURSEMENT_STATE_MACHINE,
    LedgerAccounts,
    LoanApplicationService,
    LoanDisbursementService,
    LoanProductsService,
    LoanQuoteService,
    LoanRepaymentService,
)
from finfaas.services.suite_clients import OrchestratorClient, SuiteClient
from finfaas.workflow.model import Status
from finfaas_dev.fakes.loans import FakeRisk, InMemoryLoanProducts, InMemoryLoans, InMemoryLoansLedger
from finfaas_dev.loans_check import check, transfer_reader
from finfaas_dev.testing.platform import load_function_handler

from support.saga_world import GATEWAY, FakeResponse, SagaWorld, StaticTokens

BUSINESS_DATE = date(2024, 1, 1)
PRINCIPAL_MINOR = 10_000
FUNDING = system_account_id(AccountKind.LOANS, "USD")
CLEARING = system_account_id(AccountKind.SETTLEMENT, "USD")  # the rail's side of the ledger
LOANS_SCOPES = ("orchestrator:start", "orchestrator:read")
# The sandbox's test account numbers decide the rail's answer (services/rail/service.py).
SETTLES, REJECTED, NOTICE_LOST, STUCK = "12345678", "99990001", "99990002", "99990003"
LEDGER_SUFFIXES = ("disbursement-hold", "disbursement", "disbursement-void")


class CleanBureau:
    """A bureau whose every file is clean: the sandbox's derivation would send one prefixed customer in
    ten to an operator, and these tests are about the money after approval."""

    def report(self, customer_id: str, inquiry_id: str) -> dict[str, Any]:
        return {"customer_id": customer_id, "inquiry_id": inquiry_id, "score": 800, "delinquencies": 0,
                "open_accounts": 1}


@dataclass(frozen=True)
class PayoutScenario:
    account_number: str
    status: str
    execution_status: Status
    paid: bool  # the principal left the funding account for the bank account
    ledger_steps: frozenset[str]


SCENARIOS = {
    "bank-settled": PayoutScenario(SETTLES, "active", Status.SUCCEEDED, True,
                                   frozenset({"disbursement-hold", "disbursement"})),
    "bank-rejected": PayoutScenario(REJECTED, "disbursement_failed", Status.FAILED, False,
                                    frozenset({"disbursement-hold", "disbursement-void"})),
    "bank-stuck-recalled": PayoutScenario(STUCK, "disbursement_failed", Status.FAILED, False,
                                          frozenset({"disbursement-hold", "disbursement-void"})),
    "bank-notice-lost-recalled": PayoutScenario(NOTICE_LOST, "active", Status.SUCCEEDED, True,
                                                frozenset({"disbursement-hold", "disbursement"})),
}


class LoanPayouts:
    """The loans function wired into a SagaWorld: `loans` is the in-memory store (default) or the
    DynamoDB LoansStore (which is its product repository too)."""

    def __init__(self, world: SagaWorld, loans: Any = None) -> None:
        self.world = world
        self.loans = loans if loans is not None else InMemoryLoans()
        in_memory = isinstance(self.loans, InMemoryLoans)
        self.products = InMemoryLoanProducts() if in_memory else self.loans
        service = LedgerService(world.ledger, clock=world.clock.utc)
        money = InMemoryLoansLedger(service, self.loans) if in_memory else LedgerAccounts(service)
        self.money = money
        self.reader = transfer_reader(service)
        module = load_function_handler("loans")
        module.verifier.use(world.minter.verifier())
        world.gateway.handlers["loans"] = module
        client = SuiteClient(GATEWAY, StaticTokens(world.token("loans", LOANS_SCOPES)),
                             request=world.gateway.request)
        quotes = LoanQuoteService(self.products, lambda: BUSINESS_DATE)
        self.disbursements = LoanDisbursementService(self.products, self.loans, money, lambda: BUSINESS_DATE,
                                                     OrchestratorClient(client), clock=world.clock.utc)
        module.services.use(module.LoansServices(
            products=LoanProductsService(self.products), quotes=quotes,
            applications=LoanApplicationService(self.products, self.loans, money, quotes, FakeRisk(),
                                                CleanBureau(), orchestrator=OrchestratorClient(client),
                                                clock=world.clock.utc, vault=world.vault),
            disbursements=self.disbursements,
            repayments=LoanRepaymentService(self.products, self.loans, money, lambda: BUSINESS_DATE),
            guard=IdempotencyGuard(world.stores.idempotency(), "loans", clock=world.clock), limiter=None,
            audit=None, probe=lambda: None))
        self.product_id = f"{world.prefix}personal-usd"
        created = self._call("POST", "/_/ops/loan-products", world.token("ops-1", ("ops", "ops:act")),
                             {"product_id": self.product_id, "name": "Personal loan", "currency": "USD",
                              "principal_minor_min": 10_000, "principal_minor_max": 5_000_000,
                              "term_months_min": 3, "term_months_max": 60, "annual_rate": "0.12"},
                             {"Idempotency-Key": f"product-{self.product_id}"})
        assert created.status_code == 201, created.content
        self.customer = world.token(world.customer, ("loans:read", "loans:write"), kind="customer")

    def _call(self, method: str, path: str, token: str, body: Any = None,
              headers: dict[str, str] | None = None) -> FakeResponse:
        return self.world.gateway.call(method, "loans", path, body, token, headers)

    def application(self, account_number: str, **changes: Any) -> dict[str, Any]:
        return {"product_id": self.product_id, "principal": "100.00", "term_months": 6,
                "account_id": self.world.prefix + "acc-a", "monthly_income": "3000.00",
                "disburse_to": "bank_account",
                "bank_account": {"bank_code": "BANKUS33", "account_number": account_number,
                                 "name": "Ada Lovelace"}, **changes}

    def apply(self, body: dict[str, Any], key: str | None = None) -> FakeResponse:
        return self._call("POST", "/loans", self.customer, body, {"Idempotency-Key": key or uuid.uuid4().hex})

    def accept(self, loan_id: str) -> FakeResponse:
        """POST /loans/{id}/disburse, retried while the orchestrator crashes (its start answers 503)."""
        for _ in range(3):
            reply = self._call("POST", f"/loans/{loan_id}/disburse", self.customer)
            if reply.status_code != 503:
                return reply
        return reply

    def read(self, loan_id: str) -> FakeResponse:
        return self._call("GET", f"/loans/{loan_id}", self.customer)

    def run_scenario(self, scenario: str) -> str:
        """Apply (approved at once), accept, and run the suite until nothing is left to do."""
        applied = self.apply(self.application(SCENARIOS[scenario].account_number))
        assert applied.status_code == 201 and applied.json()["status"] == "approved", applied.content
        loan_id = str(applied.json()["loan_id"])
        accepted = self.accept(loan_id)
        assert accepted.status_code == 202, accepted.content
        self.world.run()
        return loan_id

    def loan(self, loan_id: str) -> Loan:
        loan = self.loans.get_loan(loan_id)
        assert loan is not None
        return loan

    def events(self, loan_id: str) -> Counter[str]:
        return Counter(event.type for subject, _, event in self.loans.events if subject == loan_id)

    def check(self, loan_id: str) -> list[str]:
        """`finfaas loans check` over this loan (the world's funding account moves for it alone)."""
        _, problems = check([self.loan(loan_id)], self.products.get, self.reader, self.money.account)
        return problems


@dataclass(frozen=True)
class Balances:
    funding: int
    clearing: int
    held: int

    @classmethod
    def of(cls, world: SagaWorld) -> Balances:
        return cls(world.balance(FUNDING), world.balance(CLEARING), world.held(FUNDING))


def assert_payout_outcome(payouts: LoanPayouts, loan_id: str, scenario: str, before: Balances,
                          events: Callable[[str], Counter[str]] | None = None) -> None:
    """Paid once (posted, the loan active with its schedule) or not at all (the hold voided, the funding
    account whole, the loan disbursement_failed with nothing owed); each ledger transfer made once, one
    event per change, no hold left."""
    expected, world = SCENARIOS[scenario], payouts.world
    loan = payouts.loan(loan_id)
    assert loan.status.value == expected.status
    assert world.execution_status(f"{DISBURSEMENT_STATE_MACHINE}:{loan_id}") is expected.execution_status
    paid = PRINCIPAL_MINOR if expected.paid else 0
    assert Balances.of(world) == Balances(before.funding - paid, before.clearing + paid, before.held)
    made = {s for s in LEDGER_SUFFIXES if world.ledger.get_transfer(f"{loan_id}-{s}") is not None}
    assert made == expected.ledger_steps
    if expected.paid:
        assert loan.disbursed_on == BUSINESS_DATE and len(loan.installments) == 6
        assert [t.transaction_id for t in loan.transactions] == [f"{loan_id}-disbursement"]
    else:
        assert (loan.disbursed_on, loan.installments, loan.transactions) == (None, (), ())
    final = "loan.disbursed" if expected.paid else "loan.disbursement_failed"
    written = (events or payouts.events)(loan_id)
    assert written == Counter({"loan.approved": 1, "loan.disbursement_started": 1, final: 1})
