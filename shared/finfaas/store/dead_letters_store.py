"""The dead-letter port over SQS (botocore): counts, peeks, and the receive/send/delete of a redrive."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from finfaas.services.dead_letters.errors import QueuesUnavailable
from finfaas.services.dead_letters.model import DeadLetter, QueueDepth, Taken

# Counts as GetQueueAttributes names them.
DEPTH_ATTRIBUTES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed")
# SQS answers at most ten messages per receive and per batch call.
sqs_batch_messages_max = 10
# Receives of one peek: each answers a sample of the queue's hosts, so a few are needed to see most letters.
peek_receives_max = 5


class SqsDeadLetters:
    """Queues by logical name (finfaas-<stage>-<logical> unless `queue_name` says); URLs looked up once."""

    def __init__(self, client: Any = None, now: Callable[[], float] = time.time,
                 queue_name: Callable[[str], str] | None = None) -> None:
        self._client = client
        self._now = now
        self._queue_name = queue_name
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def depth(self, queue: str, peek_oldest: bool) -> QueueDepth:
        reply = self._call("get_queue_attributes", QueueUrl=self._url(queue),
                           AttributeNames=list(DEPTH_ATTRIBUTES))
        counts = [int(reply.get("Attributes", {}).get(name, 0)) for name in DEPTH_ATTRIBUTES]
        oldest = None
        if peek_oldest and counts[0] > 0:
            # SQS's own ApproximateAgeOfOldestMessage is a CloudWatch metric, not a queue attribute
            # (and the emulator has no CloudWatch): the age is read from the peeked letters' SentTimestamp.
            peeked = self.peek(queue, sqs_batch_messages_max)
            sent = [letter.sent_at_ms for letter in peeked if letter.sent_at_ms]
            if sent:
                oldest = max(0, int(self._now() - min(sent) / 1000))
        return QueueDepth(counts[0], counts[1], counts[2], oldest)

    def peek(self, queue: str, count_max: int) -> list[DeadLetter]:
        found: dict[str, DeadLetter] = {}
        for _ in range(peek_receives_max):
            wanted = min(sqs_batch_messages_max, count_max - len(found))
            if wanted <= 0:
                break
            received = self._receive(queue, wanted, hidden_seconds=0)
            fresh = [item.letter for item in received if item.letter.message_id not in found]
            if not fresh:
                break
            found.update((letter.message_id, letter) for letter in fresh)
        return list(found.values())[:count_max]

    def take(self, queue: str, count_max: int, hidden_seconds: int) -> list[Taken]:
        return self._receive(queue, min(count_max, sqs_batch_messages_max), hidden_seconds)

    def send(self, queue: str, letters: Sequence[DeadLetter]) -> list[str]:
        accepted: list[str] = []
        for start in range(0, len(letters), sqs_batch_messages_max):
            chunk = letters[start:start + sqs_batch_messages_max]
            entries = [{"Id": str(i), "MessageBody": letter.body, **_attributes_entry(letter)}
                       for i, letter in enumerate(chunk)]
            reply = self._call("send_message_batch", QueueUrl=self._url(queue), Entries=entries)
            accepted += [chunk[int(ok["Id"])].message_id for ok in reply.get("Successful", [])]
        return accepted

    def delete(self, queue: str, receipts: Sequence[str]) -> None:
        self._batch("delete_message_batch", queue, [{"ReceiptHandle": receipt} for receipt in receipts])

    def release(self, queue: str, receipts: Sequence[str]) -> None:
        self._batch("change_message_visibility_batch", queue,
                    [{"ReceiptHandle": receipt, "VisibilityTimeout": 0} for receipt in receipts])

    def _batch(self, operation: str, queue: str, entries: list[dict[str, Any]]) -> None:
        for start in range(0, len(entries), sqs_batch_messages_max):
            part = entries[start:start + sqs_batch_messages_max]
            chunk = [{"Id": str(i), **entry} for i, entry in enumerate(part)]
            self._call(operation, QueueUrl=self._url(queue), Entries=chunk)

    def _receive(self, queue: str, count: int, hidden_seconds: int) -> list[Taken]:
        reply = self._call("receive_message", QueueUrl=self._url(queue), MaxNumberOfMessages=count,
                           VisibilityTimeout=hidden_seconds, WaitTimeSeconds=0,
                           MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
                           MessageAttributeNames=["All"])
        taken = []
        for message in reply.get("Messages", []):
            system = message.get("Attributes", {})
            letter = DeadLetter(message["MessageId"], message.get("Body", ""),
                                dict(message.get("MessageAttributes") or {}),
                                int(system.get("SentTimestamp", 0)),
                                int(system.get("ApproximateReceiveCount", 0)))
            taken.append(Taken(letter, message["ReceiptHandle"]))
        return taken

    def _url(self, queue: str) -> str:
        from finfaas.platform.config import resource_name

        with self._lock:
            url = self._urls.get(queue)
        if url is None:
            name = (self._queue_name or resource_name)(queue)
            url = self._call("get_queue_url", QueueName=name)["QueueUrl"]
            with self._lock:
                self._urls[queue] = url
        return url

    def _call(self, operation: str, **params: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._client is None:
            from finfaas.platform.events import sqs_client

            self._client = sqs_client()
        try:
            return getattr(self._client, operation)(**params)
        except (BotoCoreError, ClientError) as error:
            raise QueuesUnavailable(f"SQS {operation}: {type(error).__name__}") from None


def _attributes_entry(letter: DeadLetter) -> dict[str, Any]:
    """The letter's message attributes as SendMessageBatch takes them (the answer's empty lists dropped)."""
    kept = {}
    for name, value in letter.attributes.items():
        if isinstance(value, dict) and value.get("DataType"):
            kept[name] = {key: item for key, item in value.items()
                          if key in ("DataType", "StringValue", "BinaryValue") and item is not None}
    return {"MessageAttributes": kept} if kept else {}
