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

from finfaas.domain.loan_account import TransactionKind, apply, close_of_business, disburse
from finfaas.domain.loan_underwriting import Decision, Outcome
from finfaas.domain.loans import build_schedule
from finfaas.services.loans.model import Loan, LoanProduct, LoanStatus, LoanTransaction
from finfaas.services.loans.nightly import LoansNightlyService, NightlyPage

DISBURSED_ON = date(2024, 1, 1)
NIGHT = date(2024, 2, 15)  # the first installment 14 days overdue on most loans
NIGHTLY_SECONDS_MAX = 900.0  # past this no more pages start; the figures say the run was cut short
SEED_SECONDS_MAX = 600.0
# Scan segments closed at once, as the state machine's Map over segments does (its MaxConcurrency).
NIGHTLY_SEGMENTS = 8
PAGE_LOANS = 100
CREATED_AT = datetime(2024, 1, 1, tzinfo=UTC)
_SEED_ID = "loan_bench_seed"


class _NoOrchestrator:
    def start(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("the bench drives the pages itself")


def _seed(loans: int) -> None:
    """A product and `loans` active loans written with batch writes (no events: a seed, not a use case)."""
    from finfaas.platform.config import resource_name
    from finfaas.store.binding import bound
    from finfaas.store.loans_store import LOANS_TABLE_LOGICAL_NAME, LoansStore, _LoansItem, loan_to_json

    store = LoansStore()
    product = store.create(LoanProduct("bench-eur", "Bench loan", "EUR", 10_000, 5_000_000, 3, 60,
                                       Decimal("0.12"), daily_penalty_rate=Decimal("0.001")))
    terms = product.terms(10_000, 6, DISBURSED_ON)
    schedule = build_schedule(terms)
    template = Loan(_SEED_ID, "bench", product.product_id, "acc-bench", "EUR", 10_000, 6, 500_000, 0,
                    LoanStatus.ACTIVE, Decision(Outcome.APPROVE, (), False), CREATED_AT,
                    disbursed_on=DISBURSED_ON)
    # Every loan ran its nights to the day before the first due date; a third then repaid the first
    # installment on time. Two documents folded once, each loan's id written into them: seeding is text.
    account = disburse(terms, schedule, f"{_SEED_ID}-d", product.account_rules())
    account, _ = close_of_business(account, date(2024, 1, 31))
    repaid = apply(account, LoanTransaction(f"{_SEED_ID}-r1", TransactionKind.REPAYMENT, date(2024, 2, 1),
                                            schedule.installments[0].total_minor))
    docs = [loan_to_json(template.with_account(a)) for a in (repaid, account, account)]
    model: Any = bound(_LoansItem, resource_name(LOANS_TABLE_LOGICAL_NAME))
    deadline = time.monotonic() + SEED_SECONDS_MAX
    with model.batch_write() as batch:
        for n in range(loans):
            if time.monotonic() > deadline:
                raise RuntimeError(f"seeding {loans} loans took over {SEED_SECONDS_MAX} s")
            loan_id = f"loan_bench_{n:06d}_{uuid.uuid4().hex[:8]}"
            batch.save(model(f"loan#{loan_id}", "-", doc=docs[n % 3].replace(_SEED_ID, loan_id), version=1,
                             status="active", owner_id="bench"))


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
        from finfaas.store.loans_nightly_store import LoansNightlyStore
        from finfaas.store.loans_store import LoansStore

        started = time.monotonic()
        _seed(loans)
        seed_seconds = time.monotonic() - started
        store = LoansStore()
        service = LoansNightlyService(store, store, LoansNightlyStore(store), lambda: NIGHT,
                                      _NoOrchestrator())
        started = time.monotonic()
        closed, seen, complete = _night(service, started + NIGHTLY_SECONDS_MAX)
        seconds = time.monotonic() - started
        rerun_changes, rerun_seen, rerun_complete = _night(service, time.monotonic() + NIGHTLY_SECONDS_MAX)
    finally:
        aws.stop()
    return {
        "nightly_loans": closed,
        "nightly_seconds": round(seconds, 2),
        "nightly_loans_per_s": round(closed / seconds, 1) if seconds else 0.0,
        "nightly_complete": complete and rerun_complete and closed == loans == rerun_seen,
        "rerun_changes": rerun_changes,
        "seed_seconds": round(seed_seconds, 2),
    }
