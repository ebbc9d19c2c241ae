"""Service credentials: one client_credentials token per lifetime, refreshed before it expires."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from finfaas.platform.credentials import ServiceTokens, TokenUnavailable, token_refresh_margin_seconds

TOKEN_URL = "http://gateway.test/function/auth/oauth/token"  # noqa: S105 - a route, not a credential
LIFETIME_SECONDS = 600


@dataclass
class _Answer:
    status_code: int
    body: dict

    def json(self) -> dict:
        return self.body


class TokenEndpoint:
    """The auth function's token endpoint: a fresh token per grant, or a chosen failure status."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.grants: list[dict] = []

    def post(self, url: str, *, data: dict, auth: tuple[str, str], timeout: tuple[float, float]) -> _Answer:
        self.grants.append({"url": url, "data": data, "auth": auth})
        token = f"token-{len(self.grants)}"
        return _Answer(self.status, {"access_token": token, "expires_in": LIFETIME_SECONDS})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _tokens(endpoint: TokenEndpoint, clock: Clock) -> ServiceTokens:
    return ServiceTokens(TOKEN_URL, "transfers", "s3cret", post=endpoint.post, clock=clock)


def test_one_grant_serves_every_call_until_shortly_before_expiry():
    endpoint, clock = TokenEndpoint(), Clock()
    tokens = _tokens(endpoint, clock)

    first = tokens.token()
    clock.now += LIFETIME_SECONDS - token_refresh_margin_seconds - 1
    second = tokens.token()
    clock.now += 1
    third = tokens.token()

    assert (first, second, third) == ("token-1", "token-1", "token-2")
    assert endpoint.grants[0] == {
        "url": TOKEN_URL, "data": {"grant_type": "client_credentials"}, "auth": ("transfers", "s3cret"),
    }


def test_an_invalidated_token_is_granted_again_on_next_use():
    endpoint = TokenEndpoint()
    tokens = _tokens(endpoint, Clock())

    tokens.token()
    tokens.invalidate()

    assert tokens.token() == "token-2"
    assert len(endpoint.grants) == 2


def test_a_refused_grant_is_token_unavailable():
    tokens = _tokens(TokenEndpoint(status=401), Clock())

    with pytest.raises(TokenUnavailable):
        tokens.token()
