"""`finfaas bench payments`: authorize + capture through the gateway and the payments function, against the
same ledger work (a hold, then its post) straight against the ledger store, on one DynamoDB Local.

Everything runs on loopback in this process's own sandbox: DynamoDB Local and moto on free ports, the
infra template under a fresh stage, the suite's dev secrets, and the local gateway with the auth, ledger,
risk and payments functions. Phases, each bounded by `--seconds` and `--payments-max`:
  profile   one client, PROFILE_SAMPLES payments each way, one request at a time: where a payment's time
            goes (each request's latency at the client; in the payments function its platform steps; the
            risk function's own time) and its DynamoDB calls (each function's /_/ops/stats);
  captures  `--clients` clients, each paying one of `--merchants` merchants with automatic capture in one
            call (create with confirm=true: risk check, then one ledger transaction);
  manual    the same clients authorizing (create with confirm=true: the hold) and capturing (the post)
            in two calls: the very ledger work of raw;
  raw       as many threads doing a hold and its post with LedgerService on the store directly;
  hot       `--hot-rounds` rounds (default 3) of 16 clients all paying ONE merchant and 16 clients paying
            16 merchants (in turn the other way round); hot_merchant_ratio is the median round's, with
            every round's ratio and their spread, and how the hot merchant's payments spread over its
            receivable shards;
  calls     single payments, captures and refunds, counting the payments function's DynamoDB calls (its
            /_/ops/stats) per request.
Then every merchant is settled for the business date through the gateway; `finfaas ledger check` and
`finfaas payments check` (every settlement against the ledger) run at the end. Last line: JSON with
captures_per_s, raw_per_s, ratio, manual_captures_per_s, manual_ratio, hot_merchant_ratio,
dynamodb_calls_per_capture, _per_manual_capture, _per_refund, the profile, ledger_check and settlement_check.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3

from finfaas_dev.bench.ledger import ledger_check
from finfaas_dev.bench.suite import funded_customers, running_suite, stack_text
from finfaas_dev.bench.transfers import _request, client_token, write_suite_secrets

CURRENCY = "USD"
CLIENTS_DEFAULT = 8
MERCHANTS_DEFAULT = 16
HOT_CLIENTS = 16
# The hot-merchant figure is the median of this many rounds, each one merchant then sixteen (in turn the
# other way round), so a burst of other work on a shared machine moves one round, not the figure.
HOT_ROUNDS_DEFAULT = 3
HOT_ROUNDS_MAX = 7
SECONDS_DEFAULT = 5.0
SECONDS_MAX = 60.0
PAYMENTS_MAX_DEFAULT = 2_000  # per phase
CLIENTS_MAX = 64
CALL_SAMPLES = 10  # single captures and refunds counted for the calls per request
PROFILE_SAMPLES = 10  # payments each way in the one-client profile
PAYMENT_MINOR = 100
ACCOUNT_OPENING_MINOR = 10**15  # more than any run can spend
# Risk flags a customer's tenth payment in an hour (and payments decline a flagged one): the bench hands
# each customer out at most this often, so every refusal it counts is a real one.
PAYMENTS_PER_CUSTOMER_MAX = 8
CUSTOMERS_MAX = 2_000
ONBOARDING_ATTEMPTS_MAX = 3
RATIO_TARGET = 0.7
HOT_RATIO_TARGET = 0.8
FUNCTIONS = ("auth", "ledger", "risk", "payments")
SETTLEMENT_LAG_SECONDS = 1  # the bench's PAYMENTS_SETTLEMENT_LAG_SECONDS
SETTLEMENT_MARKET = "CN"  # the payments function's (functions/payments/handler.py)
CHECK_TIMEOUT_SECONDS = 300


@dataclass
class Phase:
    done: int = 0
    errors: Counter[str] | None = None
    seconds: float = 0.0
    # Finished within the phase's time, and when the last of them did: a call stuck past the deadline
    # (seen on a loaded machine) lengthens `seconds` but says nothing of the rate before it.
    done_in_time: int = 0
    seconds_in_time: float = 0.0
    late: int = 0  # finished after the deadline

    @property
    def per_second(self) -> float:
        return round(self.done_in_time / self.seconds_in_time, 1) if self.seconds_in_time else 0.0


def open_customers(run_id: str, count: int) -> list[tuple[str, str]]:
    """(account id, token) of customers with one well-funded account each."""
    return [(account_id, token) for _, account_id, token in
            funded_customers(count, f"pc{run_id}-", f"pa{run_id}-", CURRENCY, ACCOUNT_OPENING_MINOR,
                             ("payments:read", "payments:write"))]


class Customers:
    """Hands out (account id, token), each customer at most PAYMENTS_PER_CUSTOMER_MAX times, and to one
    client only: a client keeps its customer until it has used it up, then takes the next. Two clients
    never pay from one account at once (as the raw side's clients each debit their own account), so the
    figures do not count transaction conflicts on a customer's account that real customers, paying one
    at a time, would not cause."""

    def __init__(self, customers: list[tuple[str, str]]) -> None:
        self._customers = customers
        self._taken = 0
        self._current: dict[int, tuple[int, int]] = {}  # client -> (its customer's index, payments handed)
        self._lock = threading.Lock()

    def next(self, client: int = -1) -> tuple[str, str]:
        with self._lock:
            index, handed = self._current.get(client, (self._taken, PAYMENTS_PER_CUSTOMER_MAX))
            if handed >= PAYMENTS_PER_CUSTOMER_MAX:
                index, handed = self._taken, 0
                self._taken += 1
            self._current[client] = (index, handed + 1)
        if index >= len(self._customers):
            raise RuntimeError("customers exhausted")
        return self._customers[index]


def onboard(base_url: str, operator: str, merchant_id: str) -> dict[str, Any]:
    """The merchant, onboarded; sent again (same key) after a timeout or a 503, as cold functions on a
    loaded machine give (onboarding the same merchant_id again finds it)."""
    body = {"merchant_id": merchant_id, "name": "Bench shop", "currency": CURRENCY,
            "settlement_account": {"bank_code": "SANDUS00", "account_number": "000123456789", "name": "Shop"},
            "fee_schedule": {"bps": 290, "fixed_minor": 0}}
    key = {"Idempotency-Key": secrets.token_hex(8)}
    for _ in range(ONBOARDING_ATTEMPTS_MAX):
        try:
            status, answer = _request("POST", f"{base_url}/function/payments/_/ops/merchants", operator, body,
                                      key)
        except (OSError, urllib3.exceptions.HTTPError) as error:  # a timeout, a dropped connection
            status, answer = 0, repr(error)
        if status not in (0, 503):
            break
    if status != 201:
        raise RuntimeError(f"onboarding {merchant_id}: {status} {answer}")
    return answer


# How a client pays: `automatic` one call (create with confirm=true, automatic capture); `manual` two
# (create with confirm=true holds, capture posts); `stepwise` three (create, confirm, capture), as before
# create could confirm.
WAYS = ("automatic", "manual", "stepwise")


def pay(base_url: str, account_id: str, token: str, merchant_id: str, capture: bool = True,
        way: str = "automatic", timings: dict[str, list[float]] | None = None) -> str:
    """One payment (authorized only, without capture); its id. RuntimeError names the step that failed.
    `timings` collects each request's latency at the client, by step."""
    intents = f"{base_url}/function/payments/payment_intents"
    automatic = way == "automatic" and capture
    body = {"amount": PAYMENT_MINOR, "currency": CURRENCY, "customer_account_id": account_id,
            "merchant_id": merchant_id, "capture_method": "automatic" if automatic else "manual"}
    if way != "stepwise":
        body["confirm"] = True
    steps = [] if way != "stepwise" else [("confirm", None)]
    steps += [("capture", {})] if capture and not automatic else []

    def send(step: str, url: str, step_body: Any, expected: int) -> Any:
        started = time.perf_counter()
        status, answer = _request("POST", url, token, step_body, {"Idempotency-Key": secrets.token_hex(8)})
        if timings is not None:
            timings.setdefault(step, []).append(time.perf_counter() - started)
        if status != expected:
            raise RuntimeError(f"{step} {status}")
        return answer

    intent = send("create", intents, body, 201)
    for step, step_body in steps:
        send(step, f"{intents}/{intent['id']}/{step}", step_body, 200)
    return str(intent["id"])


def run_clients(clients: int, seconds: float, payments_max: int, work: Any) -> Phase:
    """`clients` threads calling work(client) until the time or the count runs out."""
    phase = Phase(errors=Counter())
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        while time.monotonic() < deadline:
            with lock:
                if phase.done >= payments_max:
                    return
            try:
                work(n)
            except Exception as error:  # noqa: BLE001 - counted, the run goes on
                with lock:
                    phase.errors[str(error)[:60]] += 1
                continue
            with lock:
                phase.done += 1
                finished = time.monotonic()
                if finished < deadline:
                    phase.done_in_time += 1
                    phase.seconds_in_time = max(phase.seconds_in_time, finished - started)
                else:
                    phase.late += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    phase.seconds = time.monotonic() - started
    return phase


def raw_work(run_id: str, accounts: list[str], receivables: list[str]) -> Any:
    """The same ledger work as a capture, straight on the store: a hold, then its post."""
    from finfaas.services.ledger.model import TransferRequest
    from finfaas.services.ledger.service import LedgerService
    from finfaas.store.ledger_store import ledger_store_from_config

    ledger = LedgerService(ledger_store_from_config())
    counter = iter(range(10**9))
    lock = threading.Lock()

    def work(client: int) -> None:
        with lock:
            n = next(counter)
        hold_id = f"raw{run_id}-{n}"
        request = TransferRequest(accounts[client % len(accounts)], receivables[n % len(receivables)],
                                  PAYMENT_MINOR, CURRENCY, hold_id, pending=True, timeout_seconds=3600)
        ledger.transfer(request)
        ledger.post_pending(hold_id, transfer_id=f"{hold_id}-p")

    return work


def calls_per_request(base_url: str, send: Any) -> dict[str, float]:
    """The payments function's DynamoDB calls per request, by operation, over CALL_SAMPLES requests."""
    def snapshot() -> Counter[str]:
        stats = function_stats(base_url, "payments")
        by_operation: Counter[str] = Counter()
        for name, count in stats["dynamodb_calls"].items():  # "<operation> <table>": calls
            by_operation[name.split(" ")[0]] += count
        return by_operation

    total: Counter[str] = Counter()
    for _ in range(CALL_SAMPLES):
        prepared = send.prepare()
        before = snapshot()
        send(prepared)
        total += snapshot() - before
    per = {name: round(count / CALL_SAMPLES, 2) for name, count in sorted(total.items())}
    per["total"] = round(sum(total.values()) / CALL_SAMPLES, 2)
    return per


class SingleCapture:
    """prepare(): an authorized payment; call: its capture alone."""

    def __init__(self, base_url: str, customers: Customers, merchant_id: str) -> None:
        self.base_url, self.customers, self.merchant_id = base_url, customers, merchant_id

    def prepare(self) -> tuple[str, str]:
        account_id, token = self.customers.next()
        return pay(self.base_url, account_id, token, self.merchant_id, capture=False, way="manual"), token

    def __call__(self, prepared: tuple[str, str]) -> None:
        payment_id, token = prepared
        url = f"{self.base_url}/function/payments/payment_intents/{payment_id}/capture"
        status, answer = _request("POST", url, token, {}, {"Idempotency-Key": secrets.token_hex(8)})
        if status != 200:
            raise RuntimeError(f"capture {status} {answer}")


class SinglePayment(SingleCapture):
    """prepare(): a customer; call: one payment with automatic capture, in one request."""

    def prepare(self) -> tuple[str, str]:
        return self.customers.next()

    def __call__(self, prepared: tuple[str, str]) -> None:
        pay(self.base_url, *prepared, self.merchant_id)


class SingleRefund(SingleCapture):
    """prepare(): a captured payment; call: one refund of part of it."""

    def prepare(self) -> tuple[str, str]:
        account_id, token = self.customers.next()
        return pay(self.base_url, account_id, token, self.merchant_id), token

    def __call__(self, prepared: tuple[str, str]) -> None:
        payment_id, token = prepared
        url = f"{self.base_url}/function/payments/payment_intents/{payment_id}/refunds"
        status, answer = _request("POST", url, token, {"refund_number": "r-1", "amount": 10},
                                  {"Idempotency-Key": secrets.token_hex(8)})
        if status != 201:
            raise RuntimeError(f"refund {status} {answer}")


def function_stats(base_url: str, function: str) -> dict[str, Any]:
    # A token of its own each time: a slow setup on a busy machine outlives a token minted at the start.
    status, stats = _request("GET", f"{base_url}/function/{function}/_/ops/stats", client_token("ops"))
    if status != 200:
        raise RuntimeError(f"{function} stats {status}")
    return stats


def _stats_delta(before: dict[str, Any], after: dict[str, Any], count: int) -> dict[str, Any]:
    """Per payment: each platform step's ms and calls, and DynamoDB calls by operation."""
    steps = {}
    for step, now in after["steps"].items():
        was = before["steps"].get(step, {"calls": 0, "ms_total": 0.0})
        calls = now["calls"] - was["calls"]
        if calls:
            steps[step] = {"ms_per_payment": round((now["ms_total"] - was["ms_total"]) / count, 2),
                           "calls_per_payment": round(calls / count, 2)}
    dynamodb: Counter[str] = Counter()
    for name, calls in after["dynamodb_calls"].items():
        dynamodb[name.split(" ")[0]] += calls - before["dynamodb_calls"].get(name, 0)
    calls_per = {name: round(n / count, 2) for name, n in sorted(dynamodb.items()) if n}
    calls_per["total"] = round(sum(dynamodb.values()) / count, 2)
    return {"steps": steps, "dynamodb_calls": calls_per}


def profile(base_url: str, customers: Customers, merchant_id: str) -> dict[str, Any]:
    """One client, one request at a time: each way of paying, PROFILE_SAMPLES times; where the time goes."""
    profiled: dict[str, Any] = {}
    for way in WAYS:
        timings: dict[str, list[float]] = {}
        before = {name: function_stats(base_url, name) for name in ("payments", "risk")}
        started, done = time.perf_counter(), 0
        for _ in range(PROFILE_SAMPLES):
            try:
                pay(base_url, *customers.next(), merchant_id, way=way, timings=timings)
            except RuntimeError as error:
                profiled[way] = {"unavailable": str(error)}
                break
            done += 1
        if not done:
            continue
        elapsed = time.perf_counter() - started
        after = {name: function_stats(base_url, name) for name in ("payments", "risk")}
        profiled[way] = {
            "ms_per_payment": round(elapsed * 1000 / done, 1),
            "client_ms_mean": {step: round(sum(times) * 1000 / len(times), 1)
                               for step, times in timings.items()},
            **{name: _stats_delta(before[name], after[name], done) for name in ("payments", "risk")},
        }
    return profiled


def shard_spread(base_url: str, merchant_id: str) -> dict[str, Any]:
    """How a merchant's captured money lies over its receivable shards: shards used, the largest share."""
    status, balance = _request("GET", f"{base_url}/function/payments/_/ops/merchants/{merchant_id}/balance",
                               client_token("ops", "ops:act"))
    if status != 200:
        return {"unavailable": f"balance {status}"}
    shards = list(balance["receivable_shards"].values())
    total = sum(shards)
    return {"shards": len(shards), "used": sum(1 for amount in shards if amount),
            "largest_share": round(max(shards) / total, 3) if total else None}


def measure(args: argparse.Namespace, base_url: str, run_id: str) -> dict[str, Any]:
    operator = client_token("ops", "ops:act")
    merchants = [onboard(base_url, operator, f"bm{run_id}-{n}") for n in range(max(args.merchants, 16))]
    phases = 2 + 2 * args.hot_rounds  # the gateway's phases that pay: captures, manual, the hot rounds'
    payments_max = phases * args.payments_max + 3 * CALL_SAMPLES + len(WAYS) * PROFILE_SAMPLES + 20
    # A phase stops at its count once its clients' payments in flight finish (up to one more per client),
    # and each client may leave one customer partly used.
    clients_max = max(args.clients, HOT_CLIENTS)
    wanted = -(-(payments_max + phases * clients_max) // PAYMENTS_PER_CUSTOMER_MAX) + clients_max + 1
    opened = open_customers(run_id, min(CUSTOMERS_MAX, wanted))
    customers = Customers(opened)

    def paying(merchant_of: Any, way: str = "automatic") -> Any:
        return lambda client: pay(base_url, *customers.next(client), merchant_of(client), way=way)

    many = [m["merchant_id"] for m in merchants[:args.merchants]]
    run_clients(2, 2.0, 20, paying(lambda c: many[c % len(many)]))  # warm every function up
    receivables = [r for m in merchants for r in m["ledger_accounts"]["receivables"]]
    raw_accounts = [account for account, _ in opened]
    # The raw side runs before and after the gateway's phases: on a shared machine the two differ, and
    # both are reported; the ratio takes the faster. One untimed operation first, as the functions had
    # their warm-up: the store's first call (its client, its models) costs seconds on a loaded machine.
    raw = raw_work(run_id, raw_accounts, receivables)
    raw(0)
    raw_before = run_clients(args.clients, args.seconds, args.payments_max, raw)
    profiled = profile(base_url, customers, many[-1])
    captures = run_clients(args.clients, args.seconds, args.payments_max,
                           paying(lambda c: many[c % len(many)]))
    manual = run_clients(args.clients, args.seconds, args.payments_max,
                         paying(lambda c: many[c % len(many)], way="manual"))
    raw_after = run_clients(args.clients, args.seconds, args.payments_max, raw)
    fastest_raw = max(raw_before, raw_after, key=lambda phase: phase.per_second)
    hot = merchants[0]["merchant_id"]
    spread = [m["merchant_id"] for m in merchants[:HOT_CLIENTS]]
    rounds = []
    for n in range(args.hot_rounds):
        def hot_phase() -> Phase:
            return run_clients(HOT_CLIENTS, args.seconds, args.payments_max, paying(lambda c: hot))

        def spread_phase() -> Phase:
            return run_clients(HOT_CLIENTS, args.seconds, args.payments_max, paying(lambda c: spread[c]))

        if n % 2 == 0:
            one_round = hot_phase()
            rounds.append((one_round, spread_phase()))
        else:
            sixteen_round = spread_phase()
            rounds.append((hot_phase(), sixteen_round))
    round_ratios = sorted((ratio(o, s) or 0.0, k) for k, (o, s) in enumerate(rounds))
    one, sixteen = rounds[round_ratios[len(round_ratios) // 2][1]]  # the median round
    hot_spread = shard_spread(base_url, hot)
    per_payment = calls_per_request(base_url, SinglePayment(base_url, customers, many[0]))
    per_capture = calls_per_request(base_url, SingleCapture(base_url, customers, many[0]))
    per_refund = calls_per_request(base_url, SingleRefund(base_url, customers, many[0]))
    time.sleep(SETTLEMENT_LAG_SECONDS + 1)
    # A fresh token: the first one's five minutes are over by now on a loaded machine (401s were seen).
    settled = settle_merchants(base_url, client_token("ops", "ops:act"),
                               [m["merchant_id"] for m in merchants])

    return {
        "captures_per_s": captures.per_second,
        "raw_per_s": fastest_raw.per_second,
        "raw_runs_per_s": [raw_before.per_second, raw_after.per_second],
        "ratio": ratio(captures, fastest_raw),
        "manual_captures_per_s": manual.per_second,
        "manual_ratio": ratio(manual, fastest_raw),
        "hot_merchant_ratio": ratio(one, sixteen),
        "hot_merchant_ratio_rounds": [ratio(o, s) for o, s in rounds],
        "hot_merchant_ratio_spread": [round_ratios[0][0], round_ratios[-1][0]],
        "hot_one_merchant_per_s": one.per_second,
        "hot_sixteen_merchants_per_s": sixteen.per_second,
        "hot_merchant_shards": hot_spread,
        "dynamodb_calls_per_capture": per_payment["total"],
        "dynamodb_calls_per_manual_capture": per_capture["total"],
        "dynamodb_calls_per_refund": per_refund["total"],
        "calls_per_capture_by_operation": per_payment,
        "calls_per_manual_capture_by_operation": per_capture,
        "calls_per_refund_by_operation": per_refund,
        "profile": profiled,
        "errors": {name: dict(phase.errors or {}) for name, phase in
                   (("captures", captures), ("manual", manual), ("raw", raw_before), ("raw_after", raw_after),
                    ("hot_one", one),
                    ("hot_sixteen", sixteen)) if phase.errors},
        "late": {name: phase.late for name, phase in
                 (("captures", captures), ("manual", manual), ("raw", raw_before), ("raw_after", raw_after),
                  ("hot_one", one), ("hot_sixteen", sixteen)) if phase.late},
        "clients": args.clients,
        "merchants": args.merchants,
        "seconds": args.seconds,
        "settlements": settled,
    }


def ratio(part: Phase, whole: Phase) -> float | None:
    return round(part.per_second / whole.per_second, 3) if whole.per_second else None


def settle_merchants(base_url: str, operator: str, merchant_ids: list[str]) -> dict[str, Any]:
    """Each merchant settled for the business date (clock mode: the market's date), through the gateway;
    the payouts, and whether every report reconciles."""
    from finfaas.domain.calendar import zone
    from finfaas.services.business_date.model import MARKET_TIME_ZONES

    today = datetime.now(UTC).astimezone(zone(MARKET_TIME_ZONES[SETTLEMENT_MARKET])).date().isoformat()
    payouts, errors, reconciles = 0, Counter[str](), True
    for merchant_id in merchant_ids:
        status, answer = _request("POST", f"{base_url}/function/payments/_/ops/merchants/{merchant_id}"
                                  f"/settlements/{today}", operator)
        if status != 200:
            errors[str(status)] += 1
            continue
        payouts += answer["payout"]
        reconciles = reconciles and answer["reconciles"]
    return {"merchants": len(merchant_ids), "payout_minor": payouts, "reconciles": reconciles,
            "errors": dict(errors)}


# --- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=CLIENTS_DEFAULT, help="concurrent clients")
    parser.add_argument("--merchants", type=int, default=MERCHANTS_DEFAULT, help="merchants they pay")
    parser.add_argument("--seconds", type=float, default=SECONDS_DEFAULT, help="length of one phase")
    parser.add_argument("--payments-max", type=int, default=PAYMENTS_MAX_DEFAULT, help="cap per phase")
    parser.add_argument("--hot-rounds", type=int, default=HOT_ROUNDS_DEFAULT,
                        help=f"rounds of the hot-merchant phases, the median reported (1-{HOT_ROUNDS_MAX})")


def run(args: argparse.Namespace) -> int:
    if not (0 < args.seconds <= SECONDS_MAX and 0 < args.clients <= CLIENTS_MAX and args.merchants >= 1
            and args.payments_max >= 1 and 1 <= args.hot_rounds <= HOT_ROUNDS_MAX):
        print(f"bench payments: need 0 < --seconds <= {SECONDS_MAX}, 0 < --clients <= {CLIENTS_MAX}, "
              f"--merchants >= 1, --payments-max >= 1, 1 <= --hot-rounds <= {HOT_ROUNDS_MAX}",
              file=sys.stderr)
        return 2
    stack = stack_text(FUNCTIONS, {
        # Bench payments are tiny: the degraded rule would pass them even if risk failed.
        "PAYMENTS_DEGRADED_AUTO_APPROVE_MAJOR": "100",
        # Every phase has ended when the bench settles: no ledger write is in flight.
        "PAYMENTS_SETTLEMENT_LAG_SECONDS": str(SETTLEMENT_LAG_SECONDS)})
    with running_suite("finfaas-bench-payments-", stack, write_suite_secrets, service_clients=("payments",),
                       ready=FUNCTIONS) as suite:
        summary = measure(args, suite.base_url, suite.run_id)
        check = ledger_check(suite.sandbox.stage)
        settlement = payments_check(suite.sandbox.stage)
    summary["ledger_check"] = "passed" if check.returncode == 0 else f"failed (exit {check.returncode})"
    summary["settlement_check"] = ("passed" if settlement.returncode == 0
                                   else f"failed (exit {settlement.returncode})")
    print(f"captures/raw = {summary['ratio']} (target {RATIO_TARGET}; manual, two calls: "
          f"{summary['manual_ratio']}); hot merchant ratio "
          f"{summary['hot_merchant_ratio']} (goal {HOT_RATIO_TARGET}); "
          f"{summary['dynamodb_calls_per_capture']} DynamoDB calls per capture, "
          f"{summary['dynamodb_calls_per_refund']} per refund")
    print(json.dumps(summary))
    return 0 if check.returncode == 0 and settlement.returncode == 0 else 1


def payments_check(stage: str) -> subprocess.CompletedProcess:
    """`finfaas payments check`: every settlement reconciled with the ledger."""
    return subprocess.run([sys.executable, "-m", "finfaas_dev.cli", "payments", "check", "--stage", stage],
                          capture_output=True, text=True, timeout=CHECK_TIMEOUT_SECONDS, env=dict(os.environ))

