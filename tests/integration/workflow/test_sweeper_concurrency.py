"""The orchestrator's sweep is a scheduled job: two ticks at once sweep once and keep one tick chain."""

from __future__ import annotations

import threading
import time

from finfaas.store.executions_store import ExecutionsStore
from finfaas.workflow.sweeper import Sweeper
from finfaas.workflow.wakeups import SWEEP, WAKE
from finfaas_dev.fakes.workflow import InMemoryWaker
from support.store_contract import new_execution, started

OVERDUE_EXECUTIONS = 3
TICKS_AT_ONCE = 2


def test_two_ticks_at_once_wake_each_overdue_execution_once_and_schedule_one_next_tick(fresh_tables):
    # GIVEN three running executions whose next step is overdue, and two orchestrator replicas
    store = ExecutionsStore(*fresh_tables)
    overdue = set()
    for _ in range(OVERDUE_EXECUTIONS):
        execution = new_execution()
        assert store.create(execution, started(execution))
        overdue.add(execution.execution_id)
    waker = InMemoryWaker(lambda: int(time.time() * 1000))
    sweepers = [Sweeper(ExecutionsStore(*fresh_tables), waker) for _ in range(TICKS_AT_ONCE)]

    # WHEN each receives a sweep tick at the same instant (a duplicated delivery)
    start = threading.Barrier(TICKS_AT_ONCE)
    reports: list = [None] * TICKS_AT_ONCE

    def tick(slot: int) -> None:
        start.wait()
        reports[slot] = sweepers[slot].tick()

    threads = [threading.Thread(target=tick, args=(slot,)) for slot in range(TICKS_AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    # THEN one of them claimed the turn: each execution woken once, and the chain did not fork
    assert sorted(report.claimed for report in reports) == [False, True]
    wakes = [q.wakeup.execution_id for q in waker.queued if q.wakeup.kind == WAKE]
    assert sorted(wakes) == sorted(overdue)
    assert sum(1 for q in waker.queued if q.wakeup.kind == SWEEP) == 1
