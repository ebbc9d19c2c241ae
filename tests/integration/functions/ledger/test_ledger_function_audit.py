"""The ledger's audit trail through handle() on DynamoDB Local: money calls audited via the outbox,
refusals at once; `finfaas audit verify` checks the relay's chains like any other."""

from __future__ import annotations

import uuid

import pytest
from finfaas.platform.audit import AuditKey, ProblemKind, audit_facts_from_json, key_id_of, verify_log
from finfaas.services.outbox_relay.model import outbox_audit_chain
from finfaas.services.outbox_relay.service import OutboxRelay
from finfaas.store.audit_store import AuditStore
from support.ledger_function_testing import CURRENCY

SECRET = b"ledger-function-audit-key-0123456789"
KEY = AuditKey(key_id_of(SECRET), SECRET)


def leg(ids, name: str, debit: str, credit: str, amount) -> dict:
    return {"transfer_id": ids(name), "debit_account_id": debit, "credit_account_id": credit,
            "amount": amount, "currency": CURRENCY}


@pytest.fixture(scope="module")
def private_events_queue(embedded_aws) -> str:
    from finfaas_dev.awsclients import client

    name = f"finfaas-test-ledger-audit-{uuid.uuid4().hex[:8]}"
    client("sqs").create_queue(QueueName=name)
    return name


def outbox_event_of(subject: str):
    from finfaas.store.outbox_store import OutboxStore, outbox_partition

    partition = outbox_partition("ledger", subject)
    [event] = [e for e in OutboxStore(partitions=[partition]).oldest(partition, 1000) if e.subject == subject]
    return event


def relay_partition(partition: str, queue_name: str) -> None:
    """One relay pass over one partition of the stage's outbox (other tests' partitions stay as they are)."""
    from finfaas.platform.events import EventMac, SqsQueue
    from finfaas.store.outbox_store import OutboxStore

    relay = OutboxRelay(OutboxStore(partitions=[partition]), SqsQueue("events", queue_name=queue_name),
                        EventMac.generate(), f"relay-{uuid.uuid4().hex[:8]}", audit_key=KEY)
    assert relay.relay_once().failed == 0


def audit_records(stage: str, request_id: str, prefix: str = "ledger-") -> list:
    from finfaas.store.audit_store import AuditStore

    store = AuditStore(f"finfaas-{stage}-audit")
    return [r for chain in store.chains() if chain.startswith(prefix) for r in store.records(chain)
            if r.request_id == request_id]


def test_a_transfer_carries_its_audit_in_the_outbox_until_the_relay_seals_it(
        ledger_function, open_account, ids, embedded_aws, private_events_queue):

    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    # WHEN a transfer is made
    reply = ledger_function.post("/transfers", leg(ids, "t1", alice, bob, 5), key=ids("k1"),
                                 headers={"X-Real-Ip": "198.51.100.23", "X-Request-Id": ids("req")})
    assert reply.status == 201
    # THEN its audit facts are in its outbox item, and nothing was appended on the request's path
    event = outbox_event_of(ids("t1"))
    facts, _ = audit_facts_from_json(event.audit)
    assert (facts.actor, facts.action, facts.target, facts.outcome, facts.source_ip) == (
        "svc-payments", "create_transfer", f"transfer:{ids('t1')}", "succeeded", "198.51.100.23")
    assert audit_records(embedded_aws.stage, ids("req")) == []
    # WHEN the relay passes over that partition
    relay_partition(event.partition, private_events_queue)
    # THEN the record is in the partition's chain, once, and `finfaas audit verify` passes on that chain
    [record] = audit_records(embedded_aws.stage, ids("req"))
    assert (record.chain, record.target, record.alg) == (
        outbox_audit_chain(event.partition), f"transfer:{ids('t1')}", "hmac-sha256")
    # The chain is the stage's, shared with the other writers of this session (the end-to-end suites'
    # functions seal theirs with their own keys): with this test's key, the chain's links all hold and
    # the only findings are records signed with keys this verifier was not given, never this one.
    [report] = verify_log(AuditStore(), {KEY.key_id: SECRET}, [record.chain])
    assert report.records >= 1 and report.head_seq >= record.seq
    assert all(p.kind is ProblemKind.UNKNOWN_KEY and p.seq != record.seq for p in report.problems), [
        str(p) for p in report.problems]


def test_a_refused_transfer_is_audited_at_once_as_failed(ledger_function, open_account, ids, embedded_aws):
    alice, bob = open_account("alice", funded_minor=100), open_account("bob")

    reply = ledger_function.post("/transfers", leg(ids, "t1", alice, bob, 500), key=ids("k1"),
                                 headers={"X-Request-Id": ids("req")})

    assert reply.status == 409 and reply.json()["code"] == "insufficient_funds"
    [record] = audit_records(embedded_aws.stage, ids("req"))
    assert (record.action, record.target, record.outcome) == (
        "create_transfer", f"transfer:{ids('t1')}", "failed")
    assert "-outbox-" not in record.chain


def test_a_replayed_transfer_is_audited_at_once_and_its_first_call_once_via_the_outbox(
        ledger_function, open_account, ids, embedded_aws, private_events_queue):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    body = leg(ids, "t1", alice, bob, 5)
    ledger_function.post("/transfers", body, key=ids("k1"), headers={"X-Request-Id": ids("req-1")})

    replay = ledger_function.post("/transfers", body, key=ids("k1"), headers={"X-Request-Id": ids("req-2")})

    assert replay.status == 201 and replay.headers.get("Idempotency-Replayed") == "true"
    [replayed] = audit_records(embedded_aws.stage, ids("req-2"))  # no transaction carried it
    assert replayed.outcome == "succeeded" and "-outbox-" not in replayed.chain
    relay_partition(outbox_event_of(ids("t1")).partition, private_events_queue)
    assert len(audit_records(embedded_aws.stage, ids("req-1"))) == 1
