"""Queue connector and trace collector inside a real gateway, against the embedded emulators."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import pytest
from finfaas.platform.config import resource_name
from finfaas_dev.awsclients import client
from finfaas_dev.net import free_port, wait_for
from support.gateway_harness import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

POISON_RECEIVES_MAX = 2
POISON_VISIBILITY_SECONDS = 1


@pytest.fixture(scope="module")
def sqs(embedded_aws):
    return client("sqs")


@pytest.fixture(scope="module")
def queues(sqs):
    """The fixture stack's two topics; the poison one redrives to a DLQ after two receives."""
    events = sqs.create_queue(QueueName=resource_name("fixture-events"))["QueueUrl"]
    dlq = sqs.create_queue(QueueName=resource_name("fixture-poison-dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(POISON_RECEIVES_MAX)}
    poison = sqs.create_queue(
        QueueName=resource_name("fixture-poison"),
        Attributes={
            "RedrivePolicy": json.dumps(redrive),
            "VisibilityTimeout": str(POISON_VISIBILITY_SECONDS),
        },
    )["QueueUrl"]
    yield {"events": events, "poison": poison, "dlq": dlq}
    for url in (events, poison, dlq):
        sqs.delete_queue(QueueUrl=url)


@pytest.fixture(scope="module")
def sink_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sink")


@pytest.fixture(scope="module")
def xray_port():
    return free_port(socket.SOCK_DGRAM)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, embedded_aws, queues, sink_dir, xray_port):
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway"),
        ["--xray-collector", "--xray-address", f"127.0.0.1:{xray_port}"],
        env={**embedded_aws.env(), "FINFAAS_TEST_SINK_DIR": str(sink_dir)},
    )
    yield process
    process.stop()


def _records(sink_dir, function: str) -> list[dict]:
    path = sink_dir / f"{function}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _depth(sqs, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[n]) for n in names)


def test_a_queued_message_arrives_as_a_binary_cloud_event_and_is_deleted(gateway, sqs, queues, sink_dir):
    # GIVEN a message with a CloudEvents type and subject as message attributes, and a trace header
    trace_header = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    sent = sqs.send_message(
        QueueUrl=queues["events"],
        MessageBody='{"transfer_id": "t-1", "amount_minor": 1250}',
        MessageAttributes={
            "ce-type": {"DataType": "String", "StringValue": "finfaas.transfer.posted"},
            "ce-subject": {"DataType": "String", "StringValue": "transfers/t-1"},
        },
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": trace_header}},
    )

    # WHEN the connector delivers it to the subscribed function
    record = wait_for(lambda: _records(sink_dir, "sink"), 20, "delivery to sink")[0]

    # THEN the function got a CloudEvent 1.0 in binary mode, body untouched
    headers = {k.lower(): v for k, v in record["headers"].items()}
    queue_arn = sqs.get_queue_attributes(QueueUrl=queues["events"], AttributeNames=["QueueArn"])
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-id"] == sent["MessageId"]
    assert headers["ce-type"] == "finfaas.transfer.posted"
    assert headers["ce-subject"] == "transfers/t-1"
    assert headers["ce-source"] == queue_arn["Attributes"]["QueueArn"]
    assert headers["ce-finfaasreceivecount"] == "1"
    assert headers["ce-time"].endswith("Z")
    assert headers["content-type"] == "application/json"
    assert headers["x-amzn-trace-id"] == trace_header
    assert json.loads(record["body"]) == {"transfer_id": "t-1", "amount_minor": 1250}
    # AND the 2xx answer deleted it
    wait_for(lambda: _depth(sqs, queues["events"]) == 0, 10, "the message to be deleted")


def test_a_message_the_function_keeps_failing_ends_in_the_dead_letter_queue(gateway, sqs, queues, sink_dir):
    sent = sqs.send_message(QueueUrl=queues["poison"], MessageBody="not a valid event")

    wait_for(lambda: _depth(sqs, queues["dlq"]) == 1, 30, "the message to reach the DLQ")

    deliveries = [r for r in _records(sink_dir, "reject") if r["headers"].get("Ce-Id") == sent["MessageId"]]
    assert [d["headers"]["Ce-Finfaasreceivecount"] for d in deliveries] == ["1", "2"]
    assert deliveries[0]["headers"]["Content-Type"].startswith("text/plain")
    assert _depth(sqs, queues["poison"]) == 0


def test_trace_segments_sent_to_the_daemon_port_can_be_listed(gateway, xray_port, embedded_aws):
    # GIVEN a segment as aws-xray-sdk emits it: daemon header line, then the document
    now = time.time()
    trace_id = f"1-{int(now):08x}-{uuid.uuid4().hex[:24]}"
    segment = {
        "trace_id": trace_id,
        "id": os.urandom(8).hex(),
        "name": "transfers",
        "start_time": now - 0.2,
        "end_time": now,
    }
    datagram = b'{"format": "json", "version": 1}\n' + json.dumps(segment).encode()

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(datagram, ("127.0.0.1", xray_port))

    # THEN the collector forwards it and GetTraceSummaries lists the trace
    xray = client("xray")

    def listed() -> bool:
        summaries = xray.get_trace_summaries(StartTime=now - 60, EndTime=time.time() + 60)["TraceSummaries"]
        return any(s["Id"] == trace_id for s in summaries)

    wait_for(listed, 15, "the trace to be listed")
