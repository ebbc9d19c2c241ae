"""A lean HTTP/1.1 server for the gateway: aiohttp's llhttp parser in, pre-encoded bytes out.

aiohttp's web layer cost about as much CPU per proxied request as our whole proxy path
(request objects, response preparation, access logging hooks). Here each connection is one
asyncio protocol: requests are parsed by aiohttp's C parser (the hardened part worth reusing),
answered strictly in order (HTTP/1.1 pipelining), and replies are written as one buffer.
Limits: body size, pipelined requests waiting, and idle keep-alive time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from aiohttp.http import HttpProcessingError, HttpRequestParser
from aiohttp.streams import EMPTY_PAYLOAD
from multidict import CIMultiDictProxy

from finfaas_dev.process_pool import log_event

READ_BUFFER_BYTES = 64 * 1024
REQUEST_LINE_BYTES_MAX = 8190
REQUEST_HEADERS_MAX = 128
PIPELINED_REQUESTS_MAX = 16  # parsed but not yet answered; reading pauses beyond this
IDLE_CONNECTION_SECONDS_MAX = 75.0  # no request in progress (slow or silent clients included)
IDLE_SWEEP_SECONDS = 5.0  # one sweep for all connections: no timer to arm per request
DRAIN_POLL_SECONDS = 0.05
REQUEST_BODY_SECONDS_MAX = 60.0  # from the head to the last byte of the body
# After refusing a request whose body is still arriving, keep reading (and dropping) it for a
# while, so the client finishes sending and reads the refusal instead of a broken pipe.
LINGER_SECONDS_MAX = 2.0
LINGER_BYTES_MAX = 64 * 1024 * 1024
_REASONS = {status.value: status.phrase for status in HTTPStatus}


@dataclass
class Request:
    method: str
    target: str  # as sent: path and query, percent-encoding intact
    headers: CIMultiDictProxy
    body: bytes
    version: tuple[int, int]
    peer: str | None = None  # the connected client's IP address, as the socket reports it

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    duration_seconds: float = 0.0
    close: bool = False  # the connection cannot carry another request after this one


class BodyTooLarge(Exception):
    """The request body is over the limit; the rest of it is unread, so the connection must close."""


Handler = Callable[[Request], Awaitable[Reply]]
BodyErrorReply = Callable[[int], Reply]


def encode_reply(reply: Reply, head_only: bool, close: bool) -> bytes:
    """Status line, headers (Content-Length computed unless a HEAD reply carries its own), body."""
    lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}"]
    has_length = False
    for name, value in reply.headers:
        if head_only and name.lower() == "content-length":
            has_length = True
        lines.append(f"{name}: {value}")
    if not has_length and reply.status >= 200 and reply.status not in (204, 304):
        lines.append(f"Content-Length: {len(reply.body)}")
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    return head if head_only or not reply.body else head + reply.body


def peer_address(peername: object) -> str | None:
    """The IP address in a socket's peername ((host, port, ...) for TCP); None for anything else."""
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return None


class Http1Connection(asyncio.Protocol):
    """One client connection: parse, hand each request to the handler in order, write replies."""

    def __init__(
        self,
        handler: Handler,
        body_error_reply: BodyErrorReply,
        body_bytes_max: int,
        connections: set,
    ) -> None:
        self._handler = handler
        self._body_error_reply = body_error_reply
        self._body_bytes_max = body_bytes_max
        self._connections = connections
        self._loop = asyncio.get_running_loop()
        self._parser = HttpRequestParser(
            self,
            self._loop,
            READ_BUFFER_BYTES,
            max_line_size=REQUEST_LINE_BYTES_MAX,
            max_headers=REQUEST_HEADERS_MAX,
            max_field_size=REQUEST_LINE_BYTES_MAX,
            auto_decompress=False,  # bodies pass through byte for byte
        )
        self._pending: deque = deque()
        self._wakeup: asyncio.Future | None = None
        self._transport: asyncio.Transport | None = None
        self._peer: str | None = None
        self._task: asyncio.Task | None = None
        self.idle_since = self._loop.time()  # set while no request is in progress
        self._payload = None  # the body being read, failed if the client goes away
        self._drain_waiter: asyncio.Future | None = None
        self._writing_paused = False
        self.busy = False
        self._input_unread = False  # a refused body is still on its way
        self._input_closed = False  # after a malformed request or an upgrade: read nothing more
        self._discarded_bytes = -1  # >= 0 while lingering
        # Read by aiohttp's payload StreamReader for flow control.
        self._reading_paused = False

    # -- what aiohttp's parser and payload reader expect of a protocol ----------------------

    @property
    def connected(self) -> bool:
        return self._transport is not None

    def pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def resume_reading(self, resume_parser: bool = True) -> None:
        if self._reading_paused and self._transport is not None and not self._input_closed:
            self._reading_paused = False
            self._transport.resume_reading()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._peer = peer_address(transport.get_extra_info("peername"))
        self._connections.add(self)
        self._task = self._loop.create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        if self._discarded_bytes >= 0:
            self._discarded_bytes += len(data)
            if self._discarded_bytes > LINGER_BYTES_MAX:
                self.close()
            return
        try:
            messages, upgraded, _ = self._parser.feed_data(data)
        except HttpProcessingError as error:
            self._pending.append((None, error))
            self._stop_input()  # nothing after a malformed request can be trusted
        else:
            self._pending.extend(messages)
            if upgraded:  # protocol switches are not proxied: answer, then close
                self._stop_input()
        if self._pending:
            if len(self._pending) >= PIPELINED_REQUESTS_MAX:
                self.pause_reading()
            self._wake()

    def _stop_input(self) -> None:
        self.pause_reading()
        self._input_closed = True

    def eof_received(self) -> bool:
        return False  # let the transport close; an in-flight request still finishes writing nothing

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._connections.discard(self)
        if self._payload is not None and not self._payload.is_eof():
            self._payload.set_exception(ConnectionResetError("client closed the connection"))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if not self.busy and self._task is not None:
            self._task.cancel()  # idle: nothing to finish
        self._wake()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- serving ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _close_after_reply(self) -> None:
        if not self._input_unread or self._transport is None:
            self.close()
            return
        self._discarded_bytes = 0
        self._reading_paused = False
        self._transport.resume_reading()
        self._loop.call_later(LINGER_SECONDS_MAX, self.close)

    async def _serve(self) -> None:
        while self._transport is not None:
            if not self._pending:
                self._wakeup = self._loop.create_future()
                await self._wakeup
                continue
            message, payload = self._pending.popleft()
            if (
                self._reading_paused
                and message is not None
                and len(self._pending) < PIPELINED_REQUESTS_MAX // 2
            ):
                self.resume_reading()
            self.busy = True
            try:
                reply, close = await self._answer(message, payload)
                head_only = message is not None and message.method == "HEAD"
                if self._write(reply, head_only, close):
                    await self._drained()
            finally:
                self.busy = False
            if close:
                self._close_after_reply()
                return
            self.idle_since = self._loop.time()

    async def _answer(self, message, payload) -> tuple[Reply, bool]:
        if message is None:  # the parser refused the request; payload holds its error
            self._input_unread = True
            return self._body_error_reply(400), True
        try:
            # Most requests carry no body: the parser hands them all the same empty reader.
            body = b"" if payload is EMPTY_PAYLOAD else await self._read_body(message, payload)
        except (BodyTooLarge, TimeoutError, ConnectionError, HttpProcessingError) as error:
            self._input_unread = True
            status = (
                413 if isinstance(error, BodyTooLarge) else 408 if isinstance(error, TimeoutError) else 400
            )
            return self._body_error_reply(status), True
        request = Request(
            message.method, message.path, message.headers, body, tuple(message.version), self._peer
        )
        try:
            reply = await self._handler(request)
        except Exception as error:  # a bug must cost one request, never the gateway
            log_event("gateway_handler_failed", target=message.path, error=repr(error))
            return self._body_error_reply(500), True
        return reply, reply.close or message.should_close or message.upgrade or self._transport is None

    async def _read_body(self, message, payload) -> bytes:
        declared = message.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self._body_bytes_max:
            raise BodyTooLarge
        if payload.is_eof():
            return await payload.read()
        if message.headers.get("Expect", "").lower() == "100-continue" and message.version >= (1, 1):
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._payload = payload
        body = bytearray()
        try:
            async with asyncio.timeout(REQUEST_BODY_SECONDS_MAX):
                while chunk := await payload.readany():
                    body += chunk
                    if len(body) > self._body_bytes_max:
                        raise BodyTooLarge
        finally:
            self._payload = None
        return bytes(body)

    def _write(self, reply: Reply, head_only: bool, close: bool) -> bool:
        """Queue the reply's bytes; True when the client reads too slowly and we must wait."""
        if self._transport is None:
            return False  # the client left; the work is done, the answer has nowhere to go
        self._transport.write(encode_reply(reply, head_only, close))
        return self._writing_paused and self._transport is not None

    async def _drained(self) -> None:
        self._drain_waiter = self._loop.create_future()
        await self._drain_waiter  # a slow reader holds its own connection back, nobody else's

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def close_if_idle_since(self, moment: float) -> None:
        """Close when nothing has happened since moment: no request in progress or waiting."""
        if not self.busy and not self._pending and self.idle_since <= moment:
            self.close()


class Http1Server:
    """Listens on one loopback address; closes idle connections; stops gracefully."""

    def __init__(self, handler: Handler, body_error_reply: BodyErrorReply, body_bytes_max: int) -> None:
        self._handler = handler
        self._body_error_reply = body_error_reply
        self._body_bytes_max = body_bytes_max
        self.connections: set[Http1Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task | None = None

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Http1Connection(
                self._handler, self._body_error_reply, self._body_bytes_max, self.connections
            ),
            host,
            port,
            reuse_address=True,
            backlog=1024,
        )
        self._sweeper = loop.create_task(self._sweep_idle())

    async def stop(self, drain_seconds: float) -> None:
        """Stop listening, close idle connections, give busy ones drain_seconds, then close them."""
        if self._server is None:
            return
        self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            if not connection.busy:
                connection.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        while any(c.busy for c in self.connections) and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        for connection in list(self.connections):
            connection.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _sweep_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(IDLE_SWEEP_SECONDS)
            moment = loop.time() - IDLE_CONNECTION_SECONDS_MAX
            for connection in list(self.connections):
                connection.close_if_idle_since(moment)
