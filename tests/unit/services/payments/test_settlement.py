"""Merchant settlement through the payments function's handle(event, context), on the reference ledger and
in-memory fakes: the report reconciles with what the shards took in, the ledger moves match it, a rerun
pays nothing twice, and a crash at any point of the run leaves it to finish with the same legs."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.services.payments.model import SettlementLeg
from finfaas.services.payments.settlement import MerchantSettlement
from finfaas_dev.fakes.payments import InMemoryPaymentsLedger, InMemorySettlements
from finfaas_dev.fakes.platform import InMemoryRateLimitStore
from finfaas_dev.payments_check import check
from finfaas_dev.testing.platform import call
from unit.services.payments.test_disputes import DISPUTE_FEE, DisputeWorld
from unit.services.payments.test_payment_intents import MERCHANT, refund, scheduled_tick

SETTLEMENT = system_account_id(AccountKind.SETTLEMENT, "USD")
FEES = system_account_id(AccountKind.FEES, "USD")
SHOP = {**MERCHANT, "merchant_id": "m-shoes", "name": "Shoes", "reserve_bps": 1_000}
LATER = timedelta(minutes=5)  # past the settlement's lag: every entry so far is settled


class Crash(Exception):
    """The process died here."""


class CrashingLedger(InMemoryPaymentsLedger):
    """Dies before (or after) the n-th batch of settlement legs commits."""

    def __init__(self, ledger, intents, crash_at: int | None, after: bool) -> None:
        super().__init__(ledger, intents)
        self.crash_at, self.after, self.batches = crash_at, after, 0

    def move(self, legs, currency) -> None:
        self.batches += 1
        if self.batches == self.crash_at and not self.after:
            raise Crash()
        super().move(legs, currency)
        if self.batches == self.crash_at and self.after:
            raise Crash()


class CrashingSettlements(InMemorySettlements):
    """Dies before or after the plan's create, or the PAID save, when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.crash: str | None = None

    def create(self, settlement, previous):
        if self.crash == "before-create":
            raise Crash()
        stored = super().create(settlement, previous)
        if self.crash == "after-create":
            raise Crash()
        return stored

    def save(self, settlement, event) -> bool:
        if self.crash == "before-save":
            raise Crash()
        saved = super().save(settlement, event)
        if self.crash == "after-save":
            raise Crash()
        return saved


class SettlementWorld(DisputeWorld):
    """DisputeWorld with merchant m-shoes (10 % rolling reserve) and the settlement use case."""

    def __init__(self, crash_batch: int | None = None, after: bool = False, legs_per_batch: int = 1,
                 reserve_period_days: int | None = None) -> None:
        super().__init__()
        shop = SHOP if reserve_period_days is None else {**SHOP, "reserve_period_days": reserve_period_days}
        assert self.post("/_/ops/merchants", self.operator, shop).status == 201
        self.settlements = CrashingSettlements()
        self.money = CrashingLedger(self.ledger, self.intents, crash_batch, after)
        self.settlement = MerchantSettlement(self.merchants, self.intents, self.money, self.settlements,
                                             lambda: self.clock.now.date(), self.clock,
                                             legs_per_batch=legs_per_batch)
        current = self.handler.services.get()
        self.handler.services.use(dataclasses.replace(current, settlement=self.settlement))

    def paid(self, amount: int) -> str:
        body = {"amount": amount, "currency": "USD", "customer_account_id": "acc-ada",
                "merchant_id": "m-shoes", "capture_method": "manual"}
        payment_id = self.post("/payment_intents", self.ada, body).json()["id"]
        assert self.post(f"/payment_intents/{payment_id}/confirm", self.ada).status == 200
        assert self.post(f"/payment_intents/{payment_id}/capture", self.ada, {}).status == 200
        return payment_id

    def day_of_business(self) -> None:
        """Two payments of 100.00 (3.00 fee each), 25.00 refunded, a 40.00 dispute lost."""
        first, second = self.paid(10_000), self.paid(10_000)
        assert refund(self, first, "r-1", 2_500).status == 201
        assert self.open(second, "dp_1", 4_000).status_code == 200
        assert self.close(second, "dp_1", 4_000, "lost").status_code == 200
        self.clock.now += LATER

    def settle(self, day=None):
        day = day or self.clock.now.date().isoformat()
        return self.post(f"/_/ops/merchants/m-shoes/settlements/{day}", self.operator)

    def merchant_total(self) -> int:
        accounts = self.merchants.get("m-shoes").accounts
        return sum(self.balance(a) for a in accounts.receivables)


# The figures of day_of_business: fees 3.00 + 3.00 - 0.75 (given back with the refund); net 200.00 - 25.00
# - (40.00 + 15.00); reserve 10 % of what is left after fees, rounded down.
NET = 20_000 - 2_500 - (4_000 + DISPUTE_FEE)
FEES_NET = 300 + 300 - 75
RESERVE = (NET - FEES_NET) // 10
PAYOUT = NET - FEES_NET - RESERVE


def test_the_days_report_reconciles_and_the_ledger_moved_exactly_it():
    world = SettlementWorld()
    world.day_of_business()
    fees_before, settled_before = world.balance(FEES), world.balance(SETTLEMENT)

    reply = world.settle()

    assert reply.status == 200, reply.body
    report = reply.json()
    assert (report["captures"], report["refunds"], report["dispute_losses"]) == (20_000, 2_500, 5_500)
    assert (report["fees"], report["reserve"], report["payout"]) == (FEES_NET, RESERVE, PAYOUT)
    assert report["reconciles"] and report["status"] == "paid"
    assert world.merchant_total() == 0  # every shard drained
    assert world.balance(world.merchants.get("m-shoes").accounts.reserve) == RESERVE
    assert world.balance(FEES) - fees_before == FEES_NET
    assert world.balance(SETTLEMENT) - settled_before == PAYOUT
    assert [e.type for *_, e in world.settlements.events] == ["payout.created"]


def test_a_rerun_of_the_same_day_pays_nothing_twice_and_the_next_day_settles_only_what_is_new():
    world = SettlementWorld()
    world.day_of_business()
    first = world.settle().json()
    settled = world.balance(SETTLEMENT)

    again = world.settle()
    world.paid(1_000)
    world.clock.now += timedelta(days=1)
    next_day = world.settle().json()

    assert again.status == 200 and again.json() == first
    assert (next_day["captures"], next_day["refunds"], next_day["dispute_losses"]) == (1_000, 0, 0)
    assert next_day["fees"] == 30 and next_day["reconciles"]
    assert world.balance(SETTLEMENT) - settled == next_day["payout"]
    assert len(world.settlements.events) == 2


def test_the_report_as_csv_says_the_same():
    world = SettlementWorld()
    world.day_of_business()
    day = world.clock.now.date().isoformat()
    world.settle()

    reply = call(world.handler.handle, "GET", f"/_/ops/merchants/m-shoes/settlements/{day}",
                 token=world.operator, headers={"Accept": "text/csv"})

    assert reply.status == 200 and reply.header("Content-Type").startswith("text/csv")
    header, row = reply.body.strip().split("\n")
    figures = dict(zip(header.split(","), row.split(","), strict=True))
    minor = {name: int(value) for name, value in figures.items() if name.endswith("_minor")}
    assert (minor["captures_minor"] - minor["refunds_minor"] - minor["fees_minor"]
            - minor["dispute_losses_minor"] - minor["reserve_minor"]) == minor["payout_minor"]
    assert int(figures["payout_minor"]) == PAYOUT and figures["reconciles"] == "true"


def test_a_future_date_an_unknown_report_and_a_bad_date_are_refused_by_name():
    world = SettlementWorld()
    tomorrow = (world.clock.now + timedelta(days=1)).date().isoformat()

    future = world.settle(tomorrow)
    missing = call(world.handler.handle, "GET", "/_/ops/merchants/m-shoes/settlements/2026-01-01",
                   token=world.operator)
    garbled = world.settle("2026-13-45")

    assert future.status == 422 and future.json()["code"] == "settlement_date_in_future"
    assert future.json()["detail"].startswith("date:")
    assert missing.status == 404 and missing.json()["code"] == "settlement_not_found"
    assert garbled.status == 422 and garbled.json()["detail"].startswith("date:")
    assert world.settlements.latest("m-shoes") is None


# Every point a run can die: before or after each batch of legs (one leg a batch: at least 3 here), and
# before or after the plan's write and the PAID write.
CRASH_POINTS = ([("batch", n, after) for n in (1, 2, 3) for after in (False, True)]
                + [("store", point, False) for point in ("before-create", "after-create", "before-save",
                                                         "after-save")])


@pytest.mark.parametrize(("where", "point", "after"), CRASH_POINTS)
def test_a_run_killed_at_any_point_finishes_on_the_next_run_and_pays_once(where, point, after):
    world = SettlementWorld(crash_batch=point if where == "batch" else None, after=after)
    world.settlements.crash = point if where == "store" else None
    world.day_of_business()
    settled_before = world.balance(SETTLEMENT)

    with pytest.raises(Crash):
        world.settlement.settle("m-shoes", world.clock.now.date())
    world.money.crash_at, world.settlements.crash = None, None
    world.clock.now += timedelta(minutes=1)  # the next tick
    finished = world.settle()

    assert finished.status == 200, finished.body
    report = finished.json()
    assert (report["payout"], report["reconciles"], report["status"]) == (PAYOUT, True, "paid")
    assert sum(leg["amount_minor"] for leg in report["legs"]) == NET  # planned once, moved once
    assert world.balance(SETTLEMENT) - settled_before == PAYOUT
    assert world.merchant_total() == 0
    assert [e.type for *_, e in world.settlements.events] == ["payout.created"]


def test_the_scheduled_tick_settles_every_merchant_once_for_the_business_date():
    # GIVEN two merchants, one with a day of business, and the run settling one merchant a tick
    world = SettlementWorld()
    world.day_of_business()
    world.claims = InMemoryRateLimitStore()
    settlement = MerchantSettlement(world.merchants, world.intents, world.money, world.settlements,
                                    lambda: world.clock.now.date(), world.clock)
    world.handler.services.use(dataclasses.replace(world.handler.services.get(), settlement=settlement))
    settle_due = settlement.settle_due

    first = scheduled_tick(world)
    second = settle_due(limit=1)
    third = settle_due(limit=1)

    assert first.status == 200, first.body
    assert sorted(first.json()["settled"]) == ["m-books", "m-shoes"]
    assert (second.settled, second.done) == ((), True) and third.settled == ()
    shoes = world.settlements.get("m-shoes", world.clock.now.date())
    assert (shoes.payout_minor, shoes.status.value) == (PAYOUT, "paid")
    assert len(world.settlements.events) == 2  # one payout.created per merchant, however many ticks


def test_the_run_goes_on_in_batches_passes_over_a_merchant_that_fails_and_pays_it_the_next_day():
    # GIVEN m-books with 10.00 on a receivable shard the ledger refuses to debit (frozen), and m-shoes
    world = SettlementWorld()
    books = world.authorized(1_000)
    assert world.capture(books).status == 200
    world.day_of_business()
    frozen = world.intents.get(books).receivable_account_id
    world.ledger.freeze(frozen)

    first = world.settlement.settle_due(limit=1)
    second = world.settlement.settle_due(limit=1)
    third = world.settlement.settle_due(limit=1)
    world.ledger.unfreeze(frozen)
    day_one = world.clock.now.date()
    world.clock.now += timedelta(days=1)
    next_day = world.settlement.settle_due(limit=5)

    assert (first.settled, first.failed, first.done) == ((), ("m-books",), False)
    assert (second.settled, second.done) == (("m-shoes",), False)
    assert third.done and third.settled == ()
    assert set(next_day.settled) == {"m-books", "m-shoes"} and next_day.done
    # the first day's plan, stored before the ledger refused it, is finished first: paid once, as planned
    books_paid = world.settlements.get("m-books", day_one)
    assert (books_paid.status.value, books_paid.captures_minor, books_paid.fees_minor) == ("paid", 1_000, 30)
    assert world.settlements.get("m-books", world.clock.now.date()).captures_minor == 0


def test_the_check_finds_every_settlement_agreeing_with_the_ledger_and_names_a_doctored_one():
    world = SettlementWorld()
    world.day_of_business()
    world.settle()
    world.paid(1_000)
    world.clock.now += timedelta(days=1)
    world.settle()

    checked, problems = check(world.settlement, world.settlements, ["m-books", "m-shoes"])
    first, second = world.settlements.of_merchant("m-shoes", 10)
    doctored = dataclasses.replace(second, captures_minor=second.captures_minor + 1,
                                   payout_minor=second.payout_minor + 1)

    assert (checked, problems) == (2, [])
    found = world.settlement.verify(doctored, first)
    assert len(found) == 2 and "the ledger's entries give" in found[0] and "its legs move" in found[1]


# --- the rolling reserve's release -------------------------------------------------------------------------


def settle_days(world: SettlementWorld, days: int) -> list[dict]:
    """Settle today, then each of the next `days` calendar days (the business date follows the clock)."""
    reports = [world.settle().json()]
    for _ in range(days):
        world.clock.now += timedelta(days=1)
        reports.append(world.settle().json())
    return reports


def test_the_reserve_is_paid_out_by_the_settlement_after_its_period_once_and_the_check_agrees():
    # GIVEN m-shoes holds its reserve two business days, and Monday's settlement withheld RESERVE
    world = SettlementWorld(reserve_period_days=2)
    world.day_of_business()
    reserve = world.merchants.get("m-shoes").accounts.reserve
    clearing = world.balance(SETTLEMENT)

    # WHEN Monday to Thursday are settled, Wednesday twice
    monday, tuesday, wednesday = settle_days(world, 2)
    again = world.settle().json()
    world.clock.now += timedelta(days=1)
    thursday = world.settle().json()

    # THEN Wednesday (Monday + 2 business days) pays it out with its own payout, and only Wednesday
    assert (monday["reserve"], monday["reserve_released"], tuesday["reserve_released"]) == (RESERVE, 0, 0)
    assert (wednesday["reserve_released"], wednesday["payout"], wednesday["reconciles"]) == (
        RESERVE, RESERVE, True)
    assert wednesday["reserve_released_through"] == monday["business_date"]
    assert [leg["purpose"] for leg in wednesday["legs"]] == ["reserve_release"]
    assert again == wednesday and thursday["reserve_released"] == 0
    assert world.balance(reserve) == 0 and world.balance(SETTLEMENT) - clearing == PAYOUT + RESERVE
    assert check(world.settlement, world.settlements, ["m-shoes"]) == (4, [])


def test_a_reserve_a_dispute_drew_on_is_released_as_far_as_it_holds_and_a_doctored_release_is_named():
    # GIVEN Monday's reserve, 5.00 of which a dispute took after the shards were paid out
    world = SettlementWorld(reserve_period_days=1)
    world.day_of_business()
    monday = world.settle().json()
    reserve = world.merchants.get("m-shoes").accounts.reserve
    world.money.move([SettlementLeg("dispute-from-reserve", reserve, FEES, 500, "test")], "USD")

    world.clock.now += timedelta(days=1)
    tuesday = world.settle().json()

    assert (tuesday["reserve_released"], tuesday["payout"]) == (RESERVE - 500, RESERVE - 500)
    assert world.balance(reserve) == 0 and monday["reserve_released"] == 0
    assert check(world.settlement, world.settlements, ["m-shoes"]) == (2, [])
    first, second = world.settlements.of_merchant("m-shoes", 10)
    twice = dataclasses.replace(second, reserve_released_after=None, reserve_released_through=None)
    assert "without saying which" in world.settlement.verify(twice, first)[-1]


# --- two dates settled at once from the same cut -----------------------------------------------------------


def test_a_missed_day_settled_while_the_daily_run_settles_today_is_refused_and_nothing_is_paid_twice():
    # GIVEN Monday settled, Tuesday's business left unsettled (its run missed the merchant), and on Wednesday
    # the daily run settles today right after an operator's settlement of Tuesday read Monday as the latest
    world = SettlementWorld(reserve_period_days=0)
    world.day_of_business()
    assert world.settle().status == 200
    world.clock.now += timedelta(days=1)
    tuesday = world.clock.now.date()
    world.day_of_business()
    world.clock.now += timedelta(days=1)
    wednesday = world.clock.now.date()
    reserve = world.merchants.get("m-shoes").accounts.reserve
    settled_before = world.balance(SETTLEMENT)
    settlements = world.settlements
    monday_was_latest = settlements.latest

    def latest_then_the_daily_run(merchant_id):
        found = monday_was_latest(merchant_id)
        settlements.latest = monday_was_latest
        world.settlement.settle("m-shoes", wednesday)
        return found

    settlements.latest = latest_then_the_daily_run

    missed = world.settle(tuesday.isoformat())

    # THEN Wednesday alone pays Tuesday's business and Monday's reserve; Tuesday is refused, nothing stored
    assert missed.status == 409 and missed.json()["code"] == "settlement_out_of_order", missed.body
    assert settlements.get("m-shoes", tuesday) is None
    paid = settlements.get("m-shoes", wednesday)
    assert (paid.payout_minor, paid.reserve_released_minor) == (PAYOUT + RESERVE, RESERVE)
    assert world.balance(SETTLEMENT) - settled_before == PAYOUT + RESERVE
    assert world.balance(reserve) == RESERVE and world.merchant_total() == 0
    assert check(world.settlement, world.settlements, ["m-shoes"]) == (2, [])
