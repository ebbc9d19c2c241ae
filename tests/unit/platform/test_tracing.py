"""Tracing: trace ids flow through logs and outbound calls; with X-Ray on, segments reach the daemon."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from finfaas.platform import config, tracing
from finfaas.platform.http import FunctionApp, Request
from finfaas_dev.testing.platform import call, captured_logs

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"
INCOMING = f"Root={ROOT};Parent={PARENT};Sampled=1"
datagram_wait_seconds_max = 20.0
stuck_loader_seconds_max = 60.0


def test_an_incoming_header_is_continued():
    context = tracing.parse_trace_header(INCOMING)

    assert (context.trace_id, context.parent_id, context.sampled) == (ROOT, PARENT, True)
    assert context.header() == INCOMING


@pytest.mark.parametrize("raw", [None, "", "Root=bogus", "Parent=53995c3f42cd8ad8", "x" * 1000])
def test_a_missing_or_malformed_header_starts_a_new_trace(raw):
    context = tracing.parse_trace_header(raw)

    assert context.trace_id != ROOT
    assert tracing.parse_trace_header(context.header()).trace_id == context.trace_id


def test_new_trace_ids_carry_the_epoch_and_are_unique():
    first, second = tracing.new_trace_id(0x5759E988), tracing.new_trace_id(0x5759E988)

    assert first.startswith("1-5759e988-") and first != second


def build_app(tracer: tracing.Tracer | None = None) -> FunctionApp:
    app = FunctionApp("payments", tracer=tracer)

    @app.route("POST", "/payments", auth=False)
    def pay(req: Request) -> dict:
        """Report what an outbound call or message would carry."""
        return {
            "trace_id": req.trace_id,
            "http": tracing.outbound_headers(),
            "sqs": tracing.sqs_message_system_attributes(),
        }

    return app


def test_without_xray_the_incoming_trace_still_flows_to_http_and_sqs():
    reply = call(build_app().handle, "POST", "/payments", headers={"X-Amzn-Trace-Id": INCOMING})

    seen = reply.json()
    assert seen["trace_id"] == ROOT
    assert seen["http"] == {"X-Amzn-Trace-Id": INCOMING}
    assert seen["sqs"] == {"AWSTraceHeader": {"DataType": "String", "StringValue": INCOMING}}


def test_nothing_is_propagated_outside_a_request():
    assert tracing.outbound_headers() == {}
    assert tracing.sqs_message_system_attributes() == {}


def test_the_trace_of_a_received_sqs_message_is_read_from_its_system_attributes():
    message = {"MessageId": "m-1", "Body": "{}", "Attributes": {"AWSTraceHeader": INCOMING}}

    assert tracing.sqs_trace_header(message) == INCOMING
    assert tracing.sqs_trace_header({"Body": "{}"}) is None


class StuckSdkLoader:
    """An X-Ray SDK import that hangs until released, then fails."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, service_name, settings, patched):
        self.release.wait(stuck_loader_seconds_max)
        raise RuntimeError("x-ray sdk unavailable")


def enabled_tracer(loader, ready_wait_seconds: float) -> tracing.Tracer:
    settings = config.TracingSettings(enabled=True, daemon_address="127.0.0.1:9")
    return tracing.Tracer("payments", settings, loader=loader, ready_wait_seconds=ready_wait_seconds)


def test_probes_never_wait_for_the_tracing_sdk():
    # GIVEN tracing on, but an SDK import that would hold a traced request for a minute
    loader = StuckSdkLoader()
    app = build_app(enabled_tracer(loader, ready_wait_seconds=stuck_loader_seconds_max))
    started = time.monotonic()

    try:
        reply = call(app.handle, "GET", "/_/health")
    finally:
        loader.release.set()

    # THEN the liveness probe answers at once
    assert reply.status == 200
    assert time.monotonic() - started < stuck_loader_seconds_max / 2


def test_a_late_or_broken_sdk_leaves_requests_untraced_but_served():
    loader = StuckSdkLoader()
    loader.release.set()
    app = build_app(enabled_tracer(loader, ready_wait_seconds=0.5))

    with captured_logs() as logs:
        reply = call(app.handle, "POST", "/payments", headers={"X-Amzn-Trace-Id": INCOMING})

    assert reply.status == 200 and reply.json()["trace_id"] == ROOT
    assert any(line["msg"].startswith("x-ray sdk failed to load") for line in logs.lines)


# -- with X-Ray enabled, in a child process (the SDK's recorder is process-global) ------------------

CHILD = textwrap.dedent(
    """
    import io, json, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from finfaas.platform import logging as finfaas_logging
    finfaas_logging.configure(stream=io.StringIO())
    from finfaas.platform.http import FunctionApp
    from finfaas_dev.testing.platform import Event

    seen_headers = []

    class Downstream(BaseHTTPRequestHandler):
        def _answer(self):
            seen_headers.append(self.headers.get("X-Amzn-Trace-Id"))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_GET = do_POST = _answer
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Downstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"

    started = time.perf_counter()
    app = FunctionApp("payments")

    @app.route("POST", "/payments", auth=False)
    def pay(req):
        import boto3, requests
        from botocore.config import Config
        requests.get(url + "/risk-check", timeout=5)
        sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test", config=Config(retries={"max_attempts": 1}))
        sqs.list_queues()
        return {"ok": True}

    event = Event("POST", "/payments", headers={"X-Amzn-Trace-Id": sys.argv[1]})
    result = app.handle(event, None)
    first_request_ms = (time.perf_counter() - started) * 1000
    server.shutdown()
    print(json.dumps({"status": result["statusCode"], "downstream_headers": seen_headers,
                      "sdk_load_ms": app._tracer.sdk_load_ms, "first_request_ms": first_request_ms}))
    """
)


def receive_segment(udp: socket.socket, name: str) -> dict:
    deadline = time.monotonic() + datagram_wait_seconds_max
    while time.monotonic() < deadline:
        udp.settimeout(max(0.1, deadline - time.monotonic()))
        datagram, _ = udp.recvfrom(65535)
        header, _, document = datagram.decode("utf-8").partition("\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        segment = json.loads(document)
        if segment.get("name") == name and "parent_id" in segment and segment.get("type") != "subsegment":
            return segment
    raise AssertionError(f"no segment named {name!r} within {datagram_wait_seconds_max} s")


def test_a_traced_request_sends_its_segment_with_aws_and_http_subsegments_over_udp(tmp_path: Path):
    # GIVEN a daemon stand-in: a real UDP socket on a free loopback port
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    env = {
        **os.environ,
        "AWS_XRAY_SDK_ENABLED": "true",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{udp.getsockname()[1]}",
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    try:
        # WHEN a function handles a request that continues a trace and calls out twice
        child = subprocess.run(
            [sys.executable, "-c", CHILD, INCOMING], env=env, capture_output=True, text=True, timeout=120
        )
        assert child.returncode == 0, child.stderr
        report = json.loads(child.stdout.strip().splitlines()[-1])
        segment = receive_segment(udp, "payments")
    finally:
        udp.close()

    # THEN the segment continues the caller's trace and records the outcome
    assert report["status"] == 200
    assert segment["trace_id"] == ROOT and segment["parent_id"] == PARENT
    assert segment["http"]["request"]["method"] == "POST"
    assert segment["http"]["response"]["status"] == 200
    subsegments = {sub["namespace"]: sub for sub in segment.get("subsegments", [])}
    assert subsegments["remote"]["http"]["request"]["url"].endswith("/risk-check")
    assert subsegments["aws"]["aws"]["operation"] == "ListQueues"
    # AND both outbound calls carried the trace header naming their own subsegment as parent
    risk_header, sqs_header = report["downstream_headers"]
    assert f"Root={ROOT}" in risk_header and f"Parent={subsegments['remote']['id']}" in risk_header
    assert f"Root={ROOT}" in sqs_header and f"Parent={subsegments['aws']['id']}" in sqs_header
    print(
        f"x-ray sdk load {report['sdk_load_ms']} ms; first traced request {report['first_request_ms']:.0f} ms"
    )


# -- the backend, per target -------------------------------------------------------------------------


@pytest.mark.parametrize(("environment", "enabled", "backend"), [
    ({}, False, "xray"),
    ({"AWS_XRAY_SDK_ENABLED": "true"}, True, "xray"),
    ({"FINFAAS_TRACING": "otel"}, True, "otel"),
    ({"FINFAAS_TRACING": "OTel ", "AWS_XRAY_SDK_ENABLED": "false"}, True, "otel"),
    ({"FINFAAS_TRACING": "off", "AWS_XRAY_SDK_ENABLED": "true"}, False, "xray"),
])
def test_finfaas_tracing_chooses_the_backend_and_x_ray_alone_stays_opt_in(monkeypatch, environment, enabled,
                                                                           backend):
    for name in ("FINFAAS_TRACING", "AWS_XRAY_SDK_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    settings = config.tracing_settings()

    assert (settings.enabled, settings.backend) == (enabled, backend)


def test_an_unknown_tracing_backend_is_a_configuration_error_naming_it(monkeypatch):
    monkeypatch.setenv("FINFAAS_TRACING", "zipkin")

    with pytest.raises(config.ConfigError, match="FINFAAS_TRACING.*zipkin"):
        config.tracing_settings()
