"""How the gateway splits OpenFaaS paths and which headers cross the hop."""

from __future__ import annotations

import uuid

import pytest
from finfaas_dev.gateway import (
    ASYNC_FUNCTION_PREFIX,
    FUNCTION_PREFIX,
    CallIds,
    downstream_response_headers,
    problem,
    split_function_path,
    upstream_request_headers,
)
from multidict import CIMultiDict


@pytest.mark.parametrize(
    ("raw_path", "name", "rest"),
    [
        ("/function/echo", "echo", "/"),
        ("/function/echo/", "echo", "/"),
        ("/function/echo?x=1", "echo", "/?x=1"),
        ("/function/echo/a/b?x=1&y=%20", "echo", "/a/b?x=1&y=%20"),
        ("/function/echo/acc%2F1", "echo", "/acc%2F1"),
        ("/function/echo.openfaas-fn/a", "echo", "/a"),
    ],
)
def test_function_paths_split_into_name_and_the_rest_with_encoding_kept(raw_path, name, rest):
    assert split_function_path(raw_path, FUNCTION_PREFIX) == (name, rest)


def test_async_paths_split_the_same_way():
    assert split_function_path("/async-function/jobs/run?now=1", ASYNC_FUNCTION_PREFIX) == (
        "jobs",
        "/run?now=1",
    )


def test_hop_by_hop_headers_stay_behind_and_the_gateway_sets_the_call_id():
    incoming = CIMultiDict(
        [
            ("Host", "127.0.0.1:8080"),
            ("Connection", "keep-alive"),
            ("Content-Length", "2"),
            ("Transfer-Encoding", "chunked"),
            ("Expect", "100-continue"),
            ("X-Call-Id", "forged"),
            ("Authorization", "Bearer t"),
            ("Accept", "a"),
            ("Accept", "b"),
        ]
    )

    headers = upstream_request_headers(incoming, "call-1", "127.0.0.1")

    assert headers == [
        ("Authorization", "Bearer t"),
        ("Accept", "a"),
        ("Accept", "b"),
        ("X-Call-Id", "call-1"),
        ("X-Real-Ip", "127.0.0.1"),
    ]


def test_a_clients_own_address_headers_are_dropped_and_x_real_ip_is_the_connected_peer():
    incoming = CIMultiDict(
        [
            ("X-Real-Ip", "203.0.113.77"),
            ("x-real-ip", "203.0.113.78"),
            ("X-Forwarded-For", "198.51.100.1"),
            ("Forwarded", "for=198.51.100.2"),
            ("X-Envoy-External-Address", "198.51.100.3"),
            ("Accept", "a"),
        ]
    )

    headers = upstream_request_headers(incoming, "call-1", "192.0.2.10")

    assert headers == [("Accept", "a"), ("X-Call-Id", "call-1"), ("X-Real-Ip", "192.0.2.10")]


def test_without_a_known_peer_no_address_header_crosses_the_hop():
    incoming = CIMultiDict([("X-Real-Ip", "203.0.113.77")])

    assert upstream_request_headers(incoming, "call-1", None) == [("X-Call-Id", "call-1")]


UPSTREAM_HEADERS = [
    ("Set-Cookie", "a=1"),
    ("Set-Cookie", "b=2"),
    ("Content-Length", "9"),
    ("Connection", "close"),
    ("Content-Type", "application/json"),
]


def test_response_keeps_repeated_headers_and_drops_framing_ones():
    headers = downstream_response_headers(UPSTREAM_HEADERS, head_request=False)

    assert headers == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Type", "application/json")]


def test_a_head_reply_keeps_the_length_of_the_body_it_describes():
    assert ("Content-Length", "9") in downstream_response_headers(UPSTREAM_HEADERS, head_request=True)


def test_gateway_errors_are_problem_documents_with_a_stable_code():
    outcome = problem(502, "function_crashed", "Bad Gateway", "function 'x' closed the connection")

    assert outcome.status == 502
    assert ("Content-Type", "application/problem+json") in outcome.headers
    assert b'"code": "function_crashed"' in outcome.body
    assert b'"type": "urn:finfaas:problem:function_crashed"' in outcome.body


def test_call_ids_are_unique_and_shaped_like_uuids():
    first, second = CallIds(), CallIds()

    ids = [first.next() for _ in range(1000)] + [second.next() for _ in range(1000)]

    assert len(set(ids)) == 2000
    assert all(str(uuid.UUID(call_id)) == call_id for call_id in ids)
