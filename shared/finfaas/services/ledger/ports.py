"""What the ledger HTTP face needs from outside: the idempotency table inside its transaction."""

from __future__ import annotations

from typing import Any, Protocol

from finfaas.platform.idempotency import IdempotencyRecord


class CompletionRecords(Protocol):
    """The idempotency table as the ledger's transaction needs it (IdempotencyStore)."""

    def completion_put(self, record: IdempotencyRecord) -> tuple[Any, Any]: ...

    def record_from_raw(self, raw_item: dict[str, Any]) -> IdempotencyRecord: ...
