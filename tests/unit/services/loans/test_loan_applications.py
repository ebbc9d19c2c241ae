"""Loan applications through the loans function's handle(event, context), over in-memory fakes: the
underwriting rules, the risk screen and the sandbox bureau deciding (each finding listed), the bureau down
(the product's waiver, or an operator's review), and what an applicant gets refused with nothing written."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from finfaas.domain.ledger import Account, AccountKind, AccountStatus
from finfaas.platform.audit import AuditLog
from finfaas.platform.events import EventMac
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.platform.ratelimit import RateLimiter
from finfaas.platform.resilience import CircuitBreaker
from finfaas.services.bureau.model import sandbox_report
from finfaas.services.loans.service import (
    LoanApplicationService,
    LoanDisbursementService,
    LoanProductsService,
    LoanQuoteService,
    LoanRepaymentService,
)
from finfaas.workflow.interpreter import task_token
from finfaas_dev.fakes.loans import FakeBureau, FakeRisk, InMemoryLoanProducts, InMemoryLoans
from finfaas_dev.fakes.platform import InMemoryAuditStore, InMemoryIdempotencyStore, InMemoryRateLimitStore
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler
from support.loans_world import FakeOrchestrator

BUSINESS_DATE = date(2024, 1, 1)
OPENED = datetime(2024, 1, 1, tzinfo=UTC)
CLEAN, POOR = "cust-1", "cust-4"  # the sandbox bureau's files: 659 and no late account; 500 and two
PRODUCT = {
    "product_id": "personal-eur", "name": "Personal loan", "currency": "EUR",
    "principal_minor_min": 10_000, "principal_minor_max": 5_000_000, "term_months_min": 3,
    "term_months_max": 60, "annual_rate": "0.12", "bureau_waiver_principal_minor_max": 100_000,
}
# 10,000.00 over 12 months: installments of 888.49 against 5,000.00 a month and 500.00 of other debt.
APPLICATION = {"product_id": "personal-eur", "principal": "10000.00", "term_months": 12,
               "account_id": "acc-cust-1", "monthly_income": "5000.00", "monthly_debt": "500.00"}


class Accounts:
    """The ledger's accounts as loans reads them: one EUR wallet per customer, one USD for cust-1."""

    def __init__(self) -> None:
        def wallet(account_id: str, owner: str, currency: str) -> Account:
            return Account(account_id, owner, currency, AccountKind.CUSTOMER, AccountStatus.OPEN, OPENED)

        self.accounts = {f"acc-{c}": wallet(f"acc-{c}", c, "EUR") for c in (CLEAN, POOR, "cust-2")}
        self.accounts["usd-cust-1"] = wallet("usd-cust-1", CLEAN, "USD")

    def account(self, account_id: str) -> Account | None:
        return self.accounts.get(account_id)


class World:
    """The handler with its services on fakes; an operator's token and customers' tokens."""

    def __init__(self) -> None:
        self.handler = load_function_handler("loans")
        self.minter = TokenMinter.generate()
        self.handler.verifier.use(self.minter.verifier())
        products, self.loans = InMemoryLoanProducts(), InMemoryLoans()
        self.risk, self.bureau = FakeRisk(), FakeBureau()
        self.bureau_breaker = CircuitBreaker("bureau", failures_to_open=3, open_seconds=60)
        quotes = LoanQuoteService(products, lambda: BUSINESS_DATE)
        self.orchestrator = FakeOrchestrator()
        self.mac = EventMac.generate()
        self.handler.trigger.queue.use(self.mac)
        self.handler.services.use(self.handler.LoansServices(
            products=LoanProductsService(products), quotes=quotes,
            applications=LoanApplicationService(products, self.loans, Accounts(), quotes, self.risk,
                                                self.bureau, bureau_breaker=self.bureau_breaker,
                                                orchestrator=self.orchestrator),
            disbursements=LoanDisbursementService(products, self.loans, {}, lambda: BUSINESS_DATE,
                                                  FakeOrchestrator()),
            repayments=LoanRepaymentService(products, self.loans, {}, lambda: BUSINESS_DATE),
            guard=IdempotencyGuard(InMemoryIdempotencyStore(), "loans"),
            limiter=RateLimiter(InMemoryRateLimitStore(), self.handler.LIMITS),
            audit=AuditLog(InMemoryAuditStore(), "loans"), probe=lambda: None))
        self.operator = self.minter.mint("ops-console", ["ops", "ops:act"], kind="client")
        self.reader = self.minter.mint("ops-reader", ["ops"], kind="client")
        self.saga = self.minter.mint("orchestrator", ["loans:saga"], kind="client")
        created = call(self.handler.handle, "POST", "/_/ops/loan-products", token=self.operator,
                       headers={"Idempotency-Key": "p-1"}, json_body=PRODUCT)
        assert created.status == 201, created.body

    def token(self, customer: str) -> str:
        return self.minter.mint(customer, ["loans:read", "loans:write"])

    def apply(self, customer: str = CLEAN, key: str | None = None, **changes):
        body = {**APPLICATION, "account_id": f"acc-{customer}", **changes}
        return call(self.handler.handle, "POST", "/loans", token=self.token(customer),
                    headers={"Idempotency-Key": key or uuid.uuid4().hex}, json_body=body)

    def decide(self, loan_id: str, decision: str, token: str | None = None):
        return call(self.handler.handle, "POST", f"/_/ops/loans/{loan_id}/decision",
                    token=token or self.operator,
                    json_body={"decision": decision, "note": "payslips checked"})

    def review_task(self, loan_id: str, token: str):
        """The orchestrator's AwaitReview message for the loan, as the `loan-reviews` queue delivers it."""
        return call(self.handler.handle, "POST", "/", body=self.mac.seal(
            {"task_token": token, "loan_id": loan_id, "kind": "review"}),
            headers={"Content-Type": "application/json"})

    def record(self, loan_id: str, reported: dict):
        """The saga's RecordReview step with what the AwaitReview task returned."""
        return call(self.handler.handle, "POST", "/saga/review", token=self.saga,
                    json_body={"loan_id": loan_id, **reported})


@pytest.fixture
def world() -> World:
    return World()


def verdicts(reply) -> dict[str, str]:
    return {f["rule"]: f["verdict"] for f in reply.json()["decision"]["findings"]}


def test_an_affordable_loan_to_a_clean_file_is_approved_with_every_rule_listed(world):
    reply = world.apply()

    assert reply.status == 201, reply.body
    body = reply.json()
    assert (body["status"], body["principal_minor"], body["owner_id"]) == ("approved", 1_000_000, CLEAN)
    assert body["decision"]["rules_fired"] == [] and body["decision"]["decided_by"] == "rules"
    assert verdicts(reply) == {rule: "pass" for rule in (
        "income", "existing_debt", "amount_vs_income", "blocked_party", "velocity_count", "bureau_score",
        "bureau_delinquencies")}
    assert [(loan_id, event.type) for loan_id, _, event in world.loans.events] == [
        (body["loan_id"], "loan.approved")]
    # the risk screen judged this applicant's loan, named by the loan's id
    assert world.risk.requests[0]["assessment_id"] == body["loan_id"]
    assert world.risk.requests[0]["customer_id"] == CLEAN


def test_an_application_again_under_its_key_answers_the_same_loan_and_another_body_is_a_422(world):
    first = world.apply(key="k-1")

    again = world.apply(key="k-1")
    other = world.apply(key="k-1", principal="9000.00")

    assert again.status == 201 and again.json() == first.json()
    assert again.headers.get("Idempotency-Replayed") == "true"
    assert other.status == 422
    assert len(world.loans.events) == 1 and len(world.risk.requests) == 1


def test_too_much_existing_debt_declines_naming_the_rule(world):
    reply = world.apply(monthly_debt="2200.00")  # 2,200.00 + 888.49 of 5,000.00 is above 60 %

    assert reply.status == 201 and reply.json()["status"] == "declined"
    assert reply.json()["decision"]["rules_fired"] == ["existing_debt"]
    assert world.loans.events[0][2].type == "loan.declined"


def test_a_poor_bureau_file_declines(world):
    assert sandbox_report(POOR).score < 550

    reply = world.apply(POOR)

    assert reply.json()["status"] == "declined"
    assert reply.json()["decision"]["rules_fired"] == ["bureau_score", "bureau_delinquencies"]


def test_the_risk_functions_block_list_declines_and_its_velocity_flag_waits_for_an_operator(world):
    world.risk.findings = [{"rule": "blocked_party", "verdict": "BLOCK", "detail": "on a block list"}]
    blocked = world.apply()
    world.risk.findings = [{"rule": "velocity_count", "verdict": "FLAG", "detail": "12 transfers this hour"}]
    busy = world.apply()

    def outcome(reply) -> tuple[str, list[str]]:
        return reply.json()["status"], reply.json()["decision"]["rules_fired"]

    assert outcome(blocked) == ("declined", ["blocked_party"])
    assert outcome(busy) == ("review", ["velocity_count"])


def test_risk_down_sends_the_application_to_an_operator(world):
    world.risk.failing = True

    reply = world.apply()

    assert reply.json()["status"] == "review"
    assert reply.json()["decision"]["rules_fired"] == ["risk_unavailable"]


def test_bureau_down_a_loan_within_the_waiver_is_decided_by_the_rules_alone_and_flagged(world):
    world.bureau.failing = True

    reply = world.apply(principal="1000.00")  # the product's waiver: 1,000.00

    body = reply.json()
    assert body["status"] == "approved"
    assert body["decision"]["bureau_unavailable"] is True
    assert body["decision"]["rules_fired"] == ["bureau_unavailable"]
    assert verdicts(reply)["bureau_unavailable"] == "flag"


def test_bureau_down_a_larger_loan_waits_in_its_saga_for_an_operator_whose_decision_the_saga_records(world):
    # GIVEN the bureau down: 1,000.01 is above the product's waiver
    world.bureau.failing = True
    loan_id = world.apply(principal="1000.01").json()["loan_id"]

    # THEN the loan is in review and its disbursement saga started to wait for an operator
    assert world.loans.get_loan(loan_id).status.value == "review"
    assert world.loans.events[-1][2].type == "loan.review_required"
    started = [("loan-disbursement", loan_id, {"loan_id": loan_id, "review": True})]
    assert world.orchestrator.started == started

    # WHEN an operator decides before the saga's token arrived, then after
    early = world.decide(loan_id, "approve")
    token = task_token(f"loan-disbursement:{loan_id}", "visit-1")
    world.orchestrator.waiting.add(token)
    assert world.review_task(loan_id, token).json() == {"outcome": "kept"}
    approved = world.decide(loan_id, "approve")
    again = world.decide(loan_id, "approve")
    other = world.decide(loan_id, "decline")

    # THEN the early one is refused; the decision goes to the saga through the token, once, with the
    # operator's identity, and the loan waits for the saga to record it
    assert early.status == 409 and early.json()["code"] == "loan_review_not_waiting"
    assert approved.status == 200 and approved.json()["status"] == "review", approved.body
    reported = {"decision": "approve", "note": "payslips checked", "operator": "ops-console"}
    assert world.orchestrator.reported == {token: reported}
    assert again.status == 200
    assert other.status == 409 and other.json()["code"] == "loan_review_not_waiting"

    # WHEN the saga's RecordReview step runs, and runs again (a retry)
    step = world.record(loan_id, reported)
    step_again = world.record(loan_id, reported)

    # THEN the loan is approved by the operator, with the rules that fired, and one event
    assert step.json() == step_again.json() == {"loan_id": loan_id, "status": "approved"}
    decided = call(world.handler.handle, "GET", f"/_/ops/loans/{loan_id}", token=world.operator).json()
    assert (decided["status"], decided["decision"]["decided_by"]) == ("approved", "ops-console")
    assert decided["decision"]["note"] == "payslips checked"
    assert decided["decision"]["rules_fired"] == ["bureau_unavailable"]
    assert [event.type for _, _, event in world.loans.events] == ["loan.review_required", "loan.approved"]
    assert world.decide(loan_id, "approve").json()["status"] == "approved"
    assert world.decide(loan_id, "decline").json()["code"] == "loan_not_in_review"


def test_a_review_tasks_token_is_kept_once_under_redelivery_and_a_stale_or_foreign_one_is_ignored(world):
    world.bureau.failing = True
    loan_id = world.apply(principal="1000.01").json()["loan_id"]
    other_id = world.apply(principal="1000.01").json()["loan_id"]
    token = task_token(f"loan-disbursement:{loan_id}", "visit-1")
    world.orchestrator.waiting.add(token)
    version = world.loans.get_loan(loan_id).version

    first = world.review_task(loan_id, token)
    redelivered = world.review_task(loan_id, token)
    stale = world.review_task(loan_id, task_token(f"loan-disbursement:{loan_id}", "visit-0"))  # not waited
    foreign = world.review_task(other_id, token)  # another loan's execution
    forged = call(world.handler.handle, "POST", "/", json_body={
        "task_token": token, "loan_id": loan_id, "kind": "review", "finfaasmac": "forged"})

    assert [first.json(), redelivered.json()] == [{"outcome": "kept"}] * 2
    assert [stale.json(), foreign.json()] == [{"outcome": "ignored"}] * 2
    assert forged.status == 401
    stored = world.loans.get_loan(loan_id)
    assert (stored.review_token, stored.version) == (token, version + 1)  # written once
    assert world.loans.get_loan(other_id).review_token is None
    assert "review_token" not in str(world.decide(other_id, "approve", token=world.operator).body)


def test_an_operator_without_ops_act_cannot_decide_a_review(world):
    world.bureau.failing = True
    loan_id = world.apply(principal="1000.01").json()["loan_id"]
    token = task_token(f"loan-disbursement:{loan_id}", "visit-1")
    world.orchestrator.waiting.add(token)
    world.review_task(loan_id, token)

    refused = world.decide(loan_id, "approve", token=world.reader)

    assert refused.status == 403, refused.body
    assert world.orchestrator.reported == {}
    assert world.loans.get_loan(loan_id).status.value == "review"


def test_the_bureaus_breaker_opens_after_repeated_failures_and_stops_calling_it(world):
    world.bureau.failing = True
    for _ in range(3):
        world.apply(principal="100.00")
    calls = world.bureau.calls

    reply = world.apply(principal="100.00")

    assert world.bureau.calls == calls == 3  # the open circuit answers at once, without a call
    assert reply.json()["decision"]["bureau_unavailable"] is True


def test_a_customer_sees_only_their_own_loans(world):
    loan_id = world.apply().json()["loan_id"]

    own = call(world.handler.handle, "GET", f"/loans/{loan_id}", token=world.token(CLEAN))
    other = call(world.handler.handle, "GET", f"/loans/{loan_id}", token=world.token("cust-2"))
    ops = call(world.handler.handle, "GET", f"/_/ops/loans/{loan_id}", token=world.operator)

    assert own.status == 200 and own.json()["loan_id"] == loan_id
    assert other.status == 404 and other.json()["code"] == "loan_not_found"
    assert ops.json() == own.json()


@pytest.mark.parametrize(("changes", "status", "field"), [
    ({"account_id": "acc-cust-2"}, 404, "account_id"),  # another customer's wallet
    ({"account_id": "usd-cust-1"}, 422, "account_id"),  # the product lends EUR
    ({"principal": "50000.01"}, 422, "principal"),
    ({"principal": "100.001"}, 422, "principal"),
    ({"principal": -100}, 422, "principal"),
    ({"term_months": 61}, 422, "term_months"),
    ({"product_id": "car-eur"}, 422, "product_id"),
    ({"monthly_income": "-1"}, 422, "monthly_income"),
    ({"monthly_debt": "1.001"}, 422, "monthly_debt"),
])
def test_a_refused_application_names_the_field_and_writes_nothing(world, changes, status, field):
    reply = world.apply(**changes)

    assert reply.status == status, reply.body
    assert field in {error["field"] for error in reply.json()["errors"]}, reply.json()
    assert world.loans.events == [] and world.risk.requests == [] and world.bureau.calls == 0


def test_applying_needs_loans_write_and_deciding_needs_ops(world):
    reader = world.minter.mint(CLEAN, ["loans:read"])
    reply = call(world.handler.handle, "POST", "/loans", token=reader, headers={"Idempotency-Key": "k"},
                 json_body=APPLICATION)
    loan_id = world.apply().json()["loan_id"]
    customer_decides = call(world.handler.handle, "POST", f"/_/ops/loans/{loan_id}/decision",
                            token=world.token(CLEAN), json_body={"decision": "approve"})

    assert reply.status == 403 and customer_decides.status == 403
