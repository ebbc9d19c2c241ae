"""The DynamoDB executions store passes the repository contract on DynamoDB Local, and writes each
checkpoint as one transaction."""

from __future__ import annotations

import pytest
from finfaas.store.executions_store import ExecutionsStore
from finfaas.store.ledger_store import DynamoCallMeter
from store_contract import ExecutionStoreContract, new_execution, next_version, started


@pytest.fixture
def store(fresh_tables):
    return ExecutionsStore(*fresh_tables)


class TestExecutionsStoreOnDynamoDBLocal(ExecutionStoreContract):
    pass


def test_the_deployed_template_tables_work_with_the_store(embedded_aws):
    # GIVEN the store on the stage's own tables from infra/template.yaml
    store = ExecutionsStore()
    execution = new_execution()

    # WHEN an execution is created and read back
    assert store.create(execution, started(execution))

    # THEN the template's key schema and index fit the store
    assert store.get(execution.execution_id) == execution
    assert execution.execution_id in [e.execution_id for e in store.due(execution.next_run_at_ms, 100)]


def test_a_checkpoint_is_one_transact_write_items_call(store):
    execution = new_execution()
    store.create(execution, started(execution))
    saved, events = next_version(execution, events=4, state="Credit")
    meter = DynamoCallMeter()
    if not meter.start():
        pytest.skip("pynamodb signals need blinker")
    try:
        store.save(saved, events)
    finally:
        meter.stop()

    assert meter.snapshot() == {"TransactWriteItems (transaction)": 1}
