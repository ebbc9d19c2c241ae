"""payment_intent.payment_failed through the payments function's handle(event, context): a confirmation
refused by risk or by the customer's funds is recorded on the intent with exactly one event; refusals
not about the payment write nothing."""

from __future__ import annotations

from finfaas.services.ledger.model import TransferRequest
from finfaas_dev.testing.platform import call
from unit.services.payments.test_payment_intents import World


def events(world: World, payment_id: str) -> list[tuple[str, dict]]:
    return [(e.type, dict(e.data)) for pid, _, e in world.intents.events if pid == payment_id]


def test_a_declined_confirmation_writes_payment_failed_once_and_holds_nothing():
    world = World()
    payment_id = world.create(1_000).json()["id"]
    world.risk.decision = "decline"

    reply = world.post(f"/payment_intents/{payment_id}/confirm", world.ada, key="confirm-1")
    again = world.post(f"/payment_intents/{payment_id}/confirm", world.ada, key="confirm-1")

    assert reply.status == again.status == 422 and reply.json()["code"] == "payment_declined"
    failed = [data for kind, data in events(world, payment_id) if kind == "payment_intent.payment_failed"]
    assert [(d["failure_code"], d["status"]) for d in failed] == [
        ("payment_declined", "requires_confirmation")]
    shown = call(world.handler.handle, "GET", f"/payment_intents/{payment_id}", token=world.ada).json()
    assert (shown["status"], shown["last_payment_error"]) == ("requires_confirmation", "payment_declined")
    assert world.balances() == (0, 0, 0)


def test_without_the_funds_payment_failed_then_a_deposit_lets_it_confirm():
    world = World()
    payment_id = world.create(100_001).json()["id"]

    refused = world.post(f"/payment_intents/{payment_id}/confirm", world.ada)
    world.ledger.transfer(TransferRequest("sys-funding-USD", "acc-ada", 1, "USD", "dep-2"))
    confirmed = world.post(f"/payment_intents/{payment_id}/confirm", world.ada)

    assert refused.status == 409 and refused.json()["code"] == "insufficient_funds"
    assert confirmed.status == 200 and confirmed.json()["status"] == "requires_capture"
    kinds = [kind for kind, _ in events(world, payment_id)]
    assert kinds == ["payment_intent.created", "payment_intent.payment_failed",
                     "payment_intent.requires_capture"]
    assert events(world, payment_id)[1][1]["failure_code"] == "insufficient_funds"


def test_refusals_not_about_the_payment_write_no_event():
    world = World()
    payment_id = world.create(100_000_00).json()["id"]
    world.risk.down = True

    unavailable = world.post(f"/payment_intents/{payment_id}/confirm", world.ada)

    assert unavailable.status == 503
    assert [kind for kind, _ in events(world, payment_id)] == ["payment_intent.created"]
