"""The suite's queues that have a dead-letter queue, and what an operator sees of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Logical names (finfaas-<stage>-<logical>) of infra/template.yaml's queues with a RedrivePolicy and their
# dead-letter queues; one constant each, so the function's IAM policy is derived from them.
ORCHESTRATOR_QUEUE = "orchestrator"
ORCHESTRATOR_DLQ_QUEUE = "orchestrator-dlq"
EVENTS_QUEUE = "events"
EVENTS_DLQ_QUEUE = "events-dlq"
WEBHOOKS_QUEUE = "webhooks"
WEBHOOKS_DLQ_QUEUE = "webhooks-dlq"
RAIL_QUEUE = "rail"
RAIL_DLQ_QUEUE = "rail-dlq"
REVIEWS_QUEUE = "reviews"
REVIEWS_DLQ_QUEUE = "reviews-dlq"
LOAN_REVIEWS_QUEUE = "loan-reviews"
LOAN_REVIEWS_DLQ_QUEUE = "loan-reviews-dlq"
# Source queue -> its dead-letter queue, as the template's RedrivePolicy sets them.
DEAD_LETTER_QUEUES = {
    ORCHESTRATOR_QUEUE: ORCHESTRATOR_DLQ_QUEUE,
    EVENTS_QUEUE: EVENTS_DLQ_QUEUE,
    WEBHOOKS_QUEUE: WEBHOOKS_DLQ_QUEUE,
    RAIL_QUEUE: RAIL_DLQ_QUEUE,
    REVIEWS_QUEUE: REVIEWS_DLQ_QUEUE,
    LOAN_REVIEWS_QUEUE: LOAN_REVIEWS_DLQ_QUEUE,
}


@dataclass(frozen=True)
class QueueDepth:
    """SQS's approximate counts of one queue, and its oldest message's age when it can be read safely."""

    visible: int
    in_flight: int
    delayed: int
    oldest_age_seconds: int | None = None


@dataclass(frozen=True)
class DeadLetter:
    """One message of a dead-letter queue as SQS holds it: body and attributes unredacted."""

    message_id: str
    body: str
    attributes: dict[str, Any] = field(default_factory=dict)
    sent_at_ms: int = 0
    receive_count: int = 0


@dataclass(frozen=True)
class Taken:
    """A dead letter received for moving: hidden from others until `receipt` is deleted or released."""

    letter: DeadLetter
    receipt: str


@dataclass
class RedriveOutcome:
    """What one redrive moved back to the source queue, and whether letters are left behind."""

    queue: str
    moved: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    has_more: bool = False
