"""The repayment figures of `finfaas bench loans`: repayments through the local gateway and the loans
function against the embedded emulators (the infra template under a fresh stage, the suite's dev secrets),
loopback only, bounded in count and time.

Approved loans are written straight into the loans table (the application and its underwriting are not
what is measured), each disbursed by the saga's own step (`POST /saga/disburse` through the gateway, as
the orchestrator calls it), on a business date two months before the one the repayments are made on, so
two installments are due. Each client repays its own loans in turn, a small amount at a time:
repayments_per_s. Then single repayments against the loans function's `/_/ops/stats`:
dynamodb_calls_per_repayment (every call the function makes for one, the request's own records
included) and how many of them are TransactWriteItems. `finfaas ledger check` runs at the end.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

CURRENCY = "USD"
CLIENTS_DEFAULT = 4
CLIENTS_MAX = 32
LOANS_PER_CLIENT = 8  # a loan replays its transactions on each change: spread repayments over loans
SECONDS_DEFAULT = 5.0
SECONDS_MAX = 60.0
REPAYMENTS_MAX_DEFAULT = 600
REPAYMENTS_MAX = 5_000
REPAYMENT_MINOR = 100  # 1.00 of the two installments due (about 1,776.00 per loan)
PRINCIPAL_MINOR = 1_000_000  # 10,000.00 over 12 months at 12 %: 888.49 a month
TERM_MONTHS = 12
MONTHS_DUE = 2
CALL_SAMPLES = 10
FUNCTIONS = ("auth", "ledger", "loans")
MARKET = "CN"  # the loans function's business date (business_date.model.DEFAULT_MARKET)


def _seed(run_id: str, clients: int) -> list[list[tuple[str, str]]]:
    """Per client, (loan id, token) of its approved loans, each against its own empty USD wallet."""
    from finfaas.domain.ledger import NewAccount
    from finfaas.domain.loan_underwriting import Decision, Outcome
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.loans.model import Loan, LoanEvent, LoanProduct, LoanStatus
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.loans_store import LoansStore

    from finfaas_dev.bench.suite import customer_tokens

    store = LoansStore()
    product = store.create(LoanProduct(f"bench-{run_id}", "Bench loan", CURRENCY, 10_000, 5_000_000, 3, 60,
                                       Decimal("0.12")))
    ledger = ledger_store_from_config()
    LedgerService(ledger).ensure_system_accounts(CURRENCY)  # sys-loans-USD lends, sys-fees-USD earns
    now = datetime.now(UTC)
    token_of = customer_tokens(("loans:read", "loans:write"))
    per_client = []
    for client in range(clients):
        owner = f"cus-bench-{run_id}-{client}"
        token = token_of(owner)
        loans = []
        for n in range(LOANS_PER_CLIENT):
            account_id = f"acc-bench-{run_id}-{client}-{n}"
            ledger.open_account(NewAccount(account_id, owner, CURRENCY), now)
            loan = Loan(f"loan_bench{run_id}{client:03d}{n:03d}", owner, product.product_id, account_id,
                        CURRENCY, PRINCIPAL_MINOR, TERM_MONTHS, 10_000_000, 0, LoanStatus.APPROVED,
                        Decision(Outcome.APPROVE, (), False), now, decided_by="rules")
            store.create_loan(loan, LoanEvent("loan.approved", {"loan": loan.loan_id}))
            loans.append((loan.loan_id, token))
        per_client.append(loans)
    return per_client


def _disburse(base_url: str, per_client: list[list[tuple[str, str]]]) -> None:
    """Every loan paid out by the saga's step, as the orchestrator calls it."""
    from finfaas_dev.bench.transfers import _request, client_token

    saga = client_token("loans:saga")
    for loans in per_client:
        for loan_id, _ in loans:
            status, answer = _request("POST", f"{base_url}/function/loans/saga/disburse", saga,
                                      {"loan_id": loan_id})
            if status != 200:
                raise RuntimeError(f"disbursement of {loan_id}: {status} {answer}")


def _repay(base_url: str, loan_id: str, token: str) -> None:
    from finfaas_dev.bench.transfers import _request

    status, answer = _request("POST", f"{base_url}/function/loans/loans/{loan_id}/repayments", token,
                              {"amount": REPAYMENT_MINOR, "currency": CURRENCY},
                              {"Idempotency-Key": secrets.token_hex(8)})
    if status != 200:
        raise RuntimeError(f"repayment of {loan_id}: {status} {answer}")


def _phase(base_url: str, per_client: list[list[tuple[str, str]]], seconds: float,
           repayments_max: int) -> tuple[int, float, Counter[str]]:
    """Repayments done by the clients within `seconds` (each client in turn over its own loans)."""
    deadline = time.monotonic() + seconds
    quota = max(repayments_max // len(per_client), 1)
    errors: Counter[str] = Counter()
    done = [0] * len(per_client)

    def client(n: int) -> None:
        loans = per_client[n]
        while time.monotonic() < deadline and done[n] < quota:
            loan_id, token = loans[done[n] % len(loans)]
            try:
                _repay(base_url, loan_id, token)
                done[n] += 1
            except Exception as error:  # counted, and the client goes on
                errors[str(error)[:80]] += 1
                if sum(errors.values()) > repayments_max:
                    return

    started = time.monotonic()
    with ThreadPoolExecutor(len(per_client)) as pool:
        list(pool.map(client, range(len(per_client))))
    return sum(done), time.monotonic() - started, errors


def _calls_per_repayment(base_url: str, loan_id: str, token: str) -> dict[str, Any]:
    from finfaas_dev.bench.ledger import table_kind
    from finfaas_dev.bench.payments import _stats_delta, function_stats

    before = function_stats(base_url, "loans")
    for _ in range(CALL_SAMPLES):
        _repay(base_url, loan_id, token)
    after = function_stats(base_url, "loans")
    delta = _stats_delta(before, after, CALL_SAMPLES)
    # "<operation> finfaas-<stage>-<table>": which table each call went to, per repayment
    by_table = {table_kind(name, os.environ["FINFAAS_STAGE"]):
                round((count - before["dynamodb_calls"].get(name, 0)) / CALL_SAMPLES, 2)
                for name, count in sorted(after["dynamodb_calls"].items())}
    return {**delta, "by_table": {name: count for name, count in by_table.items() if count}}


def repayment_figures(clients: int = CLIENTS_DEFAULT, seconds: float = SECONDS_DEFAULT,
                      repayments_max: int = REPAYMENTS_MAX_DEFAULT) -> dict[str, Any]:
    """repayments_per_s and dynamodb_calls_per_repayment through the gateway, on their own emulators."""
    if not (0 < clients <= CLIENTS_MAX and 0 < seconds <= SECONDS_MAX
            and 0 < repayments_max <= REPAYMENTS_MAX):
        raise ValueError(f"need 0 < clients <= {CLIENTS_MAX}, 0 < seconds <= {SECONDS_MAX}, "
                         f"0 < repayments <= {REPAYMENTS_MAX}")
    from finfaas_dev.bench.ledger import ledger_check
    from finfaas_dev.bench.suite import running_suite, stack_text
    from finfaas_dev.bench.transfers import write_suite_secrets

    # The bench moves the business date itself: two installments due.
    stack = stack_text(FUNCTIONS, {"BUSINESS_DATE_MODE": "manual"})
    os.environ["BUSINESS_DATE_MODE"] = "manual"  # this process moves the date the functions read
    with running_suite("finfaas-bench-loans-", stack, write_suite_secrets, service_clients=("loans",),
                       ready=FUNCTIONS) as suite:
        base_url = suite.base_url
        per_client = _seed(suite.run_id, clients)
        _disburse(base_url, per_client)
        _advance_months(MONTHS_DUE)
        for loans in per_client:  # each client's first request (token keys, connections) not timed
            _repay(base_url, *loans[-1])
        done, phase_seconds, errors = _phase(base_url, per_client, seconds, repayments_max)
        loan_id, token = per_client[0][0]
        calls = _calls_per_repayment(base_url, loan_id, token)
        check = ledger_check(suite.sandbox.stage)
    return {
        "repayments": done,
        "repayments_per_s": round(done / phase_seconds, 1) if phase_seconds else 0.0,
        "repayment_clients": clients,
        "repayment_errors": dict(errors),
        "dynamodb_calls_per_repayment": calls["dynamodb_calls"]["total"],
        "transact_writes_per_repayment": calls["dynamodb_calls"].get("TransactWriteItems", 0.0),
        "repayment_dynamodb_calls": calls["by_table"],
        "repayment_ledger_check": "passed" if check.returncode == 0 else f"failed (exit {check.returncode})",
    }


def _advance_months(months: int) -> None:
    """The business date moved past the first `months` due dates of loans disbursed on it."""
    from finfaas.services.business_date.model import BusinessDateMode
    from finfaas.services.business_date.service import BusinessDateService
    from finfaas.store.business_date_store import BusinessDateStore

    dates = BusinessDateService(BusinessDateStore(), BusinessDateMode.MANUAL)
    today = dates.current(MARKET).business_date
    dates.advance(MARKET, days=31 * months)
    assert dates.current(MARKET).business_date > today
