"""The RateLimitRepository contract, written once: the in-memory fake runs it here, the DynamoDB
store runs it in tests/integration/platform against DynamoDB Local."""

from __future__ import annotations

import uuid

import pytest
from finfaas_dev.fakes.platform import InMemoryRateLimitStore

EXPIRES_AT_S = 1_700_000_120


class RateLimitStoreContract:
    """Behaviour every RateLimitRepository must show; subclasses provide the `store` fixture."""

    @pytest.fixture
    def bucket(self) -> str:
        return f"test:{uuid.uuid4().hex}:1"

    def test_takes_tokens_up_to_capacity_and_no_further(self, store, bucket):
        assert store.take(bucket, 4, 10, EXPIRES_AT_S)
        assert store.take(bucket, 6, 10, EXPIRES_AT_S)
        assert not store.take(bucket, 1, 10, EXPIRES_AT_S)

    def test_a_refused_take_changes_nothing(self, store, bucket):
        store.take(bucket, 7, 10, EXPIRES_AT_S)

        assert not store.take(bucket, 4, 10, EXPIRES_AT_S)
        # The 3 tokens left are still there.
        assert store.take(bucket, 3, 10, EXPIRES_AT_S)

    def test_more_tokens_than_capacity_are_refused_on_an_empty_bucket(self, store, bucket):
        assert not store.take(bucket, 11, 10, EXPIRES_AT_S)
        assert store.take(bucket, 10, 10, EXPIRES_AT_S)

    def test_count_reads_what_was_taken_and_zero_for_a_new_bucket(self, store, bucket):
        assert store.count(bucket) == 0
        store.take(bucket, 3, 10, EXPIRES_AT_S)
        store.take(bucket, 8, 10, EXPIRES_AT_S)  # refused: the count stays 3

        assert store.count(bucket) == 3

    def test_buckets_are_independent(self, store, bucket):
        store.take(bucket, 10, 10, EXPIRES_AT_S)

        assert store.take(bucket + "-other", 10, 10, EXPIRES_AT_S)


class TestInMemoryRateLimitStore(RateLimitStoreContract):
    @pytest.fixture
    def store(self):
        return InMemoryRateLimitStore()
