"""The DynamoDB executions store passes the repository contract on DynamoDB Local, writes a checkpoint
with small events as one UpdateItem (events in the execution item's tail) and larger ones as one
transaction with history items, and reads the two back as one history."""

from __future__ import annotations

from dataclasses import replace

import pytest
from finfaas.store import executions_store
from finfaas.store.executions_store import ExecutionsStore
from finfaas.store.ledger_store import DynamoCallMeter
from finfaas.workflow.model import Status
from support.store_contract import T0_MS as T0
from support.store_contract import ExecutionStoreContract, new_execution, next_version, started


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
    assert execution.execution_id in store.due(execution.next_run_at_ms, 100)


def _write_units(store, write) -> tuple[float, float]:
    """Write units of the table and of its by-status index that write's UpdateItems consumed, as
    DynamoDB accounts them (ReturnConsumedCapacity=INDEXES, asked for here only)."""
    events = store.execution_model._get_connection().connection.client.meta.events
    consumed: list[dict] = []

    def ask(params, **_):
        params["ReturnConsumedCapacity"] = "INDEXES"

    def keep(parsed, **_):
        consumed.append(parsed.get("ConsumedCapacity", {}))

    events.register("before-parameter-build.dynamodb.UpdateItem", ask)
    events.register("after-call.dynamodb.UpdateItem", keep)
    try:
        write()
    finally:
        events.unregister("before-parameter-build.dynamodb.UpdateItem", ask)
        events.unregister("after-call.dynamodb.UpdateItem", keep)
    index = executions_store.BY_STATUS_INDEX
    table = sum(c.get("Table", {}).get("CapacityUnits", 0.0) for c in consumed)
    in_index = sum(
        c.get("GlobalSecondaryIndexes", {}).get(index, {}).get("CapacityUnits", 0.0) for c in consumed
    )
    return table, in_index


def test_a_checkpoint_moving_a_large_execution_costs_the_index_two_units_not_its_size(embedded_aws):
    # GIVEN a 3 KB execution on the stage's own tables (infra/template.yaml's index)
    store = ExecutionsStore()
    execution = new_execution(input={"note": "x" * 3000})
    store.create(execution, started(execution))
    saved, events = next_version(execution, events=2, next_run_at_ms=execution.next_run_at_ms + 5_000)

    # WHEN a checkpoint moves it in the index (next_run_at changes, as every checkpoint's lease does)
    table, in_index = _write_units(store, lambda: store.save(saved, events, execution))

    # THEN the table pays for the item's size, the index only for removing and adding its keys
    assert table >= 3
    assert 0 < in_index <= 2


def test_an_execution_that_moved_on_since_the_index_was_read_is_not_listed_under_its_old_status(
    store, monkeypatch
):
    # GIVEN two running executions, and an index read that still shows a finished one as running
    # (a GSI lags its table on AWS; DynamoDB Local's never does, so the lag is played here)
    running, finished = new_execution(), new_execution()
    for execution in (running, finished):
        store.create(execution, started(execution))
    done, _ = next_version(finished, status=Status.SUCCEEDED)
    assert store.save(done, [], finished)
    stale = [store.execution_model(e.execution_id) for e in (running, finished)]
    monkeypatch.setattr(store.execution_model.by_status, "query", lambda *_, **__: iter(stale))

    # WHEN the running executions are listed
    page = store.list(Status.RUNNING, 10)

    # THEN only the one still running is, read whole from the table
    assert page.executions == (store.get(running.execution_id),)


def _calls(store, write) -> dict[str, int]:
    meter = DynamoCallMeter()
    if not meter.start():
        pytest.skip("pynamodb signals need blinker")
    try:
        write()
    finally:
        meter.stop()
    return {name.split(" ")[0]: n for name, n in meter.snapshot().items()}


def _history_items(store, execution_id: str) -> list[int]:
    return [int(item.seq) for item in store.history_model.query(execution_id, consistent_read=True)]


def _big(events, kib: int = 60):
    return [replace(e, detail={"output": "x" * kib * 1024, "n": e.seq}) for e in events]


def _fill_tail(store, execution, checkpoints: int):
    """Saves `checkpoints` checkpoints of four small events each; returns the last version."""
    for _ in range(checkpoints):
        saved, events = next_version(execution, events=4)
        assert store.save(saved, events, execution) is True
        execution = saved
    return execution


def test_a_create_and_a_checkpoint_are_one_single_item_write_each(store):
    execution = new_execution()
    saved, events = next_version(execution, events=4, state="Credit")

    created = _calls(store, lambda: store.create(execution, started(execution)))
    checkpointed = _calls(store, lambda: store.save(saved, events, execution))

    assert created == {"PutItem": 1}
    assert checkpointed == {"UpdateItem": 1}


def test_small_checkpoints_keep_their_events_in_the_execution_item(store):
    # GIVEN an execution created and checkpointed three times with small events
    execution = new_execution()
    store.create(execution, started(execution))
    last = _fill_tail(store, execution, 3)

    # THEN the history table holds nothing for it, and the history reads whole and in order
    assert _history_items(store, execution.execution_id) == []
    assert [e.seq for e in store.history(execution.execution_id, 0, 100)] == list(range(1, 14))
    assert [e.seq for e in store.history(execution.execution_id, 5, 3)] == [6, 7, 8]
    assert store.get(execution.execution_id) == last


def test_events_too_large_for_the_tail_go_to_history_items_and_merge_back_in_order(store):
    # GIVEN a checkpoint whose events hold 60 KiB each (more than the tail and one history item
    # take), between two checkpoints of small events
    execution = new_execution()
    store.create(execution, started(execution))
    before = _fill_tail(store, execution, 1)
    saved, events = next_version(before, events=8)
    assert _calls(store, lambda: store.save(saved, _big(events), before)) == {
        "TransactWriteItems": 1
    }
    after = _fill_tail(store, saved, 1)

    # THEN only the large events went to the history table, split over several items
    items = _history_items(store, execution.execution_id)
    assert len(items) > 1 and items[0] == 6
    # AND the history reads every event once, in seq order, from any seq and in pages
    assert [e.seq for e in store.history(execution.execution_id, 0, 100)] == list(range(1, 18))
    assert [e.detail.get("n") for e in store.history(execution.execution_id, 6, 3)] == [7, 8, 9]
    assert [e.seq for e in store.history(execution.execution_id, 12, 100)] == [13, 14, 15, 16, 17]
    assert [e.seq for e in store.history(execution.execution_id, 3, 4)] == [4, 5, 6, 7]
    assert store.get(execution.execution_id) == after


def test_a_full_tail_sends_later_checkpoints_to_history_items(store, monkeypatch):
    # GIVEN a tail with room for about two checkpoints of small events
    monkeypatch.setattr(executions_store, "TAIL_BYTES_MAX", 600)
    execution = new_execution()
    store.create(execution, started(execution))
    full = _fill_tail(store, execution, 3)

    # WHEN further checkpoints are saved, by this store and by one that has not seen the tail fill
    saved, events = next_version(full, events=4)
    assert _calls(store, lambda: store.save(saved, events, full)) == {"TransactWriteItems": 1}
    fresh = ExecutionsStore(store.executions_table, store.history_table)
    last, events = next_version(saved, events=4)
    assert _calls(fresh, lambda: fresh.save(last, events, saved)) == {
        "UpdateItem": 1,
        "TransactWriteItems": 1,
    }

    # THEN the events went to history items, and the history is whole and in order
    assert _history_items(store, execution.execution_id) != []
    assert [e.seq for e in store.history(execution.execution_id, 0, 100)] == list(range(1, 22))
    assert store.get(execution.execution_id) == last


def test_a_stale_checkpoint_is_refused_and_writes_nothing_on_either_path(store, monkeypatch):
    # GIVEN an execution already at version 2
    execution = new_execution()
    store.create(execution, started(execution))
    current = _fill_tail(store, execution, 1)
    stale, events = next_version(execution, events=4, state="Stale")

    # THEN a save from version 1 is refused whether its events would go inline or to the history table
    assert store.save(stale, events, execution) is False
    assert store.save(stale, _big(events), execution) is False
    monkeypatch.setattr(executions_store, "TAIL_BYTES_MAX", 0)
    assert store.save(stale, events, execution) is False

    assert store.get(execution.execution_id) == current
    assert [e.seq for e in store.history(execution.execution_id, 0, 100)] == [1, 2, 3, 4, 5]


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


def test_running_executions_spread_over_the_index_shards_and_a_list_merges_them_newest_first(store):
    # GIVEN 24 running executions, one second apart in next_run_at, and 3 finished ones
    running = [new_execution(next_run_at_ms=T0 + n * 1000) for n in range(24)]
    for execution in running:
        store.create(execution, started(execution))
    for execution in [new_execution(next_run_at_ms=T0 + 500) for _ in range(3)]:
        store.create(execution, started(execution))
        done, _ = next_version(execution, status=Status.SUCCEEDED)
        assert store.save(done, [], execution)

    # THEN their index partitions are several shards of RUNNING, never RUNNING alone
    shards = {store.execution_model.get(e.execution_id).status_shard for e in running}
    assert len(shards) > 1 and all(shard.startswith("RUNNING#") for shard in shards)

    # AND listing them in pages of 5 gives every one once, newest next_run_at first
    listed, cursor = [], None
    for _ in range(10):
        page = store.list(Status.RUNNING, 5, cursor)
        listed += [e.execution_id for e in page.executions]
        if not page.has_more:
            break
        cursor = page.last_examined
    assert listed == [e.execution_id for e in reversed(running)]


def test_a_sweep_reads_every_shard_once_and_wakes_the_longest_overdue_first(store):
    # GIVEN 12 running executions overdue by 1 to 12 seconds, and one not yet due
    now = T0 + 60_000
    overdue = [new_execution(next_run_at_ms=now - n * 1000) for n in range(1, 13)]
    for execution in [*overdue, new_execution(next_run_at_ms=now + 1000)]:
        store.create(execution, started(execution))

    # WHEN the sweeper asks for the 5 most overdue
    due: list[str] = []
    calls = _calls(store, lambda: due.extend(store.due(now, 5)))

    # THEN it gets them across shards, oldest due first, for one Query per shard
    assert due == [e.execution_id for e in reversed(overdue)][:5]
    assert calls == {"Query": executions_store.STATUS_SHARDS}
