"""The ledger function as a process behind the local gateway, on the embedded DynamoDB Local.

Concurrent random transfers conserve money and respect limits; a client that loses its answer and
retries with the same Idempotency-Key moves money once; bad tokens are refused alike over HTTP.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from finfaas.domain.ledger import NewAccount
from finfaas.store.ledger_store import DynamoLedgerStore
from finfaas.store.tables import LedgerTables
from finfaas_dev.net import wait_for
from finfaas_dev.testing.platform import TokenMinter, loopback_http_server
from support.gateway_harness import GatewayProcess, http
from support.http_testing import json_document_handler

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
CURRENCY = "USD"
FUNDING_ACCOUNT = f"sys-funding-{CURRENCY}"
SCOPES = ("ledger:write", "ledger:read", "ops", "ops:act")
THREADS = 16
ACCOUNTS = 10
TRANSFERS_PER_THREAD = 20
OPENING_BALANCE_MINOR = 1_000
AMOUNT_MINOR_MAX = 400
RETRIES_MAX = 5  # per transfer, on 503 or a broken connection, always with the same key
COMMIT_WAIT_SECONDS_MAX = 10.0
REQUEST_TIMEOUT_SECONDS = 15.0


def stack_text() -> str:
    handler_dir = REPOSITORY_ROOT / "functions" / "ledger"
    return (
        "version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://127.0.0.1:8080\nfunctions:\n"
        f"  ledger:\n    lang: python3-http\n    handler: {handler_dir}\n    image: finfaas/ledger:test\n"
        "    environment:\n      exec_timeout: 15s\n"
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, embedded_aws, minter):
    folder = tmp_path_factory.mktemp("ledger-gateway")
    stack = folder / "stack.yml"
    stack.write_text(stack_text())
    with loopback_http_server(json_document_handler(minter.keyring.jwks())) as jwks_url:
        env = {**embedded_aws.env(), "FINFAAS_JWKS_URL": f"{jwks_url}/jwks.json"}
        process = GatewayProcess(folder, ["--no-connector"], env=env, stack=stack)
        try:
            yield process
        finally:
            process.stop()


@pytest.fixture(scope="module")
def store(embedded_aws) -> DynamoLedgerStore:
    return DynamoLedgerStore(LedgerTables.for_stage(embedded_aws.stage), os.environ["AWS_DEFAULT_REGION"])


@pytest.fixture(scope="module")
def token(minter) -> str:
    return minter.mint(sub="svc-e2e", scopes=SCOPES, kind="client")


def post(gateway, token: str, path: str, body: dict, key: str | None) -> object:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return http("POST", f"{gateway.url}/function/ledger{path}", json.dumps(body).encode(), headers,
                timeout=REQUEST_TIMEOUT_SECONDS)


def get(gateway, token: str, path: str):
    return http("GET", f"{gateway.url}/function/ledger{path}", None, {"Authorization": f"Bearer {token}"},
                timeout=REQUEST_TIMEOUT_SECONDS)


@pytest.fixture(scope="module")
def bootstrap(gateway, token):
    reply = post(gateway, token, "/_/ops/system-accounts", {"currency": CURRENCY}, None)
    assert reply.status == 200, reply.body
    return reply


def transfer_body(transfer_id: str, debit: str, credit: str, amount: int) -> dict:
    return {"transfer_id": transfer_id, "debit_account_id": debit, "credit_account_id": credit,
            "amount": amount, "currency": CURRENCY}


def open_funded(gateway, token, store, prefix: str, count: int) -> list[str]:
    accounts = [f"{prefix}-acc{i}" for i in range(count)]
    for account_id in accounts:
        store.open_account(NewAccount(account_id, f"{prefix}-owner", CURRENCY), datetime.now(UTC))
        reply = post(gateway, token, "/transfers",
                     transfer_body(f"{account_id}-fund", FUNDING_ACCOUNT, account_id, OPENING_BALANCE_MINOR),
                     f"{account_id}-fund")
        assert reply.status == 201, reply.body
    return accounts


def send_until_answered(gateway, token: str, body: dict, key: str):
    """A careful client: on 503 or a broken connection it retries the same request, same key."""
    for _ in range(RETRIES_MAX):
        try:
            reply = post(gateway, token, "/transfers", body, key)
        except OSError:
            continue
        if reply.status != 503:
            return reply
        time.sleep(float(reply.headers.get("Retry-After", "1")) / 10)
    raise AssertionError(f"no final answer for {key} after {RETRIES_MAX} attempts")


def ledger_check(embedded_aws) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finfaas_dev.cli", "ledger", "check", "--stage",
                           embedded_aws.stage], env={**os.environ, **embedded_aws.env()},
                          capture_output=True, text=True, timeout=120)


def test_sixteen_threads_of_random_transfers_conserve_money(gateway, token, store, bootstrap, embedded_aws):
    prefix = uuid.uuid4().hex[:8]
    accounts = open_funded(gateway, token, store, prefix, ACCOUNTS)
    statuses: list[int] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for n in range(TRANSFERS_PER_THREAD):
            debit, credit = rng.sample(accounts, 2)
            key = f"{prefix}-{seed}-{n}"
            reply = send_until_answered(gateway, token, transfer_body(key, debit, credit,
                                                                     rng.randint(1, AMOUNT_MINOR_MAX)), key)
            with lock:
                statuses.append(reply.status)
            if reply.status == 409:
                assert reply.json()["code"] == "insufficient_funds"

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    balances = [store.get_account(a).balance_minor for a in accounts]
    assert sum(balances) == ACCOUNTS * OPENING_BALANCE_MINOR
    assert min(balances) >= 0
    assert len(statuses) == THREADS * TRANSFERS_PER_THREAD and set(statuses) <= {201, 409}
    assert statuses.count(201) > 0
    check = ledger_check(embedded_aws)
    assert check.returncode == 0, check.stdout + check.stderr


def send_and_hang_up(gateway, token: str, body: dict, key: str) -> None:
    """The client sends the whole request, then is gone before the answer (a timeout, a lost link)."""
    payload = json.dumps(body).encode()
    head = (f"POST /function/ledger/transfers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {key}\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", gateway.port)) as connection:
        connection.sendall(head.encode() + payload)


def test_a_lost_answer_then_a_retry_with_the_same_key_moves_money_once(gateway, token, store, bootstrap):
    prefix = uuid.uuid4().hex[:8]
    payer, payee = open_funded(gateway, token, store, prefix, 2)
    body = transfer_body(f"{prefix}-t1", payer, payee, 300)

    # GIVEN the first attempt reached the ledger but its answer never reached the client
    send_and_hang_up(gateway, token, body, f"{prefix}-k1")
    wait_for(lambda: get(gateway, token, f"/transfers/{prefix}-t1").status == 200, COMMIT_WAIT_SECONDS_MAX,
             "the first attempt to commit")
    # WHEN the client retries with the same key and body
    retry = post(gateway, token, "/transfers", body, f"{prefix}-k1")

    # THEN it gets the first attempt's answer, and the money moved once
    assert retry.status == 201
    assert retry.headers.get("Idempotency-Replayed") == "true"
    assert retry.json()["transfer_id"] == f"{prefix}-t1"
    assert store.get_account(payee).balance_minor == OPENING_BALANCE_MINOR + 300
    assert store.get_account(payer).balance_minor == OPENING_BALANCE_MINOR - 300


def test_retries_racing_the_lost_attempt_still_move_money_once(gateway, token, store, bootstrap):
    prefix = uuid.uuid4().hex[:8]
    payer, payee = open_funded(gateway, token, store, prefix, 2)
    body = transfer_body(f"{prefix}-t1", payer, payee, 300)

    # GIVEN an impatient client: it hangs up and retries at once, several times, while the first runs
    send_and_hang_up(gateway, token, body, f"{prefix}-k1")
    replies = [post(gateway, token, "/transfers", body, f"{prefix}-k1") for _ in range(3)]

    assert [r.status for r in replies] == [201, 201, 201]
    assert len({r.body for r in replies}) == 1
    assert store.get_account(payee).balance_minor == OPENING_BALANCE_MINOR + 300


def test_forged_tokens_get_the_same_401_through_the_gateway(gateway, minter, token, bootstrap):
    stranger = TokenMinter.generate()
    claims = minter.claims(sub="svc-e2e", scopes=SCOPES, kind="client")
    forged = {
        "expired": minter.sign({**claims, "exp": int(time.time()) - 3600}),
        "other-key-same-kid": stranger.sign(claims, {"kid": minter.keyring.active.kid}),
        "garbage": "not-a-token",
    }
    answers = []
    for forgery in forged.values():
        reply = post(gateway, forgery, "/transfers", transfer_body("t-forged", FUNDING_ACCOUNT, "x", 1), "k")
        body = reply.json()
        answers.append((reply.status, body["code"], body["detail"], reply.headers.get("WWW-Authenticate")))

    assert len(set(answers)) == 1 and answers[0][:2] == (401, "unauthorized")
    assert get(gateway, token, "/transfers/t-forged").status == 404


def test_missing_scope_is_403_and_mass_assignment_is_422_through_the_gateway(gateway, minter, store, token,
                                                                               bootstrap):
    prefix = uuid.uuid4().hex[:8]
    payer, payee = open_funded(gateway, token, store, prefix, 2)
    reader = minter.mint(sub="svc-reader", scopes=("ledger:read",), kind="client")
    body = transfer_body(f"{prefix}-t1", payer, payee, 10)

    no_scope = post(gateway, reader, "/transfers", body, f"{prefix}-k1")
    assigned = post(gateway, token, "/transfers", {**body, "state": "POSTED", "kind": "REVERSAL"},
                    f"{prefix}-k2")

    assert no_scope.status == 403 and no_scope.json()["code"] == "insufficient_scope"
    assert assigned.status == 422 and {e["field"] for e in assigned.json()["errors"]} == {"state", "kind"}
    assert get(gateway, token, f"/transfers/{prefix}-t1").status == 404
    assert store.get_account(payee).balance_minor == OPENING_BALANCE_MINOR
