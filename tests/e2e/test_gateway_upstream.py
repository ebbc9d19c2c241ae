"""The gateway's pooled HTTP/1.1 client against small loopback servers that misbehave on purpose."""

from __future__ import annotations

import asyncio

import pytest
from finfaas_dev.upstream import UpstreamBrokenError, UpstreamConnectError, UpstreamPool

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def _serve(answer):
    """A server that calls answer(request_head, writer) per request; returns (server, connections)."""
    connections = []

    async def on_connection(reader, writer):
        connections.append(writer)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if not await answer(head, writer):
                writer.close()
                return

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    return server, connections


def _port(server) -> int:
    return server.sockets[0].getsockname()[1]


def test_requests_reuse_one_keep_alive_connection():
    async def scenario():
        async def answer(head, writer):
            writer.write(OK)
            return True

        server, connections = await _serve(answer)
        pool = UpstreamPool("127.0.0.1", _port(server), connections_max=4)
        replies = [await pool.request("GET", "/", [], b"", 5) for _ in range(5)]
        pool.close()
        server.close()
        return replies, connections

    replies, connections = asyncio.run(scenario())

    assert [(r.status, r.body) for r in replies] == [(200, b"ok")] * 5
    assert len(connections) == 1


def test_no_listener_is_a_connect_error_which_is_safe_to_retry():
    async def scenario():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = _port(server)
        server.close()
        await server.wait_closed()
        await UpstreamPool("127.0.0.1", port, 1).request("POST", "/", [], b"{}", 5)

    with pytest.raises(UpstreamConnectError):
        asyncio.run(scenario())


def test_a_close_mid_response_is_a_broken_error_and_nothing_is_resent():
    async def scenario():
        received = []

        async def answer(head, writer):
            received.append(head)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal")
            return False  # and hang up

        server, _ = await _serve(answer)
        pool = UpstreamPool("127.0.0.1", _port(server), 1)
        try:
            await pool.request("GET", "/", [], b"", 5)
        finally:
            server.close()
            await asyncio.sleep(0.05)
            assert len(received) == 1

    with pytest.raises(UpstreamBrokenError):
        asyncio.run(scenario())


def test_a_timeout_discards_the_connection_so_a_late_answer_is_never_misread():
    async def scenario():
        calls = []

        async def answer(head, writer):
            calls.append(head)
            if len(calls) == 1:
                await asyncio.sleep(0.5)  # answers the first request too late
            writer.write(OK)
            return True

        server, connections = await _serve(answer)
        pool = UpstreamPool("127.0.0.1", _port(server), 1)
        with pytest.raises(TimeoutError):
            await pool.request("GET", "/slow", [], b"", 0.1)
        second = await pool.request("GET", "/fast", [], b"", 5)
        pool.close()
        server.close()
        return second, connections

    second, connections = asyncio.run(scenario())

    assert second.status == 200
    assert len(connections) == 2


def test_at_most_connections_max_requests_are_in_flight():
    async def scenario():
        in_flight = 0
        peak = 0

        async def answer(head, writer):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            writer.write(OK)
            return True

        server, _ = await _serve(answer)
        pool = UpstreamPool("127.0.0.1", _port(server), connections_max=3)
        await asyncio.gather(*(pool.request("GET", "/", [], b"", 5) for _ in range(12)))
        pool.close()
        server.close()
        return peak

    assert asyncio.run(scenario()) == 3
