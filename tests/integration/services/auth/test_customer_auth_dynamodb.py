"""Customer sign-up, sign-in, refresh rotation, reuse detection, revocation and rate limits on the
embedded emulators, with tokens the accounts function accepts through the published JWKS."""

from __future__ import annotations

import base64
import secrets
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
from finfaas.platform import config
from finfaas.platform.jwt_auth import JwksCache, JwtVerifier
from finfaas.platform.ratelimit import SIGN_IN_LIMIT
from finfaas.services.auth.model import FamilyStatus, token_hash
from finfaas.store.refresh_tokens_store import RefreshTokenStore
from finfaas_dev.awsclients import client as aws_client
from finfaas_dev.testing.platform import call, load_function_handler

pytestmark = pytest.mark.emulator

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PASSWORD = "a sufficiently long passphrase"
CONCURRENT_CALLERS = 4


def new_username() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def sign_up(auth, username: str, password: str = PASSWORD):
    # Each from its own address: the session shares one table, and sign-ups are limited per address.
    return call(auth.handle, "POST", "/customers/signup", headers={"X-Real-IP": random_ip()},
                json_body={"username": username, "password": password})


def token_request(auth, headers: dict[str, str] | None = None, **form: str):
    return call(auth.handle, "POST", "/oauth/token", body=urlencode(form).encode(),
                headers={**FORM, **(headers or {})})


def sign_in(auth, username: str, password: str = PASSWORD, ip: str | None = None):
    headers = {"X-Real-IP": ip or random_ip()}
    return token_request(auth, headers, grant_type="password", username=username, password=password)


def refresh(auth, refresh_token: str):
    return token_request(auth, grant_type="refresh_token", refresh_token=refresh_token)


def random_ip() -> str:
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def all_at_once(action):
    """The replies of CONCURRENT_CALLERS threads released together; an exception in any fails the test."""
    start = threading.Barrier(CONCURRENT_CALLERS)

    def released():
        start.wait()
        return action()

    with ThreadPoolExecutor(CONCURRENT_CALLERS) as pool:
        futures = [pool.submit(released) for _ in range(CONCURRENT_CALLERS)]
        return [future.result() for future in futures]


def signed_in_refresh_token(auth) -> str:
    """The refresh token of a new customer's first sign-in."""
    username = new_username()
    sign_up(auth, username)
    return sign_in(auth, username).json()["refresh_token"]


def family_status(refresh_token: str) -> FamilyStatus:
    store = RefreshTokenStore()
    return store.get_family(store.get_token(token_hash(refresh_token)).family_id).status


def test_a_customer_signs_up_signs_in_and_uses_the_token_at_the_accounts_function(auth_function):
    username = new_username()
    customer_id = sign_up(auth_function, username).json()["customer_id"]

    # GIVEN the accounts function trusting the auth function's published JWKS
    accounts = load_function_handler("accounts")
    settings = config.auth_settings()
    jwks = JwksCache("auth", lambda url: call(auth_function.handle, "GET", "/.well-known/jwks.json").json())
    accounts.verifier.use(JwtVerifier(jwks, settings.issuer, settings.audience))

    # WHEN the customer signs in and opens an account with the access token
    access_token = sign_in(auth_function, username).json()["access_token"]
    opened = call(accounts.handle, "POST", "/accounts", token=access_token, headers={"Idempotency-Key": "k1"},
                  json_body={"currency": "USD"})
    listed = call(accounts.handle, "GET", "/accounts", token=access_token)

    # THEN the account is the customer's
    assert opened.status == 201
    assert [a["account_id"] for a in listed.json()["data"]] == [opened.json()["account_id"]]
    ops = call(accounts.handle, "GET", f"/_/ops/accounts/{opened.json()['account_id']}", token=access_token)
    assert ops.status == 403
    owner = accounts.services.get().accounts.get_any(opened.json()["account_id"]).owner_id
    assert owner == customer_id


def test_refresh_rotates_and_reuse_revokes_the_family_in_dynamodb(auth_function):
    first = signed_in_refresh_token(auth_function)

    rotated = refresh(auth_function, first)
    second = rotated.json()["refresh_token"]
    reused = refresh(auth_function, first)

    assert rotated.status == 200 and second != first
    assert reused.json()["error"] == "invalid_grant"
    assert family_status(first) is FamilyStatus.REVOKED
    assert refresh(auth_function, second).json()["error"] == "invalid_grant"


def test_concurrent_use_of_one_refresh_token_lets_at_most_one_through_and_revokes_the_family(auth_function):
    token = signed_in_refresh_token(auth_function)

    replies = all_at_once(lambda: refresh(auth_function, token))

    statuses = sorted(reply.status for reply in replies)
    assert statuses.count(200) <= 1 and set(statuses) <= {200, 400}
    assert family_status(token) is FamilyStatus.REVOKED
    winners = [reply.json()["refresh_token"] for reply in replies if reply.status == 200]
    assert all(refresh(auth_function, winner).status == 400 for winner in winners)


def test_revocation_ends_the_sign_in(auth_function):
    token = signed_in_refresh_token(auth_function)

    revoked = call(auth_function.handle, "POST", "/oauth/revoke", body=urlencode({"token": token}).encode(),
                   headers=FORM)

    assert revoked.status == 200
    assert family_status(token) is FamilyStatus.REVOKED
    assert refresh(auth_function, token).json()["error"] == "invalid_grant"


def test_only_a_hash_of_the_refresh_token_is_stored(auth_function):
    token = signed_in_refresh_token(auth_function)

    dynamodb = aws_client("dynamodb")
    items = dynamodb.scan(TableName=config.resource_name("auth"), ConsistentRead=True)["Items"]

    assert token not in repr(items)
    assert any(item["pk"]["S"] == f"refresh#{token_hash(token)}" for item in items)
    assert PASSWORD not in repr(items)


def test_a_username_is_given_once_under_concurrent_sign_ups(auth_function):
    username = new_username()

    replies = all_at_once(lambda: sign_up(auth_function, username))

    statuses = sorted(reply.status for reply in replies)
    assert statuses.count(201) == 1 and set(statuses) <= {201, 409, 503}
    winner = next(reply.json()["customer_id"] for reply in replies if reply.status == 201)
    signed_in = sign_in(auth_function, username).json()["access_token"]
    claims = base64.urlsafe_b64decode(signed_in.split(".")[1] + "==")
    assert winner.encode() in claims


def test_guessing_from_one_address_is_slowed_in_the_shared_table_and_the_owner_still_signs_in(auth_function):
    username = new_username()
    sign_up(auth_function, username)
    attacker = random_ip()
    statuses = [sign_in(auth_function, username, password="wrong wrong wrong", ip=attacker).status
                for _ in range(SIGN_IN_LIMIT.requests_max)]

    limited = sign_in(auth_function, username, password="wrong wrong wrong", ip=attacker)

    assert statuses.count(400) < SIGN_IN_LIMIT.requests_max // 2 and set(statuses) <= {400, 429}
    assert limited.status == 429 and int(limited.header("Retry-After")) >= 1
    # The owner, from another address, is not affected.
    assert sign_in(auth_function, username, ip=random_ip()).status == 200


def test_sign_in_is_limited_per_client_ip_in_the_shared_table(auth_function):
    ip = random_ip()
    username = new_username()
    sign_up(auth_function, username)
    for _ in range(SIGN_IN_LIMIT.requests_max):
        sign_in(auth_function, new_username(), ip=ip)

    assert sign_in(auth_function, username, ip=ip).status == 429
    assert sign_in(auth_function, username, ip=random_ip()).status == 200
