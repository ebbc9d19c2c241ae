"""The payments store against DynamoDB Local: the contract the in-memory fake passes."""

from __future__ import annotations

import pytest
from finfaas.store.payments_store import PaymentsStore
from unit.services.payments.test_payments_store_contract import MerchantsContract

pytestmark = pytest.mark.emulator


class TestDynamoDBMerchants(MerchantsContract):
    @pytest.fixture
    def store(self, embedded_aws):
        return PaymentsStore()
