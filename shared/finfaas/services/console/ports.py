"""What the console needs from the suite: the other functions' HTTP APIs, with the operator's token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Suite(Protocol):
    """Calls a suite function through the gateway; FunctionDown when it does not answer or answers 5xx."""

    def call(self, function: str, method: str, path: str, token: str, body: Any = None,
             headers: Mapping[str, str] | None = None) -> tuple[int, Any]: ...

    def gateway_functions(self, token: str) -> tuple[int, Any]:
        """The gateway's GET /system/functions: each function's replicas, invocations and cold starts."""
        ...

    def token(self, client_id: str, client_secret: str) -> tuple[int, Any]:
        """The auth function's client_credentials answer for an operator account."""
        ...
