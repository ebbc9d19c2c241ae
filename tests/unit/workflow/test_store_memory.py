"""The in-memory executions store passes the repository contract."""

from __future__ import annotations

import pytest
from finfaas_dev.fakes.workflow import InMemoryExecutionStore
from support.store_contract import ExecutionStoreContract


@pytest.fixture
def store():
    return InMemoryExecutionStore()


class TestInMemoryExecutionStore(ExecutionStoreContract):
    pass
