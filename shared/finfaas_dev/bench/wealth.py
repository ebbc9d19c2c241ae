"""`finfaas bench wealth`: the daily batch's income posting for many money-market holders.

Everything runs on loopback in this process's own sandbox: DynamoDB Local and moto on free ports and the
infra template under a fresh stage. `--positions` holders (default 100,000) are seeded straight into the
tables (their ledger accounts with their units, their positions and the confirmed subscriptions that
explain them, the funding account debited by the total so the ledger still sums to zero); then one
business date's batch runs in process with the same use cases the wealth-daily state machine calls
(confirm, income pages, settle, end), timed and with every DynamoDB call counted. The same day's income
pages run again (rerun_postings: 0 when nothing posts twice) and `finfaas wealth check`'s rules run last.
Last line: JSON with positions, positions_per_s, batch_seconds, dynamodb_calls_per_position,
rerun_postings, wealth_check (and seed_seconds, check_seconds, the batch's CPU seconds in this process
and in the emulators). `--orders` times subscriptions and redemptions through the gateway instead
(finfaas_dev/bench/wealth_orders.py).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from finfaas_dev.bench.suite import Sandbox, export_environment
from finfaas_dev.net import free_port

POSITIONS_DEFAULT = 100_000
POSITIONS_MAX = 1_000_000
SEED_THREADS = 4
SEED_SLICE = 2_000  # positions per seeding task
BATCH_SECONDS_GOAL = 120.0
CALLS_PER_POSITION_GOAL = 0.1
MARKET = "CN"
DAY = date(2027, 3, 4)
INCOME_PER_10K = Decimal("0.6512")


def seed(product: Any, count: int, ledger_store: Any, store: Any) -> int:
    """Holders with units from 100.00 to about 300,000.00, written directly; the total units."""
    from finfaas.domain.ledger import AccountKind, AccountStatus, system_account_id
    from finfaas.store.models import format_time

    from finfaas_dev.wealth import seeded_holdings

    customers = [f"b{n:07d}" for n in range(count)]
    units = [10_000 + (n * 7_919_993) % 30_000_000 for n in range(count)]
    opened = format_time(datetime.now(UTC))
    account_model = ledger_store.models.account

    def write(start: int) -> None:
        slice_customers, slice_units = customers[start:start + SEED_SLICE], units[start:start + SEED_SLICE]
        positions, orders = seeded_holdings(product, slice_customers, slice_units, DAY)
        with account_model.batch_write() as batch:
            for position, held in zip(positions, slice_units, strict=True):
                batch.save(account_model(position.account_id, owner_id=position.customer_id, opened_at=opened,
                                         currency="CNY", kind=AccountKind.CUSTOMER.value,
                                         status=AccountStatus.OPEN.value,
                                         limited=True, overdraft_limit_minor=0, debits_pending=0,
                                         debits_posted=0, credits_pending=0, credits_posted=held,
                                         available_minor=held, version=1))
        store.seed(positions, orders)

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(write, range(0, count, SEED_SLICE)))
    total = sum(units)
    # The money came from somewhere: the funding account pays for it, so balances still sum to zero.
    funding = account_model.get(system_account_id(AccountKind.FUNDING, "CNY"), consistent_read=True)
    funding.update(actions=[account_model.debits_posted.add(total),
                            account_model.available_minor.add(-total)])
    return total


def emulators_cpu_seconds() -> float:
    """CPU seconds used so far by this process's descendants (DynamoDB Local and moto)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue  # ended meanwhile
    return total


def measure(count: int) -> dict[str, Any]:
    from finfaas.services.business_date.model import BusinessDateMode
    from finfaas.services.business_date.service import BusinessDateService
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.wealth.model import Product, ProductKind, ProductStatus, fund_account_id
    from finfaas.services.wealth.service import InProcessLedger, WealthService
    from finfaas.store.call_meter import DynamoCallMeter
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.wealth_store import WealthStore, ledger_balances_reader

    from finfaas_dev.fakes.business_date import InMemoryBusinessDateStore
    from finfaas_dev.wealth import check_stage, run_day, run_pages

    calendars_dir = Path(__file__).resolve().parents[3] / "infra" / "calendars"
    from finfaas.domain.calendar import parse_calendar

    calendar = parse_calendar((calendars_dir / "cn-2027.json").read_text())
    ledger_store = ledger_store_from_config()
    ledger = LedgerService(ledger_store)
    ledger.ensure_system_accounts("CNY")
    store = WealthStore()
    dates_store = InMemoryBusinessDateStore()
    dates_store.replace(MARKET, None, DAY, datetime.now(UTC))
    dates = BusinessDateService(dates_store, BusinessDateMode.MANUAL)
    wealth_ledger = InProcessLedger(ledger, ledger_balances_reader(ledger_store))
    service = WealthService(store, wealth_ledger, dates, {MARKET: calendar})
    product_id = f"bench-{secrets.token_hex(3)}"
    product = service.create_product(Product(product_id, ProductKind.MMF, "Bench Cash", MARKET, "CNY",
                                             ProductStatus.OPEN, 100, fund_account_id(product_id)))
    started = time.monotonic()
    seed(product, count, ledger_store, store)
    seed_seconds = time.monotonic() - started
    service.publish_income(product_id, DAY, INCOME_PER_10K)

    meter = DynamoCallMeter()
    meter.start()
    emulators_before, bench_before = emulators_cpu_seconds(), time.process_time()
    started = time.monotonic()
    day = run_day(service, MARKET, DAY)
    batch_seconds = time.monotonic() - started
    bench_cpu, emulators_cpu = time.process_time() - bench_before, emulators_cpu_seconds() - emulators_before
    meter.stop()
    by_call = meter.snapshot()
    calls = sum(by_call.values())
    # The same day's income pages again, as a rerun after the date moved would reach them.
    _, rerun_postings = run_pages(lambda cursor: service.income_page(MARKET, DAY, cursor))

    started = time.monotonic()
    report = check_stage()  # `finfaas wealth check` on the bench's stage
    check_seconds = time.monotonic() - started
    settled = day.settlements[0]
    return {
        "positions": count,
        "positions_per_s": round(count / batch_seconds, 1),
        "batch_seconds": round(batch_seconds, 1),
        "dynamodb_calls_per_position": round(calls / count, 4),
        "rerun_postings": rerun_postings,
        "wealth_check": "passed" if report.passed else f"failed: {report.findings[:3]}",
        "posted": day.posted,
        "distributable": settled.distributable_minor,
        "remainder": settled.remainder_minor,
        "seed_seconds": round(seed_seconds, 1),
        "check_seconds": round(check_seconds, 1),
        "batch_cpu_seconds": {"bench": round(bench_cpu, 1), "emulators": round(emulators_cpu, 1)},
        "dynamodb_calls": by_call,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from finfaas_dev.bench import wealth_orders

    parser.add_argument("--positions", type=int, default=POSITIONS_DEFAULT, help="MMF holders to seed")
    parser.add_argument("--orders", action="store_true",
                        help="subscriptions and redemptions through the gateway instead of the batch")
    parser.add_argument("--clients", type=int, default=wealth_orders.CLIENTS_DEFAULT,
                        help="--orders: concurrent clients")
    parser.add_argument("--seconds", type=float, default=wealth_orders.SECONDS_DEFAULT,
                        help="--orders: length of each phase")
    parser.add_argument("--orders-max", type=int, default=wealth_orders.ORDERS_MAX_DEFAULT,
                        help="--orders: cap per phase")


def run(args: argparse.Namespace) -> int:
    if args.orders:
        from finfaas_dev.bench import wealth_orders

        return wealth_orders.run(args)
    if not 1 <= args.positions <= POSITIONS_MAX:
        print(f"bench wealth: --positions from 1 to {POSITIONS_MAX}", file=sys.stderr)
        return 2
    from finfaas_dev import emulators, infra, tools

    with tempfile.TemporaryDirectory(prefix="finfaas-bench-wealth-") as folder:
        sandbox = Sandbox(Path(folder), f"bench{secrets.token_hex(3)}", free_port(), Path(folder) / "secrets")
        aws = emulators.EmbeddedAWS(free_port(), free_port(), log_dir=sandbox.folder / "logs")
        try:
            tools.ensure_dynamodb_local()
            aws.start()
            export_environment(aws.env(), sandbox)
            infra.deploy(sandbox.stage, "embedded")
            summary = measure(args.positions)
        finally:
            aws.stop()
    goals = (summary["batch_seconds"] <= BATCH_SECONDS_GOAL
             and summary["dynamodb_calls_per_position"] <= CALLS_PER_POSITION_GOAL)
    print(f"{summary['positions']} holders' income in {summary['batch_seconds']} s, "
          f"{summary['dynamodb_calls_per_position']} DynamoDB calls per holder "
          f"({'meets' if goals else 'misses'} the {BATCH_SECONDS_GOAL:.0f} s and "
          f"{CALLS_PER_POSITION_GOAL} goals)")
    print(json.dumps(summary))
    return 0 if summary["wealth_check"] == "passed" and summary["rerun_postings"] == 0 else 1
