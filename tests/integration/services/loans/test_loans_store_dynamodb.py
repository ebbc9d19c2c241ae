"""The loans store against DynamoDB Local: the contract the in-memory fake passes."""

from __future__ import annotations

import pytest
from finfaas.store.loans_store import LoansStore
from unit.services.loans.test_loans_store_contract import LoanProductsContract

pytestmark = pytest.mark.emulator


class TestDynamoDBLoanProducts(LoanProductsContract):
    @pytest.fixture
    def store(self, embedded_aws):
        return LoansStore()
