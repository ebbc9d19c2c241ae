"""Request handlers for the stdlib HTTP servers tests run on loopback
(`finfaas_dev.testing.platform.loopback_http_server` serves them on a free port)."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit


class QuietHandler(BaseHTTPRequestHandler):
    """Writes no access log lines to stderr, and answers bodies with their length."""

    def log_message(self, *args: Any) -> None:
        return None

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def answer_json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json", **(headers or {})}
        self.answer(status, json.dumps(document).encode(), headers)


def json_document_handler(document: Any) -> type[BaseHTTPRequestHandler]:
    """Answers every GET with `document` as JSON, as an issuer serves its JWKS."""

    class Document(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.answer_json(200, document)

    return Document


def python3_http_handler(name: str, handle: Callable[..., dict]) -> type[BaseHTTPRequestHandler]:
    """A python3-http `handle(event, context)` at /function/<name>/..., as the OpenFaaS gateway routes it."""
    from finfaas_dev.testing.platform import Context, Event

    prefix = f"/function/{name}"

    class Function(QuietHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            event = Event(self.command, parts.path.removeprefix(prefix) or "/", body, dict(self.headers),
                          dict(parse_qs(parts.query)))
            result = handle(event, Context())
            self.answer(result["statusCode"], result["body"].encode(), dict(result["headers"]))

        do_GET = do_POST = _serve

    return Function
