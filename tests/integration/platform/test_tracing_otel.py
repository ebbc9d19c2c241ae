"""FINFAAS_TRACING=otel: one request through two function processes is one X-Ray trace.

Each function exports its spans over OTLP/HTTP to the local collector, which forwards them to the
X-Ray API (moto) as the ADOT collector would to X-Ray; the second function continues the first's
trace from the X-Amzn-Trace-Id header the platform's outbound_headers() put on the call.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from finfaas_dev.harness import harness_command
from finfaas_dev.net import LOOPBACK_HOST, free_port, wait_for
from finfaas_dev.xray_collector import XRayCollector

ROOT = Path(__file__).resolve().parents[3]
XRAY_TRACE_ID = re.compile(r"^1-[0-9a-f]{8}-[0-9a-f]{24}$")
START_SECONDS_MAX = 30
SEGMENTS_WAIT_SECONDS_MAX = 20
REQUEST_SECONDS_MAX = 15

FRONT = textwrap.dedent('''
    import json, os, urllib.request
    from finfaas.platform import tracing
    from finfaas.platform.http import FunctionApp

    app = FunctionApp("front")

    @app.route("GET", "/relay", auth=False)
    def relay(req):
        call = urllib.request.Request(os.environ["BACK_URL"] + "/echo", headers=tracing.outbound_headers())
        with urllib.request.urlopen(call, timeout=10) as reply:
            front = tracing.parse_trace_header(tracing.current_trace_header()).trace_id
            return {"front": front, "back": json.loads(reply.read()),
                    "sqs": tracing.sqs_message_system_attributes()}

    def handle(event, context):
        return app.handle(event, context)
''')
BACK = textwrap.dedent('''
    from finfaas.platform import tracing
    from finfaas.platform.http import FunctionApp

    app = FunctionApp("back")

    @app.route("GET", "/echo", auth=False)
    def echo(req):
        trace = tracing.parse_trace_header(tracing.current_trace_header()).trace_id
        return {"trace": trace, "received": req.header(tracing.TRACE_HEADER)}

    def handle(event, context):
        return app.handle(event, context)
''')


@pytest.fixture
def collector(embedded_aws):
    """The local collector on free loopback ports, forwarding to moto's X-Ray, on its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    session = boto3.session.Session(region_name="us-east-1")
    instance = XRayCollector((LOOPBACK_HOST, 0), lambda: session.client("xray"),
                             flush_interval_seconds=0.2, otlp_address=(LOOPBACK_HOST, 0))
    asyncio.run_coroutine_threadsafe(instance.start(), loop).result(START_SECONDS_MAX)
    yield instance
    asyncio.run_coroutine_threadsafe(instance.stop(), loop).result(START_SECONDS_MAX)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(START_SECONDS_MAX)


def _start(folder: Path, source: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    folder.mkdir()
    (folder / "handler.py").write_text(source)
    return subprocess.Popen(harness_command(folder, port=port), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK_HOST}:{port}/_/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def test_a_request_through_two_functions_is_one_xray_trace_in_the_collector(collector, tmp_path):
    # GIVEN two functions tracing with OpenTelemetry, exporting to the collector's OTLP port
    front_port, back_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "shared"), "FINFAAS_TRACING": "otel",
           "FINFAAS_XRAY_SAMPLE_ALL": "true", "OTEL_BSP_SCHEDULE_DELAY": "100",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{LOOPBACK_HOST}:{collector.otlp_address[1]}",
           "BACK_URL": f"http://{LOOPBACK_HOST}:{back_port}"}
    processes = [_start(tmp_path / "back", BACK, back_port, env),
                 _start(tmp_path / "front", FRONT, front_port, env)]
    try:
        for port in (back_port, front_port):
            wait_for(lambda port=port: _answers(port), START_SECONDS_MAX, f"function on {port}")
        # WHEN a client calls the first, which calls the second
        started = time.time()
        front = f"http://{LOOPBACK_HOST}:{front_port}/relay"
        with urllib.request.urlopen(front, timeout=REQUEST_SECONDS_MAX) as reply:
            answer = json.loads(reply.read())

        # THEN both ran under one X-Ray-format trace id, also on what an SQS message would carry
        trace_id = answer["front"]
        assert XRAY_TRACE_ID.match(trace_id)
        assert int(trace_id[2:10], 16) >= int(started) - 1  # AwsXRayIdGenerator: the epoch comes first
        assert answer["back"]["trace"] == trace_id
        assert answer["back"]["received"].startswith(f"Root={trace_id};Parent=")
        assert answer["sqs"]["AWSTraceHeader"]["StringValue"].startswith(f"Root={trace_id};")

        # AND the collector put both spans into X-Ray as segments of that trace, the second under the first
        xray = boto3.client("xray")

        def segments() -> dict[str, dict] | None:
            traces = xray.batch_get_traces(TraceIds=[trace_id])["Traces"]
            found = {json.loads(s["Document"])["name"]: json.loads(s["Document"])
                     for t in traces for s in t["Segments"]}
            return found if {"front", "back"} <= set(found) else None

        found = wait_for(segments, SEGMENTS_WAIT_SECONDS_MAX, "both segments in X-Ray")
    finally:
        for process in processes:
            process.terminate()
            process.wait(START_SECONDS_MAX)

    assert found["back"]["parent_id"] == found["front"]["id"]
    assert found["back"]["trace_id"] == found["front"]["trace_id"] == trace_id
    assert found["front"]["http"]["response"]["status"] == 200
    assert answer["back"]["received"] == f"Root={trace_id};Parent={found['front']['id']};Sampled=1"
    assert "parent_id" not in found["front"]
