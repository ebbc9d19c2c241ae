"""A settlement's payout handed to the rail, through the payments function's handle(event, context) on the
reference ledger and in-memory fakes: the saga starts once however often the day is settled, payout.paid
only on the rail's settlement, and a refused payout back in the merchant's reserve, once."""

from __future__ import annotations

import dataclasses

from finfaas.domain.creditor import CreditorVault, SealedCreditor
from finfaas.platform.pii import EnvelopeCipher, KeyedDigests
from finfaas.services.payments.rail_payouts import PAYOUT_STATE_MACHINE, RailPayouts
from finfaas.services.payments.settlement import MerchantSettlement
from finfaas_dev.fakes.platform import InMemoryDataKeys
from unit.services.payments.test_rail_refunds import Orchestrator
from unit.services.payments.test_settlement import PAYOUT, RESERVE, SETTLEMENT, SettlementWorld


class PayoutWorld(SettlementWorld):
    """SettlementWorld whose settlements hand their payouts to the rail's saga (a fake orchestrator)."""

    def __init__(self) -> None:
        super().__init__()
        self.orchestrator = Orchestrator()
        self.vault = CreditorVault(EnvelopeCipher(InMemoryDataKeys()), KeyedDigests(b"k" * 32))
        self.payouts = RailPayouts(self.merchants, self.settlements, self.money, self.orchestrator,
                                   self.vault)
        self.settlement = MerchantSettlement(self.merchants, self.intents, self.money, self.settlements,
                                             lambda: self.clock.now.date(), self.clock,
                                             on_paid=self.payouts.hand_to_rail)
        current = self.handler.services.get()
        self.handler.services.use(dataclasses.replace(current, settlement=self.settlement,
                                                      rail_payouts=self.payouts))
        self.saga = self.minter.mint("orchestrator", ["payments:saga"], kind="client")

    def step(self, step: str, day: str, **fields):
        return self.post(f"/saga/payouts/{step}", self.saga,
                         {"merchant_id": "m-shoes", "business_date": day, **fields})

    def events(self) -> list[str]:
        return [e.type for *_, e in self.settlements.events]

    def reserve(self) -> int:
        return self.balance(self.merchants.get("m-shoes").accounts.reserve)


def settled(world: PayoutWorld) -> dict:
    world.day_of_business()
    reply = world.settle()
    assert reply.status == 200, reply.body
    return reply.json()


def test_the_days_payout_goes_to_the_merchants_bank_through_the_rail_once_however_often_it_is_settled():
    world = PayoutWorld()

    report = settled(world)
    again = world.settle().json()

    assert (report["payout"], report["payout_status"]) == (PAYOUT, "in_transit")
    assert again == report and world.events() == ["payout.created"]  # payout.paid waits for the rail
    # the rerun's start finds the first execution: one name, so one payment on the rail
    payout_id = f"stl-m-shoes-{world.clock.now.date():%Y%m%d}-po"
    assert {(m, n) for m, n, _ in world.orchestrator.starts} == {(PAYOUT_STATE_MACHINE, payout_id)}
    saga_input = world.orchestrator.starts[0][2]
    opened = world.vault.open(payout_id, SealedCreditor.from_json(saga_input["bank_account"]))
    assert (opened.account_number, saga_input["amount_minor"]) == ("000123456789", PAYOUT)


def test_the_rails_settlement_writes_payout_paid_once_and_a_late_refusal_is_refused():
    world = PayoutWorld()
    day = settled(world)["business_date"]
    clearing = world.balance(SETTLEMENT)

    paid = world.step("paid", day)
    again = world.step("paid", day)
    late = world.step("fail", day, error={"Error": "Rail.Rejected"})

    assert paid.status == again.status == 200 and paid.json()["payout_status"] == "paid"
    assert late.status == 409
    assert world.events() == ["payout.created", "payout.paid"]
    assert world.balance(SETTLEMENT) == clearing and world.reserve() == RESERVE


def test_a_refused_payout_goes_back_to_the_merchants_reserve_once():
    world = PayoutWorld()
    day = settled(world)["business_date"]
    clearing = world.balance(SETTLEMENT)

    failed = world.step("fail", day, error={"Error": "Rail.Rejected"})
    again = world.step("fail", day, error={"Error": "Rail.Rejected"})
    late = world.step("paid", day)

    assert failed.status == again.status == 200, failed.body
    assert failed.json()["payout_status"] == "failed"
    assert late.status == 409
    assert world.reserve() == RESERVE + PAYOUT and world.balance(SETTLEMENT) == clearing - PAYOUT
    assert world.events() == ["payout.created", "payout.failed"]


# --- an operator ends a payout whose rail answer never came ------------------------------------------------

REASON = "the rail's support desk confirmed it was never paid (ticket 42)"


class RacingSettlements:
    """Settlements whose next read lets a rival step in right after it, as a late rail answer would."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.rival = None

    def get(self, merchant_id, business_date):
        found = self._inner.get(merchant_id, business_date)
        rival, self.rival = self.rival, None
        if rival is not None:
            rival()
        return found

    def __getattr__(self, name):
        return getattr(self._inner, name)


def ended(world: PayoutWorld, day: str, outcome: str, token: str | None = None):
    path = f"/_/ops/merchants/m-shoes/settlements/{day}/payout/outcome"
    return world.post(path, token or world.actor, {"outcome": outcome, "reason": REASON})


def acting(world: PayoutWorld) -> PayoutWorld:
    world.actor = world.minter.mint("ops-oncall", ["ops", "ops:act"], kind="client")
    return world


def test_an_operator_ends_an_unanswered_payout_as_failed_once_and_a_late_rail_answer_is_refused():
    world = acting(PayoutWorld())
    day = settled(world)["business_date"]
    clearing = world.balance(SETTLEMENT)

    first = ended(world, day, "failed")
    again = ended(world, day, "failed")
    late = world.step("paid", day)

    assert first.status == again.status == 200, first.body
    assert first.json()["payout_status"] == "failed"
    assert (first.json()["payout_resolved_by"], first.json()["payout_resolution_reason"]) == (
        "ops-oncall", REASON)
    assert late.status == 409
    assert world.reserve() == RESERVE + PAYOUT and world.balance(SETTLEMENT) == clearing - PAYOUT
    assert world.events() == ["payout.created", "payout.failed"]
    event = world.settlements.events[-1][2].data
    assert (event["resolved_by"], event["resolution_reason"]) == ("ops-oncall", REASON)


def test_an_operator_ends_an_unanswered_payout_as_paid_and_nothing_moves():
    world = acting(PayoutWorld())
    day = settled(world)["business_date"]
    clearing = world.balance(SETTLEMENT)

    reply = ended(world, day, "settled")

    assert reply.status == 200 and reply.json()["payout_status"] == "paid"
    assert world.balance(SETTLEMENT) == clearing and world.reserve() == RESERVE
    assert world.events() == ["payout.created", "payout.paid"]


def test_a_late_rail_settlement_racing_the_operators_failed_wins_alone_and_nothing_goes_back():
    # GIVEN the operator's "failed" reads the payout in transit, and the rail's late "paid" lands right then
    world = acting(PayoutWorld())
    day = settled(world)["business_date"]
    clearing = world.balance(SETTLEMENT)
    racing = RacingSettlements(world.settlements)
    operator_payouts = RailPayouts(world.merchants, racing, world.money, world.orchestrator, world.vault)
    current = world.handler.services.get()
    world.handler.services.use(dataclasses.replace(current, rail_payouts=operator_payouts))
    racing.rival = lambda: world.payouts.paid("m-shoes", world.clock.now.date())

    reply = ended(world, day, "failed")

    # THEN the operator is refused and the merchant is not paid twice (rail and reserve)
    assert reply.status == 409 and reply.json()["errors"][0]["field"] == "payout_status", reply.body
    assert world.balance(SETTLEMENT) == clearing and world.reserve() == RESERVE
    assert world.events() == ["payout.created", "payout.paid"]


def test_ending_a_payout_needs_ops_act_and_a_reason():
    world = acting(PayoutWorld())
    day = settled(world)["business_date"]

    reader = ended(world, day, "failed", token=world.minter.mint("ops-reader", ["ops"], kind="client"))
    no_reason = world.post(f"/_/ops/merchants/m-shoes/settlements/{day}/payout/outcome", world.actor,
                           {"outcome": "failed", "reason": ""})

    assert reader.status == 403 and no_reason.status == 422
    assert world.events() == ["payout.created"] and world.reserve() == RESERVE
