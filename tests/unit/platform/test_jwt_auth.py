"""Bearer-token checks: every forgery is the same 401, scopes give 403, the JWKS cache behaves."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from finfaas.platform.http import FunctionApp, Request
from finfaas.platform.jwt_auth import (
    InvalidToken,
    JwksCache,
    JwtVerifier,
    KeysUnavailable,
    fetch_json,
    jwks_refetch_interval_seconds_min,
    jwks_stale_seconds_max,
    jwks_ttl_seconds,
    jwt_leeway_seconds,
    parse_jwks,
)
from finfaas_dev.testing.platform import TokenMinter, call, captured_logs, loopback_http_server
from finfaas_dev.testing.workflow import FakeClock
from support.http_testing import json_document_handler


@pytest.fixture(scope="module")
def other_minter() -> TokenMinter:
    return TokenMinter.generate()


def build_app(verifier) -> FunctionApp:
    app = FunctionApp("accounts", verifier=verifier)

    @app.route("GET", "/accounts/{account_id}", scopes=["accounts:read"])
    def get_account(req: Request, account_id: str) -> dict:
        """Read one account."""
        principal = req.principal
        return {"sub": principal.sub, "kind": principal.kind, "scopes": sorted(principal.scopes)}

    @app.route("POST", "/_/ops/replay")
    def replay(req: Request) -> dict:
        """An operations route."""
        return {"replayed": True}

    return app


@pytest.fixture(scope="module")
def app(minter) -> FunctionApp:
    return build_app(minter.verifier())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned(header: dict, claims: dict, signature: bytes = b"") -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}.{b64url(signature)}"


def hs256_with_public_key(minter: TokenMinter) -> str:
    # The classic algorithm-confusion forgery: HMAC keyed with the (public) RSA key.
    from cryptography.hazmat.primitives import serialization

    public_pem = minter.keyring.active.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": minter.keyring.active.kid}
    signing_input = unsigned(header, minter.claims(scopes=["accounts:read"])).rsplit(".", 1)[0]
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def tampered(minter: TokenMinter) -> str:
    token = minter.mint(scopes=["accounts:read"])
    header, _, signature = token.split(".")
    escalated = minter.claims(sub="admin", scopes=["accounts:read", "ops"])
    return f"{header}.{b64url(json.dumps(escalated).encode())}.{signature}"


def forged_tokens(minter: TokenMinter, other: TokenMinter) -> dict[str, str]:
    now = int(time.time())
    read = ["accounts:read"]
    kid = minter.keyring.active.kid

    def without(claim: str) -> dict:
        claims = minter.claims(scopes=read)
        del claims[claim]
        return claims

    return {
        "alg-none": unsigned({"alg": "none", "typ": "at+jwt", "kid": kid}, minter.claims(scopes=read)),
        "hs256-with-public-key": hs256_with_public_key(minter),
        "expired": minter.sign({**minter.claims(scopes=read), "exp": now - jwt_leeway_seconds - 5}),
        "future-nbf": minter.sign({**minter.claims(scopes=read), "nbf": now + 3600}),
        "future-iat": minter.sign({**minter.claims(scopes=read), "iat": now + 3600}),
        "missing-exp": minter.sign(without("exp")),
        "missing-iat": minter.sign(without("iat")),
        "missing-sub": minter.sign(without("sub")),
        "wrong-aud": minter.sign({**minter.claims(scopes=read), "aud": "another-service"}),
        "wrong-iss": minter.sign({**minter.claims(scopes=read), "iss": "https://evil.example"}),
        "unknown-kid": minter.sign(minter.claims(scopes=read), {"kid": "no-such-kid"}),
        "no-kid": minter.sign(minter.claims(scopes=read), {"kid": None}),
        "tampered-payload": tampered(minter),
        "other-key-same-kid": other.sign(minter.claims(scopes=read), {"kid": kid}),
        "id-token-typ": minter.sign(minter.claims(scopes=read), {"typ": "JWT"}),
        "unknown-kind": minter.sign({**minter.claims(scopes=read), "kind": "admin"}),
        "garbage": "not-a-token",
        "oversized": "a." + "b" * 10_000 + ".c",
    }


def test_a_valid_token_reaches_the_handler_with_its_principal(app, minter):
    token = minter.mint(sub="cust-7", scopes=["accounts:read", "payments:write"], kind="customer")

    reply = call(app.handle, "GET", "/accounts/a1", token=token)

    assert reply.status == 200
    assert reply.json() == {
        "sub": "cust-7",
        "kind": "customer",
        "scopes": ["accounts:read", "payments:write"],
    }


def test_every_forged_or_invalid_token_gets_the_identical_401(app, minter, other_minter):
    # GIVEN a reference 401 for a request without any token
    reference = call(app.handle, "GET", "/accounts/a1")
    assert reference.status == 401
    assert reference.header("WWW-Authenticate") == 'Bearer realm="finfaas"'

    for name, token in forged_tokens(minter, other_minter).items():
        reply = call(app.handle, "GET", "/accounts/a1", token=token)

        # THEN each one is refused with a body that reveals nothing about why
        assert reply.status == 401, name
        assert reply.body == reference.body, name
        assert reply.header("WWW-Authenticate") == 'Bearer realm="finfaas", error="invalid_token"', name


def test_the_reason_for_a_401_goes_to_the_log_only(app, minter, other_minter):
    token = forged_tokens(minter, other_minter)["expired"]

    with captured_logs() as logs:
        reply = call(app.handle, "GET", "/accounts/a1", token=token)

    assert "Expired" not in reply.body
    request_line = logs.requests()[-1]
    assert request_line["auth_failure"] == "ExpiredSignatureError"
    assert token not in logs.text


EXPECTED_REASONS = {
    "alg-none": "algorithm 'none'",
    "hs256-with-public-key": "algorithm 'HS256'",
    "expired": "ExpiredSignatureError",
    "future-nbf": "ImmatureSignatureError",
    "future-iat": "ImmatureSignatureError",
    "missing-exp": "MissingRequiredClaimError",
    "missing-iat": "MissingRequiredClaimError",
    "missing-sub": "MissingRequiredClaimError",
    "wrong-aud": "InvalidAudienceError",
    "wrong-iss": "InvalidIssuerError",
    "unknown-kid": "unknown kid",
    "no-kid": "no kid",
    "tampered-payload": "InvalidSignatureError",
    "other-key-same-kid": "InvalidSignatureError",
    "id-token-typ": "typ",
    "unknown-kind": "kind",
    "garbage": "compact JWS",
    "oversized": "compact JWS",
}


def test_each_forgery_is_refused_for_its_own_reason(app, minter, other_minter):
    # Guards the identical-401 test: each token must fail on the check it targets, not on another.
    forged = forged_tokens(minter, other_minter)
    assert set(forged) == set(EXPECTED_REASONS)
    for name, token in forged.items():
        with captured_logs() as logs:
            call(app.handle, "GET", "/accounts/a1", token=token)

        assert EXPECTED_REASONS[name] in logs.requests()[-1]["auth_failure"], name


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc", "bearer  "])
def test_a_malformed_authorization_header_is_the_same_401(app, authorization):
    reference = call(app.handle, "GET", "/accounts/a1")

    reply = call(app.handle, "GET", "/accounts/a1", headers={"Authorization": authorization})

    assert reply.status == 401 and reply.body == reference.body


def test_the_bearer_scheme_is_case_insensitive(app, minter):
    token = minter.mint(scopes=["accounts:read"])

    reply = call(app.handle, "GET", "/accounts/a1", headers={"Authorization": f"bearer {token}"})

    assert reply.status == 200


def test_a_token_within_the_clock_skew_leeway_is_accepted(app, minter):
    now = int(time.time())
    token = minter.sign({**minter.claims(scopes=["accounts:read"]), "exp": now - 5, "nbf": now + 5})

    assert call(app.handle, "GET", "/accounts/a1", token=token).status == 200


def test_a_missing_scope_is_a_403_naming_it(app, minter):
    token = minter.mint(scopes=["payments:write"])

    reply = call(app.handle, "GET", "/accounts/a1", token=token)

    assert reply.status == 403
    assert reply.json()["code"] == "insufficient_scope"
    assert "accounts:read" in reply.json()["detail"]
    assert 'error="insufficient_scope"' in reply.header("WWW-Authenticate")


def test_ops_routes_need_the_ops_scope(app, minter):
    everything_but_ops = minter.mint(kind="client", scopes=["accounts:read", "accounts:write"])
    ops = minter.mint(kind="client", scopes=["ops", "ops:act"])

    assert call(app.handle, "POST", "/_/ops/replay", token=everything_but_ops).status == 403
    assert call(app.handle, "POST", "/_/ops/replay", token=ops).status == 200


def test_health_and_openapi_need_no_token(app):
    assert call(app.handle, "GET", "/_/health").status == 200
    assert call(app.handle, "GET", "/_/openapi.json").status == 200


# -- JWKS cache ------------------------------------------------------------------------------------


CLOCK_START_S = 1000.0


class FakeJwksEndpoint:
    """Serves whatever key set it holds; can be switched off."""

    def __init__(self, jwks: dict) -> None:
        self.jwks = jwks
        self.fetches = 0
        self.down = False

    def __call__(self, url: str) -> dict:
        self.fetches += 1
        if self.down:
            raise ConnectionError("jwks endpoint down")
        return self.jwks


def cached_verifier(minter: TokenMinter, endpoint: FakeJwksEndpoint, clock: FakeClock) -> JwtVerifier:
    cache = JwksCache("http://auth/.well-known/jwks.json", fetch=endpoint, clock=clock)
    return JwtVerifier(cache, minter.issuer, minter.audience)


def warmed_verifier(minter: TokenMinter) -> tuple[JwtVerifier, FakeJwksEndpoint, FakeClock]:
    """A verifier whose cache fetched the issuer's key set once, for its first token; with its endpoint
    and clock."""
    endpoint, clock = FakeJwksEndpoint(minter.keyring.jwks()), FakeClock(CLOCK_START_S)
    verifier = cached_verifier(minter, endpoint, clock)
    verifier.verify(minter.mint())
    return verifier, endpoint, clock


def test_keys_are_fetched_once_and_reused_within_the_ttl(minter):
    endpoint, clock = FakeJwksEndpoint(minter.keyring.jwks()), FakeClock(CLOCK_START_S)
    verifier = cached_verifier(minter, endpoint, clock)

    for _ in range(5):
        verifier.verify(minter.mint())
    clock.now += jwks_ttl_seconds - 1
    verifier.verify(minter.mint())

    assert endpoint.fetches == 1


def test_keys_are_refetched_after_the_ttl(minter):
    verifier, endpoint, clock = warmed_verifier(minter)

    clock.now += jwks_ttl_seconds
    verifier.verify(minter.mint())

    assert endpoint.fetches == 2


def test_a_rotated_key_is_picked_up_on_its_first_token(minter, other_minter):
    # GIVEN a verifier that cached the old key set
    verifier, endpoint, clock = warmed_verifier(minter)
    clock.now += jwks_refetch_interval_seconds_min

    # WHEN the issuer publishes a new key and signs with it
    endpoint.jwks = {"keys": minter.keyring.jwks()["keys"] + other_minter.keyring.jwks()["keys"]}
    rotated = other_minter.sign(minter.claims())

    # THEN the unknown kid triggers one refetch and the token verifies
    assert verifier.verify(rotated).sub == "cust-1"
    assert endpoint.fetches == 2


def test_unknown_kids_cannot_make_the_verifier_hammer_the_issuer(minter, app):
    verifier, endpoint, clock = warmed_verifier(minter)
    clock.now += jwks_refetch_interval_seconds_min
    app_with_cache = build_app(verifier)

    for index in range(20):
        token = minter.sign(minter.claims(scopes=["accounts:read"]), {"kid": f"random-{index}"})
        assert call(app_with_cache.handle, "GET", "/accounts/a1", token=token).status == 401

    assert endpoint.fetches == 2


def test_cached_keys_keep_working_while_the_issuer_is_down(minter):
    verifier, endpoint, clock = warmed_verifier(minter)

    endpoint.down = True
    clock.now += jwks_ttl_seconds + 1

    assert verifier.verify(minter.mint()).sub == "cust-1"


def test_keys_stale_beyond_the_limit_are_no_longer_trusted(minter):
    verifier, endpoint, clock = warmed_verifier(minter)

    endpoint.down = True
    clock.now += jwks_stale_seconds_max + 1

    with pytest.raises(KeysUnavailable):
        verifier.verify(minter.mint())


def test_no_keys_at_all_is_a_503_not_a_401(minter):
    endpoint, clock = FakeJwksEndpoint(minter.keyring.jwks()), FakeClock(CLOCK_START_S)
    endpoint.down = True
    app_without_keys = build_app(cached_verifier(minter, endpoint, clock))

    reply = call(app_without_keys.handle, "GET", "/accounts/a1", token=minter.mint(scopes=["accounts:read"]))

    assert reply.status == 503
    assert reply.json()["code"] == "service_unavailable"


def test_only_rsa_signing_keys_are_taken_from_a_jwks(minter):
    rsa_key = minter.keyring.jwks()["keys"][0]
    document = {
        "keys": [
            {**rsa_key, "kid": "enc", "use": "enc"},
            {**rsa_key, "kid": "hs", "alg": "HS256"},
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            {**rsa_key, "kid": "good"},
            "not-an-object",
        ]
    }

    assert list(parse_jwks(document)) == ["good"]


def test_the_default_fetch_reads_a_real_http_endpoint(minter):
    # GIVEN an issuer serving its JWKS on a loopback port
    with loopback_http_server(json_document_handler(minter.keyring.jwks())) as base_url:
        url = f"{base_url}/.well-known/jwks.json"
        verifier = JwtVerifier(JwksCache(url, fetch=fetch_json), minter.issuer, minter.audience)

        assert verifier.verify(minter.mint(sub="via-http")).sub == "via-http"


# -- verified tokens remembered -------------------------------------------------------------------


class PublishedKeys:
    """A key source whose published keys a test can withdraw or replace."""

    def __init__(self, *minters: TokenMinter) -> None:
        self.keys: dict = {}
        for one in minters:
            self.keys.update(parse_jwks(one.keyring.jwks()))

    def key_for(self, kid: str):
        return self.keys.get(kid)


class WallClock:
    """Real time plus an offset a test moves forward."""

    def __init__(self) -> None:
        self.ahead_seconds = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead_seconds


def remembering_verifier(minter: TokenMinter, **options) -> tuple[JwtVerifier, PublishedKeys, WallClock]:
    keys, clock = PublishedKeys(minter), WallClock()
    return JwtVerifier(keys, minter.issuer, minter.audience, clock=clock, **options), keys, clock


def test_a_token_is_verified_once_then_remembered(minter, monkeypatch):
    import jwt

    verifier, _, _ = remembering_verifier(minter)
    token = minter.mint(sub="repeat", scopes=["accounts:read"])
    decodes = []
    real_decode = jwt.decode

    def counted_decode(*args, **kwargs):
        decodes.append(1)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted_decode)

    principals = {verifier.verify(token) for _ in range(3)}

    assert [p.sub for p in principals] == ["repeat"]
    assert len(decodes) == 1


def test_a_remembered_token_is_refused_once_it_expires(minter):
    verifier, _, clock = remembering_verifier(minter)
    token = minter.sign({**minter.claims(scopes=["accounts:read"]), "exp": int(time.time()) + 60})
    verifier.verify(token)

    clock.ahead_seconds = 60 + jwt_leeway_seconds

    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert verifier.remembered() == 0


def test_a_remembered_token_is_refused_once_its_key_is_withdrawn(minter, other_minter):
    verifier, keys, _ = remembering_verifier(minter)
    token = minter.mint(scopes=["accounts:read"])
    verifier.verify(token)
    kid = minter.keyring.active.kid

    keys.keys[kid] = parse_jwks(other_minter.keyring.jwks())[other_minter.keyring.active.kid]
    with pytest.raises(InvalidToken):  # another key published under its kid does not vouch for it
        verifier.verify(token)
    del keys.keys[kid]
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_a_tampered_copy_of_a_remembered_token_is_refused(minter):
    verifier, _, _ = remembering_verifier(minter)
    token = minter.mint(sub="cust-1", scopes=["accounts:read"])
    verifier.verify(token)
    header, _, signature = token.split(".")
    escalated = minter.claims(sub="admin", scopes=["accounts:read", "ops"])

    with pytest.raises(InvalidToken):
        verifier.verify(f"{header}.{b64url(json.dumps(escalated).encode())}.{signature}")
    assert verifier.verify(token).sub == "cust-1"


def test_the_remembered_tokens_are_bounded(minter):
    verifier, _, _ = remembering_verifier(minter, remembered_max=2)

    for n in range(3):
        verifier.verify(minter.mint(sub=f"c{n}"))

    assert verifier.remembered() == 2


def test_a_remembered_token_outlives_a_refresh_that_publishes_the_same_key(minter, monkeypatch):
    # GIVEN a token verified and remembered, then the key set refetched after its time to live, unchanged
    import jwt

    verifier, endpoint, clock = warmed_verifier(minter)
    token = minter.mint(sub="repeat", scopes=["accounts:read"])
    verifier.verify(token)
    decodes = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    clock.now += jwks_ttl_seconds + 1

    # WHEN it comes again
    principal = verifier.verify(token)

    # THEN the refetch happened, and the same key published again still vouches for the remembered token
    assert endpoint.fetches == 2
    assert principal.sub == "repeat" and decodes == []
