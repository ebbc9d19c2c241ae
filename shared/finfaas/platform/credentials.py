"""Service credentials: a function's own client_credentials token for calling other suite functions.

    addresses = config.function_addresses()
    tokens = ServiceTokens.from_secret(addresses, client_name="transfers")  # secret transfers-client
    client = GatewayClient(addresses, tokens)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from finfaas.platform import jsonio

# From config, not keys: keys also writes dev secrets with argon2, which callers' images do not carry.
from finfaas.platform.config import SERVICE_CLIENT_SECRET_SUFFIX, FunctionAddresses, addresses_of
from finfaas.platform.wiring import Lazy

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
    def from_secret(
        cls, gateway_url: str | FunctionAddresses, client_name: str = "orchestrator"
    ) -> ServiceTokens:
        """Credentials from the `<client_name>-client` secret ({client_id, client_secret}); tokens from
        the auth function's address."""
        from finfaas.platform.config import read_secret

        addresses = addresses_of(gateway_url)
        credentials = jsonio.loads(read_secret(client_name + SERVICE_CLIENT_SECRET_SUFFIX) or "{}")
        return cls(addresses.resolve(TOKEN_PATH), credentials["client_id"], credentials["client_secret"])

    def token(self) -> str:
        with self._lock:
            if self._cached is None or self._clock() >= self._cached[1]:
                self._cached = self._fetch()
            return self._cached[0]

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def _fetch(self) -> tuple[str, float]:
        post = self._post or _session.get().post
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

    def __init__(self, gateway_url: str | FunctionAddresses, client_name: str = "orchestrator") -> None:
        self._gateway_url = gateway_url
        self._client_name = client_name
        self._tokens = Lazy(self._from_secret)

    def token(self) -> str:
        return self._tokens.get().token()

    def invalidate(self) -> None:
        tokens = self._tokens.peek()
        if tokens is not None:
            tokens.invalidate()

    def _from_secret(self) -> ServiceTokens:
        try:
            return ServiceTokens.from_secret(self._gateway_url, self._client_name)
        except (ValueError, KeyError, RuntimeError) as error:  # missing or malformed secret
            raise TokenUnavailable(f"{self._client_name}{SERVICE_CLIENT_SECRET_SUFFIX}: {error}") from error


def _new_requests_session() -> Any:
    from finfaas.platform.suite_http import new_suite_session

    return new_suite_session()


# One pooled requests session per process, for the token endpoint (a form post, once per token).
_session: Lazy[Any] = Lazy(_new_requests_session)
