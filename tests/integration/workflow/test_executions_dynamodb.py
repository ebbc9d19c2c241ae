"""The DynamoDB executions store passes the repository contract on DynamoDB Local, and writes each
checkpoint as one transaction."""

from __future__ import annotations

from dataclasses import replace

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


def test_a_checkpoint_writes_its_events_as_one_history_item(store):
    execution = new_execution()
    store.create(execution, started(execution))
    saved, events = next_version(execution, events=4, state="Credit")

    store.save(saved, events, execution)

    items = list(store.history_model.query(execution.execution_id, consistent_read=True))
    assert [int(item.seq) for item in items] == [1, 2]
    assert [e.seq for e in store.history(execution.execution_id, 0, 10)] == [1, 2, 3, 4, 5]


def test_events_too_large_for_one_item_are_split_and_read_back_whole(store):
    # GIVEN a checkpoint whose events hold 60 KiB each: more than one history item can take
    execution = new_execution()
    store.create(execution, started(execution))
    saved, events = next_version(execution, events=8)
    big = [replace(e, detail={"output": "x" * 60 * 1024, "n": e.seq}) for e in events]

    # WHEN it is saved
    assert store.save(saved, big, execution) is True

    # THEN it took several items, and the history reads back every event in order, from any seq
    items = list(store.history_model.query(execution.execution_id, consistent_read=True))
    assert len(items) > 2
    assert [e.detail.get("n") for e in store.history(execution.execution_id, 1, 100)] == list(range(2, 10))
    assert [e.seq for e in store.history(execution.execution_id, 6, 2)] == [7, 8]


def test_history_written_one_event_an_item_still_reads(store):
    # GIVEN history items in the one-event-per-item layout
    model = store.history_model
    for seq, kind in ((1, "ExecutionStarted"), (2, "StateEntered")):
        model("demo:old", seq, type=kind, at_ms=1_000 + seq, state="Debit", detail='{"visit": 1}').save()

    # THEN they read as events
    history = store.history("demo:old", 0, 10)
    assert [(e.seq, e.type, e.at_ms, e.detail) for e in history] == [
        (1, "ExecutionStarted", 1_001, {"visit": 1}),
        (2, "StateEntered", 1_002, {"visit": 1}),
    ]
