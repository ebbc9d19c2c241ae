"""Wealth on DynamoDB Local with the ledger in process: an MMF's orders, the daily batch's income posted
exactly once per (position, day) and conserved to the cent, and refusals that write nothing."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from finfaas.domain.wealth import (
    BelowMinimum,
    FastRedemptionCapExceeded,
    InvalidFigure,
    MaturityInstruction,
    Rounding,
    mmf_compound,
    mmf_distribute,
)
from finfaas.platform.errors import ErrorTable
from finfaas.services.wealth.api import ERRORS
from finfaas.services.wealth.errors import FigureAlreadyPublished, InsufficientBalance, ProductClosed
from finfaas.services.wealth.model import (
    OrderStatus,
    SubscribeCommand,
    fee_account_id,
    order_transfer_id,
    position_account_id,
    rolled_order_id,
)
from finfaas.services.wealth.service import RedeemCommand
from finfaas_dev.wealth import check, run_day, seeded_holdings
from support.wealth_testing import WealthWorld, utc

pytestmark = pytest.mark.emulator
ALICE = "cus_alice"
THURSDAY = date(2027, 3, 4)
# 万份收益 of a week (the worked example: a 7-day yield of 2.376 %)
WEEK = ["0.6512", "0.6498", "0.6530", "0.6487", "0.6521", "0.6479", "0.6540"]


def wealth_check(world: WealthWorld):
    def amount(transfer_id):
        transfer = world.ledger_store.get_transfer(transfer_id)
        return transfer.amount_minor if transfer is not None else None

    items = [i for i in world.store.scan_all() if _of(world, i)]
    return check(items, world.wealth_ledger.balances, amount)


def _of(world: WealthWorld, item) -> bool:
    """The items of this world's products and customers (the table is shared by every test)."""
    return any(p in item.pk or p in item.sk or p in item.doc for p in world.product_ids)


@pytest.fixture
def world(embedded_aws) -> WealthWorld:
    # Thursday 4 March 2027, 14:59 in Shanghai
    created = WealthWorld(THURSDAY, utc(2027, 3, 4, 6, 59))
    created.product_ids = []
    return created


def test_subscribe_before_the_cut_off_earn_from_t_plus_1_then_redeem_fast_and_standard(world):
    product = world.product()
    world.product_ids.append(product.product_id)
    wallet = world.wallet(ALICE, 5_000_000)
    for n, figure in enumerate(WEEK):
        world.publish(product, THURSDAY + timedelta(days=n), figure)
    order = world.service.subscribe(ALICE, SubscribeCommand("o-1", product.product_id, wallet, 1_000_000))
    assert (order.trade_date, order.confirmation_date, order.status) == (
        THURSDAY, date(2027, 3, 5), OrderStatus.PENDING)
    assert world.available(wallet) == 4_000_000

    # Thursday's batch: nothing held yet earns; Friday's confirms, and Friday, Saturday, Sunday earn
    assert run_day(world.service, world.market, THURSDAY).posted == 0
    friday = run_day(world.service, world.market, date(2027, 3, 5))
    assert (friday.confirmed, friday.posted, friday.business_date_after) == (1, 1, date(2027, 3, 6))
    run_day(world.service, world.market, date(2027, 3, 6))
    run_day(world.service, world.market, date(2027, 3, 7))
    # 10,000.00 units earn 0.6498 per 10,000 on Friday (65 fen, truncated), then compound
    position = world.service.position(ALICE, product.product_id)
    incomes = [i for _, i in world.service.income_statement(ALICE, product.product_id)]
    _, earned = mmf_compound(1_000_000, [Decimal(f) for f in WEEK[1:4]], Rounding.TRUNCATE)
    assert incomes == list(reversed(earned)) == [64, 65, 64]
    assert position.units_minor == 1_000_000 + sum(incomes)
    assert position.position.cumulative_income_minor == sum(incomes)
    assert position.yesterday_income_minor == incomes[0]

    # a fast redemption up to the cap is paid at once; past the cap it is refused with nothing written
    world.service.redeem(ALICE, RedeemCommand("r-1", product.product_id, wallet, 600_000, fast=True))
    assert world.balance(wallet) == 4_600_000
    with pytest.raises(FastRedemptionCapExceeded) as refused:
        world.service.redeem(ALICE, RedeemCommand("r-2", product.product_id, wallet, 400_001, fast=True))
    assert _fields(refused.value) == ["amount"]
    assert world.balance(wallet) == 4_600_000
    assert [o.order_id for o in world.service.orders(ALICE)] == ["o-1", "r-1"]

    # a standard redemption holds the units, earns Monday, and is paid on Tuesday (T+1)
    standard = world.service.redeem(ALICE, RedeemCommand("r-3", product.product_id, wallet, 100_000,
                                                         fast=False))
    assert standard.confirmation_date == date(2027, 3, 9)
    run_day(world.service, world.market, date(2027, 3, 8))
    assert world.balance(wallet) == 4_600_000
    run_day(world.service, world.market, date(2027, 3, 9))
    assert world.balance(wallet) == 4_700_000
    assert world.service.order(ALICE, "r-3").status is OrderStatus.CONFIRMED

    run_day(world.service, world.market, date(2027, 3, 10))
    report = wealth_check(world)
    assert report.passed, report.findings
    assert report.days_checked == 7
    yields = world.service.daily_incomes(product.product_id, THURSDAY, date(2027, 3, 10))
    assert yields[6].seven_day_yield_percent == Decimal("2.376")


def _fields(error: Exception) -> list[str]:
    problem = ErrorTable(ERRORS).problem_for(error, None)
    assert problem is not None and 400 <= problem.status < 500
    return [e.field for e in problem.errors]


@pytest.mark.parametrize(("amount", "error", "close"), [
    (99, BelowMinimum, False),
    (5_000_001, InsufficientBalance, False),
    (1_000, ProductClosed, True),
])
def test_a_refused_subscription_names_the_field_and_writes_nothing(world, amount, error, close):
    product = world.product()
    world.product_ids.append(product.product_id)
    if close:
        world.service.close_product(product.product_id)
    wallet = world.wallet(ALICE, 5_000_000)
    with pytest.raises(error) as refused:
        world.service.subscribe(ALICE, SubscribeCommand("o-bad", product.product_id, wallet, amount))
    assert _fields(refused.value) == ["product_id" if close else "amount"]
    assert world.store.position(product.product_id, ALICE) is None
    assert world.store.order(ALICE, "o-bad") is None
    assert world.available(wallet) == 5_000_000


def test_a_figure_with_a_fifth_decimal_or_for_a_published_day_is_refused_and_an_ops_correction_replaces_it(
        world):
    product = world.product()
    with pytest.raises(InvalidFigure) as refused:
        world.publish(product, THURSDAY, "0.65121")
    assert _fields(refused.value) == ["income_per_10k_units"]
    assert world.store.daily_income(product.product_id, THURSDAY) is None
    world.publish(product, THURSDAY, "0.6512")
    with pytest.raises(FigureAlreadyPublished) as taken:
        world.publish(product, THURSDAY, "0.7000")
    assert _fields(taken.value) == ["date"]
    assert world.store.daily_income(product.product_id, THURSDAY).income_per_10k_units == Decimal("0.6512")
    world.service.correct_income(product.product_id, THURSDAY, Decimal("0.7000"), "restated", "ops-1")
    stored = world.store.daily_income(product.product_id, THURSDAY)
    assert (stored.income_per_10k_units, stored.version) == (Decimal("0.7000"), 2)
    assert [(c.previous, c.reason) for c in stored.corrections] == [(Decimal("0.6512"), "restated")]


class CrashingLedger:
    """The in-process ledger, dying before its n-th batch transaction (a function killed mid-page)."""

    def __init__(self, inner, crash_before_call: int) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.calls = 0
        self.crash_before_call = crash_before_call

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def post_linked(self, legs, currency, write):
        with self._lock:  # a page posts its chunks on several threads
            self.calls += 1
            crash = self.calls == self.crash_before_call
        if crash:
            raise ConnectionError("the batch died here")
        return self._inner.post_linked(legs, currency, write)


HOLDERS = 250  # three pages of 100 (the world's page size), each two chunks (93 and 7 holders)


def seeded(world: WealthWorld, rounding: str) -> tuple:
    product = world.product(rounding=rounding)
    world.product_ids.append(product.product_id)
    customers = [f"h{n:04d}-{product.product_id}" for n in range(HOLDERS)]
    units = [100_000 + n * 7_919_993 % 30_000_000 for n in range(HOLDERS)]
    positions, orders = seeded_holdings(product, customers, units, THURSDAY)
    world.store.seed(positions, orders)
    accounts = [p.account_id for p in positions]
    for position in positions:
        world.wealth_ledger.open_account(position.account_id, position.customer_id, "CNY", limited=True)
    world.fund_accounts(accounts, units)
    return product, customers, units


def test_a_batch_killed_mid_page_rerun_and_run_twice_at_once_posts_each_income_once(world):
    # half-up: the rounding account may pay the cents rounded up (a negative remainder)
    rounding = "half_up"
    product, customers, units = seeded(world, rounding)
    world.publish(product, THURSDAY, "0.6512")

    def held() -> list[int]:
        return [world.units(product.product_id, c) for c in customers]

    # GIVEN a run killed before its 3rd ledger transaction (page 2 of 3, one of its two chunks)
    crashing = world.service_on(CrashingLedger(world.wealth_ledger, 3))
    with pytest.raises(ConnectionError):
        run_day(crashing, world.market, THURSDAY)
    assert world.business_date() == THURSDAY
    # page 1 (2 transactions) and the chunk of page 2 its other thread posted before the Task failed
    killed_posted = sum(1 for now, u in zip(held(), units, strict=True) if now != u)
    assert 100 <= killed_posted < HOLDERS
    # WHEN two runs of the same day resume at once, and then one more runs after the date moved
    results = []
    runs = [threading.Thread(target=lambda: results.append(run_day(world.service, world.market, THURSDAY)))
            for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    again = run_day(world.service, world.market, THURSDAY)
    # THEN every holder got the day's income once, and the rest of the fund's income is in rounding
    expected = mmf_distribute(units, Decimal("0.6512"), Rounding(rounding))
    assert held() == [u + i for u, i in zip(units, expected.incomes_minor, strict=True)]
    # the resumed runs posted the rest between them, each holder once
    assert sum(r.posted for r in results) == sum(1 for i in expected.incomes_minor if i) - killed_posted
    assert not again.ran and world.business_date() == THURSDAY + timedelta(days=1)
    figure = world.store.daily_income(product.product_id, THURSDAY)
    assert (figure.distributable_minor, figure.posted_minor, figure.remainder_minor) == (
        expected.distributable_minor, sum(expected.incomes_minor), expected.remainder_minor)
    report = wealth_check(world)
    assert report.passed, report.findings


class RedeemsBeforeFirstChunk:
    """The in-process ledger, letting a customer's redemption commit just before the batch's first chunk
    (after the page read the holders' rows)."""

    def __init__(self, inner, redeem) -> None:
        self._inner = inner
        self._redeem = redeem

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def post_linked(self, legs, currency, write):
        redeem, self._redeem = self._redeem, None
        if redeem is not None:
            redeem()
        return self._inner.post_linked(legs, currency, write)


def test_a_redemption_sweeping_accrued_income_while_its_chunk_posts_is_paid_and_each_holder_earns_once(world):
    # GIVEN three holders whose Thursday income is accrued on their rows
    product = world.product()
    world.product_ids.append(product.product_id)
    customers = [f"s{n}-{product.product_id}" for n in range(3)]
    units = [1_000_000, 2_000_000, 3_000_000]
    positions, orders = seeded_holdings(product, customers, units, THURSDAY)
    world.store.seed(positions, orders)
    for position in positions:
        world.wealth_ledger.open_account(position.account_id, position.customer_id, "CNY", limited=True)
    world.fund_accounts([p.account_id for p in positions], units)
    friday = THURSDAY + timedelta(days=1)
    world.publish(product, THURSDAY, WEEK[0])
    world.publish(product, friday, WEEK[1])
    run_day(world.service, world.market, THURSDAY)
    thursday = mmf_distribute(units, Decimal(WEEK[0]), Rounding.TRUNCATE)
    assert world.store.position(product.product_id, customers[0]).accrued_units_minor == 65
    wallet = world.wallet(customers[0], 0)

    def redeem() -> None:
        world.service.redeem(customers[0], RedeemCommand("r-1", product.product_id, wallet, 1_000_065,
                                                         fast=False))

    # WHEN the first holder redeems every unit (its accrued income swept onto its ledger account) after
    # Friday's page read the rows and before their chunk commits
    racing = world.service_on(RedeemsBeforeFirstChunk(world.wealth_ledger, redeem))
    ran = run_day(racing, world.market, friday)
    # THEN the chunk was built again from the swept row: each holder earned Friday once, on its units then
    left = [u + i for u, i in zip(units, thursday.incomes_minor, strict=True)]
    expected = mmf_distribute(left, Decimal(WEEK[1]), Rounding.TRUNCATE)
    assert ran.posted == 3
    assert [world.units(product.product_id, c) for c in customers] == [
        u + i for u, i in zip(left, expected.incomes_minor, strict=True)]
    # the redemption holds every unit of the ledger account; Friday's income accrues on the row
    assert world.available(position_account_id(product.product_id, customers[0])) == 0
    redeemer = world.store.position(product.product_id, customers[0])
    assert redeemer.accrued_units_minor == expected.incomes_minor[0]
    assert wealth_check(world).passed


def test_a_fast_redemption_racing_its_chunk_keeps_the_mirror_exact_and_an_old_row_reads_its_ledger(world):
    # GIVEN three holders, the last one's row written before rows mirrored their ledger units
    product = world.product()
    world.product_ids.append(product.product_id)
    customers = [f"f{n}-{product.product_id}" for n in range(3)]
    units = [1_000_000, 2_000_000, 3_000_000]
    positions, orders = seeded_holdings(product, customers, units, THURSDAY)
    positions[2] = dataclasses.replace(positions[2], ledger_units_minor=None)
    world.store.seed(positions, orders)
    for position in positions:
        world.wealth_ledger.open_account(position.account_id, position.customer_id, "CNY", limited=True)
    world.fund_accounts([p.account_id for p in positions], units)
    world.publish(product, THURSDAY, WEEK[0])
    wallet = world.wallet(customers[0], 0)

    def redeem() -> None:
        world.service.redeem(customers[0], RedeemCommand("r-1", product.product_id, wallet, 500_000,
                                                         fast=True))

    # WHEN the first holder redeems 5,000.00 fast (nothing accrued: no sweep, only its ledger units move)
    # after the page read the rows and before their chunk commits
    racing = world.service_on(RedeemsBeforeFirstChunk(world.wealth_ledger, redeem))
    ran = run_day(racing, world.market, THURSDAY)
    # THEN the chunk was built again from the redeemer's moved row: its income is on the units it kept
    left = [500_000, *units[1:]]
    expected = mmf_distribute(left, Decimal(WEEK[0]), Rounding.TRUNCATE)
    assert ran.posted == 3
    assert [world.units(product.product_id, c) for c in customers] == [
        u + i for u, i in zip(left, expected.incomes_minor, strict=True)]
    # and every row now mirrors its ledger units, the unmirrored one from the balance the batch read
    rows = [world.store.position(product.product_id, c) for c in customers]
    assert [r.ledger_units_minor for r in rows] == [world.balance(r.account_id) for r in rows] == left
    assert wealth_check(world).passed
    # and a mirror off by a cent is what the check reports
    world.store.seed([dataclasses.replace(rows[1], ledger_units_minor=left[1] + 1)], [])
    assert any("mirrors" in finding for finding in wealth_check(world).findings)


def test_a_nav_subscription_is_confirmed_at_its_trade_dates_nav_once_with_its_fee_booked(world):
    # GIVEN 100,000.00 subscribed to a NAV fund at a 1.2 % fee on Thursday, and Thursday's NAV 1.1800
    product = world.product(product_id=f"nav-{uuid.uuid4().hex[:10]}", kind="nav_fund",
                            subscription_fee_rate="0.012",
                            fee_tiers=[[0, "0.015"], [7, "0.005"]])
    world.product_ids.append(product.product_id)
    wallet = world.wallet(ALICE, 10_000_000)
    world.service.subscribe(ALICE, SubscribeCommand("n-1", product.product_id, wallet, 10_000_000))
    world.service.publish_nav(product.product_id, THURSDAY, Decimal("1.1800"))
    # WHEN Thursday's and Friday's batches run, and Friday's confirm step runs again
    run_day(world.service, world.market, THURSDAY)
    assert run_day(world.service, world.market, date(2027, 3, 5)).confirmed == 1
    assert world.service.confirm_page(world.market, date(2027, 3, 5), None).posted == 0
    # THEN the worked example: units 83,740.87 on the position, net in the fund, fee in the fee account
    order = world.service.order(ALICE, "n-1")
    assert (order.status, order.units_minor, order.fee_minor, order.fee_booked) == (
        OrderStatus.CONFIRMED, 8_374_087, 118_577, True)
    assert world.store.position(product.product_id, ALICE).units_minor == 8_374_087
    assert (world.balance(wallet), world.balance(product.fund_account_id),
            world.balance(fee_account_id(product.product_id))) == (0, 9_881_423, 118_577)
    # AND 10,000.00 units redeemed on Saturday (T Monday, NAV 1.2000, held 3 days: 1.5 %) pay 11,820.00
    world.service.redeem(ALICE, RedeemCommand("n-2", product.product_id, wallet, 1_000_000, fast=False))
    assert world.store.position(product.product_id, ALICE).units_held_minor == 1_000_000
    world.service.publish_nav(product.product_id, date(2027, 3, 8), Decimal("1.2000"))
    for day in (6, 7, 8, 9):
        run_day(world.service, world.market, date(2027, 3, day))
    assert world.service.confirm_page(world.market, date(2027, 3, 9), None).posted == 0
    assert world.service.order(ALICE, "n-2").fee_minor == 18_000
    assert (world.balance(wallet), world.balance(product.fund_account_id)) == (1_182_000, 8_699_423)
    position = world.store.position(product.product_id, ALICE)
    assert (position.units_minor, position.units_held_minor) == (7_374_087, 0)
    assert wealth_check(world).passed


def test_a_fixed_term_partly_redeemed_early_then_rolled_over_matures_once_into_a_new_term(world):
    # GIVEN 10,000.00 for 3 days at 3.6 % ACT/360, principal and interest rolled over, bought on Thursday
    product = world.product(product_id=f"ft-{uuid.uuid4().hex[:10]}", kind="fixed_term", minimum=100_000,
                            rate="0.036", demand_rate="0.003", term_days=3, day_count="ACT/360")
    world.product_ids.append(product.product_id)
    wallet = world.wallet(ALICE, 1_000_000)
    world.service.subscribe(ALICE, SubscribeCommand("t-1", product.product_id, wallet, 1_000_000,
                                                    MaturityInstruction.ROLL_OVER_ALL))
    # WHEN the batches run from Thursday to Monday, the term's maturity (value date Friday + 3 days), and
    # 4,000.00 is redeemed early on Saturday (1 day at the 0.3 % demand rate: 0.03)
    matured = [run_day(world.service, world.market, date(2027, 3, d)).matured for d in (4, 5)]
    world.service.redeem(ALICE, RedeemCommand("e-1", product.product_id, wallet, 400_000, fast=False,
                                              term_order_id="t-1"))
    assert world.balance(wallet) == 400_003
    matured += [run_day(world.service, world.market, date(2027, 3, d)).matured for d in (6, 7, 8)]
    # THEN it matured once, on Monday: 1.80 interest on the 6,000.00 left, rolled with it into a new term
    assert matured == [0, 0, 0, 0, 1]
    assert world.service.maturity_page(world.market, date(2027, 3, 8), None).posted == 0
    assert world.service.order(ALICE, "t-1").status is OrderStatus.MATURED
    rolled = world.service.order(ALICE, rolled_order_id("t-1", date(2027, 3, 8)))
    assert (rolled.amount_minor, rolled.status) == (600_180, OrderStatus.CONFIRMED)
    assert world.balance(position_account_id(product.product_id, ALICE)) == 600_180
    assert wealth_check(world).passed


def test_a_late_nav_lets_the_day_run_on_and_its_correction_reprices_the_orders_in_balanced_transfers(world):
    # GIVEN 100,000.00 subscribed to a NAV fund on Thursday and Thursday's NAV not published on Friday
    product = world.product(product_id=f"nav-{uuid.uuid4().hex[:10]}", kind="nav_fund",
                            subscription_fee_rate="0.012", fee_tiers=[[0, "0.015"], [7, "0.005"]])
    world.product_ids.append(product.product_id)
    customer = f"cus_{uuid.uuid4().hex[:10]}"  # the table is shared: order ids of its own
    wallet = world.wallet(customer, 10_000_000)
    world.service.subscribe(customer, SubscribeCommand("n-1", product.product_id, wallet, 10_000_000))
    run_day(world.service, world.market, THURSDAY)
    # WHEN Friday's batch runs: the order waits, flagged, and the business date advances
    friday = run_day(world.service, world.market, date(2027, 3, 5))
    assert (friday.confirmed, friday.business_date_after) == (0, date(2027, 3, 6))
    assert world.service.order(customer, "n-1").awaiting_nav_since == date(2027, 3, 5)
    # WHEN the NAV is published late (1.1800) and Saturday's batch runs: confirmed at it
    world.service.publish_nav(product.product_id, THURSDAY, Decimal("1.1800"))
    assert run_day(world.service, world.market, date(2027, 3, 6)).confirmed == 1
    assert world.service.order(customer, "n-1").units_minor == 8_374_087
    # AND ops correct it to 1.2000: 82,345.19 units; the confirmation reversed and made again (net zero)
    result = world.service.correct_nav(product.product_id, THURSDAY, Decimal("1.2000"), "restated", "ops-1")
    assert (result.repriced, result.more) == (1, False)
    assert world.store.nav(product.product_id, THURSDAY).corrections[0].previous == Decimal("1.1800")
    order = world.service.order(customer, "n-1")
    assert (order.nav, order.units_minor, order.corrections, order.awaiting_nav_since) == (
        Decimal("1.2000"), 8_234_519, 1, None)
    assert world.store.position(product.product_id, customer).units_minor == 8_234_519
    reversal = world.ledger.get_transfer(order_transfer_id(customer, "n-1", "r1"))
    again = world.ledger.get_transfer(order_transfer_id(customer, "n-1", "c1"))
    assert (reversal.debit_account_id, reversal.credit_account_id, reversal.amount_minor) == (
        product.fund_account_id, wallet, 10_000_000)
    assert (again.debit_account_id, again.credit_account_id, again.amount_minor) == (
        wallet, product.fund_account_id, 10_000_000)
    assert (world.balance(wallet), world.balance(product.fund_account_id)) == (0, 9_881_423)
    # AND a redemption of 10,000.00 units paid at Monday's 1.2000 (11,820.00), corrected to 1.1900
    world.service.redeem(customer, RedeemCommand("n-2", product.product_id, wallet, 1_000_000, fast=False))
    world.service.publish_nav(product.product_id, date(2027, 3, 8), Decimal("1.2000"))
    for day in (7, 8, 9):
        run_day(world.service, world.market, date(2027, 3, day))
    assert world.balance(wallet) == 1_182_000
    world.service.correct_nav(product.product_id, date(2027, 3, 8), Decimal("1.1900"), "restated", "ops-1")
    # THEN 11,721.50 is what the wallet keeps: 98.50 back to the fund, as two balanced transfers
    assert world.balance(wallet) == 1_172_150
    assert world.service.order(customer, "n-2").fee_minor == 17_850
    assert wealth_check(world).passed
