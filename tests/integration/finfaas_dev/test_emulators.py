"""The embedded AWS runtime: loopback-only emulators that behave like the AWS services we rely on."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import boto3
import psutil
import pytest
from botocore.exceptions import ClientError
from finfaas_dev.emulators import EmbeddedAWS, EmulatorError, require_endpoint
from finfaas_dev.net import free_port

LOOPBACK_ADDRESSES = {"127.0.0.1", "::ffff:127.0.0.1"}
SENDERS_COUNT = 6
RECEIVERS_COUNT = 4
MESSAGES_COUNT = 300
SQS_BATCH_MAX = 10
CONCURRENT_TEST_S_MAX = 120
CHILD_EXIT_WAIT_S_MAX = 10
LONG_POLL_S = 4


def _listening_addresses(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="tcp") if c.status == "LISTEN"}


def _wait_gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + CHILD_EXIT_WAIT_S_MAX
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def test_both_emulators_listen_on_loopback_only(embedded_aws):
    # GIVEN the session's emulators
    children = embedded_aws.aws._children  # noqa: SLF001 - the pids are what this test inspects
    # THEN each listens, and only on 127.0.0.1
    for child in children:
        addresses = _listening_addresses(child.process.pid)
        assert addresses, f"{child.name} is not listening"
        assert addresses <= LOOPBACK_ADDRESSES, f"{child.name} listens on {addresses}"


def test_env_points_clients_at_the_emulators(embedded_aws):
    env = embedded_aws.env()
    assert env["AWS_ENDPOINT_URL_DYNAMODB"].startswith("http://127.0.0.1:")
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["FINFAAS_STAGE"] == embedded_aws.stage
    # botocore resolves the endpoints from the environment: no endpoint_url in code
    tables = boto3.client("dynamodb").list_tables()["TableNames"]
    assert embedded_aws.outputs["AccountsTableName"] in tables


def test_every_credential_and_region_sees_the_same_tables(embedded_aws):
    # A function started with other credentials must not get a private, empty DynamoDB.
    stranger = boto3.client("dynamodb", region_name="eu-west-1", aws_access_key_id="SomeoneElse",
                            aws_secret_access_key="other")
    assert embedded_aws.outputs["AccountsTableName"] in stranger.list_tables()["TableNames"]


def test_concurrent_sqs_loses_and_duplicates_nothing(embedded_aws):
    # GIVEN a fresh queue and 6 senders racing 4 receivers
    sqs = boto3.client("sqs")
    queue_name = f"finfaas-{embedded_aws.stage}-race-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    bodies = [f"m-{i:04d}" for i in range(MESSAGES_COUNT)]
    received: list[str] = []
    received_lock = threading.Lock()
    senders_done = threading.Event()
    deadline = time.monotonic() + CONCURRENT_TEST_S_MAX

    def send(share: list[str]) -> None:
        client = boto3.client("sqs")
        for start in range(0, len(share), SQS_BATCH_MAX):
            batch = share[start:start + SQS_BATCH_MAX]
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(batch)]
            result = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            assert not result.get("Failed"), result.get("Failed")

    def receive() -> None:
        client = boto3.client("sqs")
        while time.monotonic() < deadline:
            messages = client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=SQS_BATCH_MAX,
                                              WaitTimeSeconds=1).get("Messages", [])
            if not messages:
                with received_lock:
                    if senders_done.is_set() and len(received) >= MESSAGES_COUNT:
                        return
                continue
            client.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            with received_lock:
                received.extend(m["Body"] for m in messages)

    senders = [threading.Thread(target=send, args=(bodies[i::SENDERS_COUNT],)) for i in range(SENDERS_COUNT)]
    receivers = [threading.Thread(target=receive) for _ in range(RECEIVERS_COUNT)]
    # WHEN all of them run at once
    for thread in senders + receivers:
        thread.start()
    for thread in senders:
        thread.join()
    senders_done.set()
    for thread in receivers:
        thread.join()
    # THEN every message arrived exactly once (visibility 30 s >> test time: no redelivery is legitimate)
    duplicates = [body for body, count in Counter(received).items() if count > 1]
    assert not duplicates, f"{len(duplicates)} duplicated, e.g. {duplicates[:3]}"
    assert sorted(received) == bodies, f"{MESSAGES_COUNT - len(set(received))} lost"


def test_a_long_poll_does_not_hold_up_other_requests(embedded_aws):
    # GIVEN a receiver long-polling an empty queue (moto handles requests one at a time)
    sqs = boto3.client("sqs")
    queue_name = f"finfaas-{embedded_aws.stage}-idle-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    poller = threading.Thread(target=lambda: boto3.client("sqs").receive_message(
        QueueUrl=queue_url, WaitTimeSeconds=LONG_POLL_S))
    poller.start()
    time.sleep(0.5)
    # WHEN another client sends meanwhile
    started = time.monotonic()
    sqs.send_message(QueueUrl=queue_url, MessageBody="not stuck")
    elapsed_s = time.monotonic() - started
    poller.join()
    # THEN it is served at once, not after the poll ends
    assert elapsed_s < LONG_POLL_S / 2, f"send waited {elapsed_s:.1f} s behind a long poll"


def test_poison_message_moves_to_dlq_after_max_receive_count(embedded_aws):
    # GIVEN a queue with the same redrive settings as the deployed orchestrator queue
    sqs = boto3.client("sqs")
    deployed = sqs.get_queue_attributes(QueueUrl=embedded_aws.outputs["OrchestratorQueueUrl"],
                                        AttributeNames=["RedrivePolicy"])["Attributes"]
    max_receive_count = json.loads(deployed["RedrivePolicy"])["maxReceiveCount"]
    assert max_receive_count == 5
    suffix = uuid.uuid4().hex[:8]
    dlq_url = sqs.create_queue(QueueName=f"finfaas-{embedded_aws.stage}-poison-{suffix}-dlq")["QueueUrl"]
    dlq_attributes = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]
    dlq_arn = dlq_attributes["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=f"finfaas-{embedded_aws.stage}-poison-{suffix}",
        Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})},
    )["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="poison")
    # WHEN a consumer receives it max_receive_count times without deleting it
    for _ in range(max_receive_count):
        messages = sqs.receive_message(QueueUrl=queue_url, VisibilityTimeout=0, WaitTimeSeconds=1)["Messages"]
        assert [m["Body"] for m in messages] == ["poison"]
    # THEN the next receive finds nothing and the message waits in the DLQ
    assert sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", []) == []
    moved = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in moved] == ["poison"]


def test_cancelled_transaction_reports_reasons_with_the_old_item(embedded_aws):
    # GIVEN an account with 100 in a deployed table of DynamoDB Local
    dynamodb = boto3.client("dynamodb")
    table = embedded_aws.outputs["AccountsTableName"]
    account_id = f"acc-{uuid.uuid4().hex}"
    dynamodb.put_item(TableName=table, Item={"account_id": {"S": account_id}, "balance": {"N": "100"}})
    # WHEN a transaction debits 150 under a no-overdraft condition, alongside a second write
    with pytest.raises(ClientError) as raised:
        dynamodb.transact_write_items(TransactItems=[
            {"Update": {
                "TableName": table, "Key": {"account_id": {"S": account_id}},
                "UpdateExpression": "SET balance = balance - :amount",
                "ConditionExpression": "balance >= :amount",
                "ExpressionAttributeValues": {":amount": {"N": "150"}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }},
            {"Put": {
                "TableName": embedded_aws.outputs["TransfersTableName"],
                "Item": {"transfer_id": {"S": f"tr-{uuid.uuid4().hex}"}},
                "ConditionExpression": "attribute_not_exists(transfer_id)",
            }},
        ])
    # THEN nothing is written, and the reasons say which item failed, with its old image
    error = raised.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    reasons = error["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["ConditionalCheckFailed", "None"]
    assert reasons[0]["Item"] == {"account_id": {"S": account_id}, "balance": {"N": "100"}}
    item = dynamodb.get_item(TableName=table, Key={"account_id": {"S": account_id}}, ConsistentRead=True)
    # The bare item is no ledger account: leave the session's ledger as other tests expect it.
    dynamodb.delete_item(TableName=table, Key={"account_id": {"S": account_id}})
    assert item["Item"]["balance"] == {"N": "100"}


def test_stop_ends_both_processes_and_frees_both_ports():
    # GIVEN a second, private pair of emulators
    aws = EmbeddedAWS(dynamodb_port=free_port(), moto_port=free_port())
    aws.start()
    pids = [child.process.pid for child in aws._children]  # noqa: SLF001
    # WHEN it is stopped
    aws.stop()
    # THEN no process is left and the ports can be bound again
    assert _wait_gone(pids) == []
    for port in (aws.dynamodb_port, aws.moto_port):
        with socket.socket() as probe:
            # SO_REUSEADDR as every server sets it: TIME_WAIT leftovers don't hold a port
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
    aws.stop()  # a second stop is harmless


def test_emulators_exit_when_their_parent_is_killed(tmp_path: Path):
    # GIVEN a process that started emulators and printed their pids
    script = textwrap.dedent(f"""
        import sys, time
        from finfaas_dev.emulators import EmbeddedAWS
        aws = EmbeddedAWS(dynamodb_port={free_port()}, moto_port={free_port()}, log_dir={str(tmp_path)!r})
        aws.start()
        print(" ".join(str(c.process.pid) for c in aws._children), flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        # WHEN it dies without a chance to clean up
        parent.kill()
        parent.wait()
    # THEN its emulators notice the closed pipe and exit on their own
    assert _wait_gone(pids) == []


def test_cli_runs_in_the_foreground_until_ctrl_c():
    # GIVEN `finfaas emulators` started on free ports
    dynamodb_port, moto_port = free_port(), free_port()
    command = [sys.executable, "-m", "finfaas_dev.cli", "emulators", "--dynamodb-port", str(dynamodb_port),
               "--moto-port", str(moto_port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # WHEN it says it is ready
        ready_line = process.stdout.readline()
        export_lines = [process.stdout.readline() for _ in range(len(EmbeddedAWS().env()))]
        exports = dict(line.removeprefix("export ").strip().split("=", 1) for line in export_lines)
        children = psutil.Process(process.pid).children(recursive=True)
        assert "ready" in ready_line, process.stderr.read()
        assert exports["AWS_ENDPOINT_URL_DYNAMODB"] == f"http://127.0.0.1:{dynamodb_port}"
        require_endpoint(exports["AWS_ENDPOINT_URL_DYNAMODB"])
        require_endpoint(exports["AWS_ENDPOINT_URL"])
    finally:
        # AND Ctrl-C arrives
        process.send_signal(signal.SIGINT)
        exit_code = process.wait(timeout=CHILD_EXIT_WAIT_S_MAX)
    # THEN it exits cleanly and takes both emulators with it
    assert exit_code == 0
    assert _wait_gone([child.pid for child in children]) == []


def test_port_in_use_is_a_one_line_error_naming_the_port():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(EmulatorError) as raised:
            EmbeddedAWS(dynamodb_port=port, moto_port=free_port()).start()
    message = str(raised.value)
    assert "\n" not in message
    assert str(port) in message and "already in use" in message


def test_missing_jar_is_a_one_line_error_saying_what_to_run(tmp_path: Path):
    with pytest.raises(EmulatorError) as raised:
        EmbeddedAWS(free_port(), free_port(), dynamodb_dir=tmp_path).start()
    assert "\n" not in str(raised.value)
    assert "finfaas tools install" in str(raised.value)


def test_require_endpoint_names_the_dead_endpoint_in_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EmulatorError) as raised:
        require_endpoint(url, "DynamoDB Local")
    assert "\n" not in str(raised.value)
    assert url in str(raised.value)


def test_require_endpoint_accepts_a_live_emulator(embedded_aws):
    require_endpoint(embedded_aws.env()["AWS_ENDPOINT_URL_DYNAMODB"])
    require_endpoint(embedded_aws.env()["AWS_ENDPOINT_URL"])


def test_startup_and_deploy_times_are_reported(embedded_aws, record_property):
    # Figures for the README: measured on every run, bounded so a regression is noticed.
    record_property("emulator_start_s", round(embedded_aws.start_s, 2))
    record_property("deploy_s", round(embedded_aws.deploy_s, 2))
    print(f"emulators started in {embedded_aws.start_s:.2f} s, "
          f"template deployed in {embedded_aws.deploy_s:.2f} s")
    assert embedded_aws.start_s < 30
    assert embedded_aws.deploy_s < 30
