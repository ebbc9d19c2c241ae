"""A lean HTTP/1.1 client for the gateway's hop to a function process, with pooled keep-alive.

Why not aiohttp's client: on this path it cost about 170 us of CPU per request (more than the
function itself spends on a hello world), and it silently resends idempotent requests when a
reused connection breaks, which would run a function twice after a crash mid-request. This
client only talks to our own harness (waitress) on loopback, never retries, and tells the
caller whether a failure happened before the request left (safe to retry) or after.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

RESPONSE_HEAD_BYTES_MAX = 64 * 1024
RESPONSE_BODY_BYTES_MAX = 64 * 1024 * 1024
IDLE_CONNECTION_SECONDS_MAX = 15.0  # well below waitress's 120 s channel_timeout: we close first
_NO_BODY_STATUSES = frozenset({204, 304})
_FRAMING_HEADERS = frozenset({"connection", "transfer-encoding", "content-length"})
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # header bytes round-trip exactly, as aiohttp's parser decodes them


class UpstreamError(Exception):
    """The function process could not be reached or did not answer properly."""


class UpstreamConnectError(UpstreamError):
    """No connection: the request never left the gateway, so sending it again is safe."""


class UpstreamBrokenError(UpstreamError):
    """The connection broke or the answer was malformed after the request was sent."""


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def encode_request(method: str, target: str, host: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """The request bytes; the caller has already dropped hop-by-hop headers and Content-Length."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode(_ENCODING, _ERRORS)
    return head + body if body else head


class ResponseParser:
    """Incremental parser for one response: Content-Length, chunked, or close-delimited bodies."""

    def __init__(self, head_request: bool) -> None:
        self._head_request = head_request
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.keep_alive = True
        self.until_eof = False
        self._body = bytearray()
        self._remaining = -1  # Content-Length bytes still expected
        self._chunked = False
        self._in_head = True

    def feed(self, buffer: bytearray) -> bool:
        """Consume what it can from buffer; True once the response is complete."""
        while self._in_head:
            if not self._parse_head(buffer):
                return False
        if self._chunked:
            return self._feed_chunked(buffer)
        if self.until_eof:
            self._take(buffer, len(buffer))
            return False
        taken = self._take(buffer, min(self._remaining, len(buffer)))
        self._remaining -= taken
        return self._remaining == 0

    def finish_at_eof(self) -> bool:
        """The peer closed: complete only if the body was close-delimited."""
        return not self._in_head and self.until_eof

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    def _take(self, buffer: bytearray, count: int) -> int:
        if len(self._body) + count > RESPONSE_BODY_BYTES_MAX:
            raise UpstreamBrokenError(f"response body exceeds {RESPONSE_BODY_BYTES_MAX} bytes")
        self._body += buffer[:count]
        del buffer[:count]
        return count

    def _parse_head(self, buffer: bytearray) -> bool:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > RESPONSE_HEAD_BYTES_MAX:
                raise UpstreamBrokenError(f"response head exceeds {RESPONSE_HEAD_BYTES_MAX} bytes")
            return False
        head = bytes(buffer[:end]).decode(_ENCODING, _ERRORS)
        del buffer[: end + 4]
        status_line, _, header_block = head.partition("\r\n")
        version, status = _status_line(status_line)
        if 100 <= status < 200:
            return True  # an interim response (100 Continue): the real one follows
        self.status = status
        framing = self._parse_headers(header_block)
        self._in_head = False
        self._frame_body(version, framing)
        return True

    def _parse_headers(self, block: str) -> dict[str, str]:
        """Fill self.headers; return the framing headers (lowercased name -> value)."""
        framing: dict[str, str] = {}
        headers = self.headers
        for line in block.split("\r\n") if block else ():
            name, colon, value = line.partition(":")
            if not colon or not name or name[0] in " \t" or name[-1] in " \t":
                raise UpstreamBrokenError(f"bad header line {line[:80]!r}")
            value = value.strip()
            headers.append((name, value))
            lowered = name.lower()
            if lowered in _FRAMING_HEADERS:
                if lowered == "content-length" and framing.get(lowered, value) != value:
                    raise UpstreamBrokenError("conflicting Content-Length headers")
                framing[lowered] = value
        return framing

    def _frame_body(self, version: str, framing: dict[str, str]) -> None:
        connection = framing.get("connection", "").lower()
        transfer_encoding = framing.get("transfer-encoding", "").lower()
        self.keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
        if self._head_request or self.status in _NO_BODY_STATUSES:
            self._remaining = 0
        elif transfer_encoding:
            if transfer_encoding != "chunked":
                raise UpstreamBrokenError(f"unsupported Transfer-Encoding {transfer_encoding!r}")
            self._chunked = True
        elif "content-length" in framing:
            self._remaining = _content_length(framing["content-length"])
        else:
            self.until_eof = True
            self.keep_alive = False

    def _feed_chunked(self, buffer: bytearray) -> bool:
        while True:
            if self._remaining > 0:  # inside a chunk's data (plus its trailing CRLF)
                if len(buffer) < self._remaining + 2:
                    return False
                if buffer[self._remaining : self._remaining + 2] != b"\r\n":
                    raise UpstreamBrokenError("chunk data not followed by CRLF")
                self._take(buffer, self._remaining)
                del buffer[:2]
                self._remaining = -1
                continue
            if self._remaining == 0:  # after the last chunk: trailers up to an empty line
                end = buffer.find(b"\r\n\r\n") if buffer[:2] != b"\r\n" else -2
                if end == -1:
                    return False
                del buffer[: (2 if end == -2 else end + 4)]
                return True
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                return False
            self._remaining = _chunk_size(bytes(buffer[:line_end]))
            del buffer[: line_end + 2]


def _status_line(line: str) -> tuple[str, int]:
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise UpstreamBrokenError(f"bad status line {line[:80]!r}")
    return parts[0], int(parts[1])


def _content_length(value: str) -> int:
    if not value.isdigit():
        raise UpstreamBrokenError(f"bad Content-Length {value!r}")
    return int(value)


def _chunk_size(line: bytes) -> int:
    size_text = line.split(b";", 1)[0].strip()
    if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
        raise UpstreamBrokenError(f"bad chunk size {size_text[:20]!r}")
    return int(size_text, 16)


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.closed = False
        self.idle_since = time.monotonic()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # bytes nobody asked for: this connection can't be trusted
            self.close()
            return
        self._buffer += data
        try:
            complete = self._parser.feed(self._buffer)
        except UpstreamBrokenError as error:
            self._fail(error)
            return
        if complete:
            self._complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is None:
            return
        if self._parser.finish_at_eof():
            self._complete()
        else:
            self._fail(UpstreamBrokenError("connection closed before the response was complete"))

    def exchange(self, request: bytes, head_request: bool) -> asyncio.Future:
        """Send request bytes; the future resolves to a RawResponse or an UpstreamBrokenError."""
        self._parser = ResponseParser(head_request)
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _complete(self) -> None:
        parser, waiter = self._parser, self._waiter
        self._parser = self._waiter = None
        if not parser.keep_alive or self._buffer:
            self.close()
        self.idle_since = time.monotonic()
        if waiter is not None and not waiter.done():
            waiter.set_result(RawResponse(parser.status, parser.headers, parser.body))

    def _fail(self, error: UpstreamError) -> None:
        waiter = self._waiter
        self._parser = self._waiter = None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class UpstreamPool:
    """Keep-alive connections to one function process, at most connections_max at a time."""

    def __init__(self, host: str, port: int, connections_max: int) -> None:
        self.host = host
        self.port = port
        self._host_header = f"{host}:{port}"
        self._idle: list[UpstreamConnection] = []
        self._slots = asyncio.Semaphore(connections_max)
        self._closed = False

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, timeout_seconds: float
    ) -> RawResponse:
        """One request/response; raises UpstreamConnectError, UpstreamBrokenError or TimeoutError."""
        payload = encode_request(method, target, self._host_header, headers, body)
        async with self._slots:
            connection = self._idle_connection() or await self._connect()
            loop = asyncio.get_running_loop()
            waiter = connection.exchange(payload, method == "HEAD")
            timer = loop.call_later(timeout_seconds, _expire, waiter, connection)
            try:
                response = await waiter
            except BaseException:
                connection.close()  # cancelled or failed mid-exchange: its next bytes belong to no one
                raise
            finally:
                timer.cancel()
            if not connection.closed and not self._closed:
                self._idle.append(connection)
            return response

    def close(self) -> None:
        self._closed = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    def _idle_connection(self) -> UpstreamConnection | None:
        oldest_allowed = time.monotonic() - IDLE_CONNECTION_SECONDS_MAX
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and connection.idle_since >= oldest_allowed:
                return connection
            connection.close()
        return None

    async def _connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(UpstreamConnection, self.host, self.port)
        except OSError as error:
            raise UpstreamConnectError(f"cannot connect to {self._host_header}: {error}") from error
        return connection


def _expire(waiter: asyncio.Future, connection: UpstreamConnection) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
        connection.close()  # a late answer must not be read as the next request's
