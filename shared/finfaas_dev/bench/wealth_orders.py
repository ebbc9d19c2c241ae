"""`finfaas bench wealth --orders`: money-market subscriptions and redemptions through the gateway.

Everything runs on loopback in this process's own sandbox: DynamoDB Local and moto on free ports, the infra
template under a fresh stage, the suite's dev secrets, and the local gateway with the auth and wealth
functions (the wealth function runs the ledger in process). The business date is set to a Monday of the
sample calendar; an operator creates a fund through the gateway. Phases, each bounded by `--seconds` and
`--orders-max`, with `--clients` clients (default 8) spread over CUSTOMERS customers with funded wallets:
  subscriptions  POST /subscriptions (the wallet held, the order recorded, in one ledger transaction);
  redemptions    after the day's batch confirmed the subscriptions (run in process, as the state machine's
                 Tasks do), POST /redemptions alternating fast (paid at once, against the daily cap) and
                 standard (units held for T+1).
Last line: JSON with orders_per_s and order_p99_ms (both phases together), and each phase's own figures.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from finfaas_dev.bench.payments import Phase, run_clients
from finfaas_dev.bench.suite import funded_customers, running_suite, stack_text
from finfaas_dev.bench.transfers import _request, client_token, write_suite_secrets

CLIENTS_DEFAULT = 8
CLIENTS_MAX = 32
SECONDS_DEFAULT = 10.0
WARM_UP_SECONDS_MAX = 60.0  # the clients' first orders, untimed: the function's first calls build its stores
SECONDS_MAX = 60.0
ORDERS_MAX_DEFAULT = 1_000  # per phase
ORDERS_MAX = 10_000
# The wealth function's money limit lets a customer place 120 orders a minute: the bench spreads its
# orders over enough customers that no refusal it counts is the rate limit's.
CUSTOMERS = 64
CURRENCY = "CNY"
WALLET_MINOR = 10**12
SUBSCRIPTION_MINOR = 10_000  # 100.00
REDEMPTION_MINOR = 100  # 1.00: far under the fast redemption cap however many a customer makes
MARKET = "CN"
MONDAY = date(2027, 3, 1)  # the sample calendar's (infra/calendars/cn-2027.json)
INCOME_PER_10K = Decimal("0.6512")
FUNCTIONS = ("auth", "wealth")
PERCENTILE = 0.99


def wealth_service() -> Any:
    """The wealth use cases in process on the sandbox's tables (the batch's Tasks, run by the bench)."""
    from finfaas.domain.calendar import parse_calendar
    from finfaas.services.business_date.model import BusinessDateMode
    from finfaas.services.business_date.service import BusinessDateService
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.wealth.service import InProcessLedger, WealthService
    from finfaas.store.business_date_store import BusinessDateStore
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.wealth_store import WealthStore, ledger_balances_reader

    calendars = Path(__file__).resolve().parents[3] / "infra" / "calendars"
    calendar = parse_calendar((calendars / "cn-2027.json").read_text())
    ledger_store = ledger_store_from_config()
    return WealthService(WealthStore(), InProcessLedger(LedgerService(ledger_store),
                                                        ledger_balances_reader(ledger_store)),
                         BusinessDateService(BusinessDateStore(), BusinessDateMode.MANUAL),
                         {MARKET: calendar})


def open_customers(run_id: str) -> list[tuple[str, str]]:
    """(wallet id, token) of CUSTOMERS customers, each wallet funded once."""
    return [(account_id, token) for _, account_id, token in
            funded_customers(CUSTOMERS, f"wc{run_id}-", f"wa{run_id}-", CURRENCY, WALLET_MINOR,
                             ("wealth:read", "wealth:write"))]


class Orders:
    """Each client's orders, round robin over the customers, with each request's latency."""

    def __init__(self, base_url: str, product_id: str, customers: list[tuple[str, str]], path: str,
                 body: Any) -> None:
        self._url = f"{base_url}/function/wealth/{path}"
        self._product_id = product_id
        self._customers = customers
        self._body = body
        self._lock = threading.Lock()
        self._sent = 0
        self.latencies_s: list[float] = []
        self.served: set[int] = set()  # the customers whose orders succeeded

    def __call__(self, client: int) -> None:
        with self._lock:
            n, self._sent = self._sent, self._sent + 1
        customer = n % len(self._customers)
        account_id, token = self._customers[customer]
        order_id = f"o{client}-{n}-{secrets.token_hex(3)}"
        started = time.perf_counter()
        body = self._body(order_id, self._product_id, account_id, n)
        status, answer = _request("POST", self._url, token, body, {"Idempotency-Key": secrets.token_hex(8)})
        elapsed = time.perf_counter() - started
        if status != 201:
            raise RuntimeError(f"{status} {str(answer)[:40]}")
        with self._lock:
            self.latencies_s.append(elapsed)
            self.served.add(customer)


def subscription(order_id: str, product_id: str, account_id: str, n: int) -> dict[str, Any]:
    return {"order_id": order_id, "product_id": product_id, "account_id": account_id,
            "amount": SUBSCRIPTION_MINOR}


def redemption(order_id: str, product_id: str, account_id: str, n: int) -> dict[str, Any]:
    return {"order_id": order_id, "product_id": product_id, "account_id": account_id,
            "amount": REDEMPTION_MINOR, "mode": "fast" if n % 2 == 0 else "standard"}


def percentile_ms(latencies_s: list[float]) -> float | None:
    if not latencies_s:
        return None
    ordered = sorted(latencies_s)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * PERCENTILE))] * 1000, 1)


def phase_summary(phase: Phase, orders: Orders) -> dict[str, Any]:
    return {"orders": phase.done, "orders_per_s": phase.per_second,
            "p99_ms": percentile_ms(orders.latencies_s), "errors": dict(phase.errors or {}),
            "late": phase.late}


def measure(args: argparse.Namespace, base_url: str, run_id: str) -> dict[str, Any]:
    from finfaas.services.business_date.model import BusinessDateMode
    from finfaas.services.business_date.service import BusinessDateService
    from finfaas.store.business_date_store import BusinessDateStore

    from finfaas_dev.wealth import run_day

    BusinessDateService(BusinessDateStore(), BusinessDateMode.MANUAL).advance(MARKET, to=MONDAY)
    operator = client_token("ops", "ops:act")
    product_id = f"bench-mmf-{run_id}"
    # A cut-off at the day's end: every order of the run belongs to Monday, whatever the clock's time.
    status, answer = _request("POST", f"{base_url}/function/wealth/_/ops/products", operator,
                              {"product_id": product_id, "kind": "mmf", "name": "Bench Cash", "minimum": 100,
                               "cutoff": "23:59:59"}, {"Idempotency-Key": secrets.token_hex(8)})
    if status != 201:
        raise RuntimeError(f"creating the fund: {status} {answer}")
    customers = open_customers(run_id)
    warm_up = Orders(base_url, product_id, customers, "subscriptions", subscription)
    run_clients(args.clients, WARM_UP_SECONDS_MAX, args.clients, warm_up)
    subscribe = Orders(base_url, product_id, customers, "subscriptions", subscription)
    subscribed = run_clients(args.clients, args.seconds, args.orders_max, subscribe)
    # Monday's and Tuesday's batches (in process): Tuesday confirms the subscriptions into positions.
    service = wealth_service()
    service.publish_income(product_id, date(2027, 3, 2), INCOME_PER_10K)
    for day in (MONDAY, date(2027, 3, 2)):
        run_day(service, MARKET, day)
    # Redemptions only by customers holding units: each subscribed 100.00, each redemption takes 1.00.
    holders = [customers[n] for n in sorted(warm_up.served | subscribe.served)]
    if not holders:
        raise RuntimeError(f"no subscription went through: {dict(subscribed.errors or {})}")
    redeem = Orders(base_url, product_id, holders, "redemptions", redemption)
    redeemed = run_clients(args.clients, args.seconds, args.orders_max, redeem)
    seconds = subscribed.seconds_in_time + redeemed.seconds_in_time
    done = subscribed.done_in_time + redeemed.done_in_time
    return {
        "clients": args.clients,
        "orders_per_s": round(done / seconds, 1) if seconds else 0.0,
        "order_p99_ms": percentile_ms(subscribe.latencies_s + redeem.latencies_s),
        "subscriptions": phase_summary(subscribed, subscribe),
        "redemptions": phase_summary(redeemed, redeem),
        "wealth_check": wealth_check(),
    }


def wealth_check() -> str:
    """`finfaas wealth check` on what the run wrote: positions' units against the ledger."""
    from finfaas_dev.wealth import check_stage

    report = check_stage()
    return "passed" if report.passed else f"failed: {report.findings[:3]}"


def run(args: argparse.Namespace) -> int:
    if not (0 < args.seconds <= SECONDS_MAX and 0 < args.clients <= CLIENTS_MAX
            and 1 <= args.orders_max <= ORDERS_MAX):
        print(f"bench wealth --orders: need 0 < --seconds <= {SECONDS_MAX}, 0 < --clients <= {CLIENTS_MAX}, "
              f"1 <= --orders-max <= {ORDERS_MAX}", file=sys.stderr)
        return 2
    # The bench moves the business date itself, as an operator does in the sandbox.
    stack = stack_text(FUNCTIONS, {"BUSINESS_DATE_MODE": "manual"})
    with running_suite("finfaas-bench-wealth-orders-", stack, write_suite_secrets,
                       service_clients=("wealth",), ready=FUNCTIONS) as suite:
        summary = measure(args, suite.base_url, suite.run_id)
    print(f"{summary['orders_per_s']} orders/s through the gateway with {summary['clients']} clients, "
          f"p99 {summary['order_p99_ms']} ms")
    print(json.dumps(summary))
    failed = summary["subscriptions"]["orders"] == 0 or summary["redemptions"]["orders"] == 0
    return 1 if failed or summary["wealth_check"] != "passed" else 0

