"""The console's Suite port over the gateway client: each call carries the operator's own bearer token."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from finfaas.platform.config import FunctionAddresses, addresses_of
from finfaas.platform.gateway_client import GatewayClient, GatewayUnreachable, pooled_request, reply_body
from finfaas.services.console.errors import FunctionDown

GATEWAY = "gateway"
SYSTEM_FUNCTIONS_PATH = "/system/functions"
connect_timeout_seconds = 2.0
read_timeout_seconds = 10.0


class _Bearer:
    """The operator's token as a TokenSource: nothing to refresh, the operator signs in again."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def invalidate(self) -> None:
        return None


class GatewaySuite:
    """Suite functions through the gateway (or their own addresses), one pooled connection per host."""

    def __init__(self, where: str | FunctionAddresses, request: Callable[..., Any] | None = None) -> None:
        self._addresses = addresses_of(where)
        self._request = request or pooled_request

    def call(self, function: str, method: str, path: str, token: str, body: Any = None,
             headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        return self._send(function, method, f"/function/{function}{path}", token, body, headers)

    def gateway_functions(self, token: str) -> tuple[int, Any]:
        return self._send(GATEWAY, "GET", SYSTEM_FUNCTIONS_PATH, token)

    def _send(self, function: str, method: str, path: str, token: str, body: Any = None,
              headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        client = GatewayClient(self._addresses, _Bearer(token),
                               connect_timeout_seconds=connect_timeout_seconds, request=self._request)
        all_headers = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            reply = client.send(method, path, headers=all_headers, body=data,
                                timeout_seconds=read_timeout_seconds)
        except GatewayUnreachable as error:
            raise FunctionDown(function, error.error_name) from error
        if reply.status_code >= 500:
            raise FunctionDown(function, f"answered {reply.status_code}")
        return reply.status_code, reply_body(reply.content)

    def token(self, client_id: str, client_secret: str) -> tuple[int, Any]:
        form = urlencode({"grant_type": "client_credentials", "client_id": client_id,
                          "client_secret": client_secret}).encode()
        url = self._addresses.resolve("/function/auth/oauth/token")
        try:
            reply = self._request("POST", url, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                        "Accept": "application/json"},
                                  data=form, timeout=(connect_timeout_seconds, read_timeout_seconds))
        except Exception as error:  # transports raise many kinds; all mean "no answer"
            raise FunctionDown("auth", type(error).__name__) from error
        if reply.status_code >= 500:
            raise FunctionDown("auth", f"answered {reply.status_code}")
        return reply.status_code, reply_body(reply.content)
