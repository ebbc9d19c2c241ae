"""What the dead-letter use cases need from SQS (store/dead_letters_store.py; a fake in tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from finfaas.services.dead_letters.model import DeadLetter, QueueDepth, Taken


class Queues(Protocol):
    """Queues by logical name; QueuesUnavailable when SQS does not answer."""

    def depth(self, queue: str, peek_oldest: bool) -> QueueDepth:
        """The queue's counts; with peek_oldest, the oldest visible message's age from a peek."""
        ...

    def peek(self, queue: str, count_max: int) -> list[DeadLetter]:
        """Up to count_max visible messages, left visible (each peek counts as a receive)."""
        ...

    def take(self, queue: str, count_max: int, hidden_seconds: int) -> list[Taken]:
        """Up to count_max messages, hidden from other receivers for hidden_seconds."""
        ...

    def send(self, queue: str, letters: Sequence[DeadLetter]) -> list[str]:
        """Send each letter's body and attributes as a new message; the ids SQS accepted."""
        ...

    def delete(self, queue: str, receipts: Sequence[str]) -> None:
        """Delete taken messages."""
        ...

    def release(self, queue: str, receipts: Sequence[str]) -> None:
        """Make taken messages visible again at once."""
        ...
