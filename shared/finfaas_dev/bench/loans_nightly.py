"""The nightly figures of `finfaas bench loans`: the loans nightly job over N active loans on the embedded
emulator (DynamoDB Local), run once, then the same date again. Loopback only, bounded in time."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.domain.loan_account import TransactionKind, apply, close_of_business, disburse
from finfaas.domain.loan_underwriting import Decision, Outcome
from finfaas.domain.loans import build_schedule
from finfaas.services.loans.model import Loan, LoanProduct, LoanStatus, LoanTransaction
from finfaas.services.loans.nightly import LoansNightlyService, NightlyPage

DISBURSED_ON = date(2024, 1, 1)
NIGHT = date(2024, 2, 15)  # the first installment 14 days overdue on most loans
NIGHTLY_SECONDS_MAX = 900.0  # past this no more pages start; the figures say the run was cut short
SEED_SECONDS_MAX = 600.0
CHECK_SECONDS_MAX = 600.0  # `finfaas loans check` not done by then: the check fails, bounded
# Scan segments closed at once, as the state machine's Map over segments does (its MaxConcurrency).
NIGHTLY_SEGMENTS = 8
PAGE_LOANS = 100
CREATED_AT = datetime(2024, 1, 1, tzinfo=UTC)
_SEED_ID = "loan_bench_seed"
WALLET = "acc-bench"


class _NoOrchestrator:
    def start(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("the bench drives the pages itself")


def seed(loans: int, loans_store: Any, ledger_store: Any, deadline: float) -> None:
    """A product and `loans` active loans written with batch writes (no events: a seed, not a use case),
    and their money in the ledger as the loans' use cases would have left it: each disbursement a
    transfer from the loans funding account to the wallet, each repayment its linked legs, under the ids
    the loans' histories name, batch-written by bench/ledger_seed.py, so `finfaas loans check` and
    `finfaas ledger check` reconcile the seeded book. The accounts must be open (sys-loans, the wallet)."""
    from finfaas.domain.ledger import NewTransfer
    from finfaas.services.loans.service import ledger_legs
    from finfaas.store.binding import bound
    from finfaas.store.loans_store import _LoansItem, loan_to_json

    from finfaas_dev.bench.ledger_seed import seed_ledger

    product = loans_store.create(LoanProduct("bench-eur", "Bench loan", "EUR", 10_000, 5_000_000, 3, 60,
                                             Decimal("0.12"), daily_penalty_rate=Decimal("0.001")))
    terms = product.terms(10_000, 6, DISBURSED_ON)
    schedule = build_schedule(terms)
    template = Loan(_SEED_ID, "bench", product.product_id, WALLET, "EUR", 10_000, 6, 500_000, 0,
                    LoanStatus.ACTIVE, Decision(Outcome.APPROVE, (), False), CREATED_AT,
                    disbursed_on=DISBURSED_ON)
    # Every loan ran its nights to the day before the first due date; a third then repaid the first
    # installment on time. Two documents folded once, each loan's id written into them: seeding is text.
    account = disburse(terms, schedule, f"{_SEED_ID}-disbursement", product.account_rules())
    account, _ = close_of_business(account, date(2024, 1, 31))
    repaid = apply(account, LoanTransaction(f"{_SEED_ID}-r1", TransactionKind.REPAYMENT, date(2024, 2, 1),
                                            schedule.installments[0].total_minor))
    docs = [loan_to_json(template.with_account(a)) for a in (repaid, account, account)]
    paid_legs = ledger_legs(template, f"{_SEED_ID}-r1", account, repaid)
    model: Any = bound(_LoansItem, loans_store.table_name)
    ids = [f"loan_bench_{n:06d}_{uuid.uuid4().hex[:8]}" for n in range(loans)]
    with model.batch_write() as batch:
        for n, loan_id in enumerate(ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"seeding {loans} loans took over {SEED_SECONDS_MAX} s")
            batch.save(model(f"loan#{loan_id}", "-", doc=docs[n % 3].replace(_SEED_ID, loan_id), version=1,
                             status="active", owner_id="bench"))
    funding = system_account_id(AccountKind.LOANS, "EUR")
    # One operation per use case's transaction: a disbursement's transfer, a repayment's linked legs.
    operations = [[NewTransfer(f"{loan_id}-disbursement", funding, WALLET, 10_000, "EUR")] for loan_id in ids]
    operations += [[NewTransfer(leg_id.replace(_SEED_ID, loan_id), debit, credit, amount, currency)
                    for leg_id, debit, credit, amount, currency in paid_legs] for loan_id in ids[::3]]
    seed_ledger(ledger_store, operations, CREATED_AT, deadline)


def _check(loans_store: Any, ledger_store: Any, ledger: Any) -> str:
    """`finfaas loans check` over every loan, as the command reads the tables: passed or why not."""
    from finfaas.services.loans.service import LedgerAccounts

    from finfaas_dev.loans_check import CheckTooSlow, check_tables

    try:
        _, problems = check_tables(loans_store, ledger_store, LedgerAccounts(ledger).account,
                                   deadline=time.monotonic() + CHECK_SECONDS_MAX)
    except CheckTooSlow:
        return f"failed: not done in {CHECK_SECONDS_MAX} s"
    return f"failed: {len(problems)} problems" if problems else "passed"


def _segment(service: LoansNightlyService, segment: int, deadline: float) -> tuple[int, int, bool]:
    """One Map iteration of the state machine: a segment's pages fetched and closed in turn."""
    closed = seen = 0
    cursor: str | None = None
    while True:
        if time.monotonic() > deadline:
            return closed, seen, False
        page: NightlyPage = service.page(cursor, PAGE_LOANS, segment, NIGHTLY_SEGMENTS)
        result = service.close_loans(NIGHT, page.loan_ids)
        closed += result.closed
        seen += result.closed + result.unchanged + len(result.unprocessable)
        if page.next is None:
            return closed, seen, True
        cursor = page.next


def _night(service: LoansNightlyService, deadline: float) -> tuple[int, int, bool]:
    """The segments closed at once, as the state machine's Map does; (loans written, loans seen,
    finished in time)."""
    with ThreadPoolExecutor(NIGHTLY_SEGMENTS) as pool:
        results = list(pool.map(lambda n: _segment(service, n, deadline), range(NIGHTLY_SEGMENTS)))
    return sum(r[0] for r in results), sum(r[1] for r in results), all(r[2] for r in results)


def nightly_figures(loans: int) -> dict[str, Any]:
    from finfaas_dev.emulators import EmbeddedAWS
    from finfaas_dev.infra import deploy
    from finfaas_dev.net import free_port
    from finfaas_dev.tools import ensure_dynamodb_local

    ensure_dynamodb_local()
    aws = EmbeddedAWS(dynamodb_port=free_port(), moto_port=free_port())
    aws.start()
    try:
        stage = f"benchloans-{uuid.uuid4().hex[:8]}"
        os.environ.update({**aws.env(), "FINFAAS_STAGE": stage})
        deploy(stage, "embedded")
        from finfaas.domain.ledger import NewAccount
        from finfaas.services.ledger.service import LedgerService
        from finfaas.store.ledger_store import ledger_store_from_config
        from finfaas.store.loans_nightly_store import LoansNightlyStore
        from finfaas.store.loans_store import LoansStore

        ledger_store = ledger_store_from_config()
        ledger = LedgerService(ledger_store)
        ledger.ensure_system_accounts("EUR")
        ledger_store.open_account(NewAccount(WALLET, "bench", "EUR"), CREATED_AT)
        store = LoansStore()
        started = time.monotonic()
        seed(loans, store, ledger_store, started + SEED_SECONDS_MAX)
        seed_seconds = time.monotonic() - started
        service = LoansNightlyService(store, store, LoansNightlyStore(store), lambda: NIGHT,
                                      _NoOrchestrator())
        started = time.monotonic()
        closed, seen, complete = _night(service, started + NIGHTLY_SECONDS_MAX)
        seconds = time.monotonic() - started
        rerun_changes, rerun_seen, rerun_complete = _night(service, time.monotonic() + NIGHTLY_SECONDS_MAX)
        started = time.monotonic()
        verdict = _check(store, ledger_store, ledger)
        check_seconds = time.monotonic() - started
    finally:
        aws.stop()
    return {
        "nightly_loans": closed,
        "nightly_seconds": round(seconds, 2),
        "nightly_loans_per_s": round(closed / seconds, 1) if seconds else 0.0,
        "nightly_complete": complete and rerun_complete and closed == loans == rerun_seen,
        "rerun_changes": rerun_changes,
        "seed_seconds": round(seed_seconds, 2),
        "loans_check": verdict,
        "loans_check_seconds": round(check_seconds, 2),
    }
