"""Events on the embedded emulators, each test module on its own outbox and audit tables and queues.

The ledger writes its events to a private outbox table here (the stage's own accounts, transfers
and entries tables), so a relay under test publishes exactly this module's events and no other
test's; queues are private too.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from threading import Lock

import pytest

RECEIVE_ROUNDS_MAX = 60
RECEIVE_BATCH_MAX = 10


class StepClock:
    """Real time, strictly increasing, and movable forward (holds expire without waiting)."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._offset = timedelta(0)
        self._last = datetime(1970, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        with self._lock:
            self._last = max(datetime.now(UTC) + self._offset, self._last + timedelta(microseconds=1))
            return self._last

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += timedelta(seconds=seconds)


class TestQueue:
    """A private SQS queue in moto: its name, URL and ARN, and a reader that drains it."""

    def __init__(self, sqs, name: str) -> None:
        self.sqs = sqs
        self.name = name
        self.url = sqs.create_queue(QueueName=name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]
        self.arn = attributes["QueueArn"]

    def receive_all(self, expected: int | None = None) -> list[dict]:
        """Every message now visible (deleted as read), as the connector receives them."""
        messages: list[dict] = []
        for _ in range(RECEIVE_ROUNDS_MAX):
            batch = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=RECEIVE_BATCH_MAX, WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["ApproximateReceiveCount", "AWSTraceHeader", "SentTimestamp"],
            ).get("Messages", [])
            if not batch and (expected is None or len(messages) >= expected):
                break
            for message in batch:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
            messages += batch
        return messages


@pytest.fixture(scope="module")
def sqs(embedded_aws):
    from finfaas_dev.awsclients import client

    return client("sqs")


def _private_table(stage: str, purpose: str, hash_key: tuple[str, str], range_key: tuple[str, str]) -> str:
    """A fresh pay-per-request table keyed (hash, range), each key given as (name, attribute type)."""
    from finfaas_dev.awsclients import client

    name = f"finfaas-{stage}-{purpose}-{uuid.uuid4().hex[:8]}"
    keys = ((hash_key, "HASH"), (range_key, "RANGE"))
    dynamodb = client("dynamodb")
    definitions = [{"AttributeName": n, "AttributeType": t} for (n, t), _ in keys]
    dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", AttributeDefinitions=definitions,
                          KeySchema=[{"AttributeName": n, "KeyType": kind} for (n, _), kind in keys])
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    return name


@pytest.fixture(scope="module")
def private_outbox(embedded_aws) -> str:
    """A fresh table with the outbox's key schema; its name."""
    return _private_table(embedded_aws.stage, "outbox", ("partition", "S"), ("event_key", "S"))


@pytest.fixture(scope="module")
def private_audit(embedded_aws) -> str:
    """A fresh table with the audit log's key schema; its name."""
    return _private_table(embedded_aws.stage, "audit", ("chain", "S"), ("seq", "N"))


@pytest.fixture(scope="module")
def ledger(embedded_aws, private_outbox):
    """The ledger store on the stage's tables, writing its events to the private outbox."""
    from finfaas.store.ledger_store import DynamoLedgerStore
    from finfaas.store.tables import LedgerTables

    stage_tables = LedgerTables.for_stage(embedded_aws.stage)
    tables = LedgerTables(stage_tables.accounts, stage_tables.transfers, stage_tables.entries, private_outbox)
    return DynamoLedgerStore(tables, os.environ["AWS_DEFAULT_REGION"])


@pytest.fixture
def new_queue(sqs):
    return lambda purpose: TestQueue(sqs, f"finfaas-test-{purpose}-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def ids():
    prefix = uuid.uuid4().hex[:8]
    return lambda name: f"{prefix}-{name}"


