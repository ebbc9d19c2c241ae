"""Cursors of the accounts function against DynamoDB Local: whatever a client puts in starting_after,
the answer is a 422 naming it (never a 500, never a balance the ledger did not compute)."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from finfaas.domain.errors import InvalidInput
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas_dev.testing.platform import call

pytestmark = pytest.mark.emulator


def request(world, path: str, token: str, **query: str):
    return call(world.handler.handle, "GET", path, token=token, query=query or None)


def open_account(world, token: str) -> str:
    reply = call(world.handler.handle, "POST", "/accounts", token=token,
                 headers={"Idempotency-Key": uuid.uuid4().hex}, json_body={"currency": "USD"})
    assert reply.status == 201, reply.body
    return reply.json()["account_id"]


def b64(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


def assert_refused_cursor(reply) -> None:
    assert reply.status == 422, reply.body
    assert reply.header("Content-Type") == "application/problem+json"
    assert [e["field"] for e in reply.json()["errors"]] == ["starting_after"]


@pytest.fixture
def statement_of_three(accounts_world):
    """(world, customer token, account id) with three deposits: two statement pages of limit 2."""
    world = accounts_world
    _, token = world.customer()
    account_id = open_account(world, token)
    for amount in (100, 200, 300):
        world.ledger.deposit(account_id, amount, "USD")
    return world, token, account_id


def test_an_accounts_cursor_that_is_no_dynamodb_key_is_a_422(accounts_world):
    _, token = accounts_world.customer()

    assert_refused_cursor(request(accounts_world, "/accounts", token, starting_after=b64({"x": 1})))


def test_an_accounts_cursor_naming_another_owners_account_is_a_422_and_shows_nothing(accounts_world):
    world = accounts_world
    bob_id, bob = world.customer()
    bobs_account = open_account(world, bob)
    _, alice = world.customer()
    opened_at = world.ledger.get_account(bobs_account).opened_at
    # GIVEN a well-formed key of the accounts-by-owner index, for an account Alice does not own
    key = {"account_id": {"S": bobs_account}, "owner_id": {"S": bob_id},
           "opened_at": {"S": opened_at.isoformat()}}

    reply = request(world, "/accounts", alice, starting_after=b64(key))

    assert_refused_cursor(reply)
    assert bobs_account not in reply.body


def test_bobs_own_cursor_is_refused_to_alice(accounts_world):
    world = accounts_world
    _, bob = world.customer()
    for _ in range(2):
        open_account(world, bob)
    _, alice = world.customer()
    cursor = request(world, "/accounts", bob, limit="1").json()["next_cursor"]

    assert_refused_cursor(request(world, "/accounts", alice, starting_after=cursor))


@pytest.mark.parametrize("balance", ["1e999", "Infinity", 1e999, "99" * 40])
def test_a_statement_cursor_with_an_overflowing_balance_is_a_422(statement_of_three, balance):
    world, token, account_id = statement_of_three
    cursor = base64.urlsafe_b64encode(
        json.dumps([account_id, "9999999999999999#000#t#C", balance]).encode()).decode().rstrip("=")

    assert_refused_cursor(request(world, f"/accounts/{account_id}/statement", token, starting_after=cursor))


def test_a_statement_cursor_whose_balance_the_client_edited_is_refused(statement_of_three):
    world, token, account_id = statement_of_three
    path = f"/accounts/{account_id}/statement"
    cursor = request(world, path, token, limit="2").json()["next_cursor"]

    reply = request(world, path, token, limit="2", starting_after=_with_balance(cursor, 999_999_999_999))

    assert_refused_cursor(reply)
    honest = request(world, path, token, limit="2", starting_after=cursor).json()
    assert [e["balance_after_minor"] for e in honest["data"]] == [100]


def test_a_statement_cursor_is_bound_to_its_account(statement_of_three):
    world, token, account_id = statement_of_three
    other = open_account(world, token)
    cursor = request(world, f"/accounts/{account_id}/statement", token, limit="2").json()["next_cursor"]

    assert_refused_cursor(request(world, f"/accounts/{other}/statement", token, starting_after=cursor))


def test_the_store_refuses_an_owner_cursor_for_another_owner_even_when_unsealed(accounts_world):
    # Defence in depth: should a cursor key leak, the store still checks the key's shape and owner.
    world = accounts_world
    bob_id, bob = world.customer()
    for _ in range(2):
        open_account(world, bob)
    store = ledger_store_from_config()
    inner = store.accounts_by_owner(bob_id, 1, None).next_cursor

    assert store.accounts_by_owner(bob_id, 1, inner).items  # Bob's own key resumes his list
    with pytest.raises(InvalidInput) as refused:
        store.accounts_by_owner("someone-else", 1, inner)
    assert refused.value.field == "starting_after"


def _with_balance(cursor: str, balance: int) -> str:
    """The cursor with its running balance replaced, as a client would edit it."""
    if cursor.count(".") == 2:  # sealed: edit the ledger cursor inside and keep the MAC
        version, body, mac = cursor.split(".")
        expires, inner = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        sealed = json.dumps([expires, _with_balance(inner, balance)], separators=(",", ":"))
        return f"{version}.{base64.urlsafe_b64encode(sealed.encode()).decode().rstrip('=')}.{mac}"
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    if raw.startswith("["):
        owner, key, _ = json.loads(raw)
        edited = json.dumps([owner, key, str(balance)], separators=(",", ":"))
    else:
        owner, key, _ = raw.split("\n")
        edited = f"{owner}\n{key}\n{balance}"
    return base64.urlsafe_b64encode(edited.encode()).decode().rstrip("=")
