"""In-memory queues for the dead-letter use cases; never shipped in a function image."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

from finfaas.services.dead_letters.errors import QueuesUnavailable
from finfaas.services.dead_letters.model import DeadLetter, QueueDepth, Taken


@dataclass
class _Held:
    letter: DeadLetter
    hidden: bool = False
    receipt: str = ""


class InMemoryQueues:
    """The Queues port over lists, in send order; a hidden message stays hidden until deleted or released.

    `fail_deletes` makes every delete raise after nothing was deleted (a crash between send and delete);
    `refuse_sends` makes the queue named refuse every message sent to it."""

    def __init__(self) -> None:
        self.queues: dict[str, list[_Held]] = {}
        self.fail_deletes = False
        self.refuse_sends: set[str] = set()
        self._ids = itertools.count(1)

    def put(self, queue: str, body: str, attributes: dict[str, object] | None = None,
            sent_at_ms: int = 0) -> str:
        message_id = f"m-{next(self._ids)}"
        letter = DeadLetter(message_id, body, dict(attributes or {}), sent_at_ms)
        self.queues.setdefault(queue, []).append(_Held(letter))
        return message_id

    def bodies(self, queue: str) -> list[str]:
        return [held.letter.body for held in self.queues.get(queue, [])]

    def depth(self, queue: str, peek_oldest: bool) -> QueueDepth:
        held = self.queues.get(queue, [])
        visible = [h for h in held if not h.hidden]
        oldest = None
        if peek_oldest and visible:
            oldest = 0
        return QueueDepth(len(visible), len(held) - len(visible), 0, oldest)

    def peek(self, queue: str, count_max: int) -> list[DeadLetter]:
        visible = [h for h in self.queues.get(queue, []) if not h.hidden]
        return [replace(h.letter, receive_count=h.letter.receive_count + 1) for h in visible[:count_max]]

    def take(self, queue: str, count_max: int, hidden_seconds: int) -> list[Taken]:
        taken = []
        for held in [h for h in self.queues.get(queue, []) if not h.hidden][:count_max]:
            held.hidden, held.receipt = True, f"r-{next(self._ids)}"
            taken.append(Taken(held.letter, held.receipt))
        return taken

    def send(self, queue: str, letters: Sequence[DeadLetter]) -> list[str]:
        if queue in self.refuse_sends:
            return []
        for letter in letters:
            self.put(queue, letter.body, letter.attributes, letter.sent_at_ms)
        return [letter.message_id for letter in letters]

    def delete(self, queue: str, receipts: Sequence[str]) -> None:
        if self.fail_deletes:
            raise QueuesUnavailable("delete_message_batch: EndpointConnectionError")
        self.queues[queue] = [h for h in self.queues.get(queue, []) if h.receipt not in set(receipts)]

    def release(self, queue: str, receipts: Sequence[str]) -> None:
        for held in self.queues.get(queue, []):
            if held.receipt in set(receipts):
                held.hidden, held.receipt = False, ""
