"""Disputes through the payments function's handle(event, context), opened and closed by the sandbox rail's
signed notices, on the reference ledger and in-memory fakes: what leaves the merchant, what comes back,
the bounds with refunds, and what is refused."""

from __future__ import annotations

import dataclasses
import json

import pytest
from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.services.payments.service import PaymentsService, PaymentsSettings
from finfaas.services.rail.api import DisputeTrigger
from finfaas.services.rail.service import SandboxBank, new_notice_key
from finfaas_dev.testing.platform import call
from unit.services.payments.test_payment_intents import LedgerAccountsOnReference, World, paid, refund

DISPUTE_FEE = 1_500  # the default 15.00 USD
SETTLEMENT = system_account_id(AccountKind.SETTLEMENT, "USD")
FEES = system_account_id(AccountKind.FEES, "USD")


class HandlerNotifier:
    """The rail's dispute notices delivered to the payments handler in process; each delivery kept."""

    def __init__(self, handler) -> None:
        self._handler = handler
        self.deliveries: list[tuple[bytes, dict]] = []

    def deliver(self, body: bytes, headers) -> tuple[int, dict]:
        self.deliveries.append((body, dict(headers)))
        reply = call(self._handler.handle, "POST", "/rail/disputes", body=body, headers=headers)
        return reply.status, reply.json()


class DisputeWorld(World):
    """World, with payments trusting the rail's notice key and a sandbox bank holding the same key."""

    def __init__(self) -> None:
        super().__init__()
        key = new_notice_key()
        current = self.handler.services.get()
        payments = PaymentsService(self.merchants, LedgerAccountsOnReference(self.ledger), self.clock,
                                   intents=self.intents,
                                   money=self.money,
                                   risk=self.risk, breaker=self.breaker, settings=PaymentsSettings(100),
                                   rail_notice_key=key)
        self.handler.services.use(dataclasses.replace(current, payments=payments))
        self.notifier = HandlerNotifier(self.handler)
        self.bank = SandboxBank(None, None, None, key, clock=self.clock, disputes=self.notifier)

    def open(self, payment_id: str, dispute_id: str, amount: int, currency: str = "USD"):
        return self.bank.notify_dispute(DisputeTrigger(
            kind="dispute.opened", dispute_id=dispute_id, payment_intent=payment_id, amount_minor=amount,
            currency=currency, reason="fraudulent"))

    def close(self, payment_id: str, dispute_id: str, amount: int, outcome: str):
        return self.bank.notify_dispute(DisputeTrigger(
            kind="dispute.closed", dispute_id=dispute_id, payment_intent=payment_id, amount_minor=amount,
            currency="USD", outcome=outcome))

    def balance(self, account_id: str) -> int:
        return self.ledger.get_account(account_id).balance_minor

    def events(self, payment_id: str) -> list[str]:
        return [event.type for pid, _, event in self.intents.events if pid == payment_id]


@pytest.fixture
def world() -> DisputeWorld:
    return DisputeWorld()


def test_an_opened_dispute_takes_the_amount_and_the_fee_from_the_payments_shard_with_one_event(world):
    # GIVEN 100.00 captured on one of the merchant's receivable shards
    payment_id = paid(world)
    shard = world.intents.get(payment_id).receivable_account_id

    delivery = world.open(payment_id, "dp_1", 4_000)

    assert delivery.status_code == 200, delivery.answer
    assert delivery.answer["status"] == "needs_response" and delivery.answer["fee"] == DISPUTE_FEE
    assert delivery.answer["source_account_id"] == shard
    assert world.balance(shard) == 10_000 - 4_000 - DISPUTE_FEE
    assert (world.balance(SETTLEMENT), world.balance(FEES)) == (4_000, DISPUTE_FEE)
    assert world.events(payment_id).count("dispute.created") == 1


def test_the_same_notice_twice_opens_the_dispute_once(world):
    payment_id = paid(world)
    shard = world.intents.get(payment_id).receivable_account_id

    first = world.open(payment_id, "dp_1", 4_000)
    again = world.open(payment_id, "dp_1", 4_000)
    other = world.open(payment_id, "dp_1", 3_000)

    assert first.status_code == again.status_code == 200 and again.answer == first.answer
    assert other.status_code == 409 and other.answer["code"] == "dispute_exists_with_different_fields"
    assert world.balance(shard) == 10_000 - 4_000 - DISPUTE_FEE
    assert world.events(payment_id).count("dispute.created") == 1


def test_a_won_dispute_gives_the_amount_back_and_keeps_the_fee(world):
    payment_id = paid(world)
    shard = world.intents.get(payment_id).receivable_account_id
    world.open(payment_id, "dp_1", 4_000)
    evidence = world.post(f"/payment_intents/{payment_id}/disputes/dp_1/evidence", world.app,
                          {"evidence": "signed delivery receipt"})

    won = world.close(payment_id, "dp_1", 4_000, "won")
    again = world.close(payment_id, "dp_1", 4_000, "lost")  # a later or repeated notice changes nothing

    assert evidence.status == 200 and evidence.json()["status"] == "under_review"
    assert won.status_code == 200 and won.answer["status"] == "won"
    assert won.answer["reinstated_transfer_id"]
    assert again.status_code == 200 and again.answer["status"] == "won"
    assert world.balance(shard) == 10_000 - DISPUTE_FEE
    assert world.balance(SETTLEMENT) == 0
    assert world.events(payment_id)[-3:] == ["dispute.created", "dispute.updated", "dispute.closed"]
    # once won, the amount is refundable again (above the 60.00 left while it was disputed)
    assert refund(world, payment_id, "r-1", 6_001).status == 201


def test_an_accepted_dispute_is_lost_and_takes_no_evidence_after(world):
    payment_id = paid(world)
    world.open(payment_id, "dp_1", 4_000)

    accepted = world.post(f"/payment_intents/{payment_id}/disputes/dp_1/accept", world.app)
    again = world.post(f"/payment_intents/{payment_id}/disputes/dp_1/accept", world.app)
    late = world.post(f"/payment_intents/{payment_id}/disputes/dp_1/evidence", world.app, {"evidence": "x"})
    rail_says_won = world.close(payment_id, "dp_1", 4_000, "won")

    assert accepted.status == 200 and accepted.json()["status"] == "lost" and accepted.json()["accepted"]
    assert again.status == 200
    assert late.status == 409 and late.json()["code"] == "dispute_closed"
    assert late.json()["detail"].startswith("status:")
    assert rail_says_won.answer["status"] == "lost"
    assert world.balance(SETTLEMENT) == 4_000
    assert world.events(payment_id).count("dispute.closed") == 1


def test_refunded_plus_disputed_never_exceeds_captured(world):
    payment_id = paid(world)
    assert refund(world, payment_id, "r-1", 7_000).status == 201
    # the shard keeps 30.00, short of 30.00 and the fee: the merchant's reserve carries the dispute
    world.ledger.deposit(world.merchants.get("m-books").accounts.reserve, 10_000, "USD", transfer_id="rsv")

    over = world.open(payment_id, "dp_1", 3_001)
    fits = world.open(payment_id, "dp_2", 3_000)
    no_refund_left = refund(world, payment_id, "r-2", 1)

    assert over.status_code == 422 and over.answer["code"] == "dispute_refused"
    assert over.answer["detail"].startswith("amount:")
    assert fits.status_code == 200
    assert no_refund_left.status == 422 and no_refund_left.json()["code"] == "refund_refused"
    intent = world.intents.get(payment_id)
    assert intent.amount_refunded_minor + intent.amount_disputed_minor == intent.amount_received_minor


def test_a_fully_refunded_payment_cannot_be_disputed(world):
    payment_id = paid(world)
    assert refund(world, payment_id, "r-1").status == 201

    reply = world.open(payment_id, "dp_1", 100)

    assert reply.status_code == 422 and reply.answer["code"] == "dispute_refused"
    assert reply.answer["detail"].startswith("amount_refunded:")
    assert "dispute.created" not in world.events(payment_id)


def test_a_shard_paid_out_already_leaves_the_dispute_to_the_reserve(world):
    payment_id = paid(world)
    shard = world.intents.get(payment_id).receivable_account_id
    reserve = world.merchants.get("m-books").accounts.reserve
    world.ledger.transfer_linked([  # as a payout would: the shard drained, a reserve kept
        _request(shard, SETTLEMENT, 9_000, "po-1"), _request(shard, reserve, 1_000, "rs-1")])
    world.ledger.deposit(reserve, 10_000, "USD", transfer_id="top-reserve")

    reply = world.open(payment_id, "dp_1", 4_000)

    assert reply.status_code == 200 and reply.answer["source_account_id"] == reserve
    assert world.balance(reserve) == 11_000 - 4_000 - DISPUTE_FEE


def _request(debit: str, credit: str, amount: int, transfer_id: str):
    from finfaas.services.ledger.model import TransferRequest

    return TransferRequest(debit, credit, amount, "USD", transfer_id)


def test_notices_not_signed_by_the_rail_are_refused_and_change_nothing(world):
    payment_id = paid(world)
    body = json.dumps({"kind": "dispute.opened", "dispute_id": "dp_1", "payment_intent": payment_id,
                       "amount_minor": 100, "currency": "USD"}).encode()
    forged = SandboxBank(None, None, None, new_notice_key(), clock=world.clock,
                         disputes=world.notifier)

    unsigned = call(world.handler.handle, "POST", "/rail/disputes", body=body,
                    headers={"Content-Type": "application/json"})
    other_key = forged.notify_dispute(DisputeTrigger.model_validate_json(body))

    assert unsigned.status == 401 and unsigned.json()["code"] == "invalid_notice"
    assert other_key.status_code == 401
    assert world.intents.get(payment_id).disputes == ()


def test_disputes_are_the_merchants_to_answer_and_unknown_ones_are_404(world):
    payment_id = paid(world)
    world.open(payment_id, "dp_1", 1_000)

    by_customer = world.post(f"/payment_intents/{payment_id}/disputes/dp_1/accept", world.ada)
    unknown = world.post(f"/payment_intents/{payment_id}/disputes/dp_9/accept", world.app)
    unknown_close = world.close(payment_id, "dp_9", 1_000, "won")
    shown = call(world.handler.handle, "GET", f"/payment_intents/{payment_id}/disputes/dp_1", token=world.app)

    assert by_customer.status == 404 and by_customer.json()["code"] == "payment_intent_not_found"
    assert unknown.status == 404 and unknown.json()["code"] == "dispute_not_found"
    assert unknown_close.status_code == 404
    assert shown.status == 200 and shown.json()["status"] == "needs_response"
    assert world.intents.get(payment_id).disputes[0].status.value == "needs_response"
