"""The accounts function against DynamoDB Local and moto: real tokens, real tables, real audit chain."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, keyring_from_text, verify_chain
from finfaas.platform.config import read_secret
from finfaas.services.ledger.model import TransferRequest
from finfaas.store.audit_store import AuditStore
from finfaas_dev.testing.platform import call

pytestmark = pytest.mark.emulator


def request(world, method: str, path: str, token: str | None, key: str | None = None, **kwargs):
    headers = {"Idempotency-Key": key} if key else {}
    return call(world.handler.handle, method, path, token=token, headers=headers, **kwargs)


def open_account(world, token: str, currency: str = "USD") -> str:
    reply = request(world, "POST", "/accounts", token, uuid.uuid4().hex, json_body={"currency": currency})
    assert reply.status == 201, reply.body
    return reply.json()["account_id"]


def owned_accounts(world, owner_id: str) -> list[str]:
    return [a.account_id for a in world.ledger.list_accounts(owner_id).items]


def test_open_list_get_statement_and_balance_at(accounts_world):
    world = accounts_world
    customer_id, token = world.customer()

    # GIVEN an account opened through the function and money moved through the ledger
    account_id = open_account(world, token)
    world.ledger.deposit(account_id, 10_000, "USD")
    between = datetime.now(UTC)
    world.ledger.transfer(TransferRequest(account_id, "sys-settlement-USD", 2_500, "USD"))
    world.ledger.transfer(TransferRequest(account_id, "sys-settlement-USD", 1_000, "USD", pending=True))

    # WHEN the customer reads it every way
    listed = request(world, "GET", "/accounts", token).json()
    account = request(world, "GET", f"/accounts/{account_id}", token).json()
    statement = request(world, "GET", f"/accounts/{account_id}/statement", token, query={"limit": "2"}).json()
    older = request(world, "GET", f"/accounts/{account_id}/statement", token,
                    query={"limit": "2", "starting_after": statement["next_cursor"]}).json()
    then = request(world, "GET", f"/accounts/{account_id}/balance", token,
                   query={"at": between.isoformat().replace("+00:00", "Z")}).json()

    # THEN every view agrees with the ledger
    assert [a["account_id"] for a in listed["data"]] == [account_id]
    balances = account["balances"]
    assert (balances["posted_minor"], balances["pending_debits_minor"], balances["available_minor"]) == (
        7_500, 1_000, 6_500)
    lines = statement["data"] + older["data"]
    assert [(e["kind"], e["side"], e["balance_after_minor"]) for e in lines] == [
        ("PENDING", "debit", 7_500), ("POSTED", "debit", 7_500), ("POSTED", "credit", 10_000)]
    assert statement["has_more"] and not older["has_more"]
    assert then["posted_minor"] == 10_000


def test_a_replayed_opening_returns_the_same_account_from_the_idempotency_table(accounts_world):
    world = accounts_world
    customer_id, token = world.customer()

    first = request(world, "POST", "/accounts", token, "same-key", json_body={"currency": "EUR"})
    retry = request(world, "POST", "/accounts", token, "same-key", json_body={"currency": "EUR"})
    reused = request(world, "POST", "/accounts", token, "same-key", json_body={"currency": "GBP"})

    assert first.status == retry.status == 201 and retry.body == first.body
    assert retry.header("Idempotency-Replayed") == "true"
    assert reused.status == 422
    assert owned_accounts(world, customer_id) == [first.json()["account_id"]]


@pytest.mark.parametrize("field, value", [("owner_id", "someone-else"), ("balance", 10**6),
                                          ("status", "FROZEN"), ("credits_posted", 10**6)])
def test_mass_assignment_writes_nothing(accounts_world, field, value):
    world = accounts_world
    customer_id, token = world.customer()

    reply = request(world, "POST", "/accounts", token, uuid.uuid4().hex,
                    json_body={"currency": "USD", field: value})

    assert reply.status == 422 and reply.json()["errors"][0]["field"] == field
    assert owned_accounts(world, customer_id) == []


def test_another_customer_gets_404_on_every_route_taking_an_account_id_and_nothing_changes(accounts_world):
    world = accounts_world
    _, alice = world.customer()
    _, bob = world.customer()
    account_id = open_account(world, alice)
    world.ledger.deposit(account_id, 4_200, "USD")
    before = request(world, "GET", f"/accounts/{account_id}", alice).json()
    missing = "acc_" + uuid.uuid4().hex

    for suffix, query in (("", None), ("/statement", None), ("/balance", {"at": "2030-01-01T00:00:00Z"})):
        foreign = request(world, "GET", f"/accounts/{account_id}{suffix}", bob, query=query)
        absent = request(world, "GET", f"/accounts/{missing}{suffix}", bob, query=query)
        assert foreign.status == absent.status == 404
        assert foreign.body.replace(account_id, "<id>") == absent.body.replace(missing, "<id>")
    for action in ("freeze", "unfreeze", "close"):
        assert request(world, "POST", f"/_/ops/accounts/{account_id}/{action}", bob, "k").status == 403

    after = request(world, "GET", f"/accounts/{account_id}", alice).json()
    assert after == before


def test_an_operator_freezes_and_closes_only_an_empty_account(accounts_world):
    world = accounts_world
    _, token = world.customer()
    operator = world.operator()
    account_id = open_account(world, token)
    world.ledger.deposit(account_id, 300, "USD")

    frozen = request(world, "POST", f"/_/ops/accounts/{account_id}/freeze", operator, uuid.uuid4().hex)
    refused_debit = _debit_refused(world, account_id)
    request(world, "POST", f"/_/ops/accounts/{account_id}/unfreeze", operator, uuid.uuid4().hex)
    not_empty = request(world, "POST", f"/_/ops/accounts/{account_id}/close", operator, uuid.uuid4().hex)
    world.ledger.transfer(TransferRequest(account_id, "sys-settlement-USD", 300, "USD"))
    closed = request(world, "POST", f"/_/ops/accounts/{account_id}/close", operator, uuid.uuid4().hex)

    assert frozen.json()["status"] == "FROZEN" and refused_debit == "account_frozen"
    assert not_empty.status == 409 and not_empty.json()["code"] == "account_not_empty"
    assert closed.status == 200 and closed.json()["status"] == "CLOSED"
    assert request(world, "GET", f"/_/ops/accounts/{account_id}", operator).json()["status"] == "CLOSED"


def test_an_account_with_a_pending_hold_does_not_close(accounts_world):
    world = accounts_world
    _, token = world.customer()
    account_id = open_account(world, token)
    world.ledger.transfer(TransferRequest("sys-funding-USD", account_id, 50, "USD", pending=True))

    reply = request(world, "POST", f"/_/ops/accounts/{account_id}/close", world.operator(), uuid.uuid4().hex)

    assert reply.status == 409 and reply.json()["code"] == "account_not_empty"


def test_changes_land_in_a_verifiable_audit_chain(accounts_world):
    world = accounts_world
    customer_id, token = world.customer()
    account_id = open_account(world, token)
    request(world, "POST", f"/_/ops/accounts/{account_id}/freeze", world.operator(), uuid.uuid4().hex)

    store = AuditStore()
    records = [r for chain in store.chains() if chain.startswith("accounts-") for r in store.records(chain)]
    # Chains are sharded by actor, so the two records may sit in different chains.
    mine = sorted((r.action, r.actor, r.outcome) for r in records if r.target == f"account:{account_id}")

    assert mine == [("account.freeze", "ops-console", "succeeded"),
                    ("account.open", customer_id, "succeeded")]
    # Other functions' tests in this session may have signed records with the session's audit key.
    keyring = keyring_from_text(read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    for chain in {r.chain for r in records}:
        assert verify_chain(chain, store.records(chain), keyring).ok


def test_readiness_reaches_the_ledger_table(accounts_world):
    reply = call(accounts_world.handler.handle, "GET", "/_/ready")

    assert reply.status == 200 and reply.json()["checks"] == ["ledger-table"]


def _debit_refused(world, account_id: str) -> str:
    from finfaas.domain.errors import LedgerError

    try:
        world.ledger.transfer(TransferRequest(account_id, "sys-settlement-USD", 1, "USD"))
    except LedgerError as error:
        return error.code
    return "accepted"


def test_a_balance_at_a_future_moment_is_the_current_one(accounts_world):
    world = accounts_world
    _, token = world.customer()
    account_id = open_account(world, token)
    world.ledger.deposit(account_id, 70, "USD")
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")

    reply = request(world, "GET", f"/accounts/{account_id}/balance", token, query={"at": future})

    assert reply.json()["posted_minor"] == 70
