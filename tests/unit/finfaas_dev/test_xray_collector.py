"""The trace collector's daemon protocol: addresses, datagrams, batching and its bounds."""

from __future__ import annotations

import asyncio
import json

import pytest
from finfaas_dev.xray_collector import (
    BATCH_SEGMENTS_MAX,
    SegmentError,
    XRayCollector,
    parse_daemon_address,
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
