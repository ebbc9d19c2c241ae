"""How an SQS message becomes a binary-mode CloudEvent request."""

from __future__ import annotations

from pathlib import Path

from cloudevents.core.bindings.http import HTTPMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from finfaas_dev.connector import (
    DEFAULT_EVENT_TYPE,
    cloud_event_request,
    connector_wait_seconds,
    subscriptions_for,
)
from finfaas_dev.stackfile import load_stack

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:finfaas-local-events"
FIXTURE_STACK = Path(__file__).resolve().parents[2] / "e2e/fixtures/stack.yml"


def _message(body: str = '{"a": 1}', **extra) -> dict:
    message = {
        "MessageId": "5fea7756-0ea4-451a-a703-a558b933e274",
        "ReceiptHandle": "rh",
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000123"},
    }
    message.update(extra)
    return message


def test_required_attributes_come_from_the_message_and_the_queue():
    headers, body = cloud_event_request(_message(), QUEUE_ARN)

    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-id"] == "5fea7756-0ea4-451a-a703-a558b933e274"
    assert headers["ce-source"] == QUEUE_ARN
    assert headers["ce-type"] == DEFAULT_EVENT_TYPE
    assert headers["ce-time"] == "2023-11-14T22:13:20.123000Z"
    assert headers["ce-finfaasreceivecount"] == "3"
    assert headers["content-type"] == "application/json"
    assert body == b'{"a": 1}'


def test_ce_message_attributes_set_type_subject_and_extensions():
    attributes = {
        "ce-type": {"DataType": "String", "StringValue": "finfaas.transfer.posted"},
        "ce-subject": {"DataType": "String", "StringValue": "transfers/t-1"},
        "ce-tenant": {"DataType": "String", "StringValue": "acme"},
        "ce-id": {"DataType": "String", "StringValue": "forged"},
        "amount": {"DataType": "Number", "StringValue": "12"},
    }

    headers, _ = cloud_event_request(_message(MessageAttributes=attributes), QUEUE_ARN)

    assert headers["ce-type"] == "finfaas.transfer.posted"
    assert headers["ce-subject"] == "transfers/t-1"
    assert headers["ce-tenant"] == "acme"
    assert headers["ce-id"] == "5fea7756-0ea4-451a-a703-a558b933e274"  # SQS's id, never the producer's
    assert "ce-amount" not in headers


def test_a_malformed_extension_name_is_dropped_not_the_event():
    attributes = {
        "ce-bad_name!": {"DataType": "String", "StringValue": "x"},
        "ce-type": {"DataType": "String", "StringValue": "finfaas.x"},
    }

    headers, body = cloud_event_request(_message(MessageAttributes=attributes), QUEUE_ARN)

    assert headers["ce-id"] and body == b'{"a": 1}'
    assert not any("bad" in name for name in headers)


def test_plain_text_bodies_are_labelled_as_text_and_trace_headers_pass_through():
    message = _message("hello")
    message["Attributes"]["AWSTraceHeader"] = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"

    headers, body = cloud_event_request(message, QUEUE_ARN)

    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["X-Amzn-Trace-Id"] == "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    assert body == b"hello"


def test_the_request_reads_back_as_the_same_cloud_event():
    headers, body = cloud_event_request(_message(), QUEUE_ARN)

    event = from_binary(HTTPMessage(headers=headers, body=body), JSONFormat())

    assert event.get_id() == "5fea7756-0ea4-451a-a703-a558b933e274"
    assert event.get_source() == QUEUE_ARN
    assert event.get_data() == {"a": 1}


def test_every_topic_becomes_one_subscription_with_its_functions():
    subscriptions = subscriptions_for(load_stack(FIXTURE_STACK), lambda topic: f"finfaas-t1-{topic}")

    assert [(s.queue_name, s.functions) for s in subscriptions] == [
        ("finfaas-t1-fixture-events", ("sink",)),
        ("finfaas-t1-fixture-poison", ("reject",)),
    ]


def test_cron_functions_are_not_queue_subscribers(tmp_path):
    # GIVEN a function triggered by OpenFaaS's cron-connector, not by a queue
    stack_file = tmp_path / "stack.yml"
    stack_file.write_text(
        "version: 1.0\nprovider: {name: openfaas, gateway: http://127.0.0.1:8080}\nfunctions:\n"
        "  tick:\n    lang: python3-http\n    handler: ./tick\n    image: tick:1\n"
        "    annotations: {topic: cron-function, schedule: '* * * * *'}\n"
    )
    (tmp_path / "tick").mkdir()
    (tmp_path / "tick" / "handler.py").write_text("def handle(event, context):\n    return {}\n")
    # THEN the queue connector does not poll a queue named after it
    assert subscriptions_for(load_stack(stack_file), lambda topic: topic) == []


def test_long_polling_is_opt_in_and_bounded():
    assert connector_wait_seconds({}) == 0
    assert connector_wait_seconds({"FINFAAS_CONNECTOR_WAIT_SECONDS": "20"}) == 20
    assert connector_wait_seconds({"FINFAAS_CONNECTOR_WAIT_SECONDS": "90"}) == 20
    assert connector_wait_seconds({"FINFAAS_CONNECTOR_WAIT_SECONDS": "soon"}) == 0
