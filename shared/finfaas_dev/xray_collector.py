"""A stand-in for the X-Ray daemon and the ADOT collector: segments and spans in, PutTraceSegments out.

aws-xray-sdk sends each (sub)segment as one datagram to AWS_XRAY_DAEMON_ADDRESS
(127.0.0.1:2000): a header line {"format": "json", "version": 1}, a newline, then the segment
document. OpenTelemetry (FINFAAS_TRACING=otel) POSTs OTLP/HTTP protobuf to /v1/traces on the
OTLP address (127.0.0.1:4318); each span becomes a segment as the ADOT collector's X-Ray exporter
makes one (the ids are X-Ray's already). The collector buffers them and forwards batches to the
X-Ray API of the configured endpoint (moto in the embedded default), so GetTraceSummaries and
BatchGetTraces show them. Delivery is best effort, as with the real daemon: a full buffer drops
the oldest segments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from finfaas_dev.process_pool import log_event

DAEMON_ADDRESS_DEFAULT = "127.0.0.1:2000"
DAEMON_ADDRESS_ENV = "AWS_XRAY_DAEMON_ADDRESS"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
BATCH_SEGMENTS_MAX = 50  # what the X-Ray daemon sends per PutTraceSegments call
FLUSH_INTERVAL_SECONDS = 1.0
BUFFERED_SEGMENTS_MAX = 10_000
SEGMENT_BYTES_MAX = 64 * 1024  # X-Ray's limit per segment document
OTLP_ADDRESS_DEFAULT = "127.0.0.1:4318"  # OTLP/HTTP's registered port
OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTLP_TRACES_PATH = "/v1/traces"
otlp_head_bytes_max = 16 * 1024
otlp_body_bytes_max = 4 * 1024 * 1024
otlp_read_seconds_max = 10.0
NANOSECONDS_PER_SECOND = 1_000_000_000


class SegmentError(ValueError):
    """A datagram that is not a daemon-protocol JSON segment."""


def parse_daemon_address(raw: str | None, environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """'127.0.0.1:2000' or the SDK's 'tcp:127.0.0.1:2000 udp:127.0.0.1:2001' form; loopback only."""
    environ = os.environ if environ is None else environ
    text = (raw or environ.get(DAEMON_ADDRESS_ENV) or DAEMON_ADDRESS_DEFAULT).strip()
    parts = dict(p.split(":", 1) for p in text.split() if p.startswith(("tcp:", "udp:")))
    host, _, port = (parts.get("udp") or text).rpartition(":")
    if host not in LOOPBACK_HOSTS or not port.isdigit():
        raise ValueError(f"X-Ray collector address must be 127.0.0.1:<port>, got {text!r}")
    return "127.0.0.1", int(port)


def segment_document(datagram: bytes) -> str:
    """The segment JSON of one daemon datagram, checked to be a JSON object within X-Ray's limit."""
    header, newline, document = datagram.partition(b"\n")
    if not newline:
        raise SegmentError("datagram has no header line")
    try:
        header_fields = json.loads(header)
        segment = json.loads(document)
    except ValueError as error:
        raise SegmentError(f"datagram is not JSON: {error}") from error
    if not isinstance(header_fields, dict) or header_fields.get("format") != "json":
        raise SegmentError(f"unsupported daemon header {header[:80]!r}")
    if not isinstance(segment, dict) or "trace_id" not in segment or "id" not in segment:
        raise SegmentError("segment document needs a trace_id and an id")
    if len(document) > SEGMENT_BYTES_MAX:
        raise SegmentError(f"segment document exceeds {SEGMENT_BYTES_MAX} bytes")
    return document.decode()


def parse_otlp_address(raw: str | None, environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """'http://127.0.0.1:4318' (OTEL_EXPORTER_OTLP_ENDPOINT's form) or '127.0.0.1:4318'; loopback only."""
    environ = os.environ if environ is None else environ
    text = (raw or environ.get(OTLP_ENDPOINT_ENV) or OTLP_ADDRESS_DEFAULT).strip()
    host, _, port = text.removeprefix("http://").split("/", 1)[0].rpartition(":")
    if host not in LOOPBACK_HOSTS or not port.isdigit():
        raise ValueError(f"OTLP collector address must be http://127.0.0.1:<port>, got {text!r}")
    return "127.0.0.1", int(port)


def otlp_segments(body: bytes, content_type: str) -> list[str]:
    """X-Ray segment documents of the spans in an OTLP ExportTraceServiceRequest (protobuf or JSON)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    try:
        if content_type.startswith("application/json"):
            json_format.Parse(body, request)
        else:
            request.ParseFromString(body)
    except Exception as error:  # protobuf's DecodeError and json_format's ParseError share no base
        raise SegmentError(f"not an OTLP trace export: {error}") from error
    documents = []
    for resource_spans in request.resource_spans:
        service = _attributes(resource_spans.resource.attributes).get("service.name", "unknown")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                documents.append(json.dumps(_segment_of(span, str(service))))
    return documents


def _attributes(attributes: Any) -> dict[str, Any]:
    found = {}
    for attribute in attributes:
        value = attribute.value
        kind = value.WhichOneof("value")
        found[attribute.key] = getattr(value, kind) if kind else None
    return found


def _segment_of(span: Any, service: str) -> dict[str, Any]:
    trace = span.trace_id.hex()
    attributes = _attributes(span.attributes)
    segment: dict[str, Any] = {
        "name": service, "id": span.span_id.hex(), "trace_id": f"1-{trace[:8]}-{trace[8:]}",
        "start_time": span.start_time_unix_nano / NANOSECONDS_PER_SECOND,
        "end_time": span.end_time_unix_nano / NANOSECONDS_PER_SECOND,
    }
    if span.parent_span_id:
        segment["parent_id"] = span.parent_span_id.hex()
    status = attributes.get("http.response.status_code")
    if isinstance(status, int):
        segment["http"] = {"request": {"method": attributes.get("http.request.method"),
                                       "url": attributes.get("url.path")}, "response": {"status": status}}
        segment["fault"], segment["error"] = status >= 500, 400 <= status < 500
    if "enduser.id" in attributes:
        segment["user"] = attributes["enduser.id"]
    return segment


def _default_xray_client():
    from finfaas_dev.awsclients import client

    return client("xray")


class _DatagramReceiver(asyncio.DatagramProtocol):
    def __init__(self, collector: XRayCollector) -> None:
        self._collector = collector

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._collector.accept(data)


class XRayCollector:
    """Receives daemon datagrams on a loopback UDP port and forwards them in batches."""

    def __init__(
        self,
        address: tuple[str, int],
        xray_client_factory: Callable[[], Any] = _default_xray_client,
        flush_interval_seconds: float = FLUSH_INTERVAL_SECONDS,
        buffered_segments_max: int = BUFFERED_SEGMENTS_MAX,
        otlp_address: tuple[str, int] | None = None,
    ) -> None:
        self.address = address
        self.otlp_address = otlp_address
        self._otlp_server: asyncio.Server | None = None
        self.forwarded_count = 0
        self.dropped_count = 0
        self.rejected_count = 0
        self._client_factory = xray_client_factory
        self._flush_interval_seconds = flush_interval_seconds
        self._buffer: deque[str] = deque(maxlen=buffered_segments_max)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xray-collector")
        self._client: Any = None
        self._transport: asyncio.DatagramTransport | None = None
        self._flusher: asyncio.Task | None = None

    async def start(self) -> None:
        """Bind the UDP port (OSError if taken) and start forwarding."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _DatagramReceiver(self), local_addr=self.address
        )
        self.address = self._transport.get_extra_info("sockname")[:2]
        if self.otlp_address is not None:
            try:
                self._otlp_server = await asyncio.start_server(self._serve_otlp, *self.otlp_address)
            except OSError as error:  # another collector has the port: UDP segments still flow
                log_event("otlp_receiver_unavailable", address=self.otlp_address, detail=str(error))
                self.otlp_address = None
            else:
                self.otlp_address = self._otlp_server.sockets[0].getsockname()[:2]
                log_event("otlp_receiver_listening", host=self.otlp_address[0], port=self.otlp_address[1])
        self._client = await loop.run_in_executor(self._executor, self._client_factory)
        self._flusher = asyncio.create_task(self._flush_forever())
        log_event("xray_collector_listening", host=self.address[0], port=self.address[1])

    async def stop(self) -> None:
        """Stop listening and forward what is still buffered."""
        if self._transport is not None:
            self._transport.close()
        if self._otlp_server is not None:
            self._otlp_server.close()
            await self._otlp_server.wait_closed()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
        self._executor.shutdown(wait=True)
        log_event(
            "xray_collector_stopped",
            forwarded=self.forwarded_count,
            dropped=self.dropped_count,
            rejected=self.rejected_count,
        )

    def accept(self, datagram: bytes) -> None:
        try:
            document = segment_document(datagram)
        except SegmentError as error:
            self.rejected_count += 1
            log_event("xray_segment_rejected", error=str(error))
            return
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped_count += 1  # deque drops the oldest as we append
        self._buffer.append(document)

    def accept_documents(self, documents: list[str]) -> None:
        for document in documents:
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped_count += 1
            self._buffer.append(document)

    async def _serve_otlp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One OTLP/HTTP request per connection (the exporter reconnects): POST /v1/traces."""
        status = "200 OK"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), otlp_read_seconds_max)
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {k.strip().lower(): v.strip()
                       for k, _, v in (line.partition(":") for line in header_lines if line)}
            length = int(headers.get("content-length", "0"))
            if method != "POST" or path != OTLP_TRACES_PATH:
                status = "404 Not Found"
            elif not 0 <= length <= otlp_body_bytes_max:
                status = "413 Payload Too Large"
            elif "content-encoding" in headers:  # the exporter compresses only when told to
                status = "415 Unsupported Media Type"
            else:
                body = await asyncio.wait_for(reader.readexactly(length), otlp_read_seconds_max)
                self.accept_documents(otlp_segments(body, headers.get("content-type", "")))
        except SegmentError as error:
            self.rejected_count += 1
            log_event("otlp_export_rejected", error=str(error))
            status = "400 Bad Request"
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status = "400 Bad Request"
        try:
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\n"
                         "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()

    async def flush(self) -> None:
        """Send everything buffered now, BATCH_SEGMENTS_MAX documents per call."""
        loop = asyncio.get_running_loop()
        while self._buffer and self._client is not None:
            batch = [self._buffer.popleft() for _ in range(min(BATCH_SEGMENTS_MAX, len(self._buffer)))]
            try:
                response = await loop.run_in_executor(self._executor, self._put, batch)
            except Exception as error:  # the emulator may be down: drop this batch, keep serving
                self.dropped_count += len(batch)
                log_event("xray_put_failed", segments=len(batch), error=repr(error))
                continue
            unprocessed = response.get("UnprocessedTraceSegments", [])
            self.forwarded_count += len(batch) - len(unprocessed)
            self.dropped_count += len(unprocessed)
            if unprocessed:
                log_event("xray_segments_unprocessed", count=len(unprocessed), first=unprocessed[0])

    def _put(self, batch: list[str]) -> dict:
        return self._client.put_trace_segments(TraceSegmentDocuments=batch)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_seconds)
            await self.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=None,
        help=f"UDP address (default ${DAEMON_ADDRESS_ENV} or {DAEMON_ADDRESS_DEFAULT})",
    )
    parser.add_argument(
        "--otlp-address",
        default=None,
        help=f"OTLP/HTTP address (default ${OTLP_ENDPOINT_ENV} or {OTLP_ADDRESS_DEFAULT})",
    )


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(parse_daemon_address(args.address), parse_otlp_address(args.otlp_address)))


async def _serve(address: tuple[str, int], otlp_address: tuple[str, int] | None = None) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    collector = XRayCollector(address, otlp_address=otlp_address)
    await collector.start()
    try:
        await stopping.wait()
    finally:
        await collector.stop()
    return 0


if __name__ == "__main__":
    main_parser = argparse.ArgumentParser(prog="python -m finfaas_dev.xray_collector", description=__doc__)
    add_arguments(main_parser)
    raise SystemExit(run(main_parser.parse_args()))
