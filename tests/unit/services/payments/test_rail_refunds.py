"""Refunds to a bank account through the rail, via the payments function's handle(event, context) on the
reference ledger and in-memory fakes: pending until the rail answers, a refusal reversed in the ledger,
repeats harmless, and the refund bound counting what is pending."""

from __future__ import annotations

import dataclasses

import pytest
from finfaas.domain.creditor import CreditorVault
from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.platform.pii import EnvelopeCipher, KeyedDigests
from finfaas.services.payments.rail_refunds import REFUND_STATE_MACHINE, RailRefunds
from finfaas_dev.fakes.platform import InMemoryDataKeys
from unit.services.payments.test_payment_intents import World, paid, refund

CLEARING = system_account_id(AccountKind.SETTLEMENT, "USD")
FEES = system_account_id(AccountKind.FEES, "USD")
BANK = {"bank_code": "SANDUS00", "account_number": "000987654321", "name": "Ada Lovelace"}


class Orchestrator:
    """The orchestrator as payments starts sagas on it: each start kept (a repeat finds the first)."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, str, dict]] = []

    def start(self, state_machine: str, name: str, input_value, reference=None) -> dict:
        self.starts.append((state_machine, name, input_value))
        return {"execution_id": name}

    def executions(self) -> set[str]:
        return {name for _, name, _ in self.starts}


class RailWorld(World):
    """World, with rail refunds on a fake orchestrator and a vault on in-memory data keys."""

    def __init__(self) -> None:
        super().__init__()
        current = self.handler.services.get()
        self.orchestrator = Orchestrator()
        self.vault = CreditorVault(EnvelopeCipher(InMemoryDataKeys()), KeyedDigests(b"k" * 32))
        rail = RailRefunds(current.payments, self.orchestrator, self.vault, current.payments._ledger_ports())
        self.handler.services.use(dataclasses.replace(current, rail_refunds=rail))
        self.saga = self.minter.mint("orchestrator", ["payments:saga"], kind="client")

    def balance(self, account_id: str) -> int:
        return self.ledger.get_account(account_id).balance_minor

    def shard(self, payment_id: str) -> str:
        return self.intents.get(payment_id).receivable_account_id

    def events(self, payment_id: str, event_type: str) -> list[dict]:
        return [dict(e.data) for pid, _, e in self.intents.events
                if pid == payment_id and e.type == event_type]

    def step(self, step: str, payment_id: str, number: str, **fields):
        body = {"payment_intent": payment_id, "refund_number": number, **fields}
        return self.post(f"/saga/refunds/{step}", self.saga, body)


@pytest.fixture
def world() -> RailWorld:
    return RailWorld()


def to_bank(world: RailWorld, payment_id: str, number: str, amount=None):
    return refund(world, payment_id, number, amount, bank_account=BANK)


def test_a_refund_to_a_bank_is_pending_on_the_rails_clearing_account_with_its_saga(world):
    # GIVEN 100.00 paid with a 3.00 application fee
    payment_id = paid(world)
    shard, clearing_before = world.shard(payment_id), world.balance(CLEARING)

    reply = to_bank(world, payment_id, "r-1", "25.00")

    assert reply.status == 201, reply.body
    body = reply.json()
    assert (body["status"], body["amount"], body["application_fee_refunded"]) == ("pending", 2_500, 75)
    assert body["bank_account"] == {"bank_code": "SANDUS00", "account_number_masked": "****4321"}
    assert world.balance(shard) == 10_000 - 2_500
    assert world.balance(CLEARING) - clearing_before == 2_500  # the rail's side, not ada's account
    assert world.ledger.get_account("acc-ada").balance_minor == 100_000 - 10_000
    # the rail's payment is the refund's transfer, and the bank account opens only for it
    [(machine, execution, saga_input)] = world.orchestrator.starts
    assert (machine, execution, saga_input["amount_minor"]) == (REFUND_STATE_MACHINE, body["transfer_id"],
                                                                 2_500)
    assert [e["status"] for e in world.events(payment_id, "refund.created")] == ["pending"]
    intent = world.intents.get(payment_id)
    sealed = intent.refund("r-1").bank_account
    assert world.vault.open(body["transfer_id"], sealed).account_number == BANK["account_number"]


def test_the_same_refund_number_again_moves_money_once_and_a_wallet_refund_under_it_is_refused(world):
    payment_id = paid(world)
    first = to_bank(world, payment_id, "r-1", "25.00")

    again = to_bank(world, payment_id, "r-1", "25.00")
    to_wallet = refund(world, payment_id, "r-1", "25.00")

    assert again.status == 201 and again.json()["transfer_id"] == first.json()["transfer_id"]
    assert to_wallet.status == 409 and to_wallet.json()["code"] == "refund_exists_with_different_fields"
    assert world.balance(world.shard(payment_id)) == 10_000 - 2_500
    assert world.orchestrator.executions() == {first.json()["transfer_id"]}  # started again, one execution
    assert len(world.events(payment_id, "refund.created")) == 1


def test_a_pending_rail_refund_counts_against_what_is_refundable(world):
    payment_id = paid(world)
    assert to_bank(world, payment_id, "r-1", "60.00").status == 201

    second = refund(world, payment_id, "r-2", "60.00")

    assert second.status == 422 and second.json()["code"] == "refund_refused"
    assert world.balance(world.shard(payment_id)) == 10_000 - 6_000


def test_settled_by_the_rail_the_refund_succeeds_once(world):
    payment_id = paid(world)
    to_bank(world, payment_id, "r-1", "25.00")
    clearing = world.balance(CLEARING)

    settled = world.step("settle", payment_id, "r-1")
    again = world.step("settle", payment_id, "r-1")
    late_failure = world.step("fail", payment_id, "r-1", error={"Error": "Rail.Rejected"})

    assert settled.status == again.status == 200 and settled.json()["status"] == "succeeded"
    assert late_failure.status == 409
    assert world.balance(CLEARING) == clearing  # nothing more moves: the money left through the rail
    assert [e["status"] for e in world.events(payment_id, "refund.updated")] == ["succeeded"]
    assert world.events(payment_id, "refund.failed") == []


def test_refused_by_the_rail_the_refund_is_reversed_and_refundable_again(world):
    # GIVEN a 25.00 refund to a bank, 0.75 of the fee given back with it
    payment_id = paid(world)
    shard = world.shard(payment_id)
    clearing = world.balance(CLEARING)
    to_bank(world, payment_id, "r-1", "25.00")

    failed = world.step("fail", payment_id, "r-1", error={"Error": "Rail.Rejected", "Cause": "closed"})
    again = world.step("fail", payment_id, "r-1", error={"Error": "Rail.Rejected"})
    late_settle = world.step("settle", payment_id, "r-1")

    assert failed.status == again.status == 200, failed.body
    assert (failed.json()["status"], failed.json()["failure_reason"]) == ("failed", "Rail.Rejected")
    assert late_settle.status == 409
    assert (world.balance(shard), world.balance(CLEARING)) == (10_000, clearing)
    intent = world.intents.get(payment_id)
    assert (intent.amount_refunded_minor, intent.fee_refunded_minor) == (0, 0)
    assert [e["reversal_transfer_id"] for e in world.events(payment_id, "refund.failed")] == [
        failed.json()["reversal_transfer_id"]]
    # THEN all that was captured can be refunded again, with the whole fee share
    whole = refund(world, payment_id, "r-2")
    assert whole.status == 201 and (whole.json()["amount"], whole.json()["application_fee_refunded"]) == (
        10_000, 300)


def test_saga_steps_need_the_saga_scope_and_name_a_rail_refund(world):
    payment_id = paid(world)
    refund(world, payment_id, "r-wallet", "10.00")

    by_customer = world.post("/saga/refunds/settle", world.ada,
                             {"payment_intent": payment_id, "refund_number": "r-wallet"})
    wallet_refund = world.step("fail", payment_id, "r-wallet", error={"Error": "Rail.Rejected"})
    unknown = world.step("settle", payment_id, "r-none")

    assert by_customer.status == 403
    assert wallet_refund.status == unknown.status == 404
    assert world.balance(world.shard(payment_id)) == 10_000 - 1_000


REASON = "asked the rail: the beneficiary bank returned it (ticket 7)"


def ended(world: RailWorld, payment_id: str, number: str, outcome: str, token: str | None = None):
    actor = token or world.minter.mint("ops-oncall", ["ops", "ops:act"], kind="client")
    return world.post(f"/_/ops/payment_intents/{payment_id}/refunds/{number}/outcome", actor,
                      {"outcome": outcome, "reason": REASON})


def test_an_operator_ends_an_unanswered_rail_refund_as_failed_once_and_a_late_notice_changes_nothing(world):
    # GIVEN a 25.00 refund to a bank whose saga ended without the rail's answer
    payment_id = paid(world)
    shard, clearing = world.shard(payment_id), world.balance(CLEARING)
    to_bank(world, payment_id, "r-1", "25.00")

    first = ended(world, payment_id, "r-1", "failed")
    again = ended(world, payment_id, "r-1", "failed")
    late_settle = world.step("settle", payment_id, "r-1")
    late_fail = world.step("fail", payment_id, "r-1", error={"Error": "Rail.Rejected"})

    assert first.status == again.status == late_fail.status == 200, first.body
    body = first.json()
    assert (body["status"], body["resolved_by"], body["resolution_reason"]) == (
        "failed", "ops-oncall", REASON)
    assert late_settle.status == 409
    assert (world.balance(shard), world.balance(CLEARING)) == (10_000, clearing)  # given back once
    [event] = world.events(payment_id, "refund.failed")
    assert (event["resolved_by"], event["resolution_reason"]) == ("ops-oncall", REASON)
    assert world.intents.get(payment_id).amount_refunded_minor == 0


def test_an_operator_ends_a_rail_refund_as_settled_after_which_a_late_refusal_is_a_409(world):
    payment_id = paid(world)
    to_bank(world, payment_id, "r-1", "25.00")
    shard, clearing = world.shard(payment_id), world.balance(CLEARING)

    settled = ended(world, payment_id, "r-1", "settled")
    late_fail = world.step("fail", payment_id, "r-1", error={"Error": "Rail.Rejected"})
    other = ended(world, payment_id, "r-1", "failed")

    assert settled.status == 200 and settled.json()["status"] == "succeeded"
    assert late_fail.status == other.status == 409
    assert other.json()["errors"][0]["field"] == "refund_number"
    assert (world.balance(shard), world.balance(CLEARING)) == (10_000 - 2_500, clearing)
    assert len(world.events(payment_id, "refund.updated")) == 1
    assert not world.events(payment_id, "refund.failed")


def test_ending_a_rail_refund_needs_ops_act_and_a_rail_refund(world):
    payment_id = paid(world)
    to_bank(world, payment_id, "r-1", "25.00")
    refund(world, payment_id, "r-wallet", "10.00")
    reader = world.minter.mint("ops-reader", ["ops"], kind="client")

    refused = ended(world, payment_id, "r-1", "failed", token=reader)
    wallet = ended(world, payment_id, "r-wallet", "failed")

    assert refused.status == 403 and wallet.status == 404
    assert world.intents.get(payment_id).refund("r-1").status.value == "pending"


def test_a_refused_rail_refund_settles_as_no_refund_and_the_report_reconciles():
    from unit.services.payments.test_settlement import LATER, SettlementWorld

    # GIVEN 100.00 paid to m-shoes (3.00 fee) and a 25.00 refund to a bank that the rail refused
    world = SettlementWorld()
    current = world.handler.services.get()
    vault = CreditorVault(EnvelopeCipher(InMemoryDataKeys()), KeyedDigests(b"k" * 32))
    rail = RailRefunds(current.payments, Orchestrator(), vault, current.payments._ledger_ports())
    world.handler.services.use(dataclasses.replace(current, rail_refunds=rail))
    payment_id = world.paid(10_000)
    assert refund(world, payment_id, "r-1", "25.00", bank_account=BANK).status == 201
    rail.failed(payment_id, "r-1", "Rail.Rejected")
    world.clock.now += LATER

    report = world.settle().json()

    # THEN the refund and its reversal cancel out, and so do the fee share given and taken back
    assert (report["captures"], report["refunds"], report["fees"]) == (10_000, 0, 300)
    assert report["reconciles"] and world.merchant_total() == 0
