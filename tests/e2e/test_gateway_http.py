"""The gateway's HTTP/1.1 layer on the wire: pipelining, chunked bodies, Expect, HEAD, bad input."""

from __future__ import annotations

import json
import socket

import pytest
from support.gateway_harness import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SOCKET_TIMEOUT_SECONDS = 10


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    process = GatewayProcess(tmp_path_factory.mktemp("gateway-http"), ["--no-connector"])
    yield process
    process.stop()


def _connect(gateway) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=SOCKET_TIMEOUT_SECONDS)
    return sock


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict, bytes]:
    """One response off the socket (Content-Length framed); leftover bytes stay in buffer."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-response: {bytes(buffer)!r}")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0")) if status >= 200 else 0
    while len(rest) < length:
        rest += sock.recv(65536)
    buffer[:] = rest[length:]
    return status, headers, rest[:length]


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_pipelined_requests_are_answered_in_order_on_one_connection(gateway):
    with _connect(gateway) as sock:
        sock.sendall(
            b"GET /function/echo/first HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /function/echo/second HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        buffer = bytearray()
        first = _read_response(sock, buffer)
        second = _read_response(sock, buffer)

    assert json.loads(first[2])["path"] == "/first"
    assert json.loads(second[2])["path"] == "/second"


def test_a_chunked_request_body_reaches_the_function_whole(gateway):
    with _connect(gateway) as sock:
        sock.sendall(
            b"POST /function/echo/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        status, _, body = _read_response(sock, bytearray())

    assert status == 200
    assert json.loads(body)["body"] == "hello world"


def test_expect_100_continue_is_answered_before_the_body_is_sent(gateway):
    with _connect(gateway) as sock:
        sock.sendall(
            b"POST /function/echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        buffer = bytearray()
        interim, _, _ = _read_response(sock, buffer)
        sock.sendall(b"ping")
        status, _, body = _read_response(sock, buffer)

    assert interim == 100
    assert status == 200 and json.loads(body)["body"] == "ping"


def test_head_has_no_body_but_says_how_long_the_body_would_be(gateway):
    with _connect(gateway) as sock:
        sock.sendall(b"GET /function/crasher/ HTTP/1.1\r\nHost: x\r\n\r\n")
        _, get_headers, get_body = _read_response(sock, bytearray())
        sock.sendall(b"HEAD /function/crasher/ HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(1)
        raw = sock.recv(65536)

    head, _, after = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"content-length: {len(get_body)}".encode() in head.lower()
    assert after == b""


def test_http_1_0_gets_one_answer_and_a_closed_connection(gateway):
    with _connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        status, headers, body = _read_response(sock, bytearray())

        assert (status, body) == (200, b"OK")
        assert headers["connection"] == "close"
        assert _closed(sock)


def test_a_malformed_request_is_a_400_problem_and_the_connection_closes(gateway):
    with _connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nBad Header Without Colon\r\n\r\n")
        status, headers, body = _read_response(sock, bytearray())

        assert status == 400
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "bad_request"
        assert _closed(sock)


def test_keep_alive_connections_serve_many_requests(gateway):
    with _connect(gateway) as sock:
        buffer = bytearray()
        statuses = []
        for _ in range(20):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            statuses.append(_read_response(sock, buffer)[0])

    assert statuses == [200] * 20


def test_nothing_pipelined_after_a_malformed_request_is_acted_on(gateway):
    with _connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = bytearray()
        first = _read_response(sock, buffer)
        sock.sendall(b"GARBAGE\r\n\r\nPOST /function/echo/ HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
        second = _read_response(sock, buffer)

        assert (first[0], second[0]) == (200, 400)
        assert buffer == b"" and _closed(sock)


def test_a_client_reading_slowly_gets_its_whole_reply_and_holds_up_no_one_else(gateway):
    # GIVEN a client with a small receive buffer that asks for a reply of several megabytes and
    # pipelines a second request behind it, then reads nothing for a while
    big_body = b"x" * (4 * 1024 * 1024)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(SOCKET_TIMEOUT_SECONDS)
    slow.connect(("127.0.0.1", gateway.port))
    with slow:
        slow.sendall(
            b"POST /function/echo/big HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {len(big_body)}\r\n\r\n".encode()
            + big_body
            + b"GET /function/echo/after HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        # WHEN another client calls meanwhile
        with _connect(gateway) as other:
            other.sendall(b"GET /function/echo/meanwhile HTTP/1.1\r\nHost: x\r\n\r\n")
            meanwhile = _read_response(other, bytearray())
        # THEN it is answered at once, and the slow client still gets both replies whole, in order
        buffer = bytearray()
        first = _read_response(slow, buffer)
        second = _read_response(slow, buffer)

    assert meanwhile[0] == 200
    assert first[0] == 200 and len(json.loads(first[2])["body"]) == len(big_body)
    assert json.loads(second[2])["path"] == "/after"
