"""The orchestrator function's HTTP shapes: execution and history views, start and callback bodies,
list queries, and the error table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from finfaas.platform.cursors import cursor_chars_max
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.workflow.engine import (
    ExecutionAlreadyExists,
    ExecutionBusy,
    ExecutionNotFound,
    ExecutionNotRedrivable,
    ExecutionNotRunning,
    InvalidExecutionInput,
    InvalidExecutionName,
    InvalidTaskToken,
    StateMachineNotFound,
    TaskNotFound,
    TaskTokenUsed,
    stop_reason_chars_max,
)
from finfaas.workflow.model import REFERENCE_PATTERN, Execution, HistoryEvent, Status
from finfaas.workflow.store import ExecutionFilter, ExecutionStoreError

task_token_chars_max = 2048
error_name_chars_max = 256
cause_chars_max = 32 * 1024
list_limit_max = 100
history_limit_max = 1000
# History is paged by event seq, a public position (not a cursor): any value up to this is harmless.
history_seq_max = 10**9
ERRORS = {
    StateMachineNotFound: ErrorSpec(404, StateMachineNotFound.code, "State machine not found"),
    InvalidExecutionName: ErrorSpec(422, InvalidExecutionName.code, "Invalid execution name"),
    InvalidExecutionInput: ErrorSpec(422, InvalidExecutionInput.code, "Invalid execution input"),
    ExecutionAlreadyExists: ErrorSpec(409, ExecutionAlreadyExists.code, "Execution already exists"),
    InvalidTaskToken: ErrorSpec(400, InvalidTaskToken.code, "Invalid task token"),
    TaskNotFound: ErrorSpec(404, TaskNotFound.code, "Task not found"),
    TaskTokenUsed: ErrorSpec(409, TaskTokenUsed.code, "Task token already used"),
    ExecutionBusy: ErrorSpec(503, ExecutionBusy.code, "Execution busy"),
    ExecutionNotFound: ErrorSpec(404, ExecutionNotFound.code, "Execution not found"),
    ExecutionNotRedrivable: ErrorSpec(409, ExecutionNotRedrivable.code, "Execution not redrivable"),
    ExecutionNotRunning: ErrorSpec(409, ExecutionNotRunning.code, "Execution not running"),
    ExecutionStoreError: ErrorSpec(503, "execution_store_unavailable", "Execution store unavailable"),
}


# --- views ------------------------------------------------------------------------------------


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ExecutionView(BaseModel):
    execution_id: str
    state_machine: str
    name: str
    status: Status
    current_state: str | None
    phase: str | None
    input: Any
    output: Any = None
    error: str | None = None
    cause: str | None = None
    started_at: str
    stopped_at: str | None = None
    next_run_at: str | None = None
    history_events: int
    version: int
    redrive_count: int = 0
    stop_reason: str | None = None
    reference: str | None = None


def execution_view(execution: Execution) -> ExecutionView:
    running = execution.status is Status.RUNNING
    return ExecutionView(
        execution_id=execution.execution_id,
        state_machine=execution.state_machine,
        name=execution.name,
        status=execution.status,
        current_state=execution.state if running else None,
        phase=execution.phase.value if running else None,
        input=execution.input,
        output=execution.output,
        error=execution.error,
        cause=execution.cause,
        started_at=_iso(execution.started_at_ms),
        stopped_at=None if running else _iso(execution.next_run_at_ms),
        next_run_at=_iso(execution.next_run_at_ms) if running else None,
        history_events=execution.history_seq,
        version=execution.version,
        redrive_count=execution.redrive_count,
        stop_reason=execution.stop_reason,
        reference=execution.reference,
    )


class ExecutionList(BaseModel):
    data: list[ExecutionView]
    has_more: bool
    next_cursor: str | None = Field(default=None, description="pass as starting_after for the next page")


class EventView(BaseModel):
    seq: int
    type: str
    at: str
    state: str | None
    detail: dict[str, Any]


def event_view(event: HistoryEvent) -> EventView:
    return EventView(
        seq=event.seq, type=event.type, at=_iso(event.at_ms), state=event.state, detail=event.detail
    )


class EventList(BaseModel):
    data: list[EventView]
    has_more: bool


# --- executions -------------------------------------------------------------------------------


class StartBody(StrictModel):
    state_machine: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=80)
    input: Any = Field(default_factory=dict)
    reference: str | None = Field(default=None, pattern=REFERENCE_PATTERN.pattern,
                                  description="the business object it works on, e.g. a transfer id")


class ListQuery(StrictModel):
    status: Status | None = Field(default=None, description="default RUNNING; with a reference: any")
    state_machine: str | None = Field(default=None, max_length=63)
    reference: str | None = Field(default=None, pattern=REFERENCE_PATTERN.pattern)
    started_after: datetime | None = Field(default=None, description="RFC 3339, inclusive")
    started_before: datetime | None = Field(default=None, description="RFC 3339, exclusive")
    limit: int = Field(default=20, ge=1, le=list_limit_max)
    starting_after: str | None = Field(default=None, min_length=1, max_length=cursor_chars_max)

    @model_validator(mode="after")
    def _timezone_aware(self) -> ListQuery:
        for moment in (self.started_after, self.started_before):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("started_after and started_before need a time zone (e.g. Z)")
        return self

    @field_validator("started_before")
    @classmethod
    def _after_the_start(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        # An empty range is a mistake to name, not a query to send (DynamoDB refuses BETWEEN high, low).
        after = info.data.get("started_after")
        if value is not None and after is not None and value.tzinfo and after.tzinfo and value <= after:
            raise ValueError("must be later than started_after")
        return value

    def listed_status(self) -> Status | None:
        """The status to list: as asked, else RUNNING, or any for a reference."""
        if self.status is not None or self.reference is not None:
            return self.status
        return Status.RUNNING

    def where(self) -> ExecutionFilter:
        return ExecutionFilter(self.reference, _ms(self.started_after), _ms(self.started_before))


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


class HistoryQuery(StrictModel):
    limit: int = Field(default=100, ge=1, le=history_limit_max)
    starting_after: int = Field(default=0, ge=0, le=history_seq_max)


class StopBody(StrictModel):
    reason: str = Field(min_length=1, max_length=stop_reason_chars_max)


# --- callbacks --------------------------------------------------------------------------------


class TaskSuccessBody(StrictModel):
    task_token: str = Field(min_length=1, max_length=task_token_chars_max)
    output: Any = None


class TaskFailureBody(StrictModel):
    task_token: str = Field(min_length=1, max_length=task_token_chars_max)
    error: str = Field(default="States.TaskFailed", min_length=1, max_length=error_name_chars_max)
    cause: str = Field(default="", max_length=cause_chars_max)


class TaskHeartbeatBody(StrictModel):
    task_token: str = Field(min_length=1, max_length=task_token_chars_max)


class CallbackAnswer(BaseModel):
    status: str
