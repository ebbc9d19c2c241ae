"""The one gateway client over real loopback sockets: token, one retry after a 401, trace header, timeouts."""

from __future__ import annotations

import json
import time

import pytest
from finfaas.platform import config, tracing
from finfaas.platform.credentials import TokenUnavailable
from finfaas.platform.gateway_client import GatewayClient, GatewayTimeout, GatewayUnreachable
from finfaas_dev.net import free_port
from finfaas_dev.testing.platform import loopback_http_server
from support.http_testing import QuietHandler

INCOMING = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
DEAD_PROXY = "http://127.0.0.1:9"  # discard port: nothing answers there
SLOW_SECONDS = 2.0
ACCEPTED_TOKEN = "token-2"  # noqa: S105 - a test token, not a credential


class _Function(QuietHandler):
    """A function behind the gateway: accepts only ACCEPTED_TOKEN, records what it saw."""

    protocol_version = "HTTP/1.1"  # keep-alive, so pooled connections can be observed
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        port = str(self.client_address[1])
        _Function.seen.append({**dict(self.headers), "path": self.path, "body": body.decode(), "port": port})
        if self.path.endswith("/slow"):
            time.sleep(SLOW_SECONDS)
        if self.headers.get("Authorization") != f"Bearer {ACCEPTED_TOKEN}":
            self.answer_json(401, {"code": "unauthorized"})
        else:
            self.answer_json(200, {"ok": True})



class RotatingTokens:
    """A token source whose next token differs after each invalidate (a key rotation seen by the caller)."""

    def __init__(self, first: int = 1) -> None:
        self.issued = first
        self.invalidations = 0

    def token(self) -> str:
        return f"token-{self.issued}"

    def invalidate(self) -> None:
        self.invalidations += 1
        self.issued += 1


class BrokenTokens:
    def token(self) -> str:
        raise TokenUnavailable("token endpoint answered 503")

    def invalidate(self) -> None:
        pass


@pytest.fixture
def gateway():
    _Function.seen = []
    with loopback_http_server(_Function) as url:
        yield url


def _post(client: GatewayClient, route: str = "debits", timeout_seconds: float = 5.0):
    return client.send(
        "POST",
        f"/function/bank/{route}",
        headers={"Content-Type": "application/json"},
        body=b'{"amount":1}',
        timeout_seconds=timeout_seconds,
    )


def test_a_401_is_retried_once_with_a_fresh_token(gateway):
    # GIVEN a caller whose cached token the function no longer accepts
    tokens = RotatingTokens(first=1)

    # WHEN it calls the function
    reply = _post(GatewayClient(gateway, tokens))

    # THEN the call is made again, once, with a fresh token, and the second answer is returned
    assert reply.status_code == 200
    assert json.loads(reply.content) == {"ok": True}
    assert [seen["Authorization"] for seen in _Function.seen] == ["Bearer token-1", "Bearer token-2"]
    assert tokens.invalidations == 1
    assert {seen["body"] for seen in _Function.seen} == {'{"amount":1}'}


def test_a_second_401_is_the_answer_not_another_retry(gateway):
    tokens = RotatingTokens(first=3)  # neither token-3 nor token-4 is accepted

    reply = _post(GatewayClient(gateway, tokens))

    assert reply.status_code == 401
    assert len(_Function.seen) == 2
    assert tokens.invalidations == 1


def test_an_accepted_token_is_not_refreshed(gateway):
    tokens = RotatingTokens(first=2)

    assert _post(GatewayClient(gateway, tokens)).status_code == 200
    assert len(_Function.seen) == 1 and tokens.invalidations == 0


def test_the_callers_trace_header_is_forwarded(gateway):
    # GIVEN a call made while serving a request that carries a trace header
    tracer = tracing.Tracer("transfers", config.TracingSettings(enabled=False, daemon_address="127.0.0.1:9"))
    with tracer.invocation("transfers", INCOMING, "POST", "/transfers"):
        _post(GatewayClient(gateway, RotatingTokens(first=2)))

    # THEN the function sees the same trace
    [seen] = _Function.seen
    assert seen["X-Amzn-Trace-Id"] == INCOMING


def test_no_answer_within_the_read_timeout_is_a_gateway_timeout(gateway):
    started = time.monotonic()

    with pytest.raises(GatewayTimeout):
        _post(GatewayClient(gateway, RotatingTokens(first=2)), "slow", timeout_seconds=0.3)

    assert time.monotonic() - started < SLOW_SECONDS


def test_nobody_listening_is_unreachable_not_a_timeout():
    closed_port = free_port()

    with pytest.raises(GatewayUnreachable) as raised:
        _post(GatewayClient(f"http://127.0.0.1:{closed_port}", RotatingTokens()))

    assert not isinstance(raised.value, GatewayTimeout)


def test_a_token_source_failure_passes_through_and_nothing_is_sent(gateway):
    with pytest.raises(TokenUnavailable):
        _post(GatewayClient(gateway, BrokenTokens()))

    assert _Function.seen == []


def test_consecutive_calls_reuse_one_pooled_connection(gateway):
    client = GatewayClient(gateway, RotatingTokens(first=2))

    for _ in range(3):
        assert _post(client).status_code == 200

    # One connection for all three: no extra TCP handshake per call on a saga's critical path.
    assert len({seen["port"] for seen in _Function.seen}) == 1


def test_a_proxy_in_the_environment_does_not_reroute_calls(gateway, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, DEAD_PROXY)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    assert _post(GatewayClient(gateway, RotatingTokens(first=2))).status_code == 200


def test_a_function_with_its_own_address_is_called_there_not_through_the_gateway(gateway):
    # GIVEN addresses where the bank function has its own (a Knative Service) and no gateway answers
    addresses = config.function_addresses({"FINFAAS_GATEWAY_URL": DEAD_PROXY,
                                           config.function_url_env("bank"): gateway + "/"})

    # WHEN a caller names the function by its gateway path
    reply = _post(GatewayClient(addresses, RotatingTokens(first=2)), "debits?x=1")

    # THEN the call reaches the function's own address, with the route below it
    assert reply.status_code == 200
    assert [seen["path"] for seen in _Function.seen] == ["/debits?x=1"]


def test_addresses_fall_back_to_the_gateway_route_per_function():
    addresses = config.function_addresses({
        "FINFAAS_GATEWAY_URL": "http://gateway.openfaas:8080/",
        "FINFAAS_FUNCTION_URL_RISK_CHECKS": "http://risk-checks.ns.svc.cluster.local",
    })
    assert addresses.resolve("/function/ledger/pending/t-1-hold/post") == (
        "http://gateway.openfaas:8080/function/ledger/pending/t-1-hold/post")
    assert addresses.resolve("/function/risk-checks/assessments") == (
        "http://risk-checks.ns.svc.cluster.local/assessments")
    assert addresses.resolve("/function/risk-checks") == "http://risk-checks.ns.svc.cluster.local"
    assert addresses.resolve("/function/ledgerx/a") == "http://gateway.openfaas:8080/function/ledgerx/a"
    assert config.function_addresses({}).url("auth") == "http://127.0.0.1:8080/function/auth"


def test_the_jwks_is_fetched_from_the_auth_functions_own_address(monkeypatch):
    # GIVEN a target that sets the auth function's address but no JWKS URL
    monkeypatch.delenv("FINFAAS_JWKS_URL", raising=False)
    monkeypatch.setenv(config.function_url_env("auth"), "http://auth.finfaas.svc.cluster.local")
    config.auth_settings.cache_clear()
    try:
        # THEN verifiers fetch the keys there
        assert config.auth_settings().jwks_url == "http://auth.finfaas.svc.cluster.local/.well-known/jwks.json"
    finally:
        config.auth_settings.cache_clear()
