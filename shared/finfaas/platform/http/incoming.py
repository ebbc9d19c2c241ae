"""Event normalisation: the python3-http event as a Request, its ids and the caller's address."""

from __future__ import annotations

import ipaddress
import os
import re
import uuid
from collections.abc import Mapping
from typing import Any

from finfaas.platform.http.messages import Request

# Accepted in this order as the caller's correlation id; the OpenFaaS gateway sets X-Call-Id.
REQUEST_ID_SOURCES = ("x-request-id", "x-correlation-id", "x-call-id")
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The caller's address is read from ONE header: the one the deployed edge sets, overwriting any
# client's copy (the local gateway and an ingress in front of OpenFaaS: X-Real-Ip; Knative behind
# Kourier or Istio: X-Envoy-External-Address). Any other address header is client-controlled.
CLIENT_IP_HEADER_ENV = "FINFAAS_CLIENT_IP_HEADER"
CLIENT_IP_HEADER_DEFAULT = "X-Real-Ip"
# Only if configured: X-Forwarded-For's right-most entry, the one the nearest proxy appended.
FORWARDED_FOR_HEADER = "x-forwarded-for"
client_ip_chars_max = 45  # the longest textual IPv6 address


def incoming_request(event: Any, context: Any) -> Request:
    """The request as received, before routing; tolerant of runtimes that pass plain dicts."""
    headers = _lower_headers(getattr(event, "headers", None))
    body = getattr(event, "body", b"") or b""
    return Request(
        method=str(getattr(event, "method", "GET") or "GET").upper(),
        path=normalized_path(getattr(event, "path", "/")),
        route="",
        headers=headers,
        query=_query_lists(getattr(event, "query", None)),
        body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
        request_id=_request_id(headers),
        context=context,
    )


def _lower_headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    items = headers.items() if hasattr(headers, "items") else headers
    lowered: dict[str, str] = {}
    for key, value in items:
        lowered.setdefault(str(key).lower(), str(value))
    return lowered


def _query_lists(query: Any) -> dict[str, list[str]]:
    if query is None:
        return {}
    if hasattr(query, "getlist"):
        return {key: list(query.getlist(key)) for key in query.keys()}
    return {str(key): value if isinstance(value, list) else [str(value)] for key, value in query.items()}


def normalized_path(path: Any) -> str:
    text = str(path or "/")
    if not text.startswith("/"):
        text = "/" + text
    return text.rstrip("/") or "/"


def _request_id(headers: Mapping[str, str]) -> str:
    for name in REQUEST_ID_SOURCES:
        candidate = headers.get(name, "").strip()
        if REQUEST_ID_PATTERN.match(candidate):
            return candidate
    return uuid.uuid4().hex


def client_ip_header() -> str:
    """The header the deployed edge sets to the caller's address ($FINFAAS_CLIENT_IP_HEADER)."""
    return os.environ.get(CLIENT_IP_HEADER_ENV, "").strip() or CLIENT_IP_HEADER_DEFAULT


def client_ip(headers: Mapping[str, str], header: str | None = None) -> str | None:
    """The caller's address from the edge's header; None (unknown) when absent or not an IP address."""
    name = (header or client_ip_header()).lower()  # a Request's headers are keyed in lower case
    raw = headers.get(name) or ""
    if name == FORWARDED_FOR_HEADER:
        raw = raw.rsplit(",", 1)[-1]
    raw = raw.strip()
    if not raw or len(raw) > client_ip_chars_max:
        return None
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None
