"""Issuing access tokens: client authentication (RFC 6749 2.3.1) and RS256 JWTs (RFC 9068 shape).

Errors are OAuthError, rendered as RFC 6749 5.2 bodies {error, error_description} by the auth function.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from finfaas.platform import config, jsonio
from finfaas.platform.keys import CLIENTS_SECRET, SIGNING_ALGORITHM, KeyRing

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - the JWT typ header, not a credential
CLIENT_CREDENTIALS = "client_credentials"
CLIENT_KIND = "client"
CUSTOMER_KIND = "customer"
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
# RFC 6749 3.3 scope-token: printable ASCII except space, '"' and '\'.
SCOPE_TOKEN_PATTERN = re.compile(r'^[\x21\x23-\x5B\x5D-\x7E]{1,128}$')
access_token_lifetime_seconds = 600
client_secret_chars_max = 256
scope_param_chars_max = 1024
clients_max = 1000


class OAuthError(Exception):
    """An RFC 6749 error: code, human description and HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def to_dict(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_client() -> OAuthError:
    # One answer for unknown id, wrong secret or bad encoding: no hint which one it was.
    return OAuthError("invalid_client", "Client authentication failed.", 401)


@dataclass(frozen=True)
class Client:
    """A registered client application and the scopes it may be granted."""

    client_id: str
    secret_hash: str
    scopes: frozenset[str]


class ClientRegistry:
    """Clients from the `auth-clients` secret; secrets are verified against argon2 hashes."""

    def __init__(self, clients: Iterable[Client]) -> None:
        from argon2 import PasswordHasher

        self._clients = {client.client_id: client for client in clients}
        self._hasher = PasswordHasher()
        self._decoy_hash: str | None = None
        self._decoy_lock = threading.Lock()

    @classmethod
    def from_secret(cls, read_secret: Callable[[str], str | None] = config.read_secret) -> ClientRegistry:
        entries = jsonio.loads(read_secret(CLIENTS_SECRET) or "")
        if not isinstance(entries, list) or len(entries) > clients_max:
            raise ValueError(f"{CLIENTS_SECRET} must be a JSON list of at most {clients_max} clients")
        return cls(_client(entry) for entry in entries)

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client if the secret matches; unknown ids cost the same argon2 work as known ones."""
        from argon2.exceptions import Argon2Error, InvalidHashError

        client = self._clients.get(client_id)
        stored = client.secret_hash if client else self._decoy()
        try:
            self._hasher.verify(stored, secret)
        except (Argon2Error, InvalidHashError):
            return None
        return client

    def _decoy(self) -> str:
        with self._decoy_lock:
            if self._decoy_hash is None:
                self._decoy_hash = self._hasher.hash(uuid.uuid4().hex)
            return self._decoy_hash


def _client(entry: Any) -> Client:
    if not isinstance(entry, Mapping) or not {"client_id", "secret_hash", "scopes"} <= set(entry):
        raise ValueError("each client needs client_id, secret_hash and scopes")
    if not CLIENT_ID_PATTERN.match(str(entry["client_id"])):
        raise ValueError(f"client_id {entry['client_id']!r} is not allowed")
    scopes = entry["scopes"]
    if not isinstance(scopes, list) or not all(SCOPE_TOKEN_PATTERN.match(str(s)) for s in scopes):
        raise ValueError(f"client {entry['client_id']!r}: scopes must be a list of scope tokens")
    return Client(str(entry["client_id"]), str(entry["secret_hash"]), frozenset(scopes))


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str

    def to_dict(self) -> dict[str, Any]:
        """The RFC 6749 5.1 success body."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class TokenIssuer:
    """Signs access tokens with the key ring's active key."""

    def __init__(
        self,
        keyring: KeyRing,
        issuer: str,
        audience: str,
        clock: Callable[[], float] = time.time,
        lifetime_seconds: int = access_token_lifetime_seconds,
    ) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.clock = clock
        self.lifetime_seconds = lifetime_seconds

    def issue(self, sub: str, kind: str, scopes: Iterable[str], client_id: str) -> IssuedToken:
        import jwt

        now = int(self.clock())
        scope = " ".join(sorted(set(scopes)))
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "client_id": client_id,
            "kind": kind,
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime_seconds,
            "jti": uuid.uuid4().hex,
        }
        key = self.keyring.active
        headers = {"kid": key.kid, "typ": ACCESS_TOKEN_TYPE}
        token = jwt.encode(claims, key.private_key, algorithm=SIGNING_ALGORITHM, headers=headers)
        return IssuedToken(token, self.lifetime_seconds, scope)


def client_credentials_grant(
    form: Mapping[str, str],
    authorization: str | None,
    clients: ClientRegistry,
    issuer: TokenIssuer,
) -> IssuedToken:
    """RFC 6749 4.4: authenticate the client, narrow the scopes, issue a token."""
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required.")
    if grant_type != CLIENT_CREDENTIALS:
        raise OAuthError("unsupported_grant_type", f"Only {CLIENT_CREDENTIALS} is supported here.")
    client_id, secret = client_credentials(form, authorization)
    client = clients.authenticate(client_id, secret)
    if client is None:
        raise invalid_client()
    scopes = granted_scopes(form.get("scope"), client.scopes)
    return issuer.issue(client.client_id, CLIENT_KIND, scopes, client.client_id)


def client_credentials(form: Mapping[str, str], authorization: str | None) -> tuple[str, str]:
    """(client_id, secret) from HTTP Basic or from the form body; using both is an error (RFC 6749 2.3)."""
    in_form = "client_secret" in form
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() == "basic":
        if in_form:
            raise OAuthError("invalid_request", "Authenticate with HTTP Basic or the form body, not both.")
        return _basic_credentials(encoded.strip())
    if authorization:
        raise invalid_client()
    if not in_form or not form.get("client_id"):
        raise invalid_client()
    return _checked(form["client_id"], form["client_secret"])


def _basic_credentials(encoded: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client() from None
    client_id, separator, secret = decoded.partition(":")
    if not separator:
        raise invalid_client()
    # RFC 6749 2.3.1: both parts are form-urlencoded before being joined.
    return _checked(unquote_plus(client_id), unquote_plus(secret))


def _checked(client_id: str, secret: str) -> tuple[str, str]:
    if not CLIENT_ID_PATTERN.match(client_id) or not 0 < len(secret) <= client_secret_chars_max:
        raise invalid_client()
    return client_id, secret


def granted_scopes(requested: str | None, allowed: frozenset[str]) -> frozenset[str]:
    """The requested scopes if all are allowed; all allowed scopes when none are requested."""
    if requested is None or not requested.strip():
        return allowed
    if len(requested) > scope_param_chars_max:
        raise OAuthError("invalid_scope", "The scope parameter is too long.")
    wanted = frozenset(requested.split())
    if not all(SCOPE_TOKEN_PATTERN.match(scope) for scope in wanted):
        raise OAuthError("invalid_scope", "The scope parameter is malformed.")
    refused = wanted - allowed
    if refused:
        raise OAuthError("invalid_scope", f"Not allowed for this client: {' '.join(sorted(refused))}.")
    return wanted
