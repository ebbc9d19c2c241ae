"""The gateway's HTTP/1.1 response parser: framing, keep-alive, and what it refuses."""

from __future__ import annotations

import pytest
from finfaas_dev.upstream import (
    RESPONSE_BODY_BYTES_MAX,
    ResponseParser,
    UpstreamBrokenError,
    encode_request,
)


def _parse(raw: bytes, head_request: bool = False, piece_bytes: int | None = None):
    parser = ResponseParser(head_request)
    buffer = bytearray()
    pieces = [raw[i : i + piece_bytes] for i in range(0, len(raw), piece_bytes)] if piece_bytes else [raw]
    complete = False
    for piece in pieces:
        buffer += piece
        complete = parser.feed(buffer)
    return parser, complete, buffer


@pytest.mark.parametrize("piece_bytes", [None, 1, 7])
def test_content_length_body_completes_whatever_the_packet_boundaries(piece_bytes):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"

    parser, complete, leftover = _parse(raw, piece_bytes=piece_bytes)

    assert complete and parser.status == 200 and parser.body == b"hello"
    assert ("X-A", "1") in parser.headers and parser.keep_alive and not leftover


@pytest.mark.parametrize("piece_bytes", [None, 1, 5])
def test_chunked_body_with_extensions_and_trailers_is_decoded(piece_bytes):
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: t\r\n\r\n"
    )

    parser, complete, leftover = _parse(raw, piece_bytes=piece_bytes)

    assert complete and parser.body == b"Wikipedia in \r\n\r\nchunks." and not leftover


def test_a_body_without_length_runs_to_the_close_and_the_connection_is_not_reused():
    parser, complete, _ = _parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial")

    assert not complete and not parser.keep_alive
    assert parser.finish_at_eof() and parser.body == b"partial"


@pytest.mark.parametrize("status", [204, 304])
def test_statuses_without_body_complete_at_the_head(status):
    parser, complete, _ = _parse(f"HTTP/1.1 {status} X\r\nContent-Length: 10\r\n\r\n".encode())

    assert complete and parser.body == b""


def test_head_responses_have_no_body_despite_content_length():
    parser, complete, _ = _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head_request=True)

    assert complete and parser.body == b""


def test_an_interim_100_continue_is_skipped():
    parser, complete, _ = _parse(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    )

    assert complete and parser.status == 201 and parser.body == b"ok"


def test_http_1_0_closes_unless_keep_alive_is_asked():
    parser, _, _ = _parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")

    assert not parser.keep_alive


def test_bytes_after_the_response_are_left_in_the_buffer_for_the_caller_to_judge():
    _, complete, leftover = _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")

    assert complete and bytes(leftover) == b"EXTRA"


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"SMTP 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX",
    ],
)
def test_malformed_responses_are_refused(raw):
    with pytest.raises(UpstreamBrokenError):
        _parse(raw)


def test_an_oversized_body_is_refused_before_it_is_buffered():
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {RESPONSE_BODY_BYTES_MAX + 1}\r\n\r\n".encode()

    with pytest.raises(UpstreamBrokenError, match="exceeds"):
        _parse(head + b"x" * (RESPONSE_BODY_BYTES_MAX + 1))


def test_requests_carry_host_and_length_and_keep_header_order():
    raw = encode_request("POST", "/a?b=1", "127.0.0.1:9", [("X-B", "2"), ("X-A", "1")], b"{}")

    assert (
        raw == b"POST /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-B: 2\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n{}"
    )


def test_bodiless_get_has_no_content_length_but_an_empty_post_has_zero():
    assert b"Content-Length" not in encode_request("GET", "/", "h", [], b"")
    assert b"Content-Length: 0" in encode_request("POST", "/", "h", [], b"")
