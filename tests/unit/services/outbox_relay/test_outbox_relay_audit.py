"""The relay seals audit facts carried by outbox events into the partition's chain, exactly once."""

from __future__ import annotations

import json

import pytest
from finfaas.platform.audit import AuditEvent, Outcome, audit_facts_json, verify_chain
from finfaas.platform.events import EventMac
from finfaas.services.outbox_relay.model import outbox_audit_chain
from finfaas.services.outbox_relay.service import OutboxRelay
from support.audit_testing import KEY, KEYRING, ChainIntruder
from support.events_fakes import FakeOutbox, FakeQueue, outbox_event

CHAIN = "ledger-outbox-0"


class Crash(Exception):
    """Stands for the process dying at that line."""


def facts(n: int) -> str:
    event = AuditEvent(actor="svc-payments", action="create_transfer", target=f"transfer:t-{n}",
                       outcome=Outcome.SUCCEEDED, source_ip="203.0.113.9", request_id=f"req-{n}")
    return audit_facts_json(event, f"2026-01-15T09:30:00.{n:03d}+00:00")


def audited(n: int, partition: str = "ledger-0"):
    return outbox_event(n, partition=partition, audit=facts(n))


def relay_for(outbox: FakeOutbox, queue: FakeQueue, holder: str = "relay-a", now_ms: int = 1_000_000,
              **options) -> OutboxRelay:
    return OutboxRelay(outbox, queue, EventMac.generate(), holder, clock_ms=lambda: now_ms, audit_key=KEY,
                       **options)


def chain_targets(outbox: FakeOutbox, chain: str = CHAIN) -> list[str]:
    return [r.target for r in outbox.audit_log.records(chain)]


def assert_chain_verifies(outbox: FakeOutbox, chain: str = CHAIN) -> None:
    report = verify_chain(chain, outbox.audit_log.records(chain), KEYRING)
    assert report.ok, report.problems


def test_a_pass_seals_every_audited_event_into_its_partitions_chain_in_order():
    # GIVEN 12 audited events on one partition and 3 on another, plus one event without facts
    outbox, queue = FakeOutbox(), FakeQueue()
    outbox.add(*[audited(n) for n in range(12)], *[audited(n, "ledger-1") for n in range(20, 23)],
               outbox_event(99))
    # WHEN one pass runs
    result = relay_for(outbox, queue).relay_once()
    # THEN every event went out, and each audited one is in its chain once, in event order, signed
    assert result.sent == 16 and outbox.remaining() == []
    assert chain_targets(outbox) == [f"transfer:t-{n}" for n in range(12)]
    assert chain_targets(outbox, "ledger-outbox-1") == ["transfer:t-20", "transfer:t-21", "transfer:t-22"]
    assert_chain_verifies(outbox)
    assert_chain_verifies(outbox, "ledger-outbox-1")
    [first] = [r for r in outbox.audit_log.records(CHAIN) if r.seq == 1]
    assert (first.actor, first.action, first.outcome, first.request_id, first.at) == (
        "svc-payments", "create_transfer", "succeeded", "req-0", "2026-01-15T09:30:00.000+00:00")
    assert first.alg == "hmac-sha256" and first.key_id == KEY.key_id


def test_the_audit_facts_are_never_published():
    outbox, queue, mac = FakeOutbox(["ledger-0"]), FakeQueue(), EventMac.generate()
    outbox.add(audited(1))
    OutboxRelay(outbox, queue, mac, "relay-a", audit_key=KEY).relay_once()
    [message] = queue.sent
    document = json.dumps(mac.open(message.body))
    assert "acc-1" in document  # the event itself is there
    assert "svc-payments" not in document and "203.0.113.9" not in document and "req-1" not in document


def test_a_crash_between_send_and_delete_resends_but_appends_the_audit_once():
    outbox, queue = FakeOutbox(["ledger-0"]), FakeQueue()
    outbox.add(*[audited(n) for n in range(12)])

    def crash(sent):
        raise Crash()

    # WHEN a relay dies right after SQS accepted its first batch
    with pytest.raises(Crash):
        relay_for(outbox, queue, after_send=crash).relay_once()
    assert chain_targets(outbox) == [] and len(outbox.remaining()) == 12
    # AND another relay runs once the dead one's lease has run out
    relay_for(outbox, queue, "relay-b", now_ms=10**12).relay_once()
    # THEN the first batch was sent twice, yet each audit record is in the chain exactly once
    assert len(queue.sent) == 22
    assert chain_targets(outbox) == [f"transfer:t-{n}" for n in range(12)]
    assert_chain_verifies(outbox)


def test_two_relays_on_one_batch_append_its_audit_once():
    # GIVEN relay A sent a batch, and before it deletes, relay B (A's lease ran out) relays it all
    outbox, queue = FakeOutbox(["ledger-0"]), FakeQueue()
    outbox.add(*[audited(n) for n in range(5)])
    other = relay_for(outbox, queue, "relay-b", now_ms=10**12)
    a = relay_for(outbox, queue, after_send=lambda sent: other.relay_once())
    # WHEN A goes on to delete and append
    result = a.relay_once()
    # THEN A's transaction found the events gone and appended nothing: one record per event
    assert chain_targets(outbox) == [f"transfer:t-{n}" for n in range(5)]
    assert_chain_verifies(outbox)
    assert outbox.remaining() == [] and result.failed == 0


class IntrudedOutbox(ChainIntruder, FakeOutbox):
    def intruder_log(self):
        return self.audit_log


def test_a_seq_taken_by_another_writer_is_followed_by_a_fresh_head():
    # GIVEN another writer appends to the chain between the relay's head read and its transaction
    outbox, queue = IntrudedOutbox(["ledger-0"]), FakeQueue()
    outbox.add(*[audited(n) for n in range(3)])
    # WHEN the relay settles its batch
    relay_for(outbox, queue).relay_once()
    # THEN its first transaction was refused whole, and the retry followed the intruder's record
    assert (outbox.audit_transactions, outbox.heads_read) == (2, 2)
    assert chain_targets(outbox) == ["note:x", "transfer:t-0", "transfer:t-1", "transfer:t-2"]
    assert_chain_verifies(outbox)
    assert outbox.remaining() == []


def test_a_parked_event_still_has_its_audit_record_appended():
    # GIVEN SQS refuses one audited event for good
    outbox = FakeOutbox(["ledger-0"])
    queue = FakeQueue(refuse=lambda message: "acc-1:" in message.key)
    outbox.add(*[audited(n) for n in range(3)])
    # WHEN a pass runs
    result = relay_for(outbox, queue).relay_once()
    # THEN it is parked, and the money movement it stands for is in the audit chain all the same
    assert (result.sent, result.parked) == (2, 1)
    assert sorted(chain_targets(outbox)) == ["transfer:t-0", "transfer:t-1", "transfer:t-2"]
    assert_chain_verifies(outbox)


def test_invalid_audit_facts_park_the_event_instead_of_blocking_the_partition():
    outbox, queue = FakeOutbox(["ledger-0"]), FakeQueue()
    broken = outbox_event(1, audit='{"actor": "not an id"}')
    outbox.add(broken, audited(2))

    result = relay_for(outbox, queue).relay_once()

    assert outbox.remaining() == [] and (result.sent, result.parked) == (1, 1)
    [(parked, reason)] = outbox.parked_events
    assert parked.event_id == broken.event_id and parked.audit == broken.audit and "audit" in reason
    assert chain_targets(outbox) == ["transfer:t-2"]


def test_events_without_audit_facts_cost_no_audit_transaction():
    outbox, queue = FakeOutbox(["ledger-0"]), FakeQueue()
    outbox.add(*[outbox_event(n) for n in range(4)])

    relay_for(outbox, queue).relay_once()

    assert outbox.audit_transactions == 0 and list(outbox.audit_log.chains()) == []


def test_relay_chains_are_named_after_their_partition():
    assert outbox_audit_chain("ledger-3") == "ledger-outbox-3"
    assert outbox_audit_chain("transfers-12") == "transfers-outbox-12"
