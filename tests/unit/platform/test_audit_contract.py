"""The AuditRepository contract, written once: the in-memory fake runs it here, the DynamoDB store
runs it in tests/integration/platform against DynamoDB Local."""

from __future__ import annotations

import uuid

import pytest
from finfaas.platform.audit import GENESIS_HASH, AuditRecord
from finfaas_dev.fakes.platform import InMemoryAuditStore


def record(chain: str, seq: int, **changes) -> AuditRecord:
    fields = dict(
        chain=chain, seq=seq, at="2026-01-02T03:04:05.678+00:00", actor="cus_1", action="transfer.create",
        target="transfer:tr_1", outcome="succeeded", source_ip="203.0.113.7", trace_id=None,
        request_id="req-1", prev_hash=GENESIS_HASH, alg="sha256", key_id=None, hash=f"h{seq}",
    )
    return AuditRecord(**{**fields, **changes})


class AuditStoreContract:
    """Behaviour every AuditRepository must show; subclasses provide the `store` fixture."""

    @pytest.fixture
    def chain(self) -> str:
        return f"test-{uuid.uuid4().hex[:12]}"

    def test_an_empty_chain_has_no_head_and_no_records(self, store, chain):
        assert store.head(chain) is None
        assert list(store.records(chain)) == []

    def test_appends_and_reads_back_records_in_seq_order(self, store, chain):
        written = [record(chain, 1), record(chain, 2, prev_hash="h1", trace_id="Root=1-abc"),
                   record(chain, 3, prev_hash="h2", source_ip=None, key_id="k1", alg="hmac-sha256")]
        for item in reversed(written):
            assert store.append(item)

        assert list(store.records(chain)) == written
        assert store.head(chain) == written[-1]

    def test_a_taken_seq_is_refused_and_the_first_record_kept(self, store, chain):
        store.append(record(chain, 1, actor="first"))

        assert not store.append(record(chain, 1, actor="second"))
        assert store.head(chain).actor == "first"

    def test_lists_every_chain_once(self, store, chain):
        other = chain + "-b"
        for item in (record(chain, 1), record(chain, 2), record(other, 1)):
            store.append(item)

        names = list(store.chains())

        assert names.count(chain) == 1 and names.count(other) == 1
        assert names == sorted(names)

    def test_record_chains_names_each_records_chain_once_per_record(self, store, chain):
        other = chain + "-b"
        for item in (record(chain, 1), record(chain, 2), record(other, 1)):
            store.append(item)

        names = [name for name in store.record_chains() if name in (chain, other)]

        assert sorted(names) == [chain, chain, other]

    def test_orders_seq_numerically_not_as_text(self, store, chain):
        for seq in (2, 10, 1):
            store.append(record(chain, seq))

        assert [item.seq for item in store.records(chain)] == [1, 2, 10]
        assert store.head(chain).seq == 10


class TestInMemoryAuditStore(AuditStoreContract):
    @pytest.fixture
    def store(self):
        return InMemoryAuditStore()
