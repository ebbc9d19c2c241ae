"""Wealth tooling: run a business date's batch in process, seed positions, and `finfaas wealth check`.

`run_day` drives the same use cases, in the same order, as infra/statemachines/wealth-daily.asl.json
(begin, confirm pages, income pages, settle, end); tests and the bench use it where starting the
orchestrator would only add processes. `check` proves, for every product and settled day, that
Σ holders' incomes + the remainder = the distributable income (the formula on every unit the batch
counted) and that the remainder was booked; for every position, that the wealth table's account of it
(confirmed subscriptions − redemptions + cumulative income) equals its ledger balance plus the income
units accrued on its row, and that the ledger units an MMF row mirrors are its ledger balance; and, per
money-market fund, that the positions' accrued units add up to the balance of the fund's holders'
account (its shards), the ledger's side of those sub-ledgers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from finfaas.domain.wealth import mmf_distributable, nav_redemption
from finfaas.services.wealth.model import (
    DailyIncome,
    IncomeChunk,
    OrderKind,
    OrderStatus,
    Position,
    Product,
    ProductKind,
    SubscriptionOrder,
    fund_shard_account_id,
    hold_id,
    holders_account_id,
    order_transfer_id,
    position_account_id,
    remainder_transfer_id,
)
from finfaas.services.wealth.service import WealthService, fund_shards

# A batch that loops more than this many pages per step is refused: a cursor that never ends is a bug.
pages_per_step_max = 100_000
# The check reads positions' ledger balances 100 to a call (one BatchGetItem), this many calls at once.
balances_per_read = 100
check_read_threads = 4


@dataclass
class DayRun:
    """What one run of a business date did."""

    ran: bool
    confirmed: int = 0
    posted: int = 0
    income_pages: int = 0
    settlements: list[Any] = field(default_factory=list)
    business_date_after: date | None = None
    matured: int = 0


def run_pages(step: Callable[[str | None], Any]) -> tuple[int, int]:
    """Call a paged step until its cursor ends: (pages, postings)."""
    cursor, pages, posted = None, 0, 0
    while True:
        result = step(cursor)
        pages += 1
        posted += result.posted
        cursor = result.next_cursor
        if cursor is None:
            return pages, posted
        if pages >= pages_per_step_max:
            raise RuntimeError("a batch step did not end")


def run_day(service: WealthService, market: str, day: date) -> DayRun:
    """One business date's batch, as the state machine runs it."""
    if not service.begin_day(market, day):
        return DayRun(ran=False)
    _, confirmed = run_pages(lambda c: service.confirm_page(market, day, c))
    pages, posted = run_pages(lambda c: service.income_page(market, day, c))
    settlements = service.settle(market, day)
    _, matured = run_pages(lambda c: service.maturity_page(market, day, c))
    after = service.end_day(market, day)
    return DayRun(True, confirmed, posted, pages, settlements, after, matured)


@dataclass
class CheckReport:
    """`finfaas wealth check`'s findings; passed when there are none."""

    days_checked: int = 0
    positions_checked: int = 0
    findings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.findings

    def as_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "days_checked": self.days_checked,
                "positions_checked": self.positions_checked, "findings": self.findings[:50]}


def check(items: Any, balances: Callable[[Sequence[str]], dict[str, tuple[int, int]]],
          transfer_amount: Callable[[str], int | None]) -> CheckReport:
    """Conservation per product and day, and every position's units against the ledger.

    items: every item of the wealth table (WealthStore.scan_all); balances: ledger balances by account;
    transfer_amount: a ledger transfer's amount, None when absent."""
    from finfaas.store.wealth_store import (
        chunk_from_json,
        figure_from_json,
        order_from_json,
        position_from_json,
        product_from_json,
    )

    products: dict[str, Product] = {}
    figures: list[DailyIncome] = []
    chunks: dict[tuple[str, date], list[IncomeChunk]] = defaultdict(list)
    positions: list[Position] = []
    orders: list[SubscriptionOrder] = []
    for item in items:
        kind = item.pk.split("#", 1)[0]
        if kind == "product":
            product = product_from_json(item.doc)
            products[product.product_id] = product
        elif kind == "fig":
            figures.append(figure_from_json(item.doc))
        elif kind == "chunk":
            chunk = chunk_from_json(item.doc)
            chunks[(chunk.product_id, chunk.day)].append(chunk)
        elif kind == "pos":
            positions.append(position_from_json(item.doc))
        elif kind == "order":
            orders.append(order_from_json(item.doc))
    report = CheckReport()
    for figure in figures:
        if not figure.settled:
            continue
        report.days_checked += 1
        _check_day(report, products[figure.product_id], figure, chunks[(figure.product_id, figure.day)],
                   transfer_amount)
    _check_units(report, positions, orders, balances, {p for p, x in products.items() if x.fixed_term})
    _check_accrued(report, [p for p in products.values() if p.kind is ProductKind.MMF], positions, balances)
    for order in orders:
        if order.kind is OrderKind.SUBSCRIBE and order.fee_booked and order.fee_minor:
            booked = transfer_amount(order_transfer_id(order.customer_id, order.order_id, "fee"))
            if booked != order.fee_minor:
                report.findings.append(f"order {order.customer_id}/{order.order_id}: fee {order.fee_minor}, "
                                       f"{booked} booked to the fee account")
        if order.corrections and order.product_id in products:
            _check_corrections(report, products[order.product_id], order, transfer_amount)
    return report


def _check_corrections(report: CheckReport, product: Product, order: SubscriptionOrder,
                       transfer_amount: Callable[[str], int | None]) -> None:
    """Each NAV correction of the order moved money as two legs, and the last one pays what the order's
    current NAV says: a subscription its amount both ways, a redemption the net at the corrected NAV."""
    where = f"order {order.customer_id}/{order.order_id}"
    for n in range(1, order.corrections + 1):
        legs = [transfer_amount(order_transfer_id(order.customer_id, order.order_id, f"{step}{n}"))
                for step in ("r", "c")]
        if None in legs:
            report.findings.append(f"{where}: correction {n} lacks a leg on the ledger ({legs})")
            return
        if order.kind is OrderKind.SUBSCRIBE and legs != [order.amount_minor, order.amount_minor]:
            report.findings.append(f"{where}: correction {n} moved {legs}, not its amount both ways")
    if order.kind is OrderKind.REDEEM and order.nav is not None and order.units_minor is not None:
        net = nav_redemption(order.lots_redeemed, order.units_minor, order.nav, product.redemption_fee_tiers,
                             order.trade_date).net_minor
        paid = transfer_amount(order_transfer_id(order.customer_id, order.order_id, f"c{order.corrections}"))
        if paid != net:
            report.findings.append(f"{where}: paid {paid} at its last correction, {net} at NAV {order.nav}")


def _check_day(report: CheckReport, product: Product, figure: DailyIncome, day_chunks: list[IncomeChunk],
               transfer_amount: Callable[[str], int | None]) -> None:
    where = f"{product.product_id} {figure.day.isoformat()}"
    units = sum(c.units_total_minor for c in day_chunks)
    posted = sum(c.income_total_minor for c in day_chunks)
    distributable = mmf_distributable(units, figure.income_per_10k_units, product.rounding)
    if (figure.units_total_minor, figure.posted_minor, figure.distributable_minor) != (units, posted,
                                                                                       distributable):
        report.findings.append(f"{where}: settled {figure.units_total_minor}/{figure.posted_minor}/"
                               f"{figure.distributable_minor}, chunks say {units}/{posted}/{distributable}")
    if (figure.posted_minor or 0) + (figure.remainder_minor or 0) != figure.distributable_minor:
        report.findings.append(f"{where}: posted + remainder != distributable")
    remainder = figure.remainder_minor or 0
    booked = transfer_amount(remainder_transfer_id(product.product_id, figure.day))
    if (booked or 0) != abs(remainder):
        report.findings.append(f"{where}: remainder {remainder} but {booked} booked to the rounding account")


def _check_units(report: CheckReport, positions: list[Position], orders: list[SubscriptionOrder],
                 balances: Callable[[Sequence[str]], dict[str, tuple[int, int]]],
                 fixed_terms: Collection[str] = ()) -> None:
    moved: dict[tuple[str, str], int] = defaultdict(int)
    nav_units: dict[tuple[str, str], int] = defaultdict(int)
    for order in orders:
        if order.status is OrderStatus.CONFIRMED:
            sign = 1 if order.kind is OrderKind.SUBSCRIBE else -1
            if order.units_minor is not None:  # a NAV fund's units live on the position, the cash in the fund
                nav_units[(order.product_id, order.customer_id)] += sign * order.units_minor
                continue
            if order.product_id in fixed_terms:  # a term holds what its early redemption left
                if order.kind is OrderKind.SUBSCRIBE:
                    held = order.amount_minor - order.early_redeemed_minor
                    moved[(order.product_id, order.customer_id)] += held
                continue
            moved[(order.product_id, order.customer_id)] += sign * order.amount_minor
    found = _all_balances([p.account_id for p in positions], balances)
    for position in positions:
        report.positions_checked += 1
        expected = moved[(position.product_id, position.customer_id)] + position.cumulative_income_minor
        ledger_units = found.get(position.account_id, (0, 0))[0]
        actual = ledger_units + position.accrued_units_minor
        units = nav_units[(position.product_id, position.customer_id)]
        if position.ledger_units_minor is not None and position.ledger_units_minor != ledger_units:
            report.findings.append(f"position {position.product_id}/{position.customer_id}: mirrors "
                                   f"{position.ledger_units_minor} ledger units, the ledger holds "
                                   f"{ledger_units}")
        if position.units_minor != units:
            report.findings.append(f"position {position.product_id}/{position.customer_id}: units "
                                   f"{position.units_minor}, confirmed NAV orders {units}")
        if actual != expected:
            report.findings.append(f"position {position.product_id}/{position.customer_id}: ledger "
                                   f"and accrued {actual}, orders and income {expected}")


def _all_balances(account_ids: list[str], balances: Callable[[Sequence[str]], dict[str, tuple[int, int]]],
                  ) -> dict[str, tuple[int, int]]:
    """The balances of many accounts, a BatchGetItem's worth per call, check_read_threads calls at once."""
    pages = [account_ids[start:start + balances_per_read] for start in range(0, len(account_ids),
                                                                             balances_per_read)]
    found: dict[str, tuple[int, int]] = {}
    with ThreadPoolExecutor(check_read_threads) as pool:
        for part in pool.map(balances, pages):
            found.update(part)
    return found


def _check_accrued(report: CheckReport, mmfs: list[Product], positions: list[Position],
                   balances: Callable[[Sequence[str]], dict[str, tuple[int, int]]]) -> None:
    accrued: dict[str, int] = defaultdict(int)
    for position in positions:
        accrued[position.product_id] += position.accrued_units_minor
    for product in mmfs:
        holders = holders_account_id(product.product_id)
        shards = [fund_shard_account_id(holders, n) for n in range(fund_shards)]
        booked = sum(balance for balance, _ in balances(shards).values())
        if booked != accrued[product.product_id]:
            report.findings.append(f"{product.product_id}: positions accrued {accrued[product.product_id]} "
                                   f"units, the holders' account holds {booked}")


def seeded_holdings(product: Product, customers: Sequence[str], units_minor: Sequence[int],
                    opened_on: date) -> tuple[list[Position], list[SubscriptionOrder]]:
    """Positions and the confirmed subscriptions that explain their units, for seeding by tooling."""
    positions, orders = [], []
    placed_at = datetime.combine(opened_on, datetime.min.time(), tzinfo=UTC)
    for customer, units in zip(customers, units_minor, strict=True):
        account = position_account_id(product.product_id, customer)
        mirror = units if product.kind is ProductKind.MMF else None
        positions.append(Position(product.product_id, customer, account, opened_on,
                                  ledger_units_minor=mirror))
        order_id = f"seed-{product.product_id}"
        orders.append(SubscriptionOrder(order_id, customer, product.product_id, account, units,
                                        product.currency, None, placed_at, opened_on, opened_on,
                                        hold_id(customer, order_id), OrderStatus.CONFIRMED,
                                        OrderKind.SUBSCRIBE, 2))
    return positions, orders


def check_stage() -> CheckReport:
    """`finfaas wealth check` on this stage's tables."""
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.wealth.service import InProcessLedger
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.wealth_store import WealthStore, ledger_balances_reader

    ledger_store = ledger_store_from_config()
    ledger = InProcessLedger(LedgerService(ledger_store), ledger_balances_reader(ledger_store))

    def amount(transfer_id: str) -> int | None:
        transfer = ledger_store.get_transfer(transfer_id)
        return transfer.amount_minor if transfer is not None else None

    return check(WealthStore().scan_all(), ledger.balances, amount)


# --- `finfaas wealth check` -----------------------------------------------------------------------------


def add_arguments(parser: Any) -> None:
    parser.add_argument("--stage", help="stage whose tables to check (default: FINFAAS_STAGE)")


def run(args: Any) -> int:
    """Print the findings and, on the last line, the report as JSON; exit 1 when anything is off."""
    import json
    import os

    from finfaas.platform import config

    if args.stage:
        os.environ["FINFAAS_STAGE"] = args.stage
        config.settings.cache_clear()
    report = check_stage()
    for finding in report.findings[:50]:
        print(f"PROBLEM {finding}")
    print(json.dumps(report.as_json()))
    return 0 if report.passed else 1
