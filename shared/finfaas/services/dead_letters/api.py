"""The dead-letter routes' bodies and error table (served by the relay function)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.services.dead_letters.errors import DeadLetterNotFound, QueuesUnavailable, UnknownQueue
from finfaas.services.dead_letters.model import RedriveOutcome
from finfaas.services.dead_letters.service import letters_shown_max

# SQS message ids are UUIDs; a little room for other queue services' ids, in the audit target's alphabet.
message_id_chars_max = 100
MESSAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"

ERRORS = {
    UnknownQueue: ErrorSpec(404, "queue", "No such queue"),
    DeadLetterNotFound: ErrorSpec(404, "message_id", "No such dead letter"),
    QueuesUnavailable: ErrorSpec(503, "queues_unavailable", "Queues unavailable"),
}


class LettersQuery(StrictModel):
    limit: int = Field(default=letters_shown_max, ge=1, le=letters_shown_max)


class RedriveBody(StrictModel):
    """One letter by its id, or every letter (up to one request's bound) when message_id is absent."""

    message_id: str | None = Field(default=None, min_length=1, max_length=message_id_chars_max,
                                   pattern=MESSAGE_ID_PATTERN)


def redrive_view(outcome: RedriveOutcome) -> dict[str, Any]:
    return {"queue": outcome.queue, "moved": outcome.moved, "failed": outcome.failed,
            "has_more": outcome.has_more}
