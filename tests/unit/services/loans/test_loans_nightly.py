"""The loans nightly job (services/loans/nightly.py, infra/statemachines/loans-nightly.asl.json): one
execution per business date pages through active loans and closes the date on each. The orchestrator is
killed at every point of a three-page run: each loan's date is recorded once, its events written once,
and the same date run again changes nothing."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from finfaas.domain.loan_account import LoanTransaction, TransactionKind, close_of_business, replay
from finfaas.domain.loans import build_schedule, dues_of, payoff_quote
from finfaas.services.loans.model import Loan, LoanProduct, LoanStatus
from finfaas.services.loans.nightly import NIGHTLY_STATE_MACHINE, LoansNightlyService, account_of
from finfaas.workflow.asl import DefinitionRegistry, definitions_dir, parse_definition
from finfaas.workflow.model import Status
from finfaas.workflow.tasks import HttpTasks
from finfaas_dev.fakes.loans import InMemoryLoanNightly
from finfaas_dev.testing.platform import call
from finfaas_dev.testing.workflow import CrashAt
from support.loans_world import LoansWorld
from support.saga_world import GATEWAY, InProcessGateway, StaticTokens
from support.workflow_testing import World, crash_case_ids, crash_cases
from unit.services.loans.test_loans_store_contract import EVENT, new_loan, new_product

DISBURSED_ON = date(2024, 1, 1)
NIGHT = date(2024, 2, 15)  # the first installment (due 2024-02-01) is 14 days overdue unless repaid
PAID_OFF_ON = date(2024, 1, 15)
LOANS = 60
PAGE_LOANS = 20  # three pages
SCENARIO = "nightly"


def active_loan(product: LoanProduct, loan_id: str, n: int) -> Loan:
    """A loan of 100.00 over 6 months disbursed on DISBURSED_ON, stored active: every third repaid its
    first installment; loan 1 paid off but stored active (the night closes it); the rest overdue."""
    terms = product.terms(10_000, 6, DISBURSED_ON)
    schedule = build_schedule(terms)
    history = [LoanTransaction(f"{loan_id}-d", TransactionKind.DISBURSEMENT, DISBURSED_ON, 10_000)]
    if n == 1:
        payoff = payoff_quote(terms, schedule, dues_of(schedule), PAID_OFF_ON)
        history.append(LoanTransaction(f"{loan_id}-p", TransactionKind.PREPAYMENT, PAID_OFF_ON,
                                       payoff.total_minor))
    elif n % 3 == 0:
        history.append(LoanTransaction(f"{loan_id}-r1", TransactionKind.REPAYMENT, date(2024, 2, 1),
                                       schedule.installments[0].total_minor))
    account = replay(terms, schedule, history, product.account_rules())
    loan = replace(new_loan(), loan_id=loan_id, product_id=product.product_id, principal_minor=10_000,
                   term_months=6, disbursed_on=DISBURSED_ON)
    return replace(loan.with_account(account), status=LoanStatus.ACTIVE)


def serial_nightly():
    """loans-nightly with its segments closed one after another: a crash point's index then names the
    same step in every run (the Map's concurrent iterations would interleave them differently)."""
    path = definitions_dir() / f"{NIGHTLY_STATE_MACHINE}.asl.json"
    document = json.loads(path.read_text())
    document["States"]["CloseSegments"]["MaxConcurrency"] = 1
    return parse_definition(NIGHTLY_STATE_MACHINE, document)


class NightlyWorld:
    """LoansWorld's handler with the nightly job on an in-memory store, 60 active loans, and an
    orchestrator in memory running loans-nightly (crashing at `crash`)."""

    def __init__(self, crash: CrashAt | None = None) -> None:
        self.world = LoansWorld()
        self.world.business_date = date(2024, 2, 16)
        self.product = self.world.products.create(new_product(daily_penalty_rate=Decimal("0.001")))
        self.nightly = InMemoryLoanNightly(self.world.loans)
        self.world.handler.services.get().nightly = LoansNightlyService(
            self.world.products, self.world.loans, self.nightly, lambda: self.world.business_date,
            self.world.orchestrator, page_loans=PAGE_LOANS)
        self.loan_ids = [self._seed(n) for n in range(LOANS)]
        gateway = InProcessGateway(on_orchestrator_crash=lambda: None)
        gateway.handlers["loans"] = self.world.handler
        token = self.world.minter.mint("orchestrator", ["loans:saga"], kind="client")
        definitions = DefinitionRegistry([serial_nightly()])
        self.engine = World(definitions, HttpTasks(GATEWAY, StaticTokens(token), request=gateway.request),
                            crash=crash)

    def _seed(self, n: int) -> str:
        loan_id = f"loan_{n:02d}_{uuid.uuid4().hex[:8]}"
        self.world.loans.create_loan(active_loan(self.product, loan_id, n), EVENT)
        return loan_id

    def start(self, business_date: str = NIGHT.isoformat()):
        reply = call(self.world.handler.handle, "POST", "/_/ops/loans/nightly", token=self.world.operator,
                     json_body={"business_date": business_date})
        assert reply.status == 202, reply.body
        return reply.json()

    def run(self, name_suffix: str = "") -> str:
        """The execution the loans function asked for, run in the orchestrator in memory."""
        state_machine, name, input_value = self.world.orchestrator.started[-1]
        started = self.engine.start(state_machine, name + name_suffix, input_value)
        self.engine.run()
        return str(started.execution.execution_id)


def _clean_run_points(_: str) -> list[str]:
    night = NightlyWorld()
    night.start()
    night.run()
    return night.engine.crash.points


CASES = crash_cases([SCENARIO], _clean_run_points)


def assert_closed_once(night: NightlyWorld, execution_id: str) -> None:
    assert night.engine.status(execution_id) is Status.SUCCEEDED
    assert night.nightly.writes == LOANS  # every loan's date recorded once, the paid-off loan's too
    for n, loan_id in enumerate(night.loan_ids):
        close = night.nightly.get_close(loan_id)
        assert close is not None and close.closed_through == NIGHT
        expected, _ = close_of_business(account_of(replace(night.world.loans.get_loan(loan_id),
                                                           status=LoanStatus.ACTIVE), night.product, None),
                                        NIGHT)
        assert (close.days_past_due, close.bucket, close.penalty_charged_minor) == \
            (expected.days_past_due, expected.bucket, expected.penalty_charged_minor)
        events = [event.type for subject, _, event in night.nightly.events if subject == loan_id]
        if n == 1:
            assert events == ["loan.closed"]
        elif n % 3 == 0:
            assert events == []
        else:  # 1-10 from 2024-02-02, 11-30 from 2024-02-12: each change once
            assert events == ["loan.bucket_changed"] * 2 and close.bucket == "11-30"
    assert night.world.loans.get_loan(night.loan_ids[1]).status is LoanStatus.CLOSED


def test_one_execution_per_date_closes_every_loan_and_a_rerun_changes_nothing():
    # GIVEN 60 active loans over three pages
    night = NightlyWorld()
    # WHEN an operator starts the night twice and it runs, then the same date runs again
    first, again = night.start(), night.start()
    execution_id = night.run()
    writes = night.nightly.writes
    night.run(name_suffix="-rerun")
    # THEN one execution name for the date; every loan closed once; the rerun changes nothing
    assert first == again == {"business_date": "2024-02-15", "execution": "loans-nightly-2024-02-15"}
    assert {name for _, name, _ in night.world.orchestrator.started} == {"loans-nightly-2024-02-15"}
    assert_closed_once(night, execution_id)
    assert night.nightly.writes - writes == 0  # rerun_changes


def test_a_date_after_the_business_date_is_refused_naming_it():
    night = NightlyWorld()
    reply = call(night.world.handler.handle, "POST", "/_/ops/loans/nightly", token=night.world.operator,
                 json_body={"business_date": "2024-02-17"})
    assert reply.status == 422 and reply.json()["errors"][0]["field"] == "business_date"
    assert night.world.orchestrator.started == []


def test_the_clean_run_passes_every_kind_of_crash_point():
    assert {"task:before_call", "task:after_call"} <= {point for _, _, point in CASES}


@pytest.mark.parametrize(("scenario", "index", "point"), CASES, ids=crash_case_ids(CASES))
def test_a_crash_at_any_point_closes_each_loan_once(scenario: str, index: int, point: str):
    crash = CrashAt(index)
    night = NightlyWorld(crash=crash)
    night.start()

    execution_id = night.run()

    assert crash.crashed_at == point
    assert night.engine.processes >= 2  # the orchestrator really died and a fresh process finished
    assert_closed_once(night, execution_id)
