"""The auth function's customer routes through handle(event, context), over the in-memory fakes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import urlencode

import jwt
import pytest
from argon2 import PasswordHasher
from finfaas.platform import config
from finfaas.platform.jwt_auth import JwtVerifier, StaticKeySource
from finfaas.platform.keys import write_dev_secrets
from finfaas.platform.ratelimit import SIGN_IN_LIMIT, RateLimiter, sign_in_pair_delay_seconds_max
from finfaas.services.auth.service import CUSTOMER_LIMITS, CustomerAuthService
from finfaas.services.customers.service import AuditTrail
from finfaas_dev.fakes.auth import InMemoryRefreshTokenStore
from finfaas_dev.fakes.customers import InMemoryCustomerStore
from finfaas_dev.fakes.platform import InMemoryRateLimitStore
from finfaas_dev.testing.platform import call, captured_logs, load_function_handler
from openapi_spec_validator import validate as validate_spec

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PASSWORD = "a long enough passphrase"
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("auth-customers") / "secrets"
    write_dev_secrets(folder, out=lambda _: None)
    return folder


@pytest.fixture(scope="module")
def demo_secret(secrets_dir) -> str:
    return json.loads((secrets_dir / "demo-client-credentials.json").read_text())["client_secret"]


@pytest.fixture
def auth(secrets_dir):
    """A fresh auth function whose customer service runs on in-memory fakes."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINFAAS_SECRETS_DIR", str(secrets_dir))
        config.settings.cache_clear()
        try:
            module = load_function_handler("auth")
            module.customer_auth.use(CustomerAuthService(
                InMemoryCustomerStore(), InMemoryRefreshTokenStore(), module.auth_secrets.issuer,
                RateLimiter(InMemoryRateLimitStore(), CUSTOMER_LIMITS), AuditTrail(None),
                hasher=CHEAP_HASHER))
            yield module
        finally:
            config.settings.cache_clear()


def sign_up(auth, username: str = "alice", password: str = PASSWORD, **extra):
    return call(auth.handle, "POST", "/customers/signup",
                json_body={"username": username, "password": password, **extra})


def token_request(auth, headers: dict[str, str] | None = None, **form: str):
    return call(auth.handle, "POST", "/oauth/token", body=urlencode(form).encode(),
                headers={**FORM, **(headers or {})})


def sign_in(auth, username: str = "alice", password: str = PASSWORD, headers=None, **form: str):
    return token_request(auth, headers, grant_type="password", username=username, password=password, **form)


def claims_verified_by_jwks(auth, access_token: str):
    jwks = call(auth.handle, "GET", "/.well-known/jwks.json").json()
    settings = config.auth_settings()
    return JwtVerifier(StaticKeySource(jwks), settings.issuer, settings.audience).verify(access_token)


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


# --- sign-up ---------------------------------------------------------------------------------------


def test_sign_up_creates_a_customer(auth):
    reply = sign_up(auth, username="Alice")

    assert reply.status == 201
    body = reply.json()
    assert body["username"] == "alice" and len(body["customer_id"]) == 32


def test_a_taken_username_is_a_409_problem(auth):
    sign_up(auth)

    reply = sign_up(auth, username="ALICE", password="another passphrase!")

    assert reply.status == 409 and reply.json()["code"] == "username_taken"


def test_a_weak_password_is_a_422_naming_the_field_not_the_value(auth):
    reply = sign_up(auth, password="password1234")

    assert reply.status == 422
    assert reply.json()["code"] == "weak_password"
    assert reply.json()["errors"] == [{"field": "password", "message": "too common"}]
    assert "password1234" not in reply.body


def test_a_sign_up_body_cannot_choose_the_customer_id(auth):
    reply = sign_up(auth, customer_id="chosen-by-client")

    assert reply.status == 422 and reply.json()["errors"][0]["field"] == "customer_id"
    assert sign_in(auth).status == 400  # nothing was created


# --- the password grant ----------------------------------------------------------------------------


def test_a_customer_signs_in_and_gets_an_rs256_customer_token_and_a_refresh_token(auth):
    customer_id = sign_up(auth).json()["customer_id"]

    reply = sign_in(auth)

    assert reply.status == 200
    assert reply.header("Cache-Control") == "no-store" and reply.header("Pragma") == "no-cache"
    body = reply.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token",
                         "refresh_token_expires_in"}
    principal = claims_verified_by_jwks(auth, body["access_token"])
    assert (principal.sub, principal.kind) == (customer_id, "customer")
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "RS256"
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["client_id"] == "public"


def test_wrong_password_and_unknown_user_get_identical_answers(auth):
    sign_up(auth)

    wrong = sign_in(auth, password="not the passphrase")
    unknown = sign_in(auth, username="nobody")

    assert wrong.status == unknown.status == 400
    assert wrong.body == unknown.body
    assert wrong.json() == {"error": "invalid_grant",
                            "error_description": "The credentials or refresh token are not valid."}


def test_a_missing_password_is_an_invalid_request(auth):
    reply = token_request(auth, grant_type="password", username="alice")

    assert reply.status == 400 and reply.json()["error"] == "invalid_request"


def test_an_unknown_grant_type_lists_the_supported_ones(auth):
    reply = token_request(auth, grant_type="implicit")

    assert reply.status == 400 and reply.json()["error"] == "unsupported_grant_type"
    assert "password" in reply.json()["error_description"]


def test_an_authenticated_client_binds_the_customer_tokens_to_itself(auth, demo_secret):
    sign_up(auth)

    body = sign_in(auth, headers=basic("demo-app", demo_secret)).json()
    refreshed_without_client = token_request(auth, grant_type="refresh_token",
                                             refresh_token=body["refresh_token"])
    refreshed_with_client = token_request(auth, basic("demo-app", demo_secret), grant_type="refresh_token",
                                          refresh_token=body["refresh_token"])

    assert jwt.decode(body["access_token"], options={"verify_signature": False})["client_id"] == "demo-app"
    assert refreshed_without_client.json()["error"] == "invalid_grant"
    assert refreshed_with_client.status == 200


def test_a_wrong_client_secret_fails_the_customer_grant_as_invalid_client(auth, demo_secret):
    sign_up(auth)

    reply = sign_in(auth, headers=basic("demo-app", demo_secret + "x"))

    assert reply.status == 401 and reply.json()["error"] == "invalid_client"


def test_guessing_from_one_address_is_answered_429_while_the_owner_signs_in_from_another(auth):
    sign_up(auth)
    attacker = {"X-Real-IP": "192.0.2.66"}
    statuses = [sign_in(auth, password="guessing guessing", headers=attacker).status
                for _ in range(SIGN_IN_LIMIT.requests_max)]

    reply = sign_in(auth, password="guessing guessing", headers=attacker)

    assert 429 in statuses and reply.status == 429
    assert reply.json()["code"] == "rate_limited"
    assert 0 < int(reply.header("Retry-After")) <= sign_in_pair_delay_seconds_max
    assert sign_in(auth, headers={"X-Real-IP": "198.51.100.7"}).status == 200


def test_sign_in_is_rate_limited_per_client_ip(auth):
    sign_up(auth)
    from_ip = {"X-Real-IP": "203.0.113.9"}
    for attempt in range(SIGN_IN_LIMIT.requests_max):
        sign_in(auth, username=f"guess{attempt}", headers=from_ip)

    assert sign_in(auth, headers=from_ip).status == 429
    assert sign_in(auth, headers={"X-Real-IP": "203.0.113.10"}).status == 200


# --- refresh and revocation ------------------------------------------------------------------------


def test_refresh_rotates_and_reuse_of_the_old_token_ends_the_sign_in(auth):
    sign_up(auth)
    first = sign_in(auth).json()["refresh_token"]

    rotated = token_request(auth, grant_type="refresh_token", refresh_token=first)
    second = rotated.json()["refresh_token"]
    reused = token_request(auth, grant_type="refresh_token", refresh_token=first)
    after_reuse = token_request(auth, grant_type="refresh_token", refresh_token=second)

    assert rotated.status == 200 and second != first
    assert reused.json()["error"] == after_reuse.json()["error"] == "invalid_grant"


def test_a_revoked_refresh_token_no_longer_refreshes(auth):
    sign_up(auth)
    refresh_token = sign_in(auth).json()["refresh_token"]

    revoked = call(auth.handle, "POST", "/oauth/revoke", body=urlencode({"token": refresh_token}).encode(),
                   headers=FORM)

    assert revoked.status == 200 and revoked.body == ""
    assert token_request(auth, grant_type="refresh_token", refresh_token=refresh_token).status == 400


def test_revoking_an_access_token_is_refused_as_unsupported(auth):
    sign_up(auth)
    access_token = sign_in(auth).json()["access_token"]

    reply = call(auth.handle, "POST", "/oauth/revoke", body=urlencode({"token": access_token}).encode(),
                 headers=FORM)

    assert reply.status == 400 and reply.json()["error"] == "unsupported_token_type"


def test_revoking_an_unknown_token_answers_200(auth):
    reply = call(auth.handle, "POST", "/oauth/revoke", body=b"token=never-issued", headers=FORM)

    assert reply.status == 200


# --- documents and logs ----------------------------------------------------------------------------


def test_the_openapi_document_describes_the_customer_grants_and_routes(auth):
    document = call(auth.handle, "GET", "/_/openapi.json").json()

    validate_spec(document)
    token_form = document["paths"]["/oauth/token"]["post"]["requestBody"]["content"][FORM["Content-Type"]]
    assert token_form["schema"]["properties"]["grant_type"]["enum"] == [
        "client_credentials", "password", "refresh_token"]
    assert {"/customers/signup", "/oauth/revoke"} <= set(document["paths"])


def test_passwords_and_refresh_tokens_never_reach_the_logs(auth):
    with captured_logs() as logs:
        sign_up(auth)
        body = sign_in(auth).json()
        token_request(auth, grant_type="refresh_token", refresh_token=body["refresh_token"])
        sign_in(auth, password="wrong passphrase here")

    assert PASSWORD not in logs.text and "wrong passphrase here" not in logs.text
    assert body["refresh_token"] not in logs.text and body["access_token"] not in logs.text
    assert "alice" not in logs.text
    assert [line["status"] for line in logs.requests()] == [201, 200, 200, 400]
