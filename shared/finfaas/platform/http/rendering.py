"""Rendering: a Response as the python3-http answer and as the idempotency store keeps it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel

from finfaas.platform.http.messages import JSON_MEDIA_TYPE, Response
from finfaas.platform.idempotency import (
    StoredResponse,
)

REQUEST_ID_HEADER = "X-Request-Id"
DEFAULT_RESPONSE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def stored_response(response: Response) -> StoredResponse:
    """A rendered response as the idempotency store keeps it (its media type travels as a header)."""
    headers = dict(response.headers)
    if response.body is not None:
        headers = merged_headers(headers, {"Content-Type": response.media_type})
    return StoredResponse(response.status, response.body or "", headers)


def from_stored(stored: StoredResponse) -> Response:
    headers = dict(stored.headers)
    media_type = next((v for k, v in headers.items() if k.lower() == "content-type"), JSON_MEDIA_TYPE)
    return Response(stored.body or None, stored.status_code, headers, media_type)


def rendered(response: Response) -> Response:
    """The response with its body as text: index.py str()s any body that is not a dict."""
    if response.status == 204 or response.body is None:
        response.body = None
    elif isinstance(response.body, bytes):
        response.body = response.body.decode("utf-8")
    elif not isinstance(response.body, str):
        response.body = _dump_json(response.body)
    return response


def event_response(response: Response, request_id: str) -> dict[str, Any]:
    content_type = {"Content-Type": response.media_type} if response.body is not None else {}
    headers = merged_headers(
        DEFAULT_RESPONSE_HEADERS, content_type, response.headers, {REQUEST_ID_HEADER: request_id}
    )
    return {"statusCode": response.status, "body": response.body or "", "headers": headers}


def merged_headers(*layers: Mapping[str, str]) -> dict[str, str]:
    """Later layers win, whatever the case of the header names."""
    merged: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for name, value in layer.items():
            merged[name.lower()] = (name, value)
    return dict(merged.values())


def _dump_json(body: Any) -> str:
    return json.dumps(body, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
