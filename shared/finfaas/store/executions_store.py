"""Orchestrator executions and history in DynamoDB (tables `executions` and `history`).

executions: HASH execution_id; GSI by-status-shards (HASH status_shard, RANGE next_run_at; projecting
the keys and state_machine only, read through to the table for whole executions); GSI by-reference (HASH
reference, RANGE started_at_ms; keys, status and state_machine; only executions started with a
business reference). A checkpoint writes
the execution conditioned on its version (setting only the attributes that changed since the version
it replaces, when the caller says which that was) together with the history events it records, in
one of two ways:
  - inline: one UpdateItem that also appends the events to the execution item's `tail` (a list of
    JSON rows [seq, type, at_ms, state, detail]) while the tail stays under TAIL_BYTES_MAX. A
    checkpoint is on the critical path of every task, and one conditional single-item write is the
    cheapest durable write DynamoDB has: a two-item transaction is billed twice the write units per
    item, and on DynamoDB Local it took 2.4-3.5 ms of the emulator's CPU a checkpoint against
    1.5-2.0 ms for the UpdateItem;
  - in the history table, when the events do not fit the tail (large events, long executions): one
    TransactWriteItems of the execution Update plus one Put per history item, keyed by its first
    event's seq and conditioned on that key being new.
Either way the events are saved with exactly the transition they record. Events never move between
the two places, so a reader merges the tail with the history items by seq. history: HASH
execution_id, RANGE seq; an item holds `events` (JSON list of rows); items written one event each
(type, at_ms, state, detail) are read as well. JSON values (input, state input, output, task
result) are kept as JSON text: ASL data may hold non-integer numbers, which pynamodb's
NumberAttribute would round through float.

The index projects only what listing and sweeping need to find executions, because every checkpoint
moves an execution in it (next_run_at changes), which DynamoDB bills as an index delete and put, each
by the size of what the index projects. On DynamoDB Local's accounting a checkpoint of a 7 KB
execution costs 7 table write units, and 14 more in an index projecting the whole item against 2 in
this one. Lists and sweeps, which are rare, read the executions themselves with one BatchGetItem a
page; a sweep needs only the ids.

The index is sharded: an execution's `status_shard` is `<status>#<k>`, k = crc32(execution id) mod
STATUS_SHARDS, fixed for its life, so the running executions spread over STATUS_SHARDS index
partitions instead of one `RUNNING` partition taking every checkpoint (a partition takes about 1,000
writes/s). A sweep and a list query every shard of their status and merge the answers by
next_run_at: a sweep costs STATUS_SHARDS Queries whatever the number of executions.

The sweeper's bookkeeping is one item (execution_id `~sweeper`) without a status, so it stays
out of the by-status index.
"""

from __future__ import annotations

import builtins
import json
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from botocore.exceptions import BotoCoreError
from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.constants import NONE
from pynamodb.exceptions import (
    PynamoDBException,
    UpdateError,
)
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite
from tenacity import RetryError

from finfaas.platform import jsonio
from finfaas.platform.config import resource_name, settings
from finfaas.platform.retry import RetryPolicy
from finfaas.store.binding import RETRY_ATTEMPTS_MAX, StoreMeta, bound
from finfaas.store.dynamo import (
    CONDITIONAL_CHECK_FAILED_EXCEPTION,
    VALIDATION_EXCEPTION,
    condition_failures,
    conditional_write,
    consistent_get,
    transient,
)
from finfaas.workflow.model import Execution, HistoryEvent, Phase, Status, TaskResult
from finfaas.workflow.store import (
    ExecutionFilter,
    ExecutionPage,
    ExecutionStoreError,
    history_events_per_save_max,
)

EXECUTIONS_LOGICAL_NAME = "executions"
# What a read of an execution treats as an unanswered table (botocore errors escape pynamodb here).
_READ_FAILURES = (PynamoDBException, BotoCoreError)
HISTORY_LOGICAL_NAME = "history"
# A GSI's keys and projection cannot change in place: this is the sharded by-status index projecting
# keys only (it replaced by-status-keys, whose hash key was the status itself).
BY_STATUS_INDEX = "by-status-shards"
# Index partitions per status. Each checkpoint of a running execution moves it in the index, so with one
# partition the whole suite's checkpoints were capped by that partition's ~1,000 writes/s (about 200
# transfers/s at five checkpoints each); 4 lift that to ~4,000, while a sweep tick and a list pay one
# Query per shard.
STATUS_SHARDS = 4
BY_STATUS_INDEX_ATTRIBUTES = ("state_machine",)  # list() filters on it
# Executions by business reference, newest start first. Sparse (only executions started with a
# reference) and written only when an execution is created or changes status, since neither key
# nor projection moves with a checkpoint.
BY_REFERENCE_INDEX = "by-reference"
BY_REFERENCE_INDEX_ATTRIBUTES = ("status", "state_machine")  # list() filters on them
SWEEPER_ITEM_ID = "~sweeper"
# DynamoDB's answer when a write would take the item past 400 KB: the events go to the history table.
ITEM_TOO_LARGE = VALIDATION_EXCEPTION
# An inline checkpoint refused for either reason is tried again as a transaction, which tells them apart.
INLINE_REFUSALS = frozenset({CONDITIONAL_CHECK_FAILED_EXCEPTION, ITEM_TOO_LARGE})
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"  # + "Z", trimmed to milliseconds: fixed width, text order is time order
# A checkpoint refused by contention or throttling (nothing written) is sent again, briefly.
transaction_attempts_max = 3
transaction_wait_ms_base = 50.0
transaction_wait_ms_max = 100.0
TRANSACTION_RETRY = RetryPolicy(transaction_attempts_max, transaction_wait_ms_base, transaction_wait_ms_max)
page_items_max = 100
# A history item holds a checkpoint's events up to this much JSON (DynamoDB allows 400 KB an item);
# one event is at most the engine's 64 KiB payload limit plus its fields, so it always fits.
history_item_bytes_max = 300 * 1024
# History events kept in the execution item itself (JSON bytes). A transfer saga's whole history
# takes 2.5-3.5 KB. Kept small because every write of the item is billed by the item's size;
# longer histories go on in items.
TAIL_BYTES_MAX = 8 * 1024
# Executions whose tail was found full, so their checkpoints go straight to the history table; a
# hint only (a miss costs one refused inline write), bounded so a long-lived process stays small.
full_tails_remembered_max = 4096


def format_time_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime(TIME_FORMAT)[:-3] + "Z"


def status_shard(status: Status, execution_id: str) -> str:
    """The execution's partition of the by-status index: fixed by its id, so it moves only with its status."""
    return f"{status.value}#{zlib.crc32(execution_id.encode()) % STATUS_SHARDS}"


class _ByStatus(GlobalSecondaryIndex):
    class Meta:
        index_name = BY_STATUS_INDEX
        projection = IncludeProjection(list(BY_STATUS_INDEX_ATTRIBUTES))

    status_shard = UnicodeAttribute(hash_key=True)
    next_run_at = UnicodeAttribute(range_key=True)


class _ByReference(GlobalSecondaryIndex):
    class Meta:
        index_name = BY_REFERENCE_INDEX
        projection = IncludeProjection(list(BY_REFERENCE_INDEX_ATTRIBUTES))

    reference = UnicodeAttribute(hash_key=True)
    started_at_ms = NumberAttribute(range_key=True)


class _ExecutionItem(Model):
    """Attribute layout shared by the per-stage model classes."""

    Meta = StoreMeta

    execution_id = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute(null=True)  # absent on the sweeper's item
    status_shard = UnicodeAttribute(null=True)  # by-status hash key: <status>#<shard>
    next_run_at = UnicodeAttribute(null=True)  # by-status range key: RUNNING next look, else stop time
    version = NumberAttribute(null=True)
    state_machine = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    definition_digest = UnicodeAttribute(null=True)
    input = UnicodeAttribute(null=True)  # JSON text
    started_at_ms = NumberAttribute(null=True)
    next_run_at_ms = NumberAttribute(null=True)
    deadline_ms = NumberAttribute(null=True)
    state = UnicodeAttribute(null=True)
    phase = UnicodeAttribute(null=True)
    state_input = UnicodeAttribute(null=True)  # JSON text
    state_entered_at_ms = NumberAttribute(null=True)
    visits = UnicodeAttribute(null=True)  # JSON object
    retries = UnicodeAttribute(null=True)  # JSON array
    attempt = NumberAttribute(null=True)
    attempt_started_at_ms = NumberAttribute(null=True)
    redrives = NumberAttribute(null=True)
    lease_owner = UnicodeAttribute(null=True)
    lease_until_ms = NumberAttribute(null=True)
    task_token = UnicodeAttribute(null=True)
    task_result = UnicodeAttribute(null=True)  # JSON text
    callback_reported = UnicodeAttribute(null=True)
    last_heartbeat_ms = NumberAttribute(null=True)  # heartbeats only; saves never write it
    output = UnicodeAttribute(null=True)  # JSON text
    error = UnicodeAttribute(null=True)
    cause = UnicodeAttribute(null=True)
    history_seq = NumberAttribute(null=True)
    redrive_count = NumberAttribute(null=True)
    stop_reason = UnicodeAttribute(null=True)
    reference = UnicodeAttribute(null=True)  # by-reference hash key; absent: not in that index
    tail = ListAttribute(of=UnicodeAttribute, null=True)  # history rows saved inline, as JSON text
    tail_bytes = NumberAttribute(null=True)
    next_sweep_ms = NumberAttribute(null=True)  # the sweeper's item only
    by_status = _ByStatus()
    by_reference = _ByReference()


class _HistoryItem(Model):
    Meta = StoreMeta

    execution_id = UnicodeAttribute(hash_key=True)
    seq = NumberAttribute(range_key=True)  # the first event's seq
    events = UnicodeAttribute(null=True)  # JSON list of [seq, type, at_ms, state, detail]
    # Items written one event each:
    type = UnicodeAttribute(null=True)
    at_ms = NumberAttribute(null=True)
    state = UnicodeAttribute(null=True)
    detail = UnicodeAttribute(null=True)  # JSON object
    # A Map's or Parallel's chunk of iteration results (HASH: the run's key, RANGE: the chunk's number):
    results = UnicodeAttribute(null=True)  # JSON list of rows (workflow/iterations.py)


@lru_cache(maxsize=8)
def _models(executions_table: str, history_table: str, region: str) -> tuple[Any, Any]:
    # pynamodb ties an index to the model class that declares it, so the bound execution model
    # declares a by-status index of its own; the history model binds like any store's item.
    index = type("ByStatus", (_ByStatus,), {"Meta": type("Meta", (_ByStatus.Meta,), {})})()
    by_reference = type("ByReference", (_ByReference,), {"Meta": type("Meta", (_ByReference.Meta,), {})})()
    meta = type("Meta", (StoreMeta,), {"table_name": executions_table, "region": region})
    execution_model = type(
        "ExecutionItem",
        (_ExecutionItem,),
        {"Meta": meta, "by_status": index, "by_reference": by_reference, "__module__": __name__},
    )
    return execution_model, bound(_HistoryItem, history_table, region)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _attributes(execution: Execution) -> dict[str, Any]:
    """The execution as item attributes (None: the attribute is absent)."""
    return {
        "status": execution.status.value,
        "status_shard": status_shard(execution.status, execution.execution_id),
        "next_run_at": format_time_ms(execution.next_run_at_ms),
        "version": execution.version,
        "state_machine": execution.state_machine,
        "name": execution.name,
        "definition_digest": execution.definition_digest,
        "input": _json(execution.input),
        "started_at_ms": execution.started_at_ms,
        "next_run_at_ms": execution.next_run_at_ms,
        "deadline_ms": execution.deadline_ms,
        "state": execution.state,
        "phase": execution.phase.value,
        "state_input": _json(execution.state_input),
        "state_entered_at_ms": execution.state_entered_at_ms,
        "visits": _json(execution.visits),
        "retries": _json(list(execution.retries)),
        "attempt": execution.attempt,
        "attempt_started_at_ms": execution.attempt_started_at_ms,
        "redrives": execution.redrives,
        "lease_owner": execution.lease_owner,
        "lease_until_ms": execution.lease_until_ms,
        "task_token": execution.task_token,
        "task_result": _json(execution.task_result.to_json()) if execution.task_result else None,
        "callback_reported": execution.callback_reported,
        "output": _json(execution.output) if execution.output is not None else None,
        "error": execution.error,
        "cause": execution.cause,
        "history_seq": execution.history_seq,
        "redrive_count": execution.redrive_count or None,
        "stop_reason": execution.stop_reason,
        "reference": execution.reference,
    }


def _int(value: Any, default: int = 0) -> int:
    return default if value is None else int(value)


def _loads(text: str) -> Any:
    """A stored JSON attribute; execution state may nest deeper than a request body (see jsonio)."""
    return jsonio.loads(text, depth_max=jsonio.stored_json_depth_max)


def _execution(item: Any) -> Execution:
    return Execution(
        execution_id=item.execution_id,
        state_machine=item.state_machine,
        name=item.name,
        definition_digest=item.definition_digest,
        input=_loads(item.input),
        status=Status(item.status),
        version=_int(item.version),
        started_at_ms=_int(item.started_at_ms),
        next_run_at_ms=_int(item.next_run_at_ms),
        deadline_ms=None if item.deadline_ms is None else int(item.deadline_ms),
        state=item.state,
        phase=Phase(item.phase),
        state_input=_loads(item.state_input or "null"),
        state_entered_at_ms=_int(item.state_entered_at_ms),
        visits=_loads(item.visits or "{}"),
        retries=tuple(_loads(item.retries or "[]")),
        attempt=_int(item.attempt),
        attempt_started_at_ms=_int(item.attempt_started_at_ms),
        redrives=_int(item.redrives),
        lease_owner=item.lease_owner,
        lease_until_ms=_int(item.lease_until_ms),
        task_token=item.task_token,
        task_result=TaskResult.from_json(_loads(item.task_result)) if item.task_result else None,
        callback_reported=item.callback_reported,
        last_heartbeat_ms=_int(item.last_heartbeat_ms),
        output=_loads(item.output) if item.output is not None else None,
        error=item.error,
        cause=item.cause,
        history_seq=_int(item.history_seq),
        redrive_count=_int(item.redrive_count),
        stop_reason=item.stop_reason,
        reference=item.reference,
    )


class ExecutionsStore:
    """ExecutionRepository on DynamoDB. Thread-safe; share one per process."""

    def __init__(
        self,
        executions_table: str | None = None,
        history_table: str | None = None,
        *,
        region: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        region = region or settings().region
        self.executions_table = executions_table or resource_name(EXECUTIONS_LOGICAL_NAME)
        self.history_table = history_table or resource_name(HISTORY_LOGICAL_NAME)
        self.execution_model, self.history_model = _models(self.executions_table, self.history_table, region)
        self._connection = Connection(region=region, max_retry_attempts=RETRY_ATTEMPTS_MAX)
        self._sleep = sleep
        self._full_tails: OrderedDict[str, None] = OrderedDict()
        self._full_tails_lock = threading.Lock()

    # -- writes ----------------------------------------------------------------------------------

    def create(self, execution: Execution, events: Sequence[HistoryEvent]) -> bool:
        model = self.execution_model
        attributes = _present(_attributes(execution))
        rows = _rows(events)
        tail_bytes = _bytes(rows)
        if tail_bytes <= TAIL_BYTES_MAX:
            item = model(execution.execution_id, **attributes, tail=rows, tail_bytes=tail_bytes)
            written = self._put_inline(item, model.execution_id.does_not_exist())
            if written is not None:
                return written
        item = model(execution.execution_id, **attributes)
        return self._transact(
            execution.execution_id,
            _history_chunks(events, rows),
            lambda tx: tx.save(item, condition=model.execution_id.does_not_exist()),
        )

    def save(
        self,
        execution: Execution,
        events: Sequence[HistoryEvent],
        previous: Execution | None = None,
        *,
        reopening: bool = False,
    ) -> bool:
        if len(events) > history_events_per_save_max:
            raise ValueError(f"at most {history_events_per_save_max} history events per save")
        model = self.execution_model
        actions = [
            getattr(model, name).set(value) if value is not None else getattr(model, name).remove()
            for name, value in _changed_attributes(execution, previous).items()
        ]
        condition = model.version == execution.version - 1
        if not reopening:
            condition &= model.status == Status.RUNNING.value
        rows = _rows(events)
        added = _bytes(rows)
        inline = added <= TAIL_BYTES_MAX and execution.execution_id not in self._full_tails
        if inline:
            # The tail's room is part of the condition, so a refusal means a lost race or a full
            # tail (or an item at DynamoDB's size limit); the transaction below tells them apart.
            appended = [*actions, model.tail.set((model.tail | []).append(rows)), model.tail_bytes.add(added)]
            room = model.tail_bytes.does_not_exist() | (model.tail_bytes <= TAIL_BYTES_MAX - added)
            if self._update(
                execution.execution_id, appended, condition & room, "checkpoint not written", INLINE_REFUSALS
            ):
                return True
        written = self._transact(
            execution.execution_id,
            _history_chunks(events, rows),
            lambda tx: tx.update(model(execution.execution_id), actions=actions, condition=condition),
        )
        if written and inline:
            self._remember_full_tail(execution.execution_id)
        return written

    def record_heartbeat(self, execution_id: str, task_token: str, at_ms: int) -> bool:
        model = self.execution_model
        condition = (model.task_token == task_token) & (model.status == Status.RUNNING.value)
        actions = [model.last_heartbeat_ms.set(at_ms)]
        return self._update(execution_id, actions, condition, "heartbeat not recorded")

    def renew_lease(self, execution_id: str, version: int, owner: str, lease_until_ms: int) -> bool:
        model = self.execution_model
        condition = (
            (model.version == version)
            & (model.lease_owner == owner)
            & model.phase.is_in(Phase.TASK.value, Phase.ITERATING.value)
            & (model.status == Status.RUNNING.value)
        )
        # next_run_at moves with the lease: the by-status index is how the sweeper finds lapsed ones.
        actions = [
            model.lease_until_ms.set(lease_until_ms),
            model.next_run_at_ms.set(lease_until_ms),
            model.next_run_at.set(format_time_ms(lease_until_ms)),
        ]
        return self._update(execution_id, actions, condition, "lease not renewed")

    def record_iterations(
        self, execution_id: str, version: int, owner: str, run: str, chunk: int, rows: str
    ) -> bool:
        """One TransactWriteItems: a ConditionCheck that the execution is still at version under owner's
        lease, and the chunk's Put (new key only). A drive whose lease moved on records nothing."""
        model = self.execution_model
        condition = (
            (model.version == version)
            & (model.lease_owner == owner)
            & (model.status == Status.RUNNING.value)
        )
        item = self.history_model(run, chunk, results=rows)

        def transact() -> None:
            with TransactWrite(connection=self._connection) as tx:
                tx.condition_check(model, execution_id, condition=condition)
                tx.save(item, condition=self.history_model.seq.does_not_exist())

        def attempt() -> bool:
            written = conditional_write(transact)
            if written.taken:
                return True
            if condition_failures(written.error):
                return False
            if transient(written.error):
                raise _Refused(written.code) from written.error
            raise ExecutionStoreError(f"iterations not recorded: {written.code}") from written.error

        try:
            return TRANSACTION_RETRY.retrying(_Refused, self._sleep)(attempt)
        except RetryError as error:
            refused = error.last_attempt.exception()
            raise ExecutionStoreError(f"iterations not recorded: {refused}") from refused

    def iteration_chunks(self, run: str) -> builtins.list[str]:
        model = self.history_model
        try:
            items = model.query(run, consistent_read=True, page_size=page_items_max)
            return [item.results for item in items if item.results is not None]
        except (PynamoDBException, BotoCoreError) as error:
            raise ExecutionStoreError("iterations not read") from error

    def claim_sweep(self, now_ms: int, next_sweep_ms: int) -> bool:
        model = self.execution_model
        condition = model.next_sweep_ms.does_not_exist() | (model.next_sweep_ms <= now_ms)
        actions = [model.next_sweep_ms.set(next_sweep_ms)]
        return self._update(SWEEPER_ITEM_ID, actions, condition, "sweeper claim failed")

    def _transact(
        self,
        execution_id: str,
        chunks: list[tuple[int, list[str]]],
        add_execution: Callable[[TransactWrite], None],
    ) -> bool:
        """One TransactWriteItems: the execution write and a Put per history item of the new events.

        Sent again only after a refusal that wrote nothing (conflict, throttling); False when a
        condition failed (another writer moved the execution)."""

        def transact() -> None:
            with TransactWrite(connection=self._connection) as tx:
                add_execution(tx)
                for first_seq, rows in chunks:
                    tx.save(
                        self._history_item(execution_id, first_seq, rows),
                        condition=self.history_model.seq.does_not_exist(),
                    )

        def attempt() -> bool:
            written = conditional_write(transact)
            if written.taken:
                return True
            if condition_failures(written.error):
                return False
            if transient(written.error):
                raise _Refused(written.code) from written.error
            raise ExecutionStoreError(f"checkpoint not written: {written.code}") from written.error

        try:
            return TRANSACTION_RETRY.retrying(_Refused, self._sleep)(attempt)
        except RetryError as error:
            refused = error.last_attempt.exception()
            raise ExecutionStoreError(f"checkpoint not written: {refused}") from refused

    def _put_inline(self, item: Any, condition: Any) -> bool | None:
        """A create as one PutItem: True, False when the execution exists, None when it is too large."""
        written = conditional_write(lambda: item.save(condition=condition))
        if written.code == ITEM_TOO_LARGE:
            return None
        return written.or_raise(lambda w: ExecutionStoreError(f"execution not created: {w.code}"))

    def _update(
        self,
        key: str,
        actions: list[Any],
        condition: Any,
        failure: str,
        refusals: frozenset[str] = frozenset({CONDITIONAL_CHECK_FAILED_EXCEPTION}),
    ) -> bool:
        """One conditional UpdateItem; False when DynamoDB refused it with one of `refusals`."""
        # Through the table connection: Model.update asks for the whole new item back
        # (ReturnValues ALL_NEW), which DynamoDB serializes and botocore parses for nothing.
        written = conditional_write(lambda: self.execution_model._get_connection().update_item(
            key, actions=actions, condition=condition, return_values=NONE
        ))
        if isinstance(written.error, UpdateError) and written.code in refusals:
            return False
        if written.taken:
            return True
        raise ExecutionStoreError(f"{failure}: {written.code}") from written.error

    def _remember_full_tail(self, execution_id: str) -> None:
        with self._full_tails_lock:
            self._full_tails[execution_id] = None
            while len(self._full_tails) > full_tails_remembered_max:
                self._full_tails.popitem(last=False)

    def _history_item(self, execution_id: str, first_seq: int, rows: list[str]) -> Any:
        # The rows are JSON already: joined, they are the JSON list an item keeps.
        return self.history_model(execution_id, first_seq, events="[" + ",".join(rows) + "]")

    # -- reads -----------------------------------------------------------------------------------

    def get(self, execution_id: str) -> Execution | None:
        item = consistent_get(self.execution_model, (execution_id,),
                              lambda _: ExecutionStoreError("execution not read"), failures=_READ_FAILURES)
        return _execution(item) if item is not None and item.status is not None else None

    def due(self, now_ms: int, limit: int) -> list[str]:
        """One Query per shard (each up to `limit` ids), merged: the `limit` longest overdue."""
        model = self.execution_model
        due_at = format_time_ms(now_ms)
        found: list[tuple[str, str]] = []
        try:
            for shard in _shards(Status.RUNNING):
                items = model.by_status.query(
                    shard, model.next_run_at <= due_at, limit=limit, page_size=min(limit, page_items_max)
                )
                found += [(item.next_run_at or "", item.execution_id) for item in items]
        except (PynamoDBException, BotoCoreError) as error:
            raise ExecutionStoreError("due executions not read") from error
        return [execution_id for _, execution_id in sorted(found)[:limit]]

    def any_running(self) -> bool:
        """Shard after shard, one item each, until one is found (all of them when nothing runs)."""
        try:
            return any(
                any(True for _ in self.execution_model.by_status.query(shard, limit=1))
                for shard in _shards(Status.RUNNING)
            )
        except (PynamoDBException, BotoCoreError) as error:
            raise ExecutionStoreError("running executions not read") from error

    def list(
        self,
        status: Status | None,
        limit: int,
        starting_after: str | None = None,
        state_machine: str | None = None,
        *,
        where: ExecutionFilter = ExecutionFilter(),
    ) -> ExecutionPage:
        if where.reference is not None:
            reference = where.reference
            return self._list_by_reference(reference, status, limit, starting_after, state_machine, where)
        if status is None:
            raise ValueError("a list without a status needs a reference")
        after: tuple[str, str] | None = None
        if starting_after:
            cursor = self.get(starting_after)
            if cursor is None or cursor.status is not status:
                return ExecutionPage((), False)
            after = (format_time_ms(cursor.next_run_at_ms), cursor.execution_id)
        try:
            found = self._newest_in_shards(status, limit + 1, after, state_machine)
            examined = [execution_id for _, execution_id in found[:limit]]
            executions = self._whole(examined)
        except (PynamoDBException, BotoCoreError) as error:
            raise ExecutionStoreError("executions not listed") from error
        # The index lags the table a little: one that has moved on since is not listed under the old
        # status. Start times are not in the index (it moves with every checkpoint, so it stays
        # narrow): a start-time filter applies to the executions read, and a page may come out short.
        still = tuple(e for e in executions if e.status is status and where.admits(e))
        # The next page starts after the last one read that still has the status: the index knows
        # where it is (one that has moved on is somewhere else in it).
        last = next((e.execution_id for e in reversed(executions) if e.status is status), None)
        return ExecutionPage(still, len(found) > limit, last)

    def _list_by_reference(
        self,
        reference: str,
        status: Status | None,
        limit: int,
        starting_after: str | None,
        state_machine: str | None,
        where: ExecutionFilter,
    ) -> ExecutionPage:
        """One Query of the by-reference index: the start-time range is its key condition, status and
        state machine filter on what it projects, so every page is full."""
        model = self.execution_model
        start_key = None
        if starting_after:
            after = self.get(starting_after)
            if after is None or after.reference != reference:
                return ExecutionPage((), False)
            start_key = {
                "execution_id": {"S": after.execution_id},
                "reference": {"S": reference},
                "started_at_ms": {"N": str(after.started_at_ms)},
            }
        range_condition = None
        if where.started_from_ms is not None and where.started_before_ms is not None:
            range_condition = model.started_at_ms.between(where.started_from_ms, where.started_before_ms - 1)
        elif where.started_from_ms is not None:
            range_condition = model.started_at_ms >= where.started_from_ms
        elif where.started_before_ms is not None:
            range_condition = model.started_at_ms < where.started_before_ms
        conditions = [model.status == status.value] if status is not None else []
        conditions += [model.state_machine == state_machine] if state_machine else []
        condition = None
        for part in conditions:
            condition = part if condition is None else condition & part
        try:
            found = list(
                model.by_reference.query(
                    reference,
                    range_condition,
                    scan_index_forward=False,
                    filter_condition=condition,
                    limit=limit + 1,
                    page_size=min(limit + 1, page_items_max),
                    last_evaluated_key=start_key,
                )
            )
            executions = self._whole([item.execution_id for item in found[:limit]])
        except (PynamoDBException, BotoCoreError) as error:
            raise ExecutionStoreError("executions not listed") from error
        still = tuple(e for e in executions if (status is None or e.status is status) and where.admits(e))
        has_more = len(found) > limit
        last = found[limit - 1].execution_id if has_more and limit > 0 else None
        return ExecutionPage(still, has_more, last)

    def _whole(self, execution_ids: builtins.list[str]) -> builtins.list[Execution]:
        """The executions (strongly consistent reads), in the order asked for; gone ones left out."""
        if not execution_ids:
            return []
        read = {
            item.execution_id: item
            for item in self.execution_model.batch_get(execution_ids, consistent_read=True)
        }
        return [_execution(read[i]) for i in execution_ids if i in read and read[i].status is not None]

    def _newest_in_shards(
        self, status: Status, count: int, after: tuple[str, str] | None, state_machine: str | None
    ) -> builtins.list[tuple[str, str]]:
        """The first `count` (next_run_at, execution_id) of the status, newest first across its shards,
        strictly after `after` in that order: each shard is read newest first until it has given
        `count` or run out, and the answers are merged."""
        model = self.execution_model
        condition = model.state_machine == state_machine if state_machine else None
        merged: set[tuple[str, str]] = set()
        for shard in _shards(status):
            items = model.by_status.query(
                shard,
                model.next_run_at <= after[0] if after else None,
                scan_index_forward=False,
                filter_condition=condition,
                page_size=min(count, page_items_max),
            )
            taken: builtins.list[tuple[str, str]] = []
            for item in items:
                position = (item.next_run_at or "", item.execution_id)
                if after is not None and position >= after:
                    continue  # the same moment as the cursor, at or before it in the merged order
                # The index orders a shard by next_run_at only: past `count`, ties with the last one
                # taken still come, so the merged order by (next_run_at, id) misses none of them.
                if len(taken) >= count and position[0] != taken[-1][0]:
                    break
                taken.append(position)
            merged.update(taken)
        return sorted(merged, reverse=True)[:count]

    def history(self, execution_id: str, after_seq: int, limit: int) -> builtins.list[HistoryEvent]:
        model = self.history_model
        # An item is keyed by its first event: the one holding after_seq + 1 may start before it.
        first_key = max(after_seq - history_events_per_save_max, 0)
        found = [e for e in self._tail_events(execution_id) if e.seq > after_seq]
        from_items = 0
        try:
            items = model.query(
                execution_id, model.seq > first_key, consistent_read=True, page_size=page_items_max
            )
            for item in items:
                events = [e for e in _item_events(item) if e.seq > after_seq]
                found += events
                from_items += len(events)
                # Items come in seq order: once they alone fill the page, later ones cannot be in it.
                if from_items >= limit:
                    break
        except (PynamoDBException, BotoCoreError) as error:
            raise ExecutionStoreError("history not read") from error
        return sorted(found, key=lambda e: e.seq)[:limit]

    def _tail_events(self, execution_id: str) -> builtins.list[HistoryEvent]:
        item = consistent_get(self.execution_model, (execution_id,),
                              lambda _: ExecutionStoreError("history not read"),
                              attributes_to_get=["tail"], failures=_READ_FAILURES)
        return [] if item is None else [_event(_loads(row)) for row in item.tail or ()]

    def next_sweep_ms(self) -> int | None:
        item = consistent_get(self.execution_model, (SWEEPER_ITEM_ID,),
                              lambda _: ExecutionStoreError("sweeper state not read"),
                              failures=_READ_FAILURES)
        return None if item is None or item.next_sweep_ms is None else int(item.next_sweep_ms)


def _shards(status: Status) -> builtins.list[str]:
    return [f"{status.value}#{shard}" for shard in range(STATUS_SHARDS)]


def _history_chunks(events: Sequence[HistoryEvent], rows: Sequence[str]) -> list[tuple[int, list[str]]]:
    """A checkpoint's events (and their JSON rows) as history items, each keyed by its first event's
    seq: as few as fit under the item size limit."""
    chunks: list[tuple[int, list[str]]] = []
    size = 0
    for event, row in zip(events, rows, strict=True):
        row_bytes = len(row.encode())
        if not chunks or size + row_bytes > history_item_bytes_max:
            chunks.append((event.seq, []))
            size = 0
        chunks[-1][1].append(row)
        size += row_bytes
    return chunks


def _rows(events: Sequence[HistoryEvent]) -> list[str]:
    """Events as the tail keeps them: one JSON row each."""
    return [_json([e.seq, e.type, e.at_ms, e.state, e.detail]) for e in events]


def _bytes(rows: Sequence[str]) -> int:
    return sum(len(row.encode()) for row in rows)


def _event(row: list[Any]) -> HistoryEvent:
    seq, kind, at_ms, state, detail = row
    return HistoryEvent(int(seq), kind, int(at_ms), state, detail or {})


def _item_events(item: Any) -> list[HistoryEvent]:
    if item.events is not None:
        return [_event(row) for row in _loads(item.events)]
    detail = _loads(item.detail or "{}")
    return [HistoryEvent(int(item.seq), item.type, int(item.at_ms), item.state, detail)]


def _changed_attributes(execution: Execution, previous: Execution | None) -> dict[str, Any]:
    """What a save must write: every attribute, or only those that differ from the version it
    replaces (the save's version condition guarantees the stored item is exactly that version)."""
    attributes = _attributes(execution)
    if previous is None or previous.version != execution.version - 1:
        return attributes
    before = _attributes(previous)
    return {name: value for name, value in attributes.items() if before[name] != value}


def _present(attributes: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in attributes.items() if value is not None}


class _Refused(Exception):
    """A checkpoint transaction refused by contention or throttling: nothing was written."""
