"""The outbox relay on DynamoDB Local and moto's SQS: ledger changes become events on the queue."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import jsonschema
import pytest
from finfaas.domain.ledger import (
    AccountKind,
    AccountStatus,
    Actor,
    NewAccount,
    NewTransfer,
    PostPending,
    Reversal,
    VoidPending,
)
from finfaas.platform.events import (
    EVENT_ID_ATTRIBUTE,
    LEDGER_EVENT_TYPES,
    EventMac,
    SqsQueue,
    envelope_from_document,
)
from finfaas.services.outbox_relay.model import OutboxEvent
from finfaas.services.outbox_relay.service import OutboxRelay, RelayLoop
from finfaas.store.outbox_store import OutboxStore, all_partitions, outbox_partition

ROOT = Path(__file__).resolve().parents[3]
CLOUDEVENTS_SCHEMA = ROOT.parent / "shared" / "schemas" / "cloudevents.json"
SYSTEM = Actor.system()


class Crash(Exception):
    """Stands for the relay's process dying at that line."""


def emit_every_ledger_event(ledger, clock, ids) -> set[str]:
    """Opens, funds, holds (posted, voided, expired), reverses and freezes; the subjects it touched."""
    funding, alice = ids("funding"), ids("alice")
    ledger.open_account(NewAccount(funding, "system", "USD", AccountKind.FUNDING,
                                   debits_must_not_exceed_credits=False), clock())
    ledger.open_account(NewAccount(alice, "cust-alice", "USD"), clock())
    for transfer in ("t1", "t2"):
        ledger.create_transfers([NewTransfer(ids(transfer), funding, alice, 10_000, "USD")], SYSTEM, clock())
    for hold, timeout_s in (("h1", 0), ("h2", 0), ("h3", 1)):
        ledger.create_transfers([NewTransfer(ids(hold), alice, funding, 100, "USD", pending=True,
                                             timeout_seconds=timeout_s)], SYSTEM, clock())
    ledger.post_pending(PostPending(ids("p1"), ids("h1")), SYSTEM, clock())
    ledger.void_pending(VoidPending(ids("v2"), ids("h2")), SYSTEM, clock())
    clock.advance(2)
    expired = ledger.expire_due_holds(clock(), 1000)
    assert ids("h3") in {t.pending_id for t in expired}
    ledger.reverse(Reversal(ids("r2"), ids("t2")), SYSTEM, clock())
    ledger.set_account_status(alice, AccountStatus.FROZEN, clock())
    return {funding, alice, ids("t1"), ids("t2"), ids("h1"), ids("h2"), ids("h3")}


def relay_on(table: str, queue, mac: EventMac, holder: str = "relay-a", **options) -> OutboxRelay:
    return OutboxRelay(OutboxStore(table), SqsQueue("events", queue_name=queue.name), mac, holder, **options)


def pending_events(table: str) -> list[OutboxEvent]:
    store = OutboxStore(table)
    return [e for partition in store.partitions() for e in store.oldest(partition, 100)]


def opened(messages: list[dict], mac: EventMac) -> list[dict]:
    return [mac.open(m["Body"]) for m in messages]


@pytest.fixture
def mac() -> EventMac:
    return EventMac.generate()


def test_every_ledger_change_reaches_the_events_queue_once_valid_and_the_outbox_empties(
        ledger, private_outbox, new_queue, clock, ids, mac):
    # GIVEN one of every ledger operation, committed with its outbox events
    subjects = emit_every_ledger_event(ledger, clock, ids)
    written = [e for e in pending_events(private_outbox) if e.subject in subjects]
    assert {e.type for e in written} == set(LEDGER_EVENT_TYPES)
    queue = new_queue("events")
    # WHEN the relay passes over the outbox
    relay_on(private_outbox, queue, mac).relay_once()
    # THEN each event is on the queue once, with its id as an attribute, and valid against its schema
    messages = [m for m in queue.receive_all(len(written)) if json.loads(m["Body"])["subject"] in subjects]
    documents = opened(messages, mac)
    assert sorted(d["id"] for d in documents) == sorted(e.event_id for e in written)
    assert all(m["MessageAttributes"][EVENT_ID_ATTRIBUTE]["StringValue"] == d["id"]
               for m, d in zip(messages, documents, strict=True))
    for document in documents:
        schema = json.loads((ROOT / "events" / "schemas" / f"{document['type']}.json").read_text())
        jsonschema.Draft202012Validator(schema).validate(document)
        if CLOUDEVENTS_SCHEMA.exists():
            jsonschema.Draft7Validator(json.loads(CLOUDEVENTS_SCHEMA.read_text())).validate(document)
        assert envelope_from_document(document).id == document["id"]
    assert [e for e in pending_events(private_outbox) if e.subject in subjects] == []


def test_a_relay_that_dies_after_sending_is_followed_by_a_resend_with_the_same_ids(
        ledger, private_outbox, new_queue, clock, ids, mac):
    subjects = emit_every_ledger_event(ledger, clock, ids)
    queue = new_queue("events-crash")

    def crash(sent):
        raise Crash()

    # WHEN the first relay dies between SQS accepting a batch and deleting it from the outbox
    with pytest.raises(Crash):
        relay_on(private_outbox, queue, mac, after_send=crash).relay_once()
    first = opened(queue.receive_all(), mac)
    assert first and {d["id"] for d in first} <= {e.event_id for e in pending_events(private_outbox)}
    # AND another relay runs
    relay_on(private_outbox, queue, mac, holder="relay-b").relay_once()
    second = opened(queue.receive_all(), mac)
    # THEN what the dead relay sent is sent again under the same ids, and nothing is missing
    assert {d["id"] for d in first} <= {d["id"] for d in second}
    mine = {d["id"] for d in second if d["subject"] in subjects}
    assert {d["type"] for d in second if d["id"] in mine} == set(LEDGER_EVENT_TYPES)
    assert pending_events(private_outbox) == []


def test_two_relays_at_once_publish_every_event_and_share_the_partitions(private_outbox, new_queue, mac):
    # GIVEN 60 events spread over the producers' partitions
    store = OutboxStore(private_outbox)
    event_model = store._event  # the pynamodb model the producers' records share
    subjects = [f"acc-{n}" for n in range(60)]
    for n, subject in enumerate(subjects):
        event_model(outbox_partition("ledger", subject), f"{n:020d}#e-{n}", event_id=f"e-{n}",
                    type="ledger.account.status_changed", source="finfaas/ledger", subject=subject,
                    time="2026-01-15T09:30:00.000000Z", data='{"status":"FROZEN"}').save()
    queue = new_queue("events-race")
    loops = [RelayLoop(relay_on(private_outbox, queue, mac, holder=f"relay-{i}", batch_size=5,
                                batches_per_lease=1), idle_seconds_min=0.01, idle_seconds_max=0.05)
             for i in range(2)]
    threads = [threading.Thread(target=loop.run, kwargs={"deadline_seconds": 60.0}) for loop in loops]
    # WHEN both relays run until the outbox is empty
    for thread in threads:
        thread.start()
    try:
        while pending_events(private_outbox) and threads[0].is_alive():
            loops[0].stopping.wait(0.2)
    finally:
        for loop in loops:
            loop.stop()
        for thread in threads:
            thread.join(30)
    # THEN every event is on the queue (duplicates allowed), and both relays did some of the work
    assert pending_events(private_outbox) == []
    ids_sent = [d["id"] for d in opened(queue.receive_all(60), mac)]
    assert set(ids_sent) == {f"e-{n}" for n in range(60)}
    assert all(loop.totals.sent > 0 for loop in loops)


def test_partition_leases_are_conditional_writes(private_outbox):
    store = OutboxStore(private_outbox)
    assert store.acquire_lease("ledger-7", "a", now_ms=1_000, lease_ms=500)
    assert store.acquire_lease("ledger-7", "a", now_ms=1_200, lease_ms=500)  # renewal by the holder
    assert not store.acquire_lease("ledger-7", "b", now_ms=1_600, lease_ms=500)
    assert store.acquire_lease("ledger-7", "b", now_ms=1_701, lease_ms=500)  # a's lease ran out
    store.release_lease("ledger-7", "a")  # not a's any more: no effect
    assert not store.acquire_lease("ledger-7", "a", now_ms=1_800, lease_ms=500)
    store.release_lease("ledger-7", "b")
    assert store.acquire_lease("ledger-7", "a", now_ms=1_801, lease_ms=500)
    assert store.oldest("ledger-7", 10) == []  # the lease item is never read as an event


def test_an_event_sqs_refuses_is_parked_with_its_reason(private_outbox, new_queue, mac):
    store = OutboxStore(private_outbox, partitions=["ledger-5"])
    huge = json.dumps({"status": "x" * (300 * 1024)})
    store._event("ledger-5", "00000000000000000001#big", event_id="big", type="ledger.account.status_changed",
                 source="finfaas/ledger", subject="acc-big", time="2026-01-15T09:30:00.000000Z",
                 data=huge).save()
    queue = new_queue("events-park")
    result = OutboxRelay(store, SqsQueue("events", queue_name=queue.name), mac, "relay-a").relay_once()
    assert (result.sent, result.parked) == (0, 1)
    [(parked, reason)] = [(e, r) for e, r in store.parked(10) if e.event_id == "big"]
    assert parked.data == huge and "SQS takes" in reason
    assert store.oldest("ledger-5", 10) == [] and queue.receive_all() == []


def test_all_partitions_cover_every_ledger_partition():
    from finfaas.store.ledger_store import outbox_partitions

    assert {f"ledger-{n}" for n in range(outbox_partitions)} <= set(all_partitions())
