"""Workflow stores and engine against the embedded emulators; the store contract lives in tests/unit/workflow."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

# The contract is written once (tests/unit/workflow) and run here against DynamoDB Local.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "workflow"))


def _create_workflow_tables(client, executions: str, history: str) -> None:
    """The same key schemas as infra/template.yaml's ExecutionsTable and HistoryTable."""
    client.create_table(
        TableName=executions, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"}
                              for name in ("execution_id", "status", "next_run_at")],
        KeySchema=[{"AttributeName": "execution_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "by-status",
            "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"},
                          {"AttributeName": "next_run_at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }],
    )
    client.create_table(
        TableName=history, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "execution_id", "AttributeType": "S"},
                              {"AttributeName": "seq", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "execution_id", "KeyType": "HASH"},
                   {"AttributeName": "seq", "KeyType": "RANGE"}],
    )
    for table in (executions, history):
        client.get_waiter("table_exists").wait(TableName=table)


@pytest.fixture
def fresh_tables(embedded_aws):
    """A private pair of executions/history tables, so due() and list() see only this test's items."""
    from finfaas.local.awsclients import client

    dynamodb = client("dynamodb")
    suffix = uuid.uuid4().hex[:8]
    names = (f"finfaas-{embedded_aws.stage}-executions-{suffix}", f"finfaas-{embedded_aws.stage}-history-{suffix}")
    _create_workflow_tables(dynamodb, *names)
    yield names
    for table in names:
        dynamodb.delete_table(TableName=table)
