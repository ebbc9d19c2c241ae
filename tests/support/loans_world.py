"""The loans function on in-memory fakes with the reference ledger, and an orchestrator deployment in
memory (the engine-process builder and crash hooks of support/workflow_testing) running the
disbursement saga against it through an in-process gateway."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from finfaas.domain.ledger import AccountKind, NewAccount
from finfaas.platform.audit import AuditLog
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.platform.ratelimit import RateLimiter
from finfaas.services.ledger.service import LedgerService
from finfaas.services.loans.ops import LoanOpsService
from finfaas.services.loans.service import (
    DISBURSEMENT_STATE_MACHINE,
    LoanApplicationService,
    LoanDisbursementService,
    LoanProductsService,
    LoanQuoteService,
    LoanRepaymentService,
)
from finfaas.workflow.asl import DefinitionRegistry, definitions_dir, load_definition_file
from finfaas.workflow.tasks import HttpTasks, ResourceRunner, TaskCall, TaskSubmitted
from finfaas_dev.fakes.loans import (
    FakeBureau,
    FakeRisk,
    InMemoryLoanProducts,
    InMemoryLoans,
    InMemoryLoansLedger,
)
from finfaas_dev.fakes.platform import InMemoryAuditStore, InMemoryIdempotencyStore, InMemoryRateLimitStore
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler
from finfaas_dev.testing.reference_model import ReferenceLedger
from finfaas_dev.testing.workflow import CrashAt

from support.saga_world import GATEWAY, InProcessGateway, StaticTokens
from support.workflow_testing import World

BUSINESS_DATE = date(2024, 1, 1)
OPENED = datetime(2024, 1, 1, tzinfo=UTC)
CUSTOMER = "cust-1"  # a clean sandbox bureau file
PRODUCT = {
    "product_id": "personal-eur", "name": "Personal loan", "currency": "EUR",
    "principal_minor_min": 10_000, "principal_minor_max": 5_000_000, "term_months_min": 3,
    "term_months_max": 60, "annual_rate": "0.12",
}
APPLICATION = {"product_id": "personal-eur", "principal": "100.00", "term_months": 6,
               "account_id": "acc-cust-1", "monthly_income": "3000.00"}


class FakeOrchestrator:
    """The orchestrator as the loans function calls it: records starts (state machine, name, input) and
    task reports; waits for the tokens in `waiting`, and takes one report per token (an equal one again)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, Any]] = []
        self.waiting: set[str] = set()
        self.reported: dict[str, Any] = {}
        self.heartbeats = 0

    def start(self, state_machine: str, name: str, input_value: Any, reference: str | None = None) -> dict:
        self.started.append((state_machine, name, input_value))
        return {"execution_id": f"{state_machine}:{name}"}

    def heartbeat(self, task_token: str) -> bool:
        self.heartbeats += 1
        return task_token in self.waiting

    def succeed(self, task_token: str, output: Any) -> None:
        from finfaas.services.suite_clients import TaskNotWaiting

        if self.reported.get(task_token, output) != output or (
                task_token not in self.waiting and task_token not in self.reported):
            raise TaskNotWaiting("task report refused: 409")
        self.reported[task_token] = output


class ReviewQueue:
    """The `loan-reviews` queue as the saga's AwaitReview sends to it: keeps each message, delivers none
    (no operator answers unless a test reports the task)."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def run(self, call: TaskCall) -> TaskSubmitted:
        self.sent.append(call.parameters)
        return TaskSubmitted()


class LoansWorld:
    """The loans handler on fakes and the reference ledger (a EUR wallet for the customer); with
    `orchestrator` None, an in-memory orchestrator deployment runs the saga (crashing at `crash`)."""

    def __init__(self, crash: CrashAt | None = None, duplicate_deliveries: bool = False) -> None:
        self.handler = load_function_handler("loans")
        self.minter = TokenMinter.generate()
        self.handler.verifier.use(self.minter.verifier())
        self.ledger = ReferenceLedger()
        ledger = LedgerService(self.ledger)
        ledger.ensure_system_accounts("EUR")
        self.ledger.open_account(NewAccount("acc-cust-1", CUSTOMER, "EUR", AccountKind.CUSTOMER), OPENED)
        products, self.loans = InMemoryLoanProducts(), InMemoryLoans()
        self.products = products
        self.business_date = BUSINESS_DATE
        self.business_date_reads = 0  # each is a GetItem of the business-dates table in the function
        quotes = LoanQuoteService(products, lambda: self.business_date)
        money = InMemoryLoansLedger(ledger, self.loans)
        self.orchestrator = FakeOrchestrator()
        self.bureau = FakeBureau()
        repayments = LoanRepaymentService(products, self.loans, money, self._read_business_date)
        self.products = products
        self.handler.services.use(self.handler.LoansServices(
            products=LoanProductsService(products), quotes=quotes,
            applications=LoanApplicationService(products, self.loans, money, quotes, FakeRisk(),
                                                self.bureau, orchestrator=self.orchestrator),
            disbursements=LoanDisbursementService(products, self.loans, money, lambda: self.business_date,
                                                  self.orchestrator),
            repayments=repayments,
            guard=IdempotencyGuard(InMemoryIdempotencyStore(), "loans"),
            limiter=RateLimiter(InMemoryRateLimitStore(), self.handler.LIMITS),
            audit=AuditLog(InMemoryAuditStore(), "loans"), probe=lambda: None,
            ops=LoanOpsService(products, self.loans, money, lambda: self.business_date, repayments)))
        self.operator = self.minter.mint("ops-console", ["ops", "ops:act"], kind="client")
        self.customer = self.minter.mint(CUSTOMER, ["loans:read", "loans:write"])
        created = call(self.handler.handle, "POST", "/_/ops/loan-products", token=self.operator,
                       headers={"Idempotency-Key": "p-1"}, json_body=PRODUCT)
        assert created.status == 201, created.body
        gateway = InProcessGateway(on_orchestrator_crash=lambda: None)
        gateway.handlers["loans"] = self.handler
        token = self.minter.mint("orchestrator", ["loans:saga"], kind="client")
        definitions = DefinitionRegistry([load_definition_file(
            definitions_dir() / f"{DISBURSEMENT_STATE_MACHINE}.asl.json")])
        self.reviews = ReviewQueue()
        tasks = ResourceRunner(HttpTasks(GATEWAY, StaticTokens(token), request=gateway.request), self.reviews)
        self.engine = World(definitions, tasks, crash=crash, duplicate_deliveries=duplicate_deliveries)

    def _read_business_date(self) -> date:
        self.business_date_reads += 1
        return self.business_date

    def approved_loan(self, **changes: Any) -> str:
        reply = call(self.handler.handle, "POST", "/loans", token=self.customer,
                     headers={"Idempotency-Key": uuid.uuid4().hex}, json_body={**APPLICATION, **changes})
        assert reply.status == 201 and reply.json()["status"] == "approved", reply.body
        return str(reply.json()["loan_id"])

    def accept(self, loan_id: str) -> Any:
        return call(self.handler.handle, "POST", f"/loans/{loan_id}/disburse", token=self.customer)

    def run_saga(self, loan_id: str) -> str:
        """The execution the loans function asked for, started and run in the orchestrator in memory."""
        [(state_machine, name, input_value)] = [s for s in self.orchestrator.started if s[1] == loan_id][:1]
        started = self.engine.start(state_machine, name, input_value)
        self.engine.run()
        return str(started.execution.execution_id)

    def wallet_minor(self) -> int:
        return self.ledger.accounts["acc-cust-1"].balance_minor

    def disbursements(self, loan_id: str) -> list[str]:
        return [t for t in self.ledger.transfers if t.startswith(loan_id)]

    def event_types(self, loan_id: str) -> list[str]:
        return [event.type for subject, _, event in self.loans.events if subject == loan_id]

    def active_loan(self, **changes: Any) -> str:
        """An approved loan, accepted and disbursed by the saga."""
        loan_id = self.approved_loan(**changes)
        self.accept(loan_id)
        self.run_saga(loan_id)
        return loan_id

    def repay(self, loan_id: str, amount: Any, key: str | None = None, currency: str = "EUR",
              token: str | None = None) -> Any:
        return call(self.handler.handle, "POST", f"/loans/{loan_id}/repayments", token=token or self.customer,
                    headers={"Idempotency-Key": key or uuid.uuid4().hex},
                    json_body={"amount": amount, "currency": currency})

    def prepay(self, loan_id: str, amount: Any, mode: str, key: str | None = None,
               currency: str = "EUR") -> Any:
        return call(self.handler.handle, "POST", f"/loans/{loan_id}/prepayments", token=self.customer,
                    headers={"Idempotency-Key": key or uuid.uuid4().hex},
                    json_body={"amount": amount, "currency": currency, "mode": mode})

    def loan(self, loan_id: str) -> dict[str, Any]:
        reply = call(self.handler.handle, "GET", f"/loans/{loan_id}", token=self.customer)
        assert reply.status == 200, reply.body
        body: dict[str, Any] = reply.json()
        return body

    def account_minor(self, account_id: str) -> int:
        return self.ledger.accounts[account_id].balance_minor
