"""Executions and their history events: what the engine checkpoints and what the API shows."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from finfaas.workflow.wakeups import execution_id_chars_max

EXECUTION_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
EXECUTION_ID_SEPARATOR = ":"
IDEMPOTENCY_KEY_CHARS_MAX = 255
IDEMPOTENCY_KEY_SEPARATOR = "#"
# A business reference (a transfer id, later a payment or loan id): what operators look executions up by.
REFERENCE_PATTERN = re.compile(r"^[\x21-\x7e]{1,128}$")
# Far enough to sort after every real time, for waits nothing but a callback ends.
NEVER_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z


class Status(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"  # stopped by an operator where no Catch took the stop

    @property
    def terminal(self) -> bool:
        return self is not Status.RUNNING

    @property
    def redrivable(self) -> bool:
        """Whether a redrive may resume it (Step Functions: failed, timed out or aborted)."""
        return self in (Status.FAILED, Status.TIMED_OUT, Status.ABORTED)


class Phase(StrEnum):
    """Where a RUNNING execution is inside its current state."""

    READY = "READY"  # enter `state` with `state_input`; nothing of it has run yet
    TASK = "TASK"  # an attempt of the Task is in flight, held by a lease until lease_until_ms
    BACKOFF = "BACKOFF"  # the Task failed; its next attempt is due at next_run_at_ms
    WAIT = "WAIT"  # a Wait state sleeps until next_run_at_ms
    CALLBACK = "CALLBACK"  # a callback Task waits for its token until next_run_at_ms (timeout)
    RESULT = "RESULT"  # a callback reported; `task_result` is applied by the next drive
    # A Map's or Parallel's iterations run under a lease; their results are recorded apart from the
    # execution (workflow/iterations.py), so a drive that takes over resumes where they stopped.
    ITERATING = "ITERATING"
    DONE = "DONE"  # the execution has stopped


@dataclass(frozen=True)
class TaskResult:
    """A task's outcome as recorded: output on success, error and cause on failure."""

    ok: bool
    output: Any = None
    error: str | None = None
    cause: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "output": self.output}
        return {"ok": False, "error": self.error, "cause": self.cause}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TaskResult:
        if raw.get("ok"):
            return cls(True, raw.get("output"))
        return cls(False, error=raw.get("error"), cause=raw.get("cause"))

    def digest(self) -> str:
        """Equal for the same report: a repeated callback is recognised by it."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Execution:
    """One execution's durable state; every change bumps `version` (optimistic concurrency)."""

    execution_id: str
    state_machine: str
    name: str
    definition_digest: str
    input: Any
    status: Status
    version: int
    started_at_ms: int
    next_run_at_ms: int  # RUNNING: when it must be looked at again; stopped: when it stopped
    deadline_ms: int | None = None  # the definition's TimeoutSeconds
    state: str | None = None
    phase: Phase = Phase.READY
    state_input: Any = None
    state_entered_at_ms: int = 0
    visits: dict[str, int] = field(default_factory=dict)
    retries: tuple[int, ...] = ()  # attempts used per retrier in this visit
    attempt: int = 0  # attempts of the current Task in this visit
    attempt_started_at_ms: int = 0
    redrives: int = 0  # lease takeovers of the current attempt
    lease_owner: str | None = None
    lease_until_ms: int = 0
    task_token: str | None = None  # the secret part of the current callback Task's token
    task_result: TaskResult | None = None
    callback_reported: str | None = None  # "<token>:<digest>" of the last accepted callback
    last_heartbeat_ms: int = 0  # written by heartbeats only, outside the version
    output: Any = None
    error: str | None = None
    cause: str | None = None
    history_seq: int = 0  # seq of the last history event written
    redrive_count: int = 0  # operator redrives of a stopped execution (not lease takeovers)
    stop_reason: str | None = None  # an operator's stop that a Catch took: the compensation runs
    reference: str | None = None  # the business object it works on, given at start; never changes

    @property
    def visit(self) -> int:
        return self.visits.get(self.state or "", 0)

    def bumped(self, **changes: Any) -> Execution:
        """The next version with these changes."""
        return replace(self, version=self.version + 1, **changes)


@dataclass(frozen=True)
class HistoryEvent:
    """One line of an execution's history: what happened, when, in which state."""

    seq: int
    type: str
    at_ms: int
    state: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def execution_id(state_machine: str, name: str) -> str:
    return f"{state_machine}{EXECUTION_ID_SEPARATOR}{name}"


def is_execution_id(value: str) -> bool:
    """Whether value can name an execution; anything else is unknown without asking the store, which
    refuses an empty or oversized key as a failed call rather than a missing item."""
    return 0 < len(value) <= execution_id_chars_max and EXECUTION_ID_SEPARATOR in value


def idempotency_key(execution_id_: str, state: str, visit: int) -> str:
    """The Idempotency-Key of a Task: the same on every retry and redelivery of one visit."""
    readable = IDEMPOTENCY_KEY_SEPARATOR.join((execution_id_, state, str(visit)))
    printable = all(0x21 <= ord(char) <= 0x7E for char in readable)
    if printable and len(readable) <= IDEMPOTENCY_KEY_CHARS_MAX and IDEMPOTENCY_KEY_SEPARATOR not in state:
        return readable
    digest = hashlib.sha256(json.dumps([execution_id_, state, visit]).encode()).hexdigest()
    return f"wf:{digest}"


def input_digest(value: Any) -> str:
    """Equal for equal JSON values whatever their key order: same-name starts compare inputs by it."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
