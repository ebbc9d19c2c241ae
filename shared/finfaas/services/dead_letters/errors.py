"""Why a dead-letter request is refused."""

from __future__ import annotations

from finfaas.platform.errors import Refusal


class UnknownQueue(Refusal):
    """The queue named is not one of the suite's queues with a dead-letter queue."""

    code = "queue"


class DeadLetterNotFound(Refusal):
    """No message of that id in the dead-letter queue (already redriven, or never there)."""

    code = "message_id"


class QueuesUnavailable(Exception):
    """SQS did not answer: nothing was moved, or only the messages the answer lists."""
