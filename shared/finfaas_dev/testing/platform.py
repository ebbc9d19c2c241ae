"""Test support for function handlers: the python3-http Event, and tokens signed by a throwaway key.

    tokens = TokenMinter.generate()
    app = FunctionApp("accounts", verifier=tokens.verifier())
    reply = call(app.handle, "GET", "/accounts/a1", token=tokens.mint(scopes=["accounts:read"]))
    assert reply.status == 200 and reply.json()["account_id"] == "a1"
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from finfaas.platform import config
from finfaas.platform.jwt_auth import JwtVerifier, StaticKeySource
from finfaas.platform.keys import KeyRing, generate_signing_key
from finfaas.platform.tokens import ACCESS_TOKEN_TYPE

test_key_bits = 2048
# shared/finfaas_dev/testing/platform.py -> the repository root holding functions/<name>/handler.py
REPOSITORY_ROOT = Path(__file__).resolve().parents[3]


class Event:
    """What the python3-http template's index.py passes: werkzeug headers and query, bytes body."""

    def __init__(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str | list[str]] | None = None,
    ) -> None:
        from werkzeug.datastructures import Headers, MultiDict

        self.method = method
        self.path = path
        self.body = body
        self.headers = Headers(list((headers or {}).items()))
        pairs = [(k, v) for k, vs in (query or {}).items() for v in (vs if isinstance(vs, list) else [vs])]
        self.query = MultiDict(pairs)


@dataclass
class Context:
    hostname: str = "localhost"


@dataclass
class Reply:
    """A handler's answer with helpers to read it."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def call(
    handle: Callable[[Any, Any], dict[str, Any]],
    method: str,
    path: str,
    *,
    json_body: Any = None,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str | list[str]] | None = None,
    token: str | None = None,
) -> Reply:
    """Invoke handle(event, context) exactly as the template would, and wrap the result."""
    all_headers = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body).encode("utf-8")
        all_headers.setdefault("Content-Type", "application/json")
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    result = handle(Event(method, path, body, all_headers, query), Context())
    assert isinstance(result["body"], str), "index.py would str() a non-text body"
    return Reply(result["statusCode"], result["body"], dict(result["headers"]))


class TokenMinter:
    """Signs access tokens with a fresh key, and builds the verifier that trusts it."""

    def __init__(self, keyring: KeyRing, issuer: str, audience: str) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience

    @classmethod
    def generate(cls, issuer: str | None = None, audience: str | None = None) -> TokenMinter:
        settings = config.auth_settings()
        keyring = KeyRing.from_entries([generate_signing_key(bits=test_key_bits)])
        return cls(keyring, issuer or settings.issuer, audience or settings.audience)

    def verifier(self) -> JwtVerifier:
        return JwtVerifier(StaticKeySource(self.keyring.jwks()), self.issuer, self.audience)

    def claims(
        self,
        sub: str = "cust-1",
        scopes: Iterable[str] = (),
        kind: str = "customer",
        lifetime_seconds: int = 300,
    ) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "kind": kind,
            "scope": " ".join(scopes),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_seconds,
            "jti": uuid.uuid4().hex,
        }

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        import jwt

        key = self.keyring.active
        all_headers = {"kid": key.kid, "typ": ACCESS_TOKEN_TYPE, **(headers or {})}
        # A header given as None is left out, so tests can forge tokens without a kid.
        present = {name: value for name, value in all_headers.items() if value is not None}
        return jwt.encode(dict(claims), key.private_key, algorithm="RS256", headers=present)

    def mint(self, sub: str = "cust-1", scopes: Iterable[str] = (), kind: str = "customer") -> str:
        return self.sign(self.claims(sub, scopes, kind))


class CapturedLogs:
    """The JSON log lines written while capturing, parsed."""

    def __init__(self) -> None:
        import io

        self.stream = io.StringIO()

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("msg") == "request"]


@contextmanager
def captured_logs() -> Iterator[CapturedLogs]:
    """Route finfaas logs into memory for the block, then back to stdout."""
    from finfaas.platform import logging as finfaas_logging

    captured = CapturedLogs()
    finfaas_logging.configure(stream=captured.stream, level=logging.DEBUG)
    try:
        yield captured
    finally:
        finfaas_logging.configure()


def load_function_handler(function: str, root: Path = REPOSITORY_ROOT) -> ModuleType:
    """A fresh instance of functions/<function>/handler.py under a unique module name."""
    import importlib.util

    path = root / "functions" / function / "handler.py"
    spec = importlib.util.spec_from_file_location(f"finfaas_function_{function}_{uuid.uuid4().hex}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no handler at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def loopback_http_server(handler_class: type) -> Iterator[str]:
    """A threaded stdlib HTTP server on a free loopback port for the block; yields its base URL."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
