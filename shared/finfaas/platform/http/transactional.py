"""Handles a handler uses to write the platform's records inside its own transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from finfaas.platform.idempotency import (
    CompletionRecords,
    IdempotencyGuard,
    IdempotencyRecord,
    RequestScope,
    StoredResponse,
)

_Outcome = TypeVar("_Outcome")


class IdempotentReplay(Exception):
    """Raised inside an in_transaction handler: answer with this stored response instead."""

    def __init__(self, response: StoredResponse) -> None:
        super().__init__(f"replay of a stored {response.status_code} response")
        self.response = response


@dataclass
class TransactionalIdempotency:
    """An in_transaction route's Idempotency-Key: complete it in the same transaction as the change.

    The handler (or the service it calls) puts `completion_record(response)` into its transaction,
    calls `mark_recorded()` once that transaction commits, and calls `conflict(existing)` when the
    record's own condition failed (raises the replay, 409 or 422; returns if the key is free, so
    the transaction may be retried).
    """

    guard: IdempotencyGuard
    scope: RequestScope
    recorded: bool = False

    def completion_record(self, response: StoredResponse) -> IdempotencyRecord:
        return self.guard.completion_record(self.scope, response)

    def conflict(self, existing: IdempotencyRecord | None) -> None:
        answer = self.guard.answer_for(self.scope, existing)
        if answer is not None:
            raise IdempotentReplay(answer)

    def mark_recorded(self) -> None:
        self.recorded = True


@dataclass
class OutboxAudit:
    """An audit="outbox" route's audit record, to be written inside the handler's own transaction.

    `facts()` is the record's content as the request stands when called (outcome succeeded, since
    only a committed transaction carries it); `mark_recorded()` after that transaction commits
    tells the platform not to append it again.
    """

    build_facts: Callable[[], str] = field(repr=False)
    recorded: bool = False

    def facts(self) -> str:
        return self.build_facts()

    def mark_recorded(self) -> None:
        self.recorded = True


class KeyInTransaction(Generic[_Outcome]):
    """An in_transaction route's Idempotency-Key completion record, holding the answer `render` makes of
    the operation's outcome, and (audit="outbox") the request's audit facts, both put in the operation's
    own transaction: an operation that committed always replays and is audited, one that did not leaves
    neither. It serves as the ledger store's TransactionExtra (or one of an extra's more puts)."""

    def __init__(self, key: TransactionalIdempotency, records: CompletionRecords,
                 render: Callable[[_Outcome], StoredResponse], audit: OutboxAudit | None = None) -> None:
        self._key = key
        self._records = records
        self._render = render
        self._audit = audit

    def outbox_audit(self) -> str | None:
        """The audit facts (JSON text) for the transaction's outbox item; None when none ride along."""
        return self._audit.facts() if self._audit is not None else None

    def put_for(self, outcome: _Outcome) -> tuple[Any, Any]:
        return self._records.completion_put(self._key.completion_record(self._render(outcome)))

    def conflicted(self, raw_item: dict[str, Any] | None) -> None:
        """The record's condition failed: raise the replay (or 409/422); return when the key is free."""
        self._key.conflict(self._records.record_from_raw(raw_item) if raw_item else None)

    def committed(self) -> None:
        self._key.mark_recorded()
        if self._audit is not None:
            self._audit.mark_recorded()
