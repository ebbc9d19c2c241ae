"""Platform stores against DynamoDB Local; the store contracts live next to the fakes' unit tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

# The contracts are written once (tests/unit/platform) and run here against the real emulator.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "platform"))

TEMPORARY_JAR = Path("/tmp/scratch/package/emulator/DynamoDBLocal.jar")
STARTUP_SECONDS_MAX = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _create_tables(client, stage: str) -> None:
    specs = {
        "idempotency": [("idempotency_key", "S", "HASH")],
        "ratelimits": [("bucket", "S", "HASH")],
        "audit": [("chain", "S", "HASH"), ("seq", "N", "RANGE")],
    }
    for logical, keys in specs.items():
        client.create_table(
            TableName=f"finfaas-{stage}-{logical}",
            KeySchema=[{"AttributeName": name, "KeyType": kind} for name, _, kind in keys],
            AttributeDefinitions=[{"AttributeName": name, "AttributeType": typ} for name, typ, _ in keys],
            BillingMode="PAY_PER_REQUEST",
        )


@pytest.fixture(scope="session")
def dynamodb_local():
    port = _free_port()
    process = subprocess.Popen(
        ["java", f"-Djava.library.path={TEMPORARY_JAR.parent / 'DynamoDBLocal_lib'}", "-jar",
         str(TEMPORARY_JAR), "-inMemory", "-port", str(port), "-disableTelemetry"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.environ.update(
        AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{port}", AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", FINFAAS_STAGE="t" + os.urandom(4).hex(),
    )
    client = boto3.client("dynamodb")
    deadline = time.monotonic() + STARTUP_SECONDS_MAX
    while True:
        try:
            client.list_tables()
            break
        except Exception:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.2)
    _create_tables(client, os.environ["FINFAAS_STAGE"])
    yield
    process.kill()
    process.wait()


@pytest.fixture(scope="session")
def table_names(dynamodb_local) -> dict[str, str]:
    stage = os.environ["FINFAAS_STAGE"]
    return {logical: f"finfaas-{stage}-{logical}" for logical in ("idempotency", "ratelimits", "audit")}
