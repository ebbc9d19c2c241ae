"""Property: whatever single change is made inside a chain, the verifier names a seq it touched."""

from __future__ import annotations

import dataclasses
from functools import cache

from finfaas.platform.audit import (
    AuditEvent,
    AuditKey,
    AuditLog,
    AuditRecord,
    Outcome,
    key_id_of,
    record_hash,
    verify_chain,
)
from finfaas_dev.fakes.platform import InMemoryAuditStore
from hypothesis import given, settings
from hypothesis import strategies as st

SECRET = b"p" * 32
KEYRING = {key_id_of(SECRET): SECRET}
CHAIN_RECORDS_MAX = 25
EXAMPLES_MAX = 120
TAMPERABLE_FIELDS = ("actor", "action", "target", "outcome", "at", "prev_hash", "request_id", "hash")


@cache
def sealed_chain(length: int) -> tuple[str, tuple[AuditRecord, ...]]:
    """The untouched chain of each length, sealed once: sealing was most of an example's cost, and the
    records are frozen, so every example tampers with a copy of its own."""
    store = InMemoryAuditStore()
    log = AuditLog(store, "prop", key=AuditKey(key_id_of(SECRET), SECRET), shards=1)
    for n in range(length):
        log.append(AuditEvent(actor=f"cus_{n % 3}x", action=f"act.{n}", target=f"t:{n}",
                              outcome=Outcome.SUCCEEDED, request_id=f"r{n}"))
    chain = log.chain_for("cus_0x")
    return chain, tuple(store.records(chain))


def chain_of(length: int) -> tuple[InMemoryAuditStore, str]:
    chain, records = sealed_chain(length)
    store = InMemoryAuditStore()
    for record in records:
        store.append(record)
    return store, chain


def changed(value: str) -> str:
    return value[:-1] + ("1" if value[-1:] != "1" else "2")


@st.composite
def tampering(draw):
    length = draw(st.integers(min_value=2, max_value=CHAIN_RECORDS_MAX))
    kind = draw(st.sampled_from(["modify", "rehash", "delete", "swap"]))
    # Deleting the newest record is truncation, which only an anchor can show (tested elsewhere).
    last = length - 1 if kind == "delete" else length
    first = draw(st.integers(min_value=1, max_value=last))
    second = draw(st.integers(min_value=1, max_value=length).filter(lambda s: s != first))
    field = draw(st.sampled_from(TAMPERABLE_FIELDS))
    return length, kind, first, second, field


@settings(max_examples=EXAMPLES_MAX, deadline=None)
@given(tampering())
def test_any_single_change_is_reported_at_a_touched_seq(case):
    length, kind, first, second, field = case
    store, chain = chain_of(length)
    records = {r.seq: r for r in store.records(chain)}
    target = records[first]
    touched = {first}
    if kind == "modify":
        store.replace(dataclasses.replace(target, **{field: changed(getattr(target, field))}))
    elif kind == "rehash":
        # A writer without the key edits a record and re-hashes it as plain SHA-256.
        edited = dataclasses.replace(target, outcome="denied", alg="sha256", key_id=None)
        store.replace(dataclasses.replace(edited, hash=record_hash(edited.content(), None)))
        touched.add(first + 1)
    elif kind == "delete":
        store.delete(chain, first)
    else:
        store.replace(dataclasses.replace(records[second], seq=first))
        store.replace(dataclasses.replace(target, seq=second))
        touched.add(second)

    report = verify_chain(chain, store.records(chain), KEYRING)

    assert not report.ok
    assert {problem.seq for problem in report.problems} <= touched | {first + 1}
    assert {problem.seq for problem in report.problems} & touched
