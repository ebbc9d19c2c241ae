"""Audit facts in outbox events, sealed by the relay on DynamoDB Local: each record once, chains verify."""

from __future__ import annotations

import json

import pytest
from finfaas.platform.audit import AuditEvent, Outcome, audit_facts_json, verify_log
from finfaas.platform.events import EventMac, SqsQueue
from finfaas.services.outbox_relay.model import outbox_audit_chain
from finfaas.services.outbox_relay.service import OutboxRelay
from finfaas.store.audit_store import AuditStore
from finfaas.store.outbox_store import OutboxStore
from support.audit_testing import KEY, KEYRING, ChainIntruder


class Crash(Exception):
    """Stands for the relay's process dying at that line."""


@pytest.fixture
def mac() -> EventMac:
    return EventMac.generate()


def outbox_on(private_outbox: str, private_audit: str, partition: str) -> OutboxStore:
    return OutboxStore(private_outbox, partitions=[partition], audit_table=private_audit)


def write_audited_events(store: OutboxStore, partition: str, count: int, data: str = '{"status":"FROZEN"}'):
    """`count` events as a producer writes them, each with the audit facts of the call behind it."""
    for n in range(count):
        facts = AuditEvent(actor="svc-payments", action="create_transfer", target=f"transfer:{partition}-{n}",
                           outcome=Outcome.SUCCEEDED, source_ip="203.0.113.9", request_id=f"req-{n}")
        store._event(partition, f"{n:020d}#e-{partition}-{n}", event_id=f"e-{partition}-{n}",
                     type="ledger.account.status_changed", source="finfaas/ledger", subject=f"acc-{n}",
                     time="2026-01-15T09:30:00.000000Z", data=data,
                     audit=audit_facts_json(facts, "2026-01-15T09:30:00.000+00:00")).save()


def relay_on(store: OutboxStore, queue, mac: EventMac, holder: str = "relay-a", **options) -> OutboxRelay:
    queue = SqsQueue("events", queue_name=queue.name)
    return OutboxRelay(store, queue, mac, holder, audit_key=KEY, **options)


def chain_targets(private_audit: str, partition: str) -> list[str]:
    return [r.target for r in AuditStore(private_audit).records(outbox_audit_chain(partition))]


def assert_verifies(private_audit: str, partition: str) -> None:
    [report] = verify_log(AuditStore(private_audit), KEYRING, chains=[outbox_audit_chain(partition)])
    assert report.ok, report.problems


def test_a_relay_pass_seals_each_events_audit_into_the_chain(private_outbox, private_audit, new_queue, mac):
    store = outbox_on(private_outbox, private_audit, "ledger-1")
    write_audited_events(store, "ledger-1", 14)
    queue = new_queue("events-audit")

    result = relay_on(store, queue, mac).relay_once()

    assert result.sent == 14 and store.oldest("ledger-1", 10) == []
    assert chain_targets(private_audit, "ledger-1") == [f"transfer:ledger-1-{n}" for n in range(14)]
    assert_verifies(private_audit, "ledger-1")
    published = json.dumps([mac.open(m["Body"]) for m in queue.receive_all(14)])
    assert "svc-payments" not in published and "req-1" not in published


def test_a_crash_after_sending_resends_yet_appends_each_record_once(private_outbox, private_audit, new_queue,
                                                                     mac):
    store = outbox_on(private_outbox, private_audit, "ledger-2")
    write_audited_events(store, "ledger-2", 12)
    queue = new_queue("events-audit-crash")

    def crash(sent):
        raise Crash()

    # WHEN a relay dies between SQS accepting a batch and the transaction that deletes and appends
    with pytest.raises(Crash):
        relay_on(store, queue, mac, after_send=crash).relay_once()
    assert chain_targets(private_audit, "ledger-2") == []
    # AND another relay runs
    relay_on(store, queue, mac, holder="relay-b").relay_once()
    # THEN the first batch went out twice, and every audit record is in the chain exactly once
    assert len(queue.receive_all(22)) == 22
    assert chain_targets(private_audit, "ledger-2") == [f"transfer:ledger-2-{n}" for n in range(12)]
    assert_verifies(private_audit, "ledger-2")


def test_a_relay_that_finds_its_events_relayed_by_another_appends_nothing(private_outbox, private_audit,
                                                                           new_queue, mac):
    # GIVEN relay A sent a batch, and before its transaction relay B (A's lease ran out) relays it all
    store = outbox_on(private_outbox, private_audit, "ledger-3")
    write_audited_events(store, "ledger-3", 4)
    queue = new_queue("events-audit-race")
    other = relay_on(store, queue, mac, holder="relay-b", clock_ms=lambda: 10**13)
    # WHEN A goes on with its transaction
    relay_on(store, queue, mac, after_send=lambda sent: other.relay_once()).relay_once()
    # THEN DynamoDB cancelled A's transaction whole (its deletes found nothing): one record per event
    assert chain_targets(private_audit, "ledger-3") == [f"transfer:ledger-3-{n}" for n in range(4)]
    assert_verifies(private_audit, "ledger-3")


class IntrudedOutbox(ChainIntruder, OutboxStore):
    def intruder_log(self):
        return AuditStore(self._audit_table)


def test_a_seq_taken_meanwhile_is_retried_on_the_new_head(private_outbox, private_audit, new_queue, mac):
    store = IntrudedOutbox(private_outbox, partitions=["ledger-4"], audit_table=private_audit)
    write_audited_events(store, "ledger-4", 3)

    relay_on(store, new_queue("events-audit-seq"), mac).relay_once()

    # DynamoDB refused the first transaction (a seq was taken); the retry read the new head
    assert store.heads_read == 2
    expected = ["note:x"] + [f"transfer:ledger-4-{n}" for n in range(3)]
    assert chain_targets(private_audit, "ledger-4") == expected
    assert_verifies(private_audit, "ledger-4")


def test_a_parked_event_has_its_audit_record_appended_in_the_same_transaction(private_outbox, private_audit,
                                                                             new_queue, mac):
    store = outbox_on(private_outbox, private_audit, "ledger-5")
    write_audited_events(store, "ledger-5", 1, data=json.dumps({"status": "x" * (300 * 1024)}))

    result = relay_on(store, new_queue("events-audit-park"), mac).relay_once()

    assert (result.sent, result.parked) == (0, 1)
    [parked] = [e for e, _ in store.parked(10) if e.event_id == "e-ledger-5-0"]
    assert parked.audit is None  # sealed already: the parked copy carries no facts to seal again
    assert chain_targets(private_audit, "ledger-5") == ["transfer:ledger-5-0"]
    assert_verifies(private_audit, "ledger-5")
