"""Fixed-term products on the in-memory fakes: the term runs from its confirmation, and the batch's
maturity step pays the interest per day count and pays out or rolls over per the order's instruction,
once per term, even when a run dies at maturity and runs again; one partial early redemption earns the
demand rate."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from finfaas.domain.calendar import parse_calendar
from finfaas.domain.wealth import DayCount, FixedTerm, MaturityInstruction, PartialRedemptionUsed
from finfaas.services.business_date.model import BusinessDateMode
from finfaas.services.business_date.service import BusinessDateService
from finfaas.services.wealth.api import RedeemBody
from finfaas.services.wealth.errors import InvalidOrder, OrderNotFound
from finfaas.services.wealth.model import (
    ROLLED_SUFFIX_CHARS,
    OrderStatus,
    Product,
    ProductKind,
    ProductStatus,
    SubscribeCommand,
    fund_account_id,
    position_account_id,
    rolled_order_id,
)
from finfaas.services.wealth.service import RedeemCommand, WealthService
from finfaas_dev.fakes.business_date import InMemoryBusinessDateStore
from finfaas_dev.fakes.wealth import InMemoryWealthLedger, InMemoryWealthStore
from finfaas_dev.wealth import run_day

CALENDARS = Path(__file__).resolve().parents[4] / "infra" / "calendars"
CN = parse_calendar((CALENDARS / "cn-2027.json").read_text())
THURSDAY = date(2027, 3, 4)
VALUE_DATE = date(2027, 3, 5)  # T+1: the confirmation
MATURITY = VALUE_DATE + timedelta(days=30)
NOW = datetime(2027, 3, 4, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai, before the cut-off
PRINCIPAL = 1_000_000  # 10,000.00
INTEREST = 2_466  # 10,000.00 × 3 % × 30 / 365 = 24.6575… → 24.66


class LedgerDyingAtMaturity(InMemoryWealthLedger):
    """Fails the first maturity, as a run killed at that step would."""

    def __init__(self, store: InMemoryWealthStore) -> None:
        super().__init__(store)
        self.failures_left = 1

    def post_linked(self, legs, currency, write, owner_id=None) -> None:
        if legs[0][0].endswith("-mi") and self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("killed at maturity")
        super().post_linked(legs, currency, write, owner_id)


def world(instruction: MaturityInstruction, ledger_type: type[InMemoryWealthLedger] = InMemoryWealthLedger):
    terms = FixedTerm(Decimal("0.03"), Decimal("0.003"), 30, DayCount.ACT_365, 100_000)
    product = Product("ft-1", ProductKind.FIXED_TERM, "Term 30", "CN", "CNY", ProductStatus.OPEN, 100_000,
                      fund_account_id("ft-1"), fixed_term=terms)
    store = InMemoryWealthStore()
    ledger = ledger_type(store)
    dates_store = InMemoryBusinessDateStore()
    dates_store.replace("CN", None, THURSDAY, NOW)
    dates = BusinessDateService(dates_store, BusinessDateMode.MANUAL, clock=lambda: NOW)
    service = WealthService(store, ledger, dates, {"CN": CN}, clock=lambda: NOW)
    service.create_product(product)
    ledger.fund("wallet-ada", "ada", PRINCIPAL)
    service.subscribe("ada", SubscribeCommand("t-1", "ft-1", "wallet-ada", PRINCIPAL, instruction))
    return service, store, ledger


def run_until(service: WealthService, last: date, first: date = THURSDAY) -> int:
    matured, day = 0, first
    while day <= last:
        matured += run_day(service, "CN", day).matured
        day += timedelta(days=1)
    return matured


@pytest.mark.parametrize(("instruction", "wallet", "position", "rolled"), [
    (MaturityInstruction.PAY_OUT, PRINCIPAL + INTEREST, 0, None),
    (MaturityInstruction.ROLL_OVER_ALL, 0, PRINCIPAL + INTEREST, PRINCIPAL + INTEREST),
    (MaturityInstruction.ROLL_OVER_PRINCIPAL, INTEREST, PRINCIPAL, PRINCIPAL),
])
def test_a_term_matures_once_with_its_interest_paid_or_rolled_per_its_instruction(instruction, wallet,
                                                                                   position, rolled):
    service, store, ledger = world(instruction)
    assert run_until(service, MATURITY - timedelta(days=1)) == 0
    assert store.order("ada", "t-1").status is OrderStatus.CONFIRMED
    assert ledger.balances([position_account_id("ft-1", "ada")])[position_account_id("ft-1", "ada")][0] == (
        PRINCIPAL)
    assert run_until(service, MATURITY, first=MATURITY) == 1
    assert service.maturity_page("CN", MATURITY, None).posted == 0  # the same day's step again
    assert store.order("ada", "t-1").status is OrderStatus.MATURED
    held = position_account_id("ft-1", "ada")
    assert ledger.balances(["wallet-ada", held]) == {"wallet-ada": (wallet, wallet),
                                                     held: (position, position)}
    new_term = store.order("ada", rolled_order_id("t-1", MATURITY))
    assert (new_term.amount_minor if new_term else None) == rolled
    if new_term is not None:
        assert (new_term.status, new_term.confirmation_date) == (OrderStatus.CONFIRMED, MATURITY)
        assert [k for k, _ in store.maturing("ft-1", MATURITY + timedelta(days=30), 10, None)[0]] == ["ada"]


def test_a_run_killed_at_maturity_matures_the_term_once_when_run_again():
    service, store, ledger = world(MaturityInstruction.PAY_OUT, LedgerDyingAtMaturity)
    run_until(service, MATURITY - timedelta(days=1))
    with pytest.raises(RuntimeError):
        run_day(service, "CN", MATURITY)
    assert store.order("ada", "t-1").status is OrderStatus.CONFIRMED and ledger.available("wallet-ada") == 0
    assert run_day(service, "CN", MATURITY).matured == 1
    assert service.maturity_page("CN", MATURITY, None).posted == 0
    assert ledger.available("wallet-ada") == PRINCIPAL + INTEREST
    assert ledger.balances([fund_account_id("ft-1")])[fund_account_id("ft-1")][0] == -INTEREST


def test_one_partial_early_redemption_earns_the_demand_rate_and_the_rest_matures_at_the_term_rate():
    # GIVEN 10,000.00 for 30 days from Friday 5 March, paid out at maturity
    service, store, ledger = world(MaturityInstruction.PAY_OUT)
    run_until(service, date(2027, 3, 14))  # the business date is now Monday 15 March: 10 days held
    # WHEN 4,000.00 is redeemed early: 4,000.00 × 0.3 % × 10 / 365 = 0.3287… → 0.33 interest, at once
    redeem = RedeemCommand("e-1", "ft-1", "wallet-ada", 400_000, fast=False, term_order_id="t-1")
    early = service.redeem("ada", redeem)
    assert service.redeem("ada", redeem) == early  # the same request again: the same order, paid once
    assert (early.status, early.confirmation_date) == (OrderStatus.CONFIRMED, date(2027, 3, 15))
    assert ledger.available("wallet-ada") == 400_000 + 33
    # THEN a second partial is refused naming the amount, and one leaving under the minimum too
    with pytest.raises(PartialRedemptionUsed) as second:
        service.redeem("ada", RedeemCommand("e-2", "ft-1", "wallet-ada", 100_000, fast=False,
                                             term_order_id="t-1"))
    assert second.value.field == "amount"
    with pytest.raises(InvalidOrder) as unnamed:
        service.redeem("ada", RedeemCommand("e-3", "ft-1", "wallet-ada", 100_000, fast=False))
    assert unnamed.value.errors[0][0] == "term_order_id"
    with pytest.raises(OrderNotFound):  # another customer's term is not found
        service.redeem("bob", RedeemCommand("e-4", "ft-1", "wallet-ada", 100_000, fast=False,
                                            term_order_id="t-1"))
    # AND the 6,000.00 left matures at 3 %: 6,000.00 × 3 % × 30 / 365 = 14.79
    assert run_until(service, MATURITY, first=date(2027, 3, 15)) == 1
    assert ledger.available("wallet-ada") == 400_000 + 33 + 600_000 + 1_479
    assert ledger.balances([position_account_id("ft-1", "ada")])[position_account_id("ft-1", "ada")][0] == 0


def test_a_term_rolled_over_again_and_again_keeps_an_id_of_one_length_that_an_early_redemption_can_name():
    # GIVEN a term rolled over three times (maturities 4 April, 4 May, 3 June)
    service, store, ledger = world(MaturityInstruction.ROLL_OVER_PRINCIPAL)
    maturities = [MATURITY + timedelta(days=30 * n) for n in range(3)]
    run_until(service, maturities[-1])
    # THEN each new term's id is the first order's id with its maturity: never longer, whatever the count
    rolled = [o.order_id for o in store.orders_of("ada", 10) if o.order_id != "t-1"]
    assert rolled == [f"t-1~{day:%Y%m%d}" for day in maturities]
    assert {len(order_id) for order_id in rolled} == {len("t-1") + ROLLED_SUFFIX_CHARS}
    assert rolled_order_id(rolled[-1], maturities[-1] + timedelta(days=30)) == (
        f"t-1~{maturities[-1] + timedelta(days=30):%Y%m%d}")
    # and the customer can name the running term in an early redemption request
    body = RedeemBody(order_id="e-1", product_id="ft-1", account_id="wallet-ada", amount=100_000,
                      term_order_id=rolled[-1])
    early = service.redeem("ada", body.command())
    assert early.status is OrderStatus.CONFIRMED
    assert store.order("ada", rolled[-1]).early_redeemed_minor == 100_000
