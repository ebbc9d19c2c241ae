"""The payments store against DynamoDB Local: the contracts the in-memory fakes pass (the expiry job's
selection included: a Query of the sparse by-expiry index)."""

from __future__ import annotations

import pytest
from finfaas.store.payments_store import PaymentIntentsStore, PaymentsStore
from unit.services.payments.test_payments_store_contract import (
    ExpiryIndexContract,
    IntentPagesContract,
    MerchantsContract,
)

pytestmark = pytest.mark.emulator


class TestDynamoDBMerchants(MerchantsContract):
    @pytest.fixture
    def store(self, embedded_aws):
        return PaymentsStore()


class TestDynamoDBIntentPages(IntentPagesContract):
    @pytest.fixture
    def intents(self, embedded_aws):
        return PaymentIntentsStore(PaymentsStore())


class TestDynamoDBExpiryIndex(ExpiryIndexContract):
    @pytest.fixture
    def intents(self, embedded_aws):
        return PaymentIntentsStore(PaymentsStore())
