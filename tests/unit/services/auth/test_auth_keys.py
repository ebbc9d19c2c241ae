"""The auth function's published keys: JWKS, rollover, reload by operators, readiness, cold start."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema
import jwt
import pytest
from finfaas.platform import config
from finfaas.platform.jwt_auth import JwtVerifier, StaticKeySource
from finfaas.platform.keys import SIGNING_KEYS_SECRET, generate_signing_key, rotated, write_dev_secrets
from finfaas_dev.testing.platform import call, load_function_handler
from openapi_spec_validator import validate as validate_spec
from support.cold_start import cold_health_probe

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TEST_BITS = 2048


def fresh_secrets(folder: Path) -> str:
    """Dev secrets in folder; returns the demo client's secret."""
    return write_dev_secrets(folder, out=lambda _: None).client_secret or ""


@pytest.fixture
def auth_with_secrets(tmp_path):
    """A fresh auth handler reading secrets from its own folder."""
    folder = tmp_path / "secrets"
    secret = fresh_secrets(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINFAAS_SECRETS_DIR", str(folder))
        config.settings.cache_clear()
        try:
            yield load_function_handler("auth"), folder, secret
        finally:
            config.settings.cache_clear()


def token_for(auth, secret: str, scope: str = "accounts:read") -> str:
    pair = base64.b64encode(f"demo-app:{secret}".encode()).decode()
    headers = {**FORM, "Authorization": f"Basic {pair}"}
    form = f"grant_type=client_credentials&scope={scope}".encode()
    return call(auth.handle, "POST", "/oauth/token", body=form, headers=headers).json()["access_token"]


def verifier_from_jwks(auth) -> JwtVerifier:
    jwks = call(auth.handle, "GET", "/.well-known/jwks.json").json()
    settings = config.auth_settings()
    return JwtVerifier(StaticKeySource(jwks), settings.issuer, settings.audience)


def rotate(folder: Path) -> str:
    entries = json.loads((folder / SIGNING_KEYS_SECRET).read_text())
    new_key = generate_signing_key(bits=TEST_BITS)
    (folder / SIGNING_KEYS_SECRET).write_text(json.dumps(rotated(entries, new_key)))
    return new_key["kid"]


def test_the_jwks_is_public_cacheable_and_holds_no_private_parts(auth_with_secrets):
    auth, _, _ = auth_with_secrets

    reply = call(auth.handle, "GET", "/.well-known/jwks.json")

    assert reply.status == 200
    assert reply.header("Cache-Control") == "public, max-age=300"
    [key] = reply.json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and key["kid"]
    assert "d" not in key and "p" not in key


def test_during_rollover_both_keys_are_published_and_old_tokens_still_verify(auth_with_secrets):
    # GIVEN a token signed before the rotation
    auth, folder, secret = auth_with_secrets
    old_token = token_for(auth, secret)
    old_kid = jwt.get_unverified_header(old_token)["kid"]

    # WHEN operators rotate the key and tell the function to reload
    new_kid = rotate(folder)
    ops_token = token_for(auth, secret, scope="ops+ops:act")
    reload = call(auth.handle, "POST", "/_/ops/reload-secrets", token=ops_token)

    # THEN the new key signs, both are published, and both tokens verify
    assert reload.status == 200 and reload.json() == {"active_kid": new_kid, "kids": [new_kid, old_kid]}
    jwks = call(auth.handle, "GET", "/.well-known/jwks.json").json()
    assert [key["kid"] for key in jwks["keys"]] == [new_kid, old_kid]
    new_token = token_for(auth, secret)
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    verifier = verifier_from_jwks(auth)
    assert verifier.verify(old_token).sub == verifier.verify(new_token).sub == "demo-app"


def test_reloading_secrets_needs_the_ops_scope(auth_with_secrets):
    auth, _, secret = auth_with_secrets

    without_token = call(auth.handle, "POST", "/_/ops/reload-secrets")
    without_scope = call(auth.handle, "POST", "/_/ops/reload-secrets", token=token_for(auth, secret))

    assert without_token.status == 401 and without_scope.status == 403


def test_the_function_is_ready_only_when_its_secrets_are_readable(auth_with_secrets):
    auth, folder, _ = auth_with_secrets
    assert call(auth.handle, "GET", "/_/ready").status == 200

    fresh = load_function_handler("auth")
    (folder / SIGNING_KEYS_SECRET).write_text("[]")
    not_ready = call(fresh.handle, "GET", "/_/ready")

    assert not_ready.status == 503
    assert not_ready.json()["errors"] == [{"field": "auth-secrets", "message": "unavailable"}]
    assert call(fresh.handle, "GET", "/_/health").status == 200


def test_the_openapi_document_describes_the_token_endpoint(auth_with_secrets):
    auth, _, _ = auth_with_secrets

    document = call(auth.handle, "GET", "/_/openapi.json").json()

    validate_spec(document)
    token = document["paths"]["/oauth/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    assert token["security"] == []


@pytest.mark.parametrize(("path", "form", "status"), [
    ("/oauth/token", b"grant_type=password", "400"),  # RFC 6749 invalid_request
    ("/oauth/token", b"grant_type=client_credentials&client_id=nobody&client_secret=x", "401"),
    ("/oauth/revoke", b"token=", "400"),
])
def test_oauth_errors_are_declared_as_the_plain_json_they_are(auth_with_secrets, path, form, status):
    auth, _, _ = auth_with_secrets
    document = call(auth.handle, "GET", "/_/openapi.json").json()

    reply = call(auth.handle, "POST", path, body=form, headers=FORM)

    assert str(reply.status) == status
    media_type = reply.headers["Content-Type"]
    schema = document["paths"][path]["post"]["responses"][status]["content"][media_type]["schema"]
    jsonschema.Draft202012Validator({**document, **schema}).validate(reply.json())


HEAVY_MODULES = ("boto3", "botocore", "pynamodb", "aws_xray_sdk", "jwt", "argon2", "cryptography", "requests")

def test_a_health_probe_on_a_cold_auth_function_loads_no_crypto_or_aws_code():
    report = cold_health_probe("auth", HEAVY_MODULES)

    assert report["status"] == 200 and report["heavy"] == []
    print(
        f"auth cold start: import {report['import_ms']:.0f} ms, first /_/health {report['health_ms']:.2f} ms"
    )


def test_its_own_verifier_gets_one_public_key_per_kid_until_the_keys_are_reloaded(auth_with_secrets):
    # A verified token is accepted again only while its kid gives the very key that verified it: one
    # object per kid, so a request after the first skips the signature check; a reload makes new ones.
    auth, folder, _ = auth_with_secrets
    secrets = auth.auth_secrets
    kid = secrets.keyring().keys[0].kid

    first = secrets.key_for(kid)

    assert first is not None and secrets.key_for(kid) is first
    assert secrets.key_for("no-such-kid") is None
    rotate(folder)
    secrets.reload()
    assert secrets.key_for(kid) is not first
