"""Handles a handler uses to write the platform's records inside its own transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from finfaas.platform.idempotency import (
    IdempotencyGuard,
    IdempotencyRecord,
    RequestScope,
    StoredResponse,
)


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
