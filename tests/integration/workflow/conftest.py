"""Workflow stores and engine on the embedded emulators; the store contract is in tests/unit/workflow."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from finfaas_dev.testing.platform import loopback_http_server
from support.http_testing import python3_http_handler


def _create_workflow_tables(client, executions: str, history: str) -> None:
    """The same key schemas as infra/template.yaml's ExecutionsTable and HistoryTable."""
    client.create_table(
        TableName=executions,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            *({"AttributeName": name, "AttributeType": "S"}
              for name in ("execution_id", "status_shard", "next_run_at", "reference")),
            {"AttributeName": "started_at_ms", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "execution_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-status-shards",
                "KeySchema": [
                    {"AttributeName": "status_shard", "KeyType": "HASH"},
                    {"AttributeName": "next_run_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["state_machine"]},
            },
            {
                "IndexName": "by-reference",
                "KeySchema": [
                    {"AttributeName": "reference", "KeyType": "HASH"},
                    {"AttributeName": "started_at_ms", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["status", "state_machine"]},
            },
        ],
    )
    client.create_table(
        TableName=history,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "execution_id", "AttributeType": "S"},
            {"AttributeName": "seq", "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": "execution_id", "KeyType": "HASH"},
            {"AttributeName": "seq", "KeyType": "RANGE"},
        ],
    )
    for table in (executions, history):
        client.get_waiter("table_exists").wait(TableName=table)


@pytest.fixture
def fresh_tables(embedded_aws):
    """A private pair of executions/history tables, so due() and list() see only this test's items."""
    from finfaas_dev.awsclients import client

    dynamodb = client("dynamodb")
    suffix = uuid.uuid4().hex[:8]
    names = (
        f"finfaas-{embedded_aws.stage}-executions-{suffix}",
        f"finfaas-{embedded_aws.stage}-history-{suffix}",
    )
    _create_workflow_tables(dynamodb, *names)
    yield names
    for table in names:
        dynamodb.delete_table(TableName=table)


DEMO_BANK_DIR = Path(__file__).resolve().parent / "demo_bank"


def load_demo_bank():
    """A fresh instance of the demo-bank handler (its state starts empty)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"demo_bank_{uuid.uuid4().hex}", DEMO_BANK_DIR / "handler.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class DemoBank:
    """demo-bank served on loopback: its base URL, its handler module, and a token it accepts."""

    url: str
    module: Any
    token: str


@pytest.fixture
def demo_bank(monkeypatch):
    """A fresh demo-bank (tests/integration/workflow/demo_bank) served on a free port, trusting `tokens`."""
    from finfaas_dev.testing.platform import TokenMinter

    monkeypatch.setenv("DEMO_BANK_SLOW", "slow:3")
    module = load_demo_bank()
    tokens = TokenMinter.generate()
    module.verifier.verifier = tokens.verifier()
    token = tokens.mint(sub="orchestrator", scopes=["transfers:write"], kind="client")
    with loopback_http_server(python3_http_handler("demo-bank", module.handle)) as url:
        yield DemoBank(url, module, token)


@pytest.fixture
def private_queue(embedded_aws):
    """An orchestrator queue of this test's own, so no other test's wake-ups reach its engine."""
    from finfaas_dev.awsclients import client

    sqs = client("sqs")
    url = sqs.create_queue(QueueName=f"finfaas-{embedded_aws.stage}-orchestrator-{uuid.uuid4().hex[:8]}")[
        "QueueUrl"
    ]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)
