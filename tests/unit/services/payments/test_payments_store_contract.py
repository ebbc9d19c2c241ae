"""The payments store contract, written once: the in-memory fake runs it here, the DynamoDB store runs
it in tests/integration/services/payments against DynamoDB Local."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from finfaas.domain.payments import FeeSchedule, Rounding
from finfaas.services.payments.model import Merchant, MerchantStatus, SettlementAccount
from finfaas_dev.fakes.payments import InMemoryMerchants

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def new_merchant(**changes) -> Merchant:
    merchant = Merchant(
        merchant_id=f"m-{uuid.uuid4().hex[:12]}", name="Corner Books", currency="USD",
        settlement=SettlementAccount("SANDUS00", "000123456789", "Corner Books LLC"),
        fees=FeeSchedule(290, 30, Rounding.HALF_UP), reserve_bps=1_000, capture_window_seconds=7 * 86_400,
        receivable_shards=8, status=MerchantStatus.ACTIVE, created_at=T0)
    return replace(merchant, **changes)


class MerchantsContract:
    """Merchants; subclasses provide the `store` fixture."""

    def test_a_created_merchant_reads_back_field_for_field(self, store):
        merchant = new_merchant(fees=FeeSchedule(5_000, 10**12, Rounding.DOWN))

        assert store.create(merchant) == merchant

        assert store.get(merchant.merchant_id) == merchant

    def test_a_taken_id_returns_the_stored_merchant_and_writes_nothing(self, store):
        first = new_merchant()
        store.create(first)

        answer = store.create(replace(first, name="Someone Else"))

        assert answer == first
        assert store.get(first.merchant_id) == first

    def test_an_unknown_merchant_is_none(self, store):
        assert store.get(f"m-{uuid.uuid4().hex}") is None

    def test_a_change_is_saved_only_over_the_version_it_was_made_from(self, store):
        merchant = new_merchant()
        store.create(merchant)
        later = T0 + timedelta(minutes=1)

        assert store.save(merchant.deactivated(later))
        assert not store.save(merchant.deactivated(later + timedelta(minutes=1)))  # from a stale read

        stored = store.get(merchant.merchant_id)
        assert (stored.status, stored.version, stored.updated_at) == (MerchantStatus.INACTIVE, 2, later)

    def test_a_merchant_never_created_is_not_saved(self, store):
        merchant = new_merchant()

        assert not store.save(replace(merchant, version=2))

        assert store.get(merchant.merchant_id) is None


class TestInMemoryMerchants(MerchantsContract):
    @pytest.fixture
    def store(self):
        return InMemoryMerchants()
