"""The local gateway end to end: fixture functions as real processes behind a real gateway."""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
from finfaas_dev.gateway import REQUEST_BODY_BYTES_MAX
from finfaas_dev.net import wait_for
from support.gateway_harness import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

IDLE_SECONDS = 1.0


@pytest.fixture(scope="module")
def sink_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sink")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, sink_dir):
    process = GatewayProcess(
        tmp_path_factory.mktemp("gateway"),
        ["--no-connector", "--idle-seconds", str(IDLE_SECONDS)],
        env={"FINFAAS_TEST_SINK_DIR": str(sink_dir)},
    )
    yield process
    process.stop()


def test_lists_every_stack_function_with_its_labels_and_no_replicas_before_use(gateway):
    # Runs first in this module: nothing has called a function yet.
    functions = gateway.functions()

    assert set(functions) == {"echo", "crasher", "sink", "reject", "broken"}
    assert functions["sink"]["annotations"] == {"topic": "fixture-events"}
    assert functions["echo"]["labels"]["com.openfaas.scale.zero"] == "true"
    assert functions["echo"]["envProcess"] == "python index.py"
    assert functions["reject"]["replicas"] == 0


def test_gateway_and_every_function_answer_health_checks(gateway):
    assert gateway.call("GET", "/healthz").status == 200
    for name in set(gateway.functions()) - {"broken"}:
        assert gateway.call("GET", f"/function/{name}/_/health").status == 200, name


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_proxies_method_path_query_headers_and_body(gateway, method):
    body = None if method == "GET" else b'{"amount_minor": 1250}'

    reply = gateway.call(
        method,
        "/function/echo/accounts/acc%2F1/statement?limit=2&limit=3&q=a%20b",
        body,
        {"X-Request-Id": "r-1", "Content-Type": "application/json"},
    )

    assert reply.status == 200
    seen = reply.json()
    assert seen["method"] == method
    assert seen["path"] == "/accounts/acc/1/statement"  # Flask decodes the path, as in the image
    assert seen["query"] == {"limit": ["2", "3"], "q": ["a b"]}
    assert seen["headers"]["X-Request-Id"] == "r-1"
    assert "X-Forwarded-For" not in seen["headers"]  # waitress drops untrusted proxy headers
    assert seen["headers"]["X-Call-Id"] == reply.headers["X-Call-Id"]
    assert seen["body"] == (body or b"").decode()
    assert seen["hostname"] == "echo"
    assert reply.headers["X-Echo"] == "yes"
    assert float(reply.headers["X-Duration-Seconds"]) >= 0


def test_the_function_sees_the_connected_peer_as_x_real_ip_whatever_the_client_claims(gateway):
    forged = {"X-Real-Ip": "203.0.113.77", "X-Forwarded-For": "198.51.100.1", "Forwarded": "for=1.2.3.4"}

    seen = gateway.call("GET", "/function/echo/", None, forged).json()["headers"]

    assert seen["X-Real-Ip"] == "127.0.0.1"
    assert "X-Forwarded-For" not in seen and "Forwarded" not in seen


def test_unknown_function_is_a_404_problem(gateway):
    reply = gateway.call("POST", "/function/nope/x", b"{}")

    assert reply.status == 404
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert reply.json()["code"] == "function_not_found"


def test_a_crash_mid_request_is_a_502_once_and_the_next_request_gets_a_fresh_process(gateway, sink_dir):
    before = gateway.call("GET", "/function/crasher/").json()["pid"]

    crashed = gateway.call("GET", "/function/crasher/crash")
    after = gateway.call("GET", "/function/crasher/")

    assert crashed.status == 502
    assert crashed.json()["code"] == "function_crashed"
    assert "Traceback" not in crashed.body.decode()
    # The crashing request ran exactly once: a GET is not resent behind the caller's back.
    assert (sink_dir / "crashes.log").read_text().split() == [str(before)]
    assert after.status == 200
    assert after.json()["pid"] != before
    assert gateway.functions()["crasher"]["crashes"] >= 1


def test_a_function_that_cannot_start_is_a_502_problem_for_every_waiting_caller(gateway):
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: gateway.call("GET", "/function/broken/"), range(4)))

    assert [r.status for r in replies] == [502] * 4
    assert {r.json()["code"] for r in replies} == {"function_start_failed"}
    assert "exited during start" in replies[0].json()["detail"]
    assert gateway.functions()["broken"]["replicas"] == 0


def test_a_body_over_the_limit_is_refused_before_reaching_the_function(gateway):
    reply = gateway.call("POST", "/function/echo/", b"x" * (REQUEST_BODY_BYTES_MAX + 1))

    assert reply.status == 413
    assert reply.json()["code"] == "request_too_large"


def test_idle_function_scales_to_zero_and_cold_starts_on_the_next_request(gateway):
    first_pid = gateway.call("GET", "/function/echo/").json()["pid"]
    assert gateway.functions()["echo"]["replicas"] == 1

    wait_for(lambda: gateway.functions()["echo"]["replicas"] == 0, 10 * IDLE_SECONDS, "scale to zero")

    assert not psutil.pid_exists(first_pid)
    second = gateway.call("GET", "/function/echo/")
    assert second.status == 200
    assert second.json()["pid"] != first_pid
    cold_starts = [e for e in gateway.events("cold_start") if e["function"] == "echo"]
    assert len(cold_starts) >= 2
    assert all(e["duration_ms"] > 0 for e in cold_starts)


def test_concurrent_first_requests_share_one_cold_start(gateway):
    wait_for(lambda: gateway.functions()["crasher"]["replicas"] == 0, 10 * IDLE_SECONDS, "crasher idle")
    starts_before = gateway.functions()["crasher"]["coldStarts"]

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: gateway.call("GET", "/function/crasher/"), range(8)))

    assert [r.status for r in replies] == [200] * 8
    assert len({r.json()["pid"] for r in replies}) == 1
    assert gateway.functions()["crasher"]["coldStarts"] == starts_before + 1


class _CallbackReceiver(BaseHTTPRequestHandler):
    received: list = []
    arrived = threading.Event()

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()
        type(self).arrived.set()

    def log_message(self, *args):
        pass


def test_async_function_answers_202_and_posts_the_result_to_the_callback(gateway):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CallbackReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reply = gateway.call(
            "POST",
            "/async-function/echo/jobs?x=1",
            b"queued work",
            {"X-Callback-Url": f"http://127.0.0.1:{server.server_port}/done"},
        )

        assert reply.status == 202
        call_id = reply.headers["X-Call-Id"]
        assert _CallbackReceiver.arrived.wait(15)
    finally:
        server.shutdown()
        server.server_close()
    headers, body = _CallbackReceiver.received[0]
    assert headers["X-Call-Id"] == call_id
    assert headers["X-Function-Status"] == "200"
    assert float(headers["X-Duration-Seconds"]) >= 0
    result = json.loads(body)
    assert result["body"] == "queued work"
    assert result["path"] == "/jobs"
    assert "X-Callback-Url" not in result["headers"]


def test_async_function_refuses_a_callback_that_is_not_http(gateway):
    reply = gateway.call("POST", "/async-function/echo", b"", {"X-Callback-Url": "file:///etc/passwd"})

    assert reply.status == 400
    assert reply.json()["code"] == "invalid_callback_url"


def test_sigterm_stops_every_function_process_and_frees_the_port(tmp_path, sink_dir):
    # GIVEN a gateway of its own with two functions running
    gateway = GatewayProcess(tmp_path, ["--no-connector"], env={"FINFAAS_TEST_SINK_DIR": str(sink_dir)})
    try:
        pids = [gateway.call("GET", f"/function/{name}/").json()["pid"] for name in ("echo", "crasher")]
        assert all(psutil.pid_exists(pid) for pid in pids)
    finally:
        # WHEN it is asked to stop
        code = gateway.stop()

    # THEN it exits cleanly, leaves no function process behind, and its port is free again
    assert code == 0
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)
    with socket.socket() as probe:
        # SO_REUSEADDR, as a restarted gateway sets it: TIME_WAIT pairs do not count, a listener would.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", gateway.port))
        probe.listen()


def test_a_killed_gateway_leaves_no_orphan_function_processes(tmp_path, sink_dir):
    gateway = GatewayProcess(tmp_path, ["--no-connector"], env={"FINFAAS_TEST_SINK_DIR": str(sink_dir)})
    pid = gateway.call("GET", "/function/echo/").json()["pid"]

    gateway.process.kill()
    gateway.stop()

    wait_for(
        lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", 10, "orphan exit"
    )
