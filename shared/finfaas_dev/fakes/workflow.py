"""In-memory implementations of the workflow engine's ports, for tests: the executions store passes the
same contract tests as the DynamoDB one (tests/support/store_contract.py)."""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from finfaas.workflow.model import Execution, HistoryEvent, Phase, Status
from finfaas.workflow.store import ExecutionFilter, ExecutionPage, history_events_per_save_max
from finfaas.workflow.wakeups import Wakeup, WakeupError


@dataclass(order=True)
class QueuedWakeup:
    deliver_at_ms: int
    sequence: int
    wakeup: Wakeup = field(compare=False)


class InMemoryWaker:
    """A queue in a list for tests: messages become visible at their delay, in send order."""

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self._clock_ms = clock_ms
        self.queued: list[QueuedWakeup] = []
        self.sent = 0
        self.fail_sends = False

    def send(self, wakeup: Wakeup, delay_seconds: int = 0) -> None:
        if self.fail_sends:
            raise WakeupError("queue unavailable (test)")
        self.sent += 1
        self.queued.append(QueuedWakeup(self._clock_ms() + delay_seconds * 1000, self.sent, wakeup))

    def pop_visible(self) -> QueuedWakeup | None:
        """The oldest message visible now, removed from the queue."""
        now = self._clock_ms()
        visible = sorted(q for q in self.queued if q.deliver_at_ms <= now)
        if not visible:
            return None
        self.queued.remove(visible[0])
        return visible[0]

    def next_visible_at_ms(self) -> int | None:
        return min((q.deliver_at_ms for q in self.queued), default=None)



class InMemoryExecutionStore:
    """ExecutionRepository in dicts: unit tests and the systematic crash tests; same contract."""

    def __init__(self) -> None:
        self._executions: dict[str, Execution] = {}
        self._history: dict[str, dict[int, HistoryEvent]] = {}
        self._next_sweep_ms: int | None = None
        self._iteration_chunks: dict[str, dict[int, str]] = {}
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def create(self, execution: Execution, events: Sequence[HistoryEvent]) -> bool:
        with self._lock:
            self._count("create")
            if execution.execution_id in self._executions:
                return False
            self._write(execution, events)
            return True

    def get(self, execution_id: str) -> Execution | None:
        with self._lock:
            self._count("get")
            found = self._executions.get(execution_id)
            return copy.deepcopy(found) if found else None

    def save(
        self,
        execution: Execution,
        events: Sequence[HistoryEvent],
        previous: Execution | None = None,
        *,
        reopening: bool = False,
    ) -> bool:
        _check_events(events)
        with self._lock:
            self._count("save")
            stored = self._executions.get(execution.execution_id)
            if (
                stored is None
                or stored.version != execution.version - 1
                or (stored.status is not Status.RUNNING and not reopening)
            ):
                return False
            # Heartbeats are written outside the version: a save never rolls one back.
            self._write(replace(execution, last_heartbeat_ms=stored.last_heartbeat_ms), events)
            return True

    def record_heartbeat(self, execution_id: str, task_token: str, at_ms: int) -> bool:
        with self._lock:
            self._count("record_heartbeat")
            stored = self._executions.get(execution_id)
            if stored is None or stored.status is not Status.RUNNING or stored.task_token != task_token:
                return False
            self._executions[execution_id] = replace(stored, last_heartbeat_ms=at_ms)
            return True

    def renew_lease(self, execution_id: str, version: int, owner: str, lease_until_ms: int) -> bool:
        with self._lock:
            self._count("renew_lease")
            stored = self._executions.get(execution_id)
            if (
                stored is None
                or stored.status is not Status.RUNNING
                or stored.phase not in (Phase.TASK, Phase.ITERATING)
                or stored.version != version
                or stored.lease_owner != owner
            ):
                return False
            self._executions[execution_id] = replace(
                stored, lease_until_ms=lease_until_ms, next_run_at_ms=lease_until_ms
            )
            return True

    def record_iterations(
        self, execution_id: str, version: int, owner: str, run: str, chunk: int, rows: str
    ) -> bool:
        with self._lock:
            self._count("record_iterations")
            stored = self._executions.get(execution_id)
            chunks = self._iteration_chunks.setdefault(run, {})
            if (
                stored is None
                or stored.status is not Status.RUNNING
                or stored.version != version
                or stored.lease_owner != owner
                or chunk in chunks
            ):
                return False
            chunks[chunk] = rows
            return True

    def iteration_chunks(self, run: str) -> builtins.list[str]:
        with self._lock:
            self._count("iteration_chunks")
            chunks = self._iteration_chunks.get(run, {})
            return [chunks[number] for number in sorted(chunks)]

    def due(self, now_ms: int, limit: int) -> list[str]:
        with self._lock:
            self._count("due")
            found = [
                e
                for e in self._executions.values()
                if e.status is Status.RUNNING and e.next_run_at_ms <= now_ms
            ]
            return [e.execution_id for e in sorted(found, key=lambda e: e.next_run_at_ms)[:limit]]

    def any_running(self) -> bool:
        with self._lock:
            self._count("any_running")
            return any(e.status is Status.RUNNING for e in self._executions.values())

    def list(
        self,
        status: Status | None,
        limit: int,
        starting_after: str | None = None,
        state_machine: str | None = None,
        *,
        where: ExecutionFilter = ExecutionFilter(),
    ) -> ExecutionPage:
        with self._lock:
            self._count("list")
            if status is None and where.reference is None:
                raise ValueError("a list without a status needs a reference")
            by_start = where.reference is not None
            found = sorted(
                (
                    e
                    for e in self._executions.values()
                    if (status is None or e.status is status)
                    and (state_machine is None or e.state_machine == state_machine)
                    and where.admits(e)
                ),
                key=lambda e: (e.started_at_ms if by_start else e.next_run_at_ms, e.execution_id),
                reverse=True,
            )
            if starting_after is not None:
                ids = [e.execution_id for e in found]
                found = found[ids.index(starting_after) + 1 :] if starting_after in ids else []
            page = tuple(copy.deepcopy(found[:limit]))
            has_more = len(found) > limit
            return ExecutionPage(page, has_more, page[-1].execution_id if has_more and page else None)

    def history(self, execution_id: str, after_seq: int, limit: int) -> list[HistoryEvent]:
        with self._lock:
            self._count("history")
            events = self._history.get(execution_id, {})
            return [events[seq] for seq in sorted(events) if seq > after_seq][:limit]

    def claim_sweep(self, now_ms: int, next_sweep_ms: int) -> bool:
        with self._lock:
            self._count("claim_sweep")
            if self._next_sweep_ms is not None and self._next_sweep_ms > now_ms:
                return False
            self._next_sweep_ms = next_sweep_ms
            return True

    def next_sweep_ms(self) -> int | None:
        with self._lock:
            return self._next_sweep_ms

    def _write(self, execution: Execution, events: Sequence[HistoryEvent]) -> None:
        history = self._history.setdefault(execution.execution_id, {})
        for event in events:
            if event.seq in history:
                raise AssertionError(f"history seq {event.seq} written twice for {execution.execution_id}")
        self._executions[execution.execution_id] = copy.deepcopy(execution)
        for event in events:
            history[event.seq] = copy.deepcopy(event)


def _check_events(events: Sequence[HistoryEvent]) -> None:
    if len(events) > history_events_per_save_max:
        raise ValueError(f"at most {history_events_per_save_max} history events per save")
