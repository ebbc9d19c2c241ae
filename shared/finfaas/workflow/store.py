"""The executions repository the engine needs.

The DynamoDB implementation is finfaas.store.executions_store.ExecutionsStore; it and the in-memory
fake (finfaas_dev.fakes.workflow) pass the contract tests in tests/support/store_contract.py.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from finfaas.workflow.model import Execution, HistoryEvent, Status

history_events_per_save_max = 99  # TransactWriteItems takes 100 items; one is the execution


class ExecutionStoreError(RuntimeError):
    """The executions or history table could not be read or written."""


@dataclass(frozen=True)
class ExecutionPage:
    executions: tuple[Execution, ...]
    has_more: bool
    # The last execution the page looked at, where the next page starts: past the last one listed
    # when a start-time filter left some out.
    last_examined: str | None = None


@dataclass(frozen=True)
class ExecutionFilter:
    """What a list narrows to beyond status and state machine: all given conditions hold (times in ms,
    from inclusive, before exclusive)."""

    reference: str | None = None
    started_from_ms: int | None = None
    started_before_ms: int | None = None

    def admits(self, execution: Execution) -> bool:
        return (
            (self.reference is None or execution.reference == self.reference)
            and (self.started_from_ms is None or execution.started_at_ms >= self.started_from_ms)
            and (self.started_before_ms is None or execution.started_at_ms < self.started_before_ms)
        )


class ExecutionRepository(Protocol):
    """Durable executions with optimistic versioning; history is written with the change it records."""

    def create(self, execution: Execution, events: Sequence[HistoryEvent]) -> bool:
        """Write a new execution and its first events; False if the id exists."""
        ...

    def get(self, execution_id: str) -> Execution | None:
        """The execution, strongly consistent; None if absent."""
        ...

    def save(
        self,
        execution: Execution,
        events: Sequence[HistoryEvent],
        previous: Execution | None = None,
        *,
        reopening: bool = False,
    ) -> bool:
        """Write execution if the stored version is execution.version - 1 and RUNNING, with events,
        atomically; False (nothing written) if another writer got there first. previous, when given, is
        that stored version: a store may then write only what changed. reopening: the stored version
        may be stopped (a redrive resumes it)."""
        ...

    def record_heartbeat(self, execution_id: str, task_token: str, at_ms: int) -> bool:
        """Set last_heartbeat_ms if the execution still waits on task_token; does not bump the version."""
        ...

    def renew_lease(self, execution_id: str, version: int, owner: str, lease_until_ms: int) -> bool:
        """Move the lease (and next_run_at) of the attempt `owner` holds at `version` to lease_until_ms;
        False if that version or owner is no longer stored (another drive took over). Does not bump
        the version: the holder's next checkpoint still replaces `version`."""
        ...

    def due(self, now_ms: int, limit: int) -> list[str]:
        """The ids of RUNNING executions whose next_run_at_ms <= now_ms, oldest due first: the sweeper
        only wakes them, and each drive reads its execution itself."""
        ...

    def any_running(self) -> bool: ...

    def list(
        self,
        status: Status | None,
        limit: int,
        starting_after: str | None = None,
        state_machine: str | None = None,
        *,
        where: ExecutionFilter = ExecutionFilter(),
    ) -> ExecutionPage:
        """Executions with this status (None: any, with where.reference only) that `where` admits;
        starting_after is an execution id. With a reference: newest start first, every page full.
        Otherwise newest next_run_at first, and a start-time filter may leave a page short."""
        ...

    def history(self, execution_id: str, after_seq: int, limit: int) -> builtins.list[HistoryEvent]:
        """Events with seq > after_seq, in order."""
        ...

    def claim_sweep(self, now_ms: int, next_sweep_ms: int) -> bool:
        """Take the sweeper's turn if its next sweep is due (or none is planned); False otherwise."""
        ...

    def next_sweep_ms(self) -> int | None: ...

    # -- a Map's or Parallel's iteration results (workflow/iterations.py) --------------------------

    def record_iterations(
        self, execution_id: str, version: int, owner: str, run: str, chunk: int, rows: str
    ) -> bool:
        """Keep one chunk of iteration results (rows: a JSON list) under run, numbered chunk, if the
        execution is still RUNNING at version with its lease held by owner and the chunk is new;
        False (nothing written) otherwise."""
        ...

    def iteration_chunks(self, run: str) -> builtins.list[str]:
        """Every chunk recorded under run, in chunk order (strongly consistent)."""
        ...
