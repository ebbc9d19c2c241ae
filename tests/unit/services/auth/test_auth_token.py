"""The auth function's token endpoint: OAuth 2.0 client credentials, driven through handle(event, context)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from urllib.parse import quote_plus

import jwt
import pytest
from argon2 import PasswordHasher
from finfaas.platform import config
from finfaas.platform.http import FunctionApp, Request
from finfaas.platform.jwt_auth import JwksCache, JwtVerifier
from finfaas.platform.keys import CLIENTS_SECRET, write_dev_secrets
from finfaas.platform.tokens import access_token_lifetime_seconds
from finfaas_dev.testing.platform import call, load_function_handler

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# A secret with the characters RFC 6749 2.3.1 makes clients form-encode inside HTTP Basic.
ODD_SECRET = "s3cr:t+with/odd=chars%"


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("auth") / "secrets"
    write_dev_secrets(folder, out=lambda _: None)
    clients = json.loads((folder / CLIENTS_SECRET).read_text())
    clients.append(
        {"client_id": "odd-app", "secret_hash": PasswordHasher().hash(ODD_SECRET), "scopes": ["x:read"]}
    )
    (folder / CLIENTS_SECRET).write_text(json.dumps(clients))
    return folder


@pytest.fixture(scope="module")
def demo_secret(secrets_dir) -> str:
    return json.loads((secrets_dir / "demo-client-credentials.json").read_text())["client_secret"]


@pytest.fixture(scope="module")
def auth(secrets_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINFAAS_SECRETS_DIR", str(secrets_dir))
        config.settings.cache_clear()
        try:
            yield load_function_handler("auth")
        finally:
            config.settings.cache_clear()


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {**FORM, "Authorization": "Basic " + base64.b64encode(pair).decode()}


def request_token(auth, form: str, headers: dict[str, str]):
    return call(auth.handle, "POST", "/oauth/token", body=form.encode(), headers=headers)


def jwks_of(auth) -> dict:
    return call(auth.handle, "GET", "/.well-known/jwks.json").json()


def test_a_client_gets_a_bearer_token_with_basic_authentication(auth, demo_secret):
    reply = request_token(auth, "grant_type=client_credentials", basic("demo-app", demo_secret))

    assert reply.status == 200
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == access_token_lifetime_seconds
    assert "ops" in body["scope"].split() and "accounts:read" in body["scope"].split()
    # RFC 6749 5.1: tokens must not be cached anywhere on the way
    assert reply.header("Cache-Control") == "no-store" and reply.header("Pragma") == "no-cache"


def test_the_token_is_an_rs256_access_token_with_every_required_claim(auth, demo_secret):
    before = int(time.time())
    body = request_token(auth, "grant_type=client_credentials", basic("demo-app", demo_secret)).json()
    token = body["access_token"]

    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "RS256" and header["typ"] == "at+jwt"
    assert header["kid"] == jwks_of(auth)["keys"][0]["kid"]
    assert claims["iss"] == "finfaas-auth" and claims["aud"] == "finfaas"
    assert claims["sub"] == "demo-app" and claims["client_id"] == "demo-app" and claims["kind"] == "client"
    assert before <= claims["iat"] == claims["nbf"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == access_token_lifetime_seconds
    assert len(claims["jti"]) == 32 and claims["scope"] == body["scope"]


def test_each_token_has_its_own_id(auth, demo_secret):
    tokens = [
        request_token(auth, "grant_type=client_credentials", basic("demo-app", demo_secret)).json()[
            "access_token"
        ]
        for _ in range(2)
    ]

    ids = {jwt.decode(token, options={"verify_signature": False})["jti"] for token in tokens}
    assert len(ids) == 2


def test_credentials_in_the_form_body_work_too(auth, demo_secret):
    form = f"grant_type=client_credentials&client_id=demo-app&client_secret={quote_plus(demo_secret)}"

    assert request_token(auth, form, FORM).status == 200


def test_form_encoded_credentials_inside_basic_are_decoded(auth):
    reply = request_token(auth, "grant_type=client_credentials", basic("odd-app", ODD_SECRET))

    assert reply.status == 200 and reply.json()["scope"] == "x:read"


def test_requested_scopes_narrow_the_token(auth, demo_secret):
    form = "grant_type=client_credentials&scope=accounts:read+payments:write"

    reply = request_token(auth, form, basic("demo-app", demo_secret))

    assert reply.json()["scope"] == "accounts:read payments:write"


def test_a_scope_the_client_may_not_have_is_refused(auth):
    reply = request_token(
        auth, "grant_type=client_credentials&scope=x:read+ops", basic("odd-app", ODD_SECRET)
    )

    assert reply.status == 400
    assert reply.json()["error"] == "invalid_scope"
    assert "ops" in reply.json()["error_description"]


def test_wrong_secret_and_unknown_client_get_the_same_401(auth, demo_secret):
    wrong = request_token(auth, "grant_type=client_credentials", basic("demo-app", demo_secret + "x"))
    unknown = request_token(auth, "grant_type=client_credentials", basic("ghost-app", demo_secret))
    missing = request_token(auth, "grant_type=client_credentials", FORM)

    for reply in (wrong, unknown, missing):
        assert reply.status == 401
        assert reply.json() == {
            "error": "invalid_client",
            "error_description": "Client authentication failed.",
        }
        assert reply.header("WWW-Authenticate") == 'Basic realm="finfaas-auth"'
        assert reply.header("Cache-Control") == "no-store"


@pytest.mark.parametrize(
    "form, error",
    [
        ("scope=accounts:read", "invalid_request"),
        ("grant_type=implicit", "unsupported_grant_type"),
        ("grant_type=client_credentials&grant_type=client_credentials", "invalid_request"),
    ],
    ids=["no-grant-type", "implicit-grant", "repeated-parameter"],
)
def test_malformed_token_requests_get_rfc6749_errors(auth, demo_secret, form, error):
    reply = request_token(auth, form, basic("demo-app", demo_secret))

    assert reply.status == 400
    assert reply.json()["error"] == error
    assert set(reply.json()) == {"error", "error_description"}


def test_two_authentication_methods_at_once_are_refused(auth, demo_secret):
    form = f"grant_type=client_credentials&client_secret={quote_plus(demo_secret)}"

    reply = request_token(auth, form, basic("demo-app", demo_secret))

    assert reply.status == 400 and reply.json()["error"] == "invalid_request"


def test_json_is_not_the_token_endpoint_media_type(auth, demo_secret):
    headers = {**basic("demo-app", demo_secret), "Content-Type": "application/json"}

    reply = call(
        auth.handle, "POST", "/oauth/token", body=b'{"grant_type": "client_credentials"}', headers=headers
    )

    assert reply.status == 415


def test_a_client_secret_never_reaches_the_logs(auth, demo_secret):
    from finfaas_dev.testing.platform import captured_logs

    form = f"grant_type=client_credentials&client_id=demo-app&client_secret={quote_plus(demo_secret)}x"
    with captured_logs() as logs:
        request_token(auth, form, FORM)
        request_token(auth, "grant_type=client_credentials", basic("demo-app", demo_secret))

    assert demo_secret not in logs.text
    assert [line["status"] for line in logs.requests()] == [401, 200]


def test_another_function_accepts_the_token_through_the_published_jwks(auth, demo_secret):
    # GIVEN a function whose verifier fetches the auth function's JWKS (here: by calling its handler)
    def fetch(url: str) -> dict:
        return jwks_of(auth)

    settings = config.auth_settings()
    accounts = FunctionApp(
        "accounts", verifier=JwtVerifier(JwksCache("auth", fetch), settings.issuer, settings.audience)
    )

    @accounts.route("GET", "/accounts", scopes=["accounts:read"])
    def list_accounts(req: Request) -> dict:
        """List accounts."""
        return {"sub": req.principal.sub, "kind": req.principal.kind}

    # WHEN a client calls it with a token narrowed to that scope, and with one lacking it
    form = "grant_type=client_credentials&scope=accounts:read"
    token = request_token(auth, form, basic("demo-app", demo_secret)).json()["access_token"]
    narrow = request_token(auth, "grant_type=client_credentials&scope=x:read", basic("odd-app", ODD_SECRET))

    # THEN the first is served as the client, the second is forbidden
    assert call(accounts.handle, "GET", "/accounts", token=token).json() == {
        "sub": "demo-app",
        "kind": "client",
    }
    assert call(accounts.handle, "GET", "/accounts", token=narrow.json()["access_token"]).status == 403
