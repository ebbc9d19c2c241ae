"""The wealth store against DynamoDB Local: the contract the in-memory fake passes."""

from __future__ import annotations

import pytest
from finfaas.store.wealth_store import WealthStore
from unit.services.wealth.test_wealth_store_contract import WealthStoreContract

pytestmark = pytest.mark.emulator


class TestDynamoDBWealthStore(WealthStoreContract):
    @pytest.fixture
    def store(self, embedded_aws):
        return WealthStore()
