"""The ExecutionRepository contract: the in-memory fake and the DynamoDB store both pass it.

A test module provides a `store` fixture (a fresh, empty repository) and subclasses ExecutionStoreContract.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from finfaas.workflow.model import Execution, HistoryEvent, Phase, Status, TaskResult
from finfaas.workflow.store import ExecutionFilter

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def new_execution(state_machine: str = "demo", name: str | None = None, **changes) -> Execution:
    name = name or uuid.uuid4().hex[:12]
    base = Execution(
        execution_id=f"{state_machine}:{name}",
        state_machine=state_machine,
        name=name,
        definition_digest="d" * 64,
        input={"amount_minor": 1250, "rate": 0.25, "note": "café"},
        status=Status.RUNNING,
        version=1,
        started_at_ms=T0_MS,
        next_run_at_ms=T0_MS + 30_000,
        state="Debit",
        phase=Phase.READY,
        state_input={"amount_minor": 1250},
        history_seq=1,
    )
    return replace(base, **changes)


def started(execution: Execution) -> list[HistoryEvent]:
    return [HistoryEvent(1, "ExecutionStarted", execution.started_at_ms, None, {"input": execution.input})]


def next_version(execution: Execution, events: int = 0, **changes) -> tuple[Execution, list[HistoryEvent]]:
    seqs = range(execution.history_seq + 1, execution.history_seq + 1 + events)
    history = [HistoryEvent(seq, "StateEntered", T0_MS + seq, execution.state, {"visit": 1}) for seq in seqs]
    return replace(
        execution, version=execution.version + 1, history_seq=execution.history_seq + events, **changes
    ), history


class ExecutionStoreContract:
    def test_a_created_execution_reads_back_equal_with_its_first_event(self, store):
        execution = new_execution()

        assert store.create(execution, started(execution)) is True

        assert store.get(execution.execution_id) == execution
        [event] = store.history(execution.execution_id, 0, 10)
        assert (event.seq, event.type, event.detail) == (1, "ExecutionStarted", {"input": execution.input})

    def test_creating_an_existing_id_is_refused_and_keeps_the_first(self, store):
        first = new_execution()
        store.create(first, started(first))

        assert store.create(replace(first, input={"other": True}), started(first)) is False

        assert store.get(first.execution_id).input == first.input

    def test_an_unknown_execution_reads_as_none(self, store):
        assert store.get("demo:nope") is None

    def test_a_save_of_the_next_version_writes_the_execution_and_its_events_together(self, store):
        execution = new_execution()
        store.create(execution, started(execution))
        result = TaskResult(True, {"transfer_id": "t-1", "fee": 1.5})
        saved, events = next_version(
            execution,
            events=3,
            phase=Phase.RESULT,
            task_result=result,
            visits={"Debit": 1},
            retries=(1, 0),
            lease_owner=None,
        )

        assert store.save(saved, events) is True

        assert store.get(execution.execution_id) == saved
        assert [e.seq for e in store.history(execution.execution_id, 0, 10)] == [1, 2, 3, 4]

    def test_a_stale_version_writes_nothing(self, store):
        # GIVEN two drives that both read version 1, and the first saved version 2
        execution = new_execution()
        store.create(execution, started(execution))
        winner, winner_events = next_version(execution, events=1, state="Credit")
        store.save(winner, winner_events)
        loser, loser_events = next_version(execution, events=2, state="Refund")

        # WHEN the second saves its own version 2
        written = store.save(loser, loser_events)

        # THEN nothing of it is written: neither the state nor its events
        assert written is False
        assert store.get(execution.execution_id).state == "Credit"
        assert [e.seq for e in store.history(execution.execution_id, 0, 10)] == [1, 2]

    def test_a_stopped_execution_takes_no_more_saves(self, store):
        execution = new_execution()
        store.create(execution, started(execution))
        stopped, _ = next_version(execution, status=Status.SUCCEEDED, phase=Phase.DONE, output={"ok": 1})
        store.save(stopped, [])

        again, _ = next_version(stopped, status=Status.RUNNING)

        assert store.save(again, []) is False

    def test_a_stopped_execution_is_reopened_only_by_a_redrive_at_its_version(self, store):
        # GIVEN an execution that failed (version 2)
        execution = new_execution()
        store.create(execution, started(execution))
        failed, failed_events = next_version(
            execution, events=1, status=Status.FAILED, phase=Phase.DONE, error="States.Http.StatusCode.422"
        )
        store.save(failed, failed_events)
        stale, _ = next_version(execution, status=Status.RUNNING, redrive_count=1)
        reopened, events = next_version(
            failed, events=1, status=Status.RUNNING, phase=Phase.READY, error=None, redrive_count=1
        )

        # WHEN a redrive of an old version and one of the stored version are saved, reopening it
        assert store.save(stale, [], reopening=True) is False
        assert store.save(reopened, events, failed, reopening=True) is True

        # THEN the stored execution runs again, counts the redrive, keeps its history and takes saves
        assert store.get(execution.execution_id) == reopened
        assert [e.seq for e in store.history(execution.execution_id, 0, 10)] == [1, 2, 3]
        following, _ = next_version(reopened, state="Credit")
        assert store.save(following, [], reopened) is True

    def test_a_stop_reason_and_redrive_count_read_back(self, store):
        execution = new_execution(redrive_count=2, stop_reason="customer withdrew the order")

        store.create(execution, started(execution))

        assert store.get(execution.execution_id) == execution

    def test_history_pages_by_seq(self, store):
        execution = new_execution()
        store.create(execution, started(execution))
        saved, events = next_version(execution, events=5)
        store.save(saved, events)

        assert [e.seq for e in store.history(execution.execution_id, 2, 2)] == [3, 4]
        assert [e.seq for e in store.history(execution.execution_id, 4, 10)] == [5, 6]
        assert store.history(execution.execution_id, 6, 10) == []

    def test_a_save_told_the_version_it_replaces_stores_the_same_execution(self, store):
        # GIVEN a stored version with a lease, a task result and a token
        execution = new_execution(
            phase=Phase.TASK, lease_owner="p-1", lease_until_ms=T0_MS + 35_000, task_token="s-1", attempt=1
        )
        store.create(execution, started(execution))
        # WHEN the next version clears some fields, changes others and keeps the rest, saved as a change
        saved, events = next_version(
            execution,
            events=2,
            phase=Phase.READY,
            lease_owner=None,
            task_token=None,
            state="Credit",
            state_input={"amount_minor": 1250, "debit": {"ok": True}},
            task_result=TaskResult(True, {"fee": 1.5}),
        )

        assert store.save(saved, events, execution) is True

        # THEN it reads back exactly as saved, cleared fields gone, untouched ones kept
        assert store.get(execution.execution_id) == saved
        # AND the next change on top of it still lands whole
        after, more = next_version(saved, events=1, task_result=None, output={"done": True})
        assert store.save(after, more, saved) is True
        assert store.get(execution.execution_id) == after

    def test_history_pages_by_seq_across_checkpoints(self, store):
        # GIVEN events written by three checkpoints (1; 2-4; 5-7)
        execution = new_execution()
        store.create(execution, started(execution))
        second, events = next_version(execution, events=3)
        store.save(second, events, execution)
        third, events = next_version(second, events=3)
        store.save(third, events, second)

        # THEN any page starts right after the seq asked for, whatever checkpoint holds it
        history = store.history(execution.execution_id, 0, 100)
        assert [e.seq for e in history] == [1, 2, 3, 4, 5, 6, 7]
        assert all(e.detail == {"visit": 1} for e in history[1:])
        assert [e.seq for e in store.history(execution.execution_id, 2, 3)] == [3, 4, 5]
        assert [e.seq for e in store.history(execution.execution_id, 5, 10)] == [6, 7]
        assert store.history(execution.execution_id, 7, 10) == []

    def test_due_lists_running_executions_whose_time_has_come_oldest_first(self, store):
        late = new_execution(next_run_at_ms=T0_MS + 1_000)
        later = new_execution(next_run_at_ms=T0_MS + 2_000)
        future = new_execution(next_run_at_ms=T0_MS + 60_000)
        done = new_execution(status=Status.SUCCEEDED, phase=Phase.DONE, next_run_at_ms=T0_MS)
        for execution in (later, future, done, late):
            store.create(execution, started(execution))

        due = store.due(T0_MS + 5_000, 10)

        assert due == [late.execution_id, later.execution_id]
        assert store.due(T0_MS + 5_000, 1) == [late.execution_id]

    def test_any_running_sees_only_running_executions(self, store):
        done = new_execution(status=Status.FAILED, phase=Phase.DONE)
        store.create(done, started(done))
        assert store.any_running() is False

        running = new_execution()
        store.create(running, started(running))
        assert store.any_running() is True

    def test_listing_by_status_is_newest_first_with_a_cursor(self, store):
        machine = f"m{uuid.uuid4().hex[:8]}"
        executions = [
            new_execution(
                machine, f"e{i}", status=Status.SUCCEEDED, phase=Phase.DONE, next_run_at_ms=T0_MS + i * 1000
            )
            for i in range(5)
        ]
        for execution in executions:
            store.create(execution, started(execution))
        other = new_execution(status=Status.SUCCEEDED, phase=Phase.DONE, next_run_at_ms=T0_MS + 2500)
        store.create(other, started(other))

        first = store.list(Status.SUCCEEDED, 2, state_machine=machine)
        second = store.list(Status.SUCCEEDED, 2, first.executions[-1].execution_id, state_machine=machine)
        last = store.list(Status.SUCCEEDED, 2, second.executions[-1].execution_id, state_machine=machine)

        assert [e.name for e in first.executions] == ["e4", "e3"] and first.has_more
        assert [e.name for e in second.executions] == ["e2", "e1"] and second.has_more
        assert [e.name for e in last.executions] == ["e0"] and not last.has_more
        assert store.list(Status.RUNNING, 10, state_machine=machine).executions == ()

    def test_listing_by_reference_spans_statuses_newest_start_first_with_a_cursor(self, store):
        # GIVEN a transfer's executions (a first one failed, two later ones) and another transfer's
        reference = f"tr-{uuid.uuid4().hex[:8]}"
        stopped = tuple({"status": s, "phase": Phase.DONE} for s in (Status.FAILED, Status.SUCCEEDED))
        failed, redone, latest = (
            new_execution(reference=reference, started_at_ms=T0_MS + i * 1000, **changes)
            for i, changes in enumerate((*stopped, {}))
        )
        other = new_execution(reference=f"tr-{uuid.uuid4().hex[:8]}")
        for execution in (failed, redone, latest, other):
            store.create(execution, started(execution))
        where = ExecutionFilter(reference=reference)

        # WHEN its executions are listed, two a page, then by status, state machine and start time
        first = store.list(None, 2, where=where)
        rest = store.list(None, 2, first.last_examined, where=where)
        failed_only = store.list(Status.FAILED, 10, where=where)
        other_machine = store.list(None, 10, state_machine="nope", where=where)
        window = store.list(None, 10, where=ExecutionFilter(reference, T0_MS + 1000, T0_MS + 2000))

        # THEN each answer holds exactly those, newest start first
        assert [e.execution_id for e in first.executions] == [latest.execution_id, redone.execution_id]
        assert first.has_more and first.last_examined == redone.execution_id
        assert [e.execution_id for e in rest.executions] == [failed.execution_id] and not rest.has_more
        assert [e.execution_id for e in failed_only.executions] == [failed.execution_id]
        assert other_machine.executions == ()
        assert [e.execution_id for e in window.executions] == [redone.execution_id]
        assert store.get(latest.execution_id).reference == reference

    def test_listing_by_status_keeps_only_executions_started_in_the_range(self, store):
        machine = f"m{uuid.uuid4().hex[:8]}"
        executions = [
            new_execution(machine, f"s{i}", started_at_ms=T0_MS + i * 60_000, next_run_at_ms=T0_MS + i)
            for i in range(4)
        ]
        for execution in executions:
            store.create(execution, started(execution))
        where = ExecutionFilter(started_from_ms=T0_MS + 60_000, started_before_ms=T0_MS + 180_000)

        listed = store.list(Status.RUNNING, 10, state_machine=machine, where=where)

        assert [e.name for e in listed.executions] == ["s2", "s1"] and not listed.has_more

    def test_a_heartbeat_counts_only_for_the_waiting_token_and_no_save_undoes_it(self, store):
        execution = new_execution(phase=Phase.CALLBACK, task_token="secret-1")
        store.create(execution, started(execution))

        assert store.record_heartbeat(execution.execution_id, "other-secret", T0_MS + 5) is False
        assert store.record_heartbeat(execution.execution_id, "secret-1", T0_MS + 7) is True
        saved, _ = next_version(store.get(execution.execution_id), next_run_at_ms=T0_MS + 99)
        store.save(replace(saved, last_heartbeat_ms=0), [])

        assert store.get(execution.execution_id).last_heartbeat_ms == T0_MS + 7

    def test_a_lease_is_renewed_only_by_its_holder_at_its_version_and_moves_when_it_is_due(self, store):
        # GIVEN an attempt in flight under process-1's lease, due when the lease ends
        lease_ms = T0_MS + 5_000
        execution = new_execution(
            phase=Phase.TASK, lease_owner="process-1", lease_until_ms=lease_ms, next_run_at_ms=lease_ms
        )
        store.create(execution, started(execution))
        renewed_ms = T0_MS + 11_000

        # WHEN another process, a stale version and then the holder renew it
        assert store.renew_lease(execution.execution_id, 1, "process-2", T0_MS + 99_000) is False
        assert store.renew_lease(execution.execution_id, 2, "process-1", T0_MS + 99_000) is False
        assert store.renew_lease(execution.execution_id, 1, "process-1", renewed_ms) is True

        # THEN only the holder's renewal counts: the sweeper finds it after the new end, not before
        stored = store.get(execution.execution_id)
        assert (stored.version, stored.lease_until_ms, stored.next_run_at_ms) == (1, renewed_ms, renewed_ms)
        assert execution.execution_id not in store.due(T0_MS + 10_000, 10)
        assert execution.execution_id in store.due(renewed_ms, 10)
        # AND the holder's next checkpoint still replaces version 1
        saved, _ = next_version(stored, phase=Phase.READY, lease_owner=None, lease_until_ms=0)
        assert store.save(saved, [], stored) is True

    def test_a_lease_taken_over_or_left_is_not_renewed(self, store):
        execution = new_execution(phase=Phase.TASK, lease_owner="process-1", lease_until_ms=T0_MS + 5_000)
        store.create(execution, started(execution))
        taken, _ = next_version(execution, lease_owner="process-2", lease_until_ms=T0_MS + 20_000)
        store.save(taken, [])

        assert store.renew_lease(execution.execution_id, 1, "process-1", T0_MS + 30_000) is False
        assert store.get(execution.execution_id).lease_until_ms == T0_MS + 20_000
        left, _ = next_version(store.get(execution.execution_id), phase=Phase.WAIT, lease_owner=None)
        store.save(left, [])
        assert store.renew_lease(execution.execution_id, 3, "process-2", T0_MS + 30_000) is False

    def test_iteration_chunks_are_recorded_only_under_the_lease_at_its_version_once_each(self, store):
        # GIVEN a Map iterating under process-1's lease at version 1
        execution = new_execution(
            phase=Phase.ITERATING, lease_owner="process-1", lease_until_ms=T0_MS + 5_000
        )
        store.create(execution, started(execution))
        run = f"{execution.execution_id}#Map#1#0.1"

        # WHEN the holder records two chunks, and another process, a stale version and a repeat try too
        assert store.record_iterations(execution.execution_id, 1, "process-1", run, 1, '[[2,1,"b"]]') is True
        assert store.record_iterations(execution.execution_id, 1, "process-1", run, 0, '[[0,1,"a"]]') is True
        assert store.record_iterations(execution.execution_id, 1, "process-2", run, 2, '[[3,1,"x"]]') is False
        assert store.record_iterations(execution.execution_id, 2, "process-1", run, 2, '[[3,1,"x"]]') is False
        assert store.record_iterations(execution.execution_id, 1, "process-1", run, 0, '[[9,1,"x"]]') is False

        # THEN the run reads back the holder's chunks in chunk order, and the execution is untouched
        assert store.iteration_chunks(run) == ['[[0,1,"a"]]', '[[2,1,"b"]]']
        assert store.iteration_chunks(f"{run}x") == []
        assert store.get(execution.execution_id) == execution
        # AND once another drive took the lease over (a new version), the old holder records nothing
        taken, _ = next_version(execution, lease_owner="process-2")
        assert store.save(taken, [], execution) is True
        assert store.record_iterations(execution.execution_id, 1, "process-1", run, 2, '[[3,1,"x"]]') is False
        assert store.record_iterations(execution.execution_id, 2, "process-2", run, 2, '[[3,1,"y"]]') is True
        assert store.renew_lease(execution.execution_id, 2, "process-2", T0_MS + 9_000) is True

    def test_the_sweeper_turn_is_taken_once_until_it_is_due_again(self, store):
        assert store.next_sweep_ms() is None
        assert store.claim_sweep(T0_MS, T0_MS + 60_000) is True
        assert store.claim_sweep(T0_MS + 1_000, T0_MS + 61_000) is False
        assert store.next_sweep_ms() == T0_MS + 60_000
        assert store.claim_sweep(T0_MS + 60_000, T0_MS + 120_000) is True
        assert store.claim_sweep(T0_MS + 60_001, 0) is False

    def test_the_sweeper_item_is_no_execution(self, store):
        store.claim_sweep(T0_MS, T0_MS - 1)

        assert store.due(T0_MS + 10**9, 10) == []
        assert store.any_running() is False
