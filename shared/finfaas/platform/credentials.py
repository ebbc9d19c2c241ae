"""Service credentials: a function's own client_credentials token for calling other suite functions.

    tokens = ServiceTokens.from_secret(gateway_url, client_name="transfers")  # secret transfers-client
    client = GatewayClient(gateway_url, tokens)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from finfaas.platform import jsonio

# From config, not keys: keys also writes dev secrets with argon2, which callers' images do not carry.
from finfaas.platform.config import SERVICE_CLIENT_SECRET_SUFFIX

TOKEN_PATH = "/function/auth/oauth/token"  # noqa: S105 - a route, not a credential
token_connect_timeout_seconds = 3.0
token_read_timeout_seconds = 60.0
token_refresh_margin_seconds = 60


class TokenUnavailable(RuntimeError):
    """The function could not obtain its service token."""


class ServiceTokens:
    """An access token from the client_credentials grant, cached until shortly before it expires."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        post: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._post = post
        self._clock = clock
        self._cached: tuple[str, float] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_secret(cls, gateway_url: str, client_name: str = "orchestrator") -> ServiceTokens:
        """Credentials from the `<client_name>-client` secret ({client_id, client_secret})."""
        from finfaas.platform.config import read_secret

        credentials = jsonio.loads(read_secret(client_name + SERVICE_CLIENT_SECRET_SUFFIX) or "{}")
        return cls(
            gateway_url.rstrip("/") + TOKEN_PATH, credentials["client_id"], credentials["client_secret"]
        )

    def token(self) -> str:
        with self._lock:
            if self._cached is None or self._clock() >= self._cached[1]:
                self._cached = self._fetch()
            return self._cached[0]

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def _fetch(self) -> tuple[str, float]:
        post = self._post or _requests_session().post
        response = post(
            self._token_url,
            data={"grant_type": "client_credentials"},
            auth=(self._client_id, self._client_secret),
            timeout=(token_connect_timeout_seconds, token_read_timeout_seconds),
        )
        if response.status_code != HTTPStatus.OK:
            raise TokenUnavailable(f"token endpoint answered {response.status_code}")
        body = response.json()
        lifetime = float(body.get("expires_in", 0))
        return body["access_token"], self._clock() + max(lifetime - token_refresh_margin_seconds, 0)


class LazyServiceTokens:
    """ServiceTokens from the `<client_name>-client` secret, read when the first call needs a token."""

    def __init__(self, gateway_url: str, client_name: str = "orchestrator") -> None:
        self._gateway_url = gateway_url
        self._client_name = client_name
        self._tokens: ServiceTokens | None = None
        self._lock = threading.Lock()

    def token(self) -> str:
        return self._loaded().token()

    def invalidate(self) -> None:
        if self._tokens is not None:
            self._tokens.invalidate()

    def _loaded(self) -> ServiceTokens:
        with self._lock:
            if self._tokens is None:
                try:
                    self._tokens = ServiceTokens.from_secret(self._gateway_url, self._client_name)
                except (ValueError, KeyError, RuntimeError) as error:  # missing or malformed secret
                    raise TokenUnavailable(
                        f"{self._client_name}{SERVICE_CLIENT_SECRET_SUFFIX}: {error}"
                    ) from error
            return self._tokens


_session_lock = threading.Lock()
_session: Any = None


def _requests_session() -> Any:
    """One pooled requests session per process, for the token endpoint (a form post, once per token)."""
    global _session
    with _session_lock:
        if _session is None:
            from finfaas.platform.suite_http import new_suite_session

            _session = new_suite_session()
        return _session
