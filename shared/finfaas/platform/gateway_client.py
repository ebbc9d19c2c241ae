"""The one client for calling suite functions: bearer token, trace header, pooled HTTP.

    addresses = config.function_addresses()   # FINFAAS_GATEWAY_URL, FINFAAS_FUNCTION_URL_<NAME>
    client = GatewayClient(addresses, ServiceTokens.from_secret(addresses, "transfers"))
    reply = client.send("POST", "/function/risk/assessments", headers=..., body=b"{...}", timeout_seconds=3)

Callers name a function by its gateway path (/function/<name>/<route>); the addresses turn it into
the function's own URL where one is configured (Knative: no gateway), else the gateway's route.

Used by the services' clients (services/suite_clients.py) and the orchestrator's HTTP tasks
(workflow/tasks.py). It retries only once, after a 401, with a fresh token: callers are saga steps and
queue consumers whose own retries (a Task's Retry, the queue's redelivery) carry the same idempotency.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

from finfaas.platform import jsonio
from finfaas.platform.config import FunctionAddresses, addresses_of
from finfaas.platform.wiring import Lazy

connect_timeout_seconds_default = 3.0
reply_body_bytes_max = 256 * 1024
connections_per_host_max = 16  # one per in-process drive (workflow/inline.py)


class TokenSource(Protocol):
    """A bearer token for the caller's own identity (platform/credentials.py)."""

    def token(self) -> str: ...

    def invalidate(self) -> None: ...


class GatewayUnreachable(RuntimeError):
    """No answer from the gateway (refused, reset, unresolvable); `error_name` names the transport's error."""

    def __init__(self, error_name: str, detail: str) -> None:
        super().__init__(f"{error_name}: {detail}" if detail else error_name)
        self.error_name = error_name


class GatewayTimeout(GatewayUnreachable):
    """No answer within the call's connect or read timeout."""


@dataclass(frozen=True)
class GatewayReply:
    """An answer, requests-style, so an injected requester (an in-process gateway) can stand in."""

    status_code: int
    content: bytes
    headers: Any


class GatewayClient:
    """HTTP to /function/<name>/... (the function's own address, else the gateway), with the caller's
    bearer token and trace header."""

    def __init__(
        self,
        gateway_url: str | FunctionAddresses,
        tokens: TokenSource,
        *,
        connect_timeout_seconds: float = connect_timeout_seconds_default,
        request: Callable[..., Any] | None = None,
    ) -> None:
        self.addresses = addresses_of(gateway_url)
        self.gateway_url = self.addresses.gateway_url.rstrip("/")
        self._tokens = tokens
        self._connect_timeout_seconds = connect_timeout_seconds
        self._request = request or pooled_request

    def send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout_seconds: float,
    ) -> Any:
        """The answer, whatever its status; GatewayUnreachable (or GatewayTimeout) for none.

        The token source's own errors (TokenUnavailable) pass through unchanged.
        """
        reply = self._send_once(method, path, headers, body, timeout_seconds)
        if reply.status_code == HTTPStatus.UNAUTHORIZED:
            # A token the auth function no longer accepts (key rotation): one fresh try.
            self._tokens.invalidate()
            reply = self._send_once(method, path, headers, body, timeout_seconds)
        return reply

    def _send_once(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None, timeout_seconds: float
    ) -> Any:
        from finfaas.platform import tracing

        all_headers = {
            **headers,
            **tracing.outbound_headers(),
            "Authorization": f"Bearer {self._tokens.token()}",
        }
        try:
            return self._request(
                method,
                self.addresses.resolve(path),
                headers=all_headers,
                data=body,
                timeout=(self._connect_timeout_seconds, timeout_seconds),
                allow_redirects=False,
            )
        except Exception as error:  # transports raise many kinds; all mean "no answer"
            name = type(error).__name__
            unreachable = GatewayTimeout if "Timeout" in name else GatewayUnreachable
            raise unreachable(name, str(error)) from error


def reply_body(content: bytes | None) -> Any:
    """An answer's body: parsed JSON, else its text; None when empty. At most reply_body_bytes_max read."""
    raw = (content or b"")[:reply_body_bytes_max]
    if not raw:
        return None
    try:
        return jsonio.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _new_pool() -> Any:
    import urllib3

    return urllib3.PoolManager(maxsize=connections_per_host_max, retries=False)


_pool: Lazy[Any] = Lazy(_new_pool)


def pooled_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    data: bytes | None,
    timeout: tuple[float, float],
    allow_redirects: bool = False,
) -> GatewayReply:
    """One call on a process-wide urllib3 pool, answered requests-style.

    Every saga step makes one or more of these on its critical path, and `requests` costs about
    0.4 ms a call on top of urllib3 here. Its X-Ray patch adds nothing these calls lack: the trace
    header is sent explicitly (tracing.outbound_headers). A PoolManager reads no proxy settings
    from the environment: suite calls go straight to the gateway the suite is configured with.
    """
    import urllib3

    pool = _pool.get()
    connect_seconds, read_seconds = timeout
    reply = pool.request(
        method,
        url,
        headers=dict(headers),
        body=data,
        timeout=urllib3.Timeout(connect=connect_seconds, read=read_seconds),
        retries=False,
        redirect=allow_redirects,
    )
    return GatewayReply(reply.status, reply.data, reply.headers)
