"""The caller's address through the real local gateway: the auth function sees the connected peer,
never what a client wrote in X-Real-Ip, so audit records and per-address sign-in limits hold."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
from finfaas.platform.keys import write_dev_secrets
from finfaas.platform.ratelimit import SIGN_IN_LIMIT
from finfaas.store.audit_store import AuditStore
from support.gateway_harness import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a sufficiently long passphrase"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def stack_text() -> str:
    handler_dir = REPOSITORY_ROOT / "functions" / "auth"
    return (
        "version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://127.0.0.1:8080\nfunctions:\n"
        f"  auth:\n    lang: python3-http\n    handler: {handler_dir}\n    image: finfaas/auth:test\n"
        "    environment:\n      exec_timeout: 30s\n    secrets: [auth-signing-keys, auth-clients]\n"
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, embedded_aws):
    folder = tmp_path_factory.mktemp("client-address")
    secrets_dir = folder / "secrets"
    write_dev_secrets(secrets_dir, out=lambda _: None)
    stack = folder / "stack.yml"
    stack.write_text(stack_text())
    # A caller's shell naming another header must not matter: the gateway sets what it trusts.
    env = {**embedded_aws.env(), "FINFAAS_SECRETS_DIR": str(secrets_dir),
           "FINFAAS_CLIENT_IP_HEADER": "X-Forwarded-For"}
    process = GatewayProcess(folder, ["--no-connector"], env=env, stack=stack)
    try:
        yield process
    finally:
        process.stop()


def forged(address: str) -> dict[str, str]:
    return {"X-Real-Ip": address, "X-Forwarded-For": address}


def audit_records_for(target: str) -> list:
    store = AuditStore(f"finfaas-{os.environ['FINFAAS_STAGE']}-audit")
    return [r for chain in store.chains() for r in store.records(chain) if r.target == target]


def test_the_audit_record_holds_the_connected_peer_not_the_claimed_address(gateway):
    body = json.dumps({"username": f"user-{uuid.uuid4().hex[:12]}", "password": PASSWORD}).encode()

    reply = gateway.call("POST", "/function/auth/customers/signup", body,
                         {"Content-Type": "application/json", **forged("203.0.113.77")})

    assert reply.status == 201, reply.body
    [record] = audit_records_for(f"customer:{reply.json()['customer_id']}")
    assert (record.action, record.source_ip) == ("customer.sign_up", "127.0.0.1")


def test_rotating_a_claimed_address_does_not_escape_the_per_address_sign_in_limit(gateway):
    def sign_in(attempt: int):
        form = {"grant_type": "password", "username": f"nobody-{attempt}", "password": PASSWORD}
        return gateway.call("POST", "/function/auth/oauth/token", urlencode(form).encode(),
                            {**FORM, **forged(f"198.51.{attempt // 250}.{attempt % 250 + 1}")})

    # GIVEN guesses for many usernames, each claiming a new address (bounded: two windows' worth,
    # in case the limit's window turns over while they run)
    statuses = []
    for attempt in range(2 * SIGN_IN_LIMIT.requests_max + 1):
        statuses.append(sign_in(attempt).status)
        if statuses[-1] == 429:
            break

    # THEN they are counted as the one address they come from, and a fresh claim does not help
    assert statuses[-1] == 429 and set(statuses) == {400, 429}
    assert sign_in(len(statuses)).status == 429
