"""AuditLog and the chain verifier over the in-memory store: appends, PII guard, tamper detection."""

from __future__ import annotations

import dataclasses

import pytest
from finfaas.platform.audit import (
    GENESIS_HASH,
    Anchor,
    AuditAppendConflict,
    AuditEvent,
    AuditEventInvalid,
    AuditLog,
    Outcome,
    ProblemKind,
    anchors_from_json,
    anchors_to_json,
    keyring_from_text,
    record_hash,
    signing_key_from_text,
    verify_chain,
    verify_log,
)
from finfaas_dev.fakes.platform import InMemoryAuditStore
from support.audit_testing import KEY, KEYRING, SECRET


def event(actor="cus_1", action="transfer.create", outcome=Outcome.SUCCEEDED, **extra) -> AuditEvent:
    return AuditEvent(actor=actor, action=action, target="transfer:tr_1", outcome=outcome,
                      source_ip="203.0.113.7", trace_id="Root=1-65a1b2c3-0123456789abcdef01234567",
                      request_id="req-1", **extra)


def filled_chain(store, records=6, key=KEY) -> str:
    log = AuditLog(store, "transfers", key=key, shards=1, clock=lambda: 1_700_000_000.5)
    for index in range(records):
        log.append(event(action=f"step.{index}"))
    return log.chain_for("cus_1")


def problems(store, chain, keyring=KEYRING):
    report = verify_chain(chain, store.records(chain), keyring)
    return [(problem.seq, problem.kind) for problem in report.problems]


@pytest.fixture
def store() -> InMemoryAuditStore:
    return InMemoryAuditStore()


def test_records_chain_from_genesis_with_consecutive_seqs(store):
    chain = filled_chain(store, records=3)

    first, second, third = store.records(chain)

    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    assert first.at == "2023-11-14T22:13:20.500+00:00"
    assert (first.actor, first.outcome, first.source_ip, first.request_id) == (
        "cus_1", "succeeded", "203.0.113.7", "req-1")


def test_each_hash_is_hmac_over_prev_hash_and_canonical_json(store):
    chain = filled_chain(store, records=1)
    (first,) = store.records(chain)

    assert first.alg == "hmac-sha256" and first.key_id == KEY.key_id
    assert first.hash == record_hash(first.content(), SECRET)
    assert first.hash != record_hash(first.content(), None)


def test_an_untouched_chain_verifies(store):
    chain = filled_chain(store)

    report = verify_chain(chain, store.records(chain), KEYRING)

    assert report.ok and report.records == 6 and report.head_seq == 6


def test_a_modified_record_is_named(store):
    chain = filled_chain(store)
    third = list(store.records(chain))[2]
    store.replace(dataclasses.replace(third, outcome="denied"))

    assert problems(store, chain) == [(3, ProblemKind.MODIFIED)]


def test_a_deleted_record_is_named(store):
    chain = filled_chain(store)
    store.delete(chain, 4)

    assert problems(store, chain) == [(4, ProblemKind.MISSING)]


def test_two_swapped_records_are_named_as_reordered(store):
    chain = filled_chain(store)
    records = list(store.records(chain))
    third, fourth = records[2], records[3]
    # GIVEN someone with table access swapped the items at seq 3 and 4
    store.replace(dataclasses.replace(fourth, seq=3))
    store.replace(dataclasses.replace(third, seq=4))

    report = verify_chain(chain, store.records(chain), KEYRING)

    found = [(p.seq, p.kind) for p in report.problems]
    assert found == [(3, ProblemKind.REORDERED), (4, ProblemKind.REORDERED)]
    assert "written as seq 4" in report.problems[0].detail


def test_a_deletion_hidden_by_renumbering_is_caught(store):
    # GIVEN seq 3 deleted and every later record moved down one seq to close the gap
    chain = filled_chain(store)
    records = list(store.records(chain))
    for later in records[3:]:
        store.replace(dataclasses.replace(later, seq=later.seq - 1))
    store.delete(chain, 6)

    found = problems(store, chain)

    assert (3, ProblemKind.REORDERED) in found
    assert (3, ProblemKind.BROKEN_LINK) in found  # its predecessor (written as 3) is gone


def test_a_record_rewritten_without_the_key_breaks_the_chain(store):
    # GIVEN a writer without the key who changed seq 2 and re-hashed it with plain SHA-256
    chain = filled_chain(store)
    second = list(store.records(chain))[1]
    forged = dataclasses.replace(second, outcome="denied", alg="sha256", key_id=None)
    store.replace(dataclasses.replace(forged, hash=record_hash(forged.content(), None)))

    found = problems(store, chain)

    assert (2, ProblemKind.UNSIGNED) in found
    assert (3, ProblemKind.BROKEN_LINK) in found


def test_without_a_key_a_rehashed_edit_still_breaks_the_next_link(store):
    chain = filled_chain(store, key=None)
    second = list(store.records(chain))[1]
    edited = dataclasses.replace(second, outcome="failed")
    store.replace(dataclasses.replace(edited, hash=record_hash(edited.content(), None)))

    assert problems(store, chain, keyring={}) == [(3, ProblemKind.BROKEN_LINK)]


def test_a_record_signed_with_an_unknown_key_cannot_pass(store):
    chain = filled_chain(store, records=2)

    assert problems(store, chain, keyring={"other": b"o" * 32}) == [
        (1, ProblemKind.UNKNOWN_KEY), (2, ProblemKind.UNKNOWN_KEY)]


def test_truncation_is_caught_against_a_saved_anchor(store):
    chain = filled_chain(store)
    anchors = anchors_from_json(anchors_to_json(verify_log(store, KEYRING)))
    store.delete(chain, 6)
    store.delete(chain, 5)

    (report,) = verify_log(store, KEYRING, anchors=anchors)

    assert [(p.seq, p.kind) for p in report.problems] == [(6, ProblemKind.TRUNCATED)]


def test_a_vanished_chain_is_caught_against_a_saved_anchor(store):
    reports = verify_log(store, KEYRING, anchors=[Anchor("payments-0", 3, "f" * 64)])

    assert [(r.chain, [p.kind for p in r.problems]) for r in reports] == [
        ("payments-0", [ProblemKind.CHAIN_MISSING])]


class RacingStore(InMemoryAuditStore):
    """Another instance appends to the chain just before each of our first `races` appends."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races
        self.other = AuditLog(DirectStore(self), "transfers", key=KEY, shards=1, sleep=lambda _: None)

    def append(self, record):
        if self.races > 0:
            self.races -= 1
            self.other.append(event(action="other.instance"))
        return super().append(record)


class DirectStore:
    """The other instance's view of the same records, without the race injection."""

    def __init__(self, shared: RacingStore) -> None:
        self.shared = shared

    def head(self, chain):
        return self.shared.head(chain)

    def append(self, record):
        return InMemoryAuditStore.append(self.shared, record)


def test_a_lost_race_for_a_seq_retries_on_the_new_head_without_forking(store):
    racing = RacingStore(races=2)
    log = AuditLog(racing, "transfers", key=KEY, shards=1, sleep=lambda _: None)
    log.append(event())  # seeds the head cache of our instance

    log.append(event(action="after.race"))

    chain = log.chain_for("cus_1")
    assert [r.seq for r in racing.records(chain)] == [1, 2, 3, 4]
    assert verify_chain(chain, racing.records(chain), KEYRING).ok


def test_an_append_gives_up_after_too_many_lost_races():
    racing = RacingStore(races=100)
    log = AuditLog(racing, "transfers", key=KEY, shards=1, sleep=lambda _: None)

    with pytest.raises(AuditAppendConflict):
        log.append(event())


def test_an_actors_events_stay_in_one_chain_of_the_function(store):
    log = AuditLog(store, "payments", shards=4)

    assert log.chain_for("cus_1") == log.chain_for("cus_1")
    assert log.chain_for("cus_1").startswith("payments-")
    assert len({log.chain_for(f"cus_{n}") for n in range(40)}) == 4


@pytest.mark.parametrize(
    "fields",
    [
        {"actor": "alice@example.com"},
        {"actor": "Alice Smith"},
        {"action": "Transfer Create"},
        {"target": "customer:bob@example.com"},
        {"source_ip": "not-an-ip"},
        {"request_id": "has spaces"},
    ],
)
def test_personal_data_and_free_text_are_refused_without_echoing_them(fields):
    base = dict(actor="cus_1", action="x.y", target="t:1", outcome=Outcome.DENIED)

    with pytest.raises(AuditEventInvalid) as raised:
        AuditEvent(**{**base, **fields})

    assert all(str(value) not in str(raised.value) for value in fields.values())


def test_keyring_from_secret_text_signs_with_the_first_key_and_verifies_with_all():
    text = "first-key-" + "a" * 30 + "\n\nsecond-key-" + "b" * 30 + "\n"

    keyring = keyring_from_text(text)
    signing = signing_key_from_text(text)

    assert len(keyring) == 2
    assert signing.secret.startswith(b"first-key-") and keyring[signing.key_id] == signing.secret
    assert signing_key_from_text(None) is None
    with pytest.raises(ValueError):
        keyring_from_text("too-short")
