"""The trace collector's daemon protocol: addresses, datagrams, batching and its bounds."""

from __future__ import annotations

import asyncio
import json

import pytest
from finfaas_dev.xray_collector import (
    BATCH_SEGMENTS_MAX,
    SegmentError,
    XRayCollector,
    otlp_segments,
    parse_daemon_address,
    parse_otlp_address,
    segment_document,
)

HEADER = b'{"format": "json", "version": 1}\n'


def _datagram(n: int) -> bytes:
    segment = {
        "trace_id": f"1-5759e988-{n:024x}",
        "id": f"{n:016x}",
        "name": "f",
        "start_time": 1,
        "end_time": 2,
    }
    return HEADER + json.dumps(segment).encode()


class FakeXRay:
    """Records PutTraceSegments calls; reports the ids it was told to reject as unprocessed."""

    def __init__(self, unprocessed_ids=()):
        self.batches: list[list[str]] = []
        self._unprocessed_ids = set(unprocessed_ids)

    def put_trace_segments(self, TraceSegmentDocuments):  # noqa: N803 - boto3's parameter name
        self.batches.append(list(TraceSegmentDocuments))
        rejected = [
            json.loads(d)["id"] for d in TraceSegmentDocuments if json.loads(d)["id"] in self._unprocessed_ids
        ]
        return {"UnprocessedTraceSegments": [{"Id": i, "ErrorCode": "x", "Message": "m"} for i in rejected]}


@pytest.mark.parametrize(
    ("raw", "address"),
    [
        (None, ("127.0.0.1", 2000)),
        ("127.0.0.1:3000", ("127.0.0.1", 3000)),
        ("localhost:2001", ("127.0.0.1", 2001)),
        ("tcp:127.0.0.1:2000 udp:127.0.0.1:2002", ("127.0.0.1", 2002)),
    ],
)
def test_daemon_addresses_in_the_sdk_forms(raw, address):
    assert parse_daemon_address(raw, environ={}) == address


def test_the_environment_address_is_used_when_none_is_given():
    assert parse_daemon_address(None, environ={"AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2500"}) == (
        "127.0.0.1",
        2500,
    )


def test_only_loopback_is_accepted():
    with pytest.raises(ValueError, match="127.0.0.1"):
        parse_daemon_address("0.0.0.0:2000", environ={})


def test_a_datagram_yields_its_segment_document():
    assert json.loads(segment_document(_datagram(7)))["id"] == f"{7:016x}"


@pytest.mark.parametrize(
    "datagram",
    [
        b'{"trace_id": "1-a-b", "id": "1"}',
        HEADER + b"not json",
        b'{"format": "xml"}\n{}',
        HEADER + b'{"id": "1"}',
    ],
)
def test_malformed_datagrams_are_refused(datagram):
    with pytest.raises(SegmentError):
        segment_document(datagram)


def test_buffered_segments_go_out_in_batches_and_unprocessed_ones_are_counted():
    fake = FakeXRay(unprocessed_ids={f"{3:016x}"})
    collector = XRayCollector(("127.0.0.1", 0), xray_client_factory=lambda: fake)

    async def scenario():
        await collector.start()
        for n in range(BATCH_SEGMENTS_MAX + 5):
            collector.accept(_datagram(n))
        collector.accept(b"garbage")
        await collector.stop()

    asyncio.run(scenario())

    assert [len(batch) for batch in fake.batches] == [BATCH_SEGMENTS_MAX, 5]
    assert collector.forwarded_count == BATCH_SEGMENTS_MAX + 4
    assert collector.dropped_count == 1
    assert collector.rejected_count == 1


def test_a_full_buffer_drops_the_oldest_segments():
    fake = FakeXRay()
    collector = XRayCollector(("127.0.0.1", 0), xray_client_factory=lambda: fake, buffered_segments_max=3)

    async def scenario():
        await collector.start()
        for n in range(5):
            collector.accept(_datagram(n))
        await collector.stop()

    asyncio.run(scenario())

    sent_ids = [json.loads(d)["id"] for batch in fake.batches for d in batch]
    assert sent_ids == [f"{n:016x}" for n in (2, 3, 4)]
    assert collector.dropped_count == 2


# -- OTLP/HTTP (FINFAAS_TRACING=otel): spans become X-Ray segments ----------------------------------


def _export(status: int, parent: bytes = b"") -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    service = resource_spans.resource.attributes.add()
    service.key, service.value.string_value = "service.name", "transfers"
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex("5759e988bd862e3fe1be46a994272793")
    span.span_id, span.parent_span_id = bytes.fromhex("53995c3f42cd8ad8"), parent
    span.start_time_unix_nano, span.end_time_unix_nano = 1_500_000_000_000_000_000, 1_500_000_000_250_000_000
    attribute = span.attributes.add()
    attribute.key, attribute.value.int_value = "http.response.status_code", status
    return request.SerializeToString()


def test_an_otlp_span_becomes_an_xray_segment_of_its_trace_under_its_parent():
    export = _export(502, parent=bytes.fromhex("0123456789abcdef"))

    documents = otlp_segments(export, "application/x-protobuf")

    segment = json.loads(documents[0])
    assert segment["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert (segment["name"], segment["id"], segment["parent_id"]) == ("transfers", "53995c3f42cd8ad8",
                                                                       "0123456789abcdef")
    assert (segment["start_time"], segment["end_time"]) == (1_500_000_000.0, 1_500_000_000.25)
    assert segment["http"]["response"]["status"] == 502 and segment["fault"] is True


def test_a_root_span_has_no_parent_and_garbage_is_refused():
    assert "parent_id" not in json.loads(otlp_segments(_export(200), "application/x-protobuf")[0])
    with pytest.raises(SegmentError):
        otlp_segments(b"\xff\xff not protobuf", "application/x-protobuf")


@pytest.mark.parametrize("raw", ["http://10.0.0.1:4318", "http://127.0.0.1:otlp", "collector:4318"])
def test_the_otlp_receiver_listens_on_loopback_only(raw):
    with pytest.raises(ValueError, match="127.0.0.1"):
        parse_otlp_address(raw)
    assert parse_otlp_address("http://127.0.0.1:4318/") == ("127.0.0.1", 4318)
