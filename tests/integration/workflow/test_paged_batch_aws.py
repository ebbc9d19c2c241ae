"""The paged batch pattern (infra/statemachines/demo-paged-batch.asl.json) through the real engine on
DynamoDB Local: 20,000 items, each applied once, the execution item small whatever the item count,
and a drive killed in the middle of a page resumed where its recorded chunks end."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from finfaas.store.executions_store import ExecutionsStore
from finfaas.workflow.asl import DefinitionRegistry, definitions_dir, load_definition_file, parse_definition
from finfaas.workflow.engine import Engine, EngineLimits
from finfaas.workflow.iterations import IterationLimits
from finfaas.workflow.model import Status
from finfaas.workflow.tasks import TaskCall, TaskFailed, TaskSucceeded
from finfaas_dev.fakes.workflow import InMemoryWaker
from finfaas_dev.testing.workflow import CrashAt, SimulatedCrash

pytestmark = pytest.mark.timeout(240)
STATE_MACHINE = "demo-paged-batch"
ITEMS = 20_000
PAGE_ITEMS = 1_000
RUN_SECONDS_MAX = 150
# Every execution item stays far below DynamoDB's 400 KB, whatever the number of items.
EXECUTION_ITEM_BYTES_MAX = 64 * 1024


class PagedJob:
    """demo-batch in miniature: pages of item ids with a next cursor, and an item route that applies each
    Idempotency-Key once and replays its answer (as the suite's functions do)."""

    def __init__(self, items: int, page_items: int) -> None:
        self.items = items
        self.page_items = page_items
        self.applied: Counter[str] = Counter()
        self.calls = 0
        self._answers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def run(self, call: TaskCall) -> TaskSucceeded | TaskFailed:
        route = call.parameters["ApiEndpoint"].rsplit("/", 1)[-1]
        body = call.parameters["RequestBody"]
        if route == "pages":
            start = int(body["cursor"] or 0)
            end = min(start + self.page_items, self.items)
            page = [f"i{n}" for n in range(start, end)]
            return TaskSucceeded(
                {"ResponseBody": {"items": page, "next": str(end) if end < self.items else None}}
            )
        with self._lock:
            self.calls += 1
            if call.idempotency_key not in self._answers:
                self.applied[body["item"]] += 1
                self._answers[call.idempotency_key] = TaskSucceeded({"ResponseBody": {"ok": True}})
            return self._answers[call.idempotency_key]


def _engine(fresh_tables, job: PagedJob, *extra: Any, **options: Any) -> Engine:
    definition = load_definition_file(definitions_dir() / f"{STATE_MACHINE}.asl.json")
    waker = InMemoryWaker(lambda: int(time.time() * 1000))
    registry = DefinitionRegistry([definition, *extra])
    return Engine(registry, ExecutionsStore(*fresh_tables), job, waker, **options)


def _drive_until_stopped(engine: Engine, execution_id: str, seconds_max: float = RUN_SECONDS_MAX) -> None:
    """The queue in miniature: drive again whenever the last drive left the execution running."""
    deadline = time.monotonic() + seconds_max
    while not engine.store.get(execution_id).status.terminal:
        assert time.monotonic() < deadline, "the batch did not finish in time"
        if engine.drive(execution_id, "continue") in ("not_due", "nothing_to_do"):
            time.sleep(0.1)


def test_twenty_thousand_items_in_pages_are_each_applied_once_and_the_execution_stays_small(fresh_tables):
    job = PagedJob(ITEMS, PAGE_ITEMS)
    engine = _engine(fresh_tables, job)
    began = time.monotonic()

    execution_id = engine.start(
        STATE_MACHINE, "nightly", {"job": "nightly", "cursor": None}
    ).execution.execution_id
    _drive_until_stopped(engine, execution_id)

    seconds = time.monotonic() - began
    execution = engine.store.get(execution_id)
    assert execution.status is Status.SUCCEEDED, (execution.error, execution.cause)
    assert len(job.applied) == ITEMS and set(job.applied.values()) == {1}
    assert job.calls == ITEMS
    # The history grows by a few events a page, never by item.
    history = engine.store.history(execution_id, 0, 10_000)
    pages = ITEMS // PAGE_ITEMS
    assert len(history) <= 15 * pages
    assert engine.store.execution_model.get(execution_id, consistent_read=True).tail_bytes <= 8 * 1024
    item_bytes = len(
        str(engine.store.execution_model.get(execution_id, consistent_read=True).attribute_values)
    )
    assert item_bytes < EXECUTION_ITEM_BYTES_MAX
    print(f"\n{ITEMS} items in {seconds:.1f} s ({ITEMS / seconds:.0f} items/s)")


def test_a_drive_killed_in_the_middle_of_a_page_is_resumed_where_its_chunks_end(fresh_tables):
    # GIVEN one page of 2,000 items and a drive that dies right after its third recorded chunk
    job = PagedJob(2_000, 2_000)
    limits = EngineLimits(lease_seconds=1.0, lease_renew_seconds=0.25)
    crash = _CrashAfter("iterations:after_record", 3)
    dying = _engine(fresh_tables, job, limits=limits, owner="p1", crash_hook=crash)
    execution_id = dying.start(
        STATE_MACHINE, "resumed", {"job": "resumed", "cursor": None}
    ).execution.execution_id
    with pytest.raises(SimulatedCrash):
        dying.drive(execution_id)
    calls_before = job.calls

    # WHEN another process drives it once the lease has lapsed
    _drive_until_stopped(_engine(fresh_tables, job, limits=limits, owner="p2"), execution_id)

    # THEN every item is applied once, and the second drive ran only what no chunk held
    execution = dying.store.get(execution_id)
    assert execution.status is Status.SUCCEEDED
    assert len(job.applied) == 2_000 and set(job.applied.values()) == {1}
    assert 750 <= calls_before < 2_000
    assert job.calls - calls_before <= 2_000 - 750
    kinds = [e.type for e in dying.store.history(execution_id, 0, 100)]
    assert kinds.count("MapStateResumed") == 1


def _item_task(item: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::http:invoke",
        "Parameters": {
            "ApiEndpoint": "https://gateway.finfaas/function/demo-batch/items",
            "Method": "POST",
            "RequestBody": {"item": item},
        },
        "End": True,
    }


def test_a_drive_killed_during_a_parallel_is_resumed_and_each_branch_applied_once(fresh_tables):
    # GIVEN a Parallel of three branches, one at a time, each recorded on its own, and a drive that
    # dies right after recording the first
    branches = [{"StartAt": f"B{n}", "States": {f"B{n}": _item_task(f"b{n}")}} for n in range(3)]
    document = {"StartAt": "All", "States": {"All": {"Type": "Parallel", "Branches": branches, "End": True}}}
    parallel = parse_definition("demo-parallel", document)
    job = PagedJob(0, 1)
    options = {
        "limits": EngineLimits(lease_seconds=1.0, lease_renew_seconds=0.25),
        "iteration_limits": IterationLimits(concurrency_max=1, chunk_items_max=1),
    }
    dying = _engine(
        fresh_tables,
        job,
        parallel,
        owner="p1",
        crash_hook=_CrashAfter("iterations:after_record", 1),
        **options,
    )
    execution_id = dying.start("demo-parallel", "p", {}).execution.execution_id
    with pytest.raises(SimulatedCrash):
        dying.drive(execution_id)

    # WHEN another process drives it once the lease has lapsed
    _drive_until_stopped(_engine(fresh_tables, job, parallel, owner="p2", **options), execution_id)

    # THEN it succeeds with every branch's result in order, each applied once, the first not called again
    execution = dying.store.get(execution_id)
    assert execution.status is Status.SUCCEEDED
    assert execution.output == [{"ResponseBody": {"ok": True}}] * 3
    assert job.applied == Counter({"b0": 1, "b1": 1, "b2": 1})
    assert job.calls == 3


class _CrashAfter(CrashAt):
    """Dies the nth time a point is passed."""

    def __init__(self, point: str, nth: int) -> None:
        super().__init__()
        self._target, self._nth = point, nth

    def __call__(self, point: str) -> None:
        self.points.append(point)
        if point == self._target and self.points.count(point) == self._nth and self.crashed_at is None:
            self.crashed_at = point
            raise SimulatedCrash(point)
