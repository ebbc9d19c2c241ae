"""Why a dead-letter request is refused."""

from __future__ import annotations


class UnknownQueue(Exception):
    """The queue named is not one of the suite's queues with a dead-letter queue."""

    errors = (("queue", "not a queue of the suite with a dead-letter queue"),)


class DeadLetterNotFound(Exception):
    """No message of that id in the dead-letter queue (already redriven, or never there)."""

    errors = (("message_id", "not in the dead-letter queue"),)


class QueuesUnavailable(Exception):
    """SQS did not answer: nothing was moved, or only the messages the answer lists."""
