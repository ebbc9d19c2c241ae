"""Dead-letter use cases: each queue's figures, a dead-letter queue's messages (redacted), and redrive.

Redrive sends a letter to its source queue first and deletes it from the dead-letter queue after: a crash
between the two leaves the letter in both queues, so a redrive can duplicate a message, never lose one
(every consumer of the suite deduplicates). SQS's StartMessageMoveTask would move whole queues, but the
embedded emulator (moto 5) has no such action, and it cannot move one chosen message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from finfaas.platform.logging import redact
from finfaas.services.dead_letters.errors import DeadLetterNotFound, UnknownQueue
from finfaas.services.dead_letters.model import DEAD_LETTER_QUEUES, DeadLetter, RedriveOutcome, Taken
from finfaas.services.dead_letters.ports import Queues

letters_shown_max = 50
# SQS hands out at most ten messages per receive.
batch_messages_max = 10
# One redrive request moves at most this many letters, within this time; the answer says if more are left.
redrive_messages_max = 100
redrive_seconds_max = 10.0
# Messages looked through for one chosen letter, within the request's time bound, before it is declared
# absent.
scan_messages_max = 200
# How long a letter being moved stays hidden: longer than a send and a delete take, so two operators'
# redrives do not both move it (if they did, consumers would drop the duplicate).
moving_hidden_seconds = 60


class DeadLetterService:
    """The suite's queues by logical name; only those with a dead-letter queue are known."""

    def __init__(self, queues: Queues, clock: Callable[[], float] = time.monotonic,
                 messages_max: int = redrive_messages_max) -> None:
        self._queues = queues
        self._clock = clock
        self._messages_max = messages_max

    def overview(self) -> list[dict[str, Any]]:
        """Each source queue's depth and its dead-letter queue's depth and oldest letter's age.

        Only a dead-letter queue is peeked for its oldest message: a peek counts as a receive, and on a
        source queue enough of them would send a live message to its dead-letter queue."""
        answer = []
        for queue, dead_letter_queue in sorted(DEAD_LETTER_QUEUES.items()):
            depth = self._queues.depth(queue, peek_oldest=False)
            dead_letters = self._queues.depth(dead_letter_queue, peek_oldest=True)
            answer.append({"queue": queue, "depth": _depth_view(depth),
                           "dead_letter_queue": dead_letter_queue, "dead_letters": _depth_view(dead_letters)})
        return answer

    def letters(self, queue: str, limit: int = letters_shown_max) -> dict[str, Any]:
        """Up to `limit` letters of the queue's dead-letter queue, oldest first, personal data redacted."""
        dead_letter_queue = _dead_letter_queue(queue)
        found = self._queues.peek(dead_letter_queue, max(1, min(limit, letters_shown_max)))
        found.sort(key=lambda letter: (letter.sent_at_ms, letter.message_id))
        return {"queue": queue, "dead_letter_queue": dead_letter_queue,
                "data": [letter_view(letter) for letter in found]}

    def redrive(self, queue: str, message_id: str | None = None) -> RedriveOutcome:
        """Move one letter (by id), or all of them up to the request's bound, back to the source queue."""
        dead_letter_queue = _dead_letter_queue(queue)
        if message_id is not None:
            return self._redrive_one(queue, dead_letter_queue, message_id)
        outcome = RedriveOutcome(queue)
        deadline = self._clock() + redrive_seconds_max
        while len(outcome.moved) < self._messages_max:
            if self._clock() >= deadline:
                break
            wanted = min(batch_messages_max, self._messages_max - len(outcome.moved))
            taken = self._queues.take(dead_letter_queue, wanted, moving_hidden_seconds)
            if not taken:
                return outcome
            self._move(queue, dead_letter_queue, taken, outcome)
            if outcome.failed:  # SQS refuses sends now: stop rather than spin on the same letters
                break
        outcome.has_more = True
        return outcome

    def _redrive_one(self, queue: str, dead_letter_queue: str, message_id: str) -> RedriveOutcome:
        outcome = RedriveOutcome(queue)
        passed_over: list[str] = []
        seen: set[str] = set()
        deadline = self._clock() + redrive_seconds_max
        try:
            while len(seen) < scan_messages_max and self._clock() < deadline:
                taken = self._queues.take(dead_letter_queue, batch_messages_max, moving_hidden_seconds)
                if not taken:
                    break
                wanted = [item for item in taken if item.letter.message_id == message_id]
                passed_over += [item.receipt for item in taken if item.letter.message_id != message_id]
                if wanted:
                    self._move(queue, dead_letter_queue, wanted[:1], outcome)
                    return outcome
                if all(item.letter.message_id in seen for item in taken):
                    break
                seen.update(item.letter.message_id for item in taken)
        finally:
            if passed_over:
                self._queues.release(dead_letter_queue, passed_over)
        raise DeadLetterNotFound(f"No letter {message_id} in the dead-letter queue of {queue}.",
                                 errors=(("message_id", "not in the dead-letter queue"),))

    def _move(self, queue: str, dead_letter_queue: str, taken: list[Taken], outcome: RedriveOutcome) -> None:
        """Send first, delete after: a crash in between duplicates a letter, never loses one."""
        accepted = set(self._queues.send(queue, [item.letter for item in taken]))
        moved = [item for item in taken if item.letter.message_id in accepted]
        if moved:
            self._queues.delete(dead_letter_queue, [item.receipt for item in moved])
        outcome.moved += [item.letter.message_id for item in moved]
        refused = [item for item in taken if item.letter.message_id not in accepted]
        outcome.failed += [item.letter.message_id for item in refused]
        if refused:
            self._queues.release(dead_letter_queue, [item.receipt for item in refused])


def _dead_letter_queue(queue: str) -> str:
    found = DEAD_LETTER_QUEUES.get(queue)
    if found is None:
        raise UnknownQueue(f"{queue!r} is not a queue with a dead-letter queue; "
                           f"the queues are {', '.join(sorted(DEAD_LETTER_QUEUES))}.",
                           errors=(("queue", "not a queue of the suite with a dead-letter queue"),))
    return found


def _depth_view(depth: Any) -> dict[str, Any]:
    return {"visible": depth.visible, "in_flight": depth.in_flight, "delayed": depth.delayed,
            "oldest_age_seconds": depth.oldest_age_seconds}


def letter_view(letter: DeadLetter) -> dict[str, Any]:
    """What an operator sees of a letter: the body as JSON where it is JSON, sensitive fields redacted."""
    try:
        body: Any = json.loads(letter.body)
    except ValueError:
        body = letter.body
    attributes = {name: value.get("StringValue", value.get("DataType")) if isinstance(value, dict) else value
                  for name, value in letter.attributes.items()}
    return {"message_id": letter.message_id, "sent_at_ms": letter.sent_at_ms,
            "receive_count": letter.receive_count, "attributes": redact(attributes), "body": redact(body)}
