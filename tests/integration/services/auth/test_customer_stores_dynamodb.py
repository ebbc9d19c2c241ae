"""The customer and refresh-token stores against DynamoDB Local: the contracts the fakes pass."""

from __future__ import annotations

import pytest
from finfaas.store.customers_store import CustomersStore
from finfaas.store.refresh_tokens_store import RefreshTokenStore
from unit.services.auth.test_auth_customer_contracts import CustomerStoreContract, RefreshTokenStoreContract

pytestmark = pytest.mark.emulator


class TestDynamoDBCustomerStore(CustomerStoreContract):
    @pytest.fixture
    def store(self, embedded_aws):
        return CustomersStore()


class TestDynamoDBRefreshTokenStore(RefreshTokenStoreContract):
    @pytest.fixture
    def store(self, embedded_aws):
        return RefreshTokenStore()
