"""Dead letters on the emulator's SQS: a poison message moved by the queue's RedrivePolicy, read without
being hidden, and redriven back to its queue with its attributes, one or all."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from finfaas.platform.config import resource_name
from finfaas.platform.logging import REDACTED
from finfaas.services.dead_letters.service import DeadLetterService
from finfaas.store.dead_letters_store import SqsDeadLetters

pytestmark = pytest.mark.emulator
RECEIVES_TO_DEAD_LETTER = 2


@pytest.fixture
def queues(sqs):
    """A private webhooks queue and its dead-letter queue, as the template pairs them."""
    prefix = f"finfaas-test-dl-{uuid.uuid4().hex[:8]}"
    dlq_url = sqs.create_queue(QueueName=f"{prefix}-webhooks-dlq")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]
    dlq_arn = attributes["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": RECEIVES_TO_DEAD_LETTER})
    url = sqs.create_queue(QueueName=f"{prefix}-webhooks",
                           Attributes={"RedrivePolicy": policy, "VisibilityTimeout": "0"})["QueueUrl"]
    # The other queues are the stage's own, as deployed from the template.
    adapter = SqsDeadLetters(sqs, queue_name=lambda logical: (
        f"{prefix}-{logical}" if logical.startswith("webhooks") else resource_name(logical)))
    return url, dlq_url, adapter


def poison(sqs, url: str, body: dict) -> None:
    """A message its consumer fails on until SQS moves it to the dead-letter queue."""
    attributes = {"ce-type": {"DataType": "String", "StringValue": "transfer.completed"}}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body), MessageAttributes=attributes)
    for _ in range(RECEIVES_TO_DEAD_LETTER + 1):
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0)


def test_dead_letters_are_read_redacted_and_redriven_one_then_all(sqs, queues):
    url, dlq_url, adapter = queues
    sent_at = time.time()
    for n in range(3):
        poison(sqs, url, {"event_id": f"ev_{n}", "data": {"national_id": "AB123456"}})
    service = DeadLetterService(adapter)

    # WHEN an operator reads them
    (overview,) = [q for q in service.overview() if q["queue"] == "webhooks"]
    letters = service.letters("webhooks")["data"]

    # THEN all three are listed, personal data redacted, the oldest's age from its SentTimestamp, and the
    # read hid none of them
    assert overview["depth"]["visible"] == 0 and overview["dead_letters"]["visible"] == 3
    assert 0 <= overview["dead_letters"]["oldest_age_seconds"] <= time.time() - sent_at + 1
    assert sorted(letter["body"]["event_id"] for letter in letters) == ["ev_0", "ev_1", "ev_2"]
    assert {letter["body"]["data"]["national_id"] for letter in letters} == {REDACTED}
    assert letters[0]["attributes"] == {"ce-type": "transfer.completed"}
    assert adapter.depth("webhooks-dlq", peek_oldest=False).visible == 3

    # WHEN one is redriven, then the rest
    one = service.redrive("webhooks", letters[1]["message_id"])
    assert one.moved == [letters[1]["message_id"]]
    back = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30,
                               MessageAttributeNames=["All"])["Messages"]
    rest = service.redrive("webhooks")

    # THEN each is back on its queue once, with its attributes, and the dead-letter queue is empty
    assert [json.loads(m["Body"])["event_id"] for m in back] == [letters[1]["body"]["event_id"]]
    assert back[0]["MessageAttributes"]["ce-type"]["StringValue"] == "transfer.completed"
    assert len(rest.moved) == 2 and not rest.has_more
    assert adapter.depth("webhooks-dlq", peek_oldest=False).visible == 0
    assert adapter.depth("webhooks", peek_oldest=False).visible == 2
