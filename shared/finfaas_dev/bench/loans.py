"""`finfaas bench loans`: the pure loan figures, measured in this process (no suite, no network).

quote_us: building a 360-month schedule (domain.loans.build_schedule, as a quote does), median over
--runs. Unless --quote-only, also the loan account fold over the same schedule (domain.loan_account):
replay_us, reprocessing a loan with every installment repaid on its due date, and close_of_business_us,
one nightly step for a loan 30 days past due. Then, unless --loans 0, the nightly job
(services/loans/nightly.py) over --loans active loans seeded straight into the loans table on the
embedded emulator (batch writes: a seed, not a use case; their disbursements and repayments batch-written
into the ledger too, bench/ledger_seed.py), 8 Scan segments closed at once as the state machine's Map does:
nightly_loans_per_s, nightly_seconds, rerun_changes (the same date again: loans written, 0), and
loans_check (`finfaas loans check` afterwards: passed, or failed and why) with loans_check_seconds.
Bounded: past NIGHTLY_SECONDS_MAX no more pages start (nightly_complete false). Unless
--repayment-clients 0, repayments through the local gateway first (bench/loans_repayments.py):
repayments_per_s and dynamodb_calls_per_repayment.
Last line: JSON with quote_us, replay_us, close_of_business_us, runs, term_months, the repayment figures
and the nightly figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

from finfaas.domain.loan_account import (
    AccountRules,
    LoanTransaction,
    TransactionKind,
    close_of_business,
    disburse,
    replay,
)
from finfaas.domain.loans import LoanTerms, build_schedule

from finfaas_dev.bench import loans_repayments as repayments

RUNS_DEFAULT = 21
RUNS_MAX = 1_000
SECONDS_MAX = 120.0  # the whole bench stops measuring past this, whatever --runs says
TERM_MONTHS = 360
DISBURSED_ON = date(2027, 1, 15)
TERMS = LoanTerms(100_000_000, Decimal("0.049"), TERM_MONTHS, DISBURSED_ON)  # 1,000,000.00 over 30 years
RULES = AccountRules(daily_penalty_rate=Decimal("0.0005"))
OVERDUE_DAYS = 30
NIGHTLY_LOANS_DEFAULT = 50_000
NIGHTLY_LOANS_MAX = 200_000


def median_us(work: Callable[[], object], runs: int, deadline: float) -> tuple[float, int]:
    """The median time of work() in microseconds over at most `runs` runs, and how many ran."""
    times: list[float] = []
    while len(times) < runs and (not times or time.monotonic() < deadline):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times), len(times)


def repaid_on_time() -> list[LoanTransaction]:
    """Every installment of TERMS paid in full on its due date, and the disbursement."""
    schedule = build_schedule(TERMS)
    log = [LoanTransaction("disbursement", TransactionKind.DISBURSEMENT, DISBURSED_ON, TERMS.principal_minor)]
    log += [LoanTransaction(f"repay-{i.number}", TransactionKind.REPAYMENT, i.due_on, i.total_minor)
            for i in schedule.installments]
    return log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=RUNS_DEFAULT, help="runs per figure (median)")
    parser.add_argument("--quote-only", action="store_true", help="only quote_us")
    parser.add_argument("--loans", type=int, default=NIGHTLY_LOANS_DEFAULT,
                        help="active loans for the nightly run on the embedded emulator (0: none)")
    parser.add_argument("--repayment-clients", type=int, default=repayments.CLIENTS_DEFAULT,
                        help="concurrent clients repaying through the gateway (0: no repayment figures)")
    parser.add_argument("--repayment-seconds", type=float, default=repayments.SECONDS_DEFAULT,
                        help="length of the repayment phase")


def run(args: argparse.Namespace) -> int:
    if not 0 < args.runs <= RUNS_MAX:
        print(f"bench loans: need 0 < --runs <= {RUNS_MAX}", file=sys.stderr)
        return 2
    if not 0 <= args.loans <= NIGHTLY_LOANS_MAX:
        print(f"bench loans: need 0 <= --loans <= {NIGHTLY_LOANS_MAX}", file=sys.stderr)
        return 2
    if not (0 <= args.repayment_clients <= repayments.CLIENTS_MAX
            and 0 < args.repayment_seconds <= repayments.SECONDS_MAX):
        print(f"bench loans: need 0 <= --repayment-clients <= {repayments.CLIENTS_MAX} and "
              f"0 < --repayment-seconds <= {repayments.SECONDS_MAX}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + SECONDS_MAX
    schedule = build_schedule(TERMS)
    quote_us, runs = median_us(lambda: build_schedule(TERMS), args.runs, deadline)
    summary: dict[str, object] = {"term_months": TERM_MONTHS, "runs": runs, "quote_us": round(quote_us, 1)}
    if not args.quote_only:
        log = repaid_on_time()
        replay_us, _ = median_us(lambda: replay(TERMS, schedule, log, RULES), args.runs, deadline)
        overdue = disburse(TERMS, schedule, "disbursement", RULES)
        first_due = schedule.installments[0].due_on
        overdue, _ = close_of_business(overdue, first_due + timedelta(days=OVERDUE_DAYS))
        next_day = first_due + timedelta(days=OVERDUE_DAYS + 1)
        step_us, _ = median_us(lambda: close_of_business(overdue, next_day), args.runs, deadline)
        summary |= {"replay_us": round(replay_us, 1), "close_of_business_us": round(step_us, 1)}
    if args.repayment_clients and not args.quote_only:
        summary |= repayments.repayment_figures(args.repayment_clients, args.repayment_seconds)
        print(f"repayments: {summary['repayments_per_s']}/s through the gateway, "
              f"{summary['dynamodb_calls_per_repayment']} DynamoDB calls each "
              f"({summary['transact_writes_per_repayment']} TransactWriteItems)")
    if args.loans and not args.quote_only:
        from finfaas_dev.bench.loans_nightly import nightly_figures

        summary |= nightly_figures(args.loans)
        print(f"nightly: {summary['nightly_loans']} loans in {summary['nightly_seconds']} s "
              f"({summary['nightly_loans_per_s']}/s), rerun changed {summary['rerun_changes']}")
    print(json.dumps(summary))
    check = str(summary.get("loans_check", "passed"))
    return 0 if summary.get("nightly_complete", True) and not summary.get("rerun_changes") \
        and not check.startswith("failed") \
        and summary.get("repayment_ledger_check", "passed") == "passed" else 1
