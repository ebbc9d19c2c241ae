"""The loans store against DynamoDB Local: the contracts the in-memory fakes pass."""

from __future__ import annotations

import pytest
from finfaas.store.loans_store import LoansStore
from unit.services.loans.test_loans_store_contract import LoanProductsContract, LoansContract

pytestmark = pytest.mark.emulator


class TestDynamoDBLoanProducts(LoanProductsContract):
    @pytest.fixture
    def store(self, embedded_aws):
        return LoansStore()


class TestDynamoDBLoans(LoansContract):
    @pytest.fixture
    def loans(self, embedded_aws):
        return LoansStore()
