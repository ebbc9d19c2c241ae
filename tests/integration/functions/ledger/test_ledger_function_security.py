"""Security matrix of the ledger function: every route refuses bad tokens alike, checks scopes, and
refuses fields a caller may not set, with nothing written."""

from __future__ import annotations

import base64
import json
import time

import pytest
from finfaas.platform.jwt_auth import jwt_leeway_seconds
from finfaas_dev.testing.platform import TokenMinter, call
from support.ledger_function_testing import CURRENCY

# (method, path template, scope it needs)
ROUTES = [
    ("POST", "/transfers", "ledger:write"),
    ("POST", "/transfers/linked", "ledger:write"),
    ("POST", "/pending", "ledger:write"),
    ("POST", "/pending/{id}/post", "ledger:write"),
    ("POST", "/pending/{id}/void", "ledger:write"),
    ("POST", "/transfers/{id}/reverse", "ledger:write"),
    ("GET", "/transfers/{id}", "ledger:read"),
    ("GET", "/transfers", "ledger:read"),
    ("GET", "/accounts/{id}/balance", "ops"),
    ("GET", "/accounts/{id}/holds", "ops"),
    ("POST", "/_/ops/expire-holds", "ops"),
    ("POST", "/_/ops/system-accounts", "ops"),
    ("GET", "/_/ops/stats", "ops"),
]
ALL_SCOPES = ("ledger:write", "ledger:read", "ops", "ops:act")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_tokens(minter: TokenMinter) -> dict[str, str]:
    """Tokens that must all be refused; each would grant every scope if it were accepted."""
    stranger = TokenMinter.generate()
    claims = minter.claims(sub="svc-payments", scopes=ALL_SCOPES, kind="client")
    kid = minter.keyring.active.kid
    signed = minter.sign(claims)
    header, _, signature = signed.split(".")
    escalated = b64url(json.dumps({**claims, "sub": "svc-admin"}).encode())
    unsigned_header = b64url(json.dumps({"alg": "none", "typ": "at+jwt", "kid": kid}).encode())
    return {
        "alg-none": f"{unsigned_header}.{b64url(json.dumps(claims).encode())}.",
        "expired": minter.sign({**claims, "exp": int(time.time()) - jwt_leeway_seconds - 5}),
        "other-key-same-kid": stranger.sign(claims, {"kid": kid}),
        "tampered-payload": f"{header}.{escalated}.{signature}",
        "wrong-audience": minter.sign({**claims, "aud": "another-service"}),
        "garbage": "not-a-token",
    }


def concrete(path: str, ids) -> str:
    return path.replace("{id}", ids("target"))


def send(ledger_function, method: str, path: str, token: str | None, body: object = None, key: str = "k"):
    headers = {"Idempotency-Key": key} if method == "POST" else {}
    return call(ledger_function.module.handle, method, path, json_body=body if method == "POST" else None,
                headers=headers, token=token)


def anonymous(reply) -> dict:
    body = reply.json()
    body.pop("instance", None)  # the path differs from route to route, nothing else may
    return {"status": reply.status, "body": body, "www": reply.header("WWW-Authenticate")}


def test_every_forged_token_on_every_route_is_the_identical_401(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    body = {"transfer_id": ids("t1"), "debit_account_id": alice, "credit_account_id": bob, "amount": 10,
            "currency": CURRENCY}
    answers = []
    for name, token in forged_tokens(ledger_function.minter).items():
        for method, path, _ in ROUTES:
            reply = send(ledger_function, method, concrete(path, ids), token, body)
            answers.append(anonymous(reply))
            assert reply.status == 401, (name, method, path, reply.body)

    assert all(answer == answers[0] for answer in answers)
    assert answers[0]["body"]["code"] == "unauthorized"
    assert ledger_function.balance(bob) == 0


def test_no_token_is_a_401_everywhere(ledger_function, ids):
    for method, path, _ in ROUTES:
        assert send(ledger_function, method, concrete(path, ids), None, {}).status == 401


@pytest.mark.parametrize("method, path, needed", ROUTES)
def test_a_token_without_the_routes_scope_is_403(ledger_function, ids, method, path, needed):
    others = [scope for scope in ALL_SCOPES if scope != needed]
    token = ledger_function.token(scopes=others)

    reply = send(ledger_function, method, concrete(path, ids), token, {"transfer_id": ids("t")})

    assert reply.status == 403
    assert reply.json()["code"] == "insufficient_scope"
    assert needed in reply.header("WWW-Authenticate")


@pytest.mark.parametrize("extra_field", [
    {"kind": "REVERSAL"}, {"state": "POSTED"}, {"owner_id": "someone"}, {"batch_id": "b1"},
    {"created_at": "2020-01-01T00:00:00Z"}, {"debits_posted": 0}, {"reversal_of": "t0"},
])
def test_mass_assignment_is_422_and_writes_nothing(ledger_function, open_account, ids, extra_field):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    body = {"transfer_id": ids("t1"), "debit_account_id": alice, "credit_account_id": bob, "amount": 10,
            "currency": CURRENCY, **extra_field}

    reply = ledger_function.post("/transfers", body, key=ids("k1"))
    allowed = {k: v for k, v in body.items() if k not in extra_field}
    retry_without = ledger_function.post("/transfers", allowed, key=ids("k1"))

    assert reply.status == 422
    assert [error["field"] for error in reply.json()["errors"]] == list(extra_field)
    assert retry_without.status == 201  # the refused request did not spend the key either
    assert ledger_function.balance(bob) == 10


def test_mass_assignment_in_a_linked_leg_is_422(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    legs = [{"transfer_id": ids("t1"), "debit_account_id": alice, "credit_account_id": bob, "amount": 10,
             "currency": CURRENCY, "kind": "REVERSAL"}]

    reply = ledger_function.post("/transfers/linked", {"transfers": legs}, key=ids("k1"))

    assert reply.status == 422 and reply.json()["errors"][0]["field"] == "transfers.0.kind"
    assert ledger_function.balance(bob) == 0


def test_a_customer_token_cannot_debit_an_account_it_does_not_own(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    mallory = ledger_function.token(sub="cust-mallory", scopes=("ledger:write",), kind="customer")
    body = {"transfer_id": ids("t1"), "debit_account_id": alice, "credit_account_id": bob, "amount": 10,
            "currency": CURRENCY}

    reply = ledger_function.post("/transfers", body, key=ids("k1"), token=mallory)

    assert reply.status == 404 and reply.json()["code"] == "account_not_found"
    assert ledger_function.balance(bob) == 0
