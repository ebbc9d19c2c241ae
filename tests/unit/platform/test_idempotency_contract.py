"""The IdempotencyRepository contract, written once: the in-memory fake runs it here, the DynamoDB
store runs it in tests/integration/platform against DynamoDB Local."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from finfaas.platform.idempotency import IdempotencyRecord, RecordStatus, StoredResponse
from finfaas_dev.fakes.platform import InMemoryIdempotencyStore

NOW_MS = 1_700_000_000_000
LEASE_MS = 60_000
RETENTION_S = 86_400


def claim_record(key: str, fingerprint: str = "fp-a", lease: str = "lease-1", now_ms: int = NOW_MS):
    return IdempotencyRecord(
        key=key,
        fingerprint=fingerprint,
        status=RecordStatus.IN_PROGRESS,
        expires_at_s=now_ms // 1000 + RETENTION_S,
        lease_token=lease,
        lease_expires_at_ms=now_ms + LEASE_MS,
        written_at_ms=now_ms,
    )


def completed_record(claim: IdempotencyRecord, response: StoredResponse):
    """The claim's key completed by its lease holder, one millisecond later, with the answer to replay."""
    return replace(claim, status=RecordStatus.COMPLETED, lease_expires_at_ms=0, response=response,
                   written_at_ms=claim.written_at_ms + 1)


CREATED = StoredResponse(201, '{"id":"tr_1"}', {"Content-Type": "application/json", "Location": "/tr_1"})


class IdempotencyStoreContract:
    """Behaviour every IdempotencyRepository must show; subclasses provide the `store` fixture."""

    @pytest.fixture
    def key(self) -> str:
        return f"v1:test:{uuid.uuid4().hex}"

    def test_claims_an_absent_key_and_reads_it_back(self, store, key):
        record = claim_record(key)

        outcome = store.put_if_free(record, NOW_MS)

        assert outcome.written
        assert store.get(key) == record

    def test_reads_an_absent_key_as_none(self, store, key):
        assert store.get(key) is None

    def test_a_live_claim_blocks_a_second_claim_and_names_the_holder(self, store, key):
        store.put_if_free(claim_record(key, lease="first"), NOW_MS)

        # WHEN an equal request tries to claim before the lease ends
        outcome = store.put_if_free(claim_record(key, lease="second", now_ms=NOW_MS + 1), NOW_MS + 1)

        assert not outcome.written
        assert outcome.existing.lease_token == "first"

    def test_a_lapsed_claim_is_taken_over_by_the_same_request(self, store, key):
        store.put_if_free(claim_record(key, lease="crashed"), NOW_MS)
        later_ms = NOW_MS + LEASE_MS

        outcome = store.put_if_free(claim_record(key, lease="retry", now_ms=later_ms), later_ms)

        assert outcome.written
        assert store.get(key).lease_token == "retry"

    def test_a_lapsed_claim_is_not_taken_over_by_a_different_request(self, store, key):
        store.put_if_free(claim_record(key, fingerprint="fp-a", lease="crashed"), NOW_MS)
        later_ms = NOW_MS + LEASE_MS + 1

        outcome = store.put_if_free(claim_record(key, "fp-b", "other", later_ms), later_ms)

        assert not outcome.written
        assert outcome.existing.fingerprint == "fp-a"

    def test_a_completed_record_blocks_claims_until_it_expires(self, store, key):
        claim = claim_record(key)
        store.put_if_free(claim, NOW_MS)
        store.complete(completed_record(claim, CREATED))
        just_before_expiry_ms = claim.expires_at_s * 1000 - 1

        blocked = store.put_if_free(claim_record(key, lease="t2", now_ms=just_before_expiry_ms),
                                    just_before_expiry_ms)
        expired = store.put_if_free(claim_record(key, lease="t3", now_ms=claim.expires_at_s * 1000),
                                    claim.expires_at_s * 1000)

        assert not blocked.written and blocked.existing.status is RecordStatus.COMPLETED
        assert expired.written

    def test_completion_keeps_status_headers_and_body(self, store, key):
        claim = claim_record(key)
        store.put_if_free(claim, NOW_MS)

        assert store.complete(completed_record(claim, CREATED))

        stored = store.get(key)
        assert stored.status is RecordStatus.COMPLETED
        assert stored.response == CREATED

    def test_an_empty_body_round_trips(self, store, key):
        claim = claim_record(key)
        store.put_if_free(claim, NOW_MS)

        store.complete(completed_record(claim, StoredResponse(204, "")))

        assert store.get(key).response == StoredResponse(204, "", {})

    def test_completion_with_a_lost_lease_changes_nothing(self, store, key):
        # GIVEN a claim that lapsed and was taken over by a retry
        first = claim_record(key, lease="first")
        store.put_if_free(first, NOW_MS)
        later_ms = NOW_MS + LEASE_MS
        store.put_if_free(claim_record(key, lease="retry", now_ms=later_ms), later_ms)

        # WHEN the slow first attempt tries to complete
        kept = store.complete(completed_record(first, CREATED))

        # THEN it is refused and the retry still holds the key
        assert not kept
        assert store.get(key).lease_token == "retry"
        assert store.get(key).status is RecordStatus.IN_PROGRESS

    def test_release_deletes_only_the_holders_claim(self, store, key):
        store.put_if_free(claim_record(key, lease="holder"), NOW_MS)

        assert not store.release(key, "someone-else")
        assert store.get(key) is not None
        assert store.release(key, "holder")
        assert store.get(key) is None

    def test_a_completed_record_cannot_be_released(self, store, key):
        claim = claim_record(key, lease="holder")
        store.put_if_free(claim, NOW_MS)
        store.complete(completed_record(claim, CREATED))

        assert not store.release(key, "holder")
        assert store.get(key).status is RecordStatus.COMPLETED

    def test_renewal_moves_only_the_holders_lease(self, store, key):
        # GIVEN a claim whose request is still running
        store.put_if_free(claim_record(key, lease="holder"), NOW_MS)
        renewed_until_ms = NOW_MS + 2 * LEASE_MS

        # WHEN someone else, then the holder, renews it
        assert not store.renew(key, "someone-else", NOW_MS + 10 * LEASE_MS)
        assert store.renew(key, "holder", renewed_until_ms)

        # THEN the lease ends where the holder put it, and an equal retry cannot take it over before
        assert store.get(key).lease_expires_at_ms == renewed_until_ms
        later_ms = NOW_MS + LEASE_MS
        assert not store.put_if_free(claim_record(key, lease="retry", now_ms=later_ms), later_ms).written

    def test_a_completed_or_taken_over_claim_is_not_renewed(self, store, key):
        claim = claim_record(key, lease="holder")
        store.put_if_free(claim, NOW_MS)
        store.complete(completed_record(claim, CREATED))

        assert not store.renew(key, "holder", NOW_MS + 2 * LEASE_MS)
        assert store.get(key).status is RecordStatus.COMPLETED
        assert not store.renew(f"{key}-absent", "holder", NOW_MS + 2 * LEASE_MS)

    def test_a_completed_record_can_be_put_directly_on_a_free_key(self, store, key):
        # The no-claim path: a final 4xx stored after the caller's transaction was cancelled.
        record = IdempotencyRecord(
            key, "fp-a", RecordStatus.COMPLETED, NOW_MS // 1000 + RETENTION_S,
            response=StoredResponse(422, '{"code":"x"}'),
        )

        first = store.put_if_free(record, NOW_MS)
        second = store.put_if_free(record, NOW_MS + 1)

        assert first.written
        assert not second.written and second.existing.response.status_code == 422


class TestInMemoryIdempotencyStore(IdempotencyStoreContract):
    @pytest.fixture
    def store(self):
        return InMemoryIdempotencyStore()
