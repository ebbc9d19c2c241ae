"""Workflow stores and engine on the embedded emulators; the store contract is in tests/unit/workflow."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest


def _create_workflow_tables(client, executions: str, history: str) -> None:
    """The same key schemas as infra/template.yaml's ExecutionsTable and HistoryTable."""
    client.create_table(
        TableName=executions,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("execution_id", "status", "next_run_at")
        ],
        KeySchema=[{"AttributeName": "execution_id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-status-keys",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "next_run_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["state_machine"]},
            }
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


class _FunctionServer:
    """A python3-http handler behind a loopback HTTP server at /function/<name>/..., as the gateway
    routes it (tests reach it through the orchestrator's real HTTP task client)."""

    def __init__(self, name: str, handle) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        from finfaas_dev.testing.platform import Context, Event

        prefix = f"/function/{name}"

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                event = Event(
                    self.command,
                    parts.path.removeprefix(prefix) or "/",
                    body,
                    dict(self.headers),
                    {k: v for k, v in parse_qs(parts.query).items()},
                )
                result = handle(event, Context())
                payload = result["body"].encode()
                self.send_response(result["statusCode"])
                for header, value in result["headers"].items():
                    self.send_header(header, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

            def log_message(self, *args) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def demo_bank(monkeypatch):
    """A fresh demo-bank (tests/integration/workflow/demo_bank) served on a free port, trusting `tokens`."""
    from finfaas_dev.testing.platform import TokenMinter

    monkeypatch.setenv("DEMO_BANK_SLOW", "slow:3")
    module = load_demo_bank()
    tokens = TokenMinter.generate()
    module.verifier.verifier = tokens.verifier()
    server = _FunctionServer("demo-bank", module.handle)
    server.module = module
    server.token = tokens.mint(sub="orchestrator", scopes=["transfers:write"], kind="client")
    yield server
    server.stop()


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
