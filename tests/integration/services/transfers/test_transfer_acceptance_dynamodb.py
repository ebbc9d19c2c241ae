"""POST /transfers through the real handler on DynamoDB Local: a request that the caller's accounts or
the tier's limit already refuse is answered at once (404/422), and nothing is written anywhere: no order,
no outbox event, no execution, no idempotency record."""

from __future__ import annotations

import boto3
import pytest
from finfaas.domain.ledger import AccountKind, NewAccount
from finfaas.platform.config import resource_name
from support.saga_world import CUSTOMER, OTHER_CUSTOMER, dynamodb_stores
from test_transfer_saga_dynamodb import world_on_dynamodb

# The tables a POST /transfers may write: the order, its event, the saga's execution, a key's record.
WRITTEN_TABLES = ("transferorders", "outbox", "executions", "history", "idempotency")


def item_counts() -> dict[str, int]:
    client = boto3.client("dynamodb")
    counts = {}
    for logical in WRITTEN_TABLES:
        pages = client.get_paginator("scan").paginate(
            TableName=resource_name(logical), Select="COUNT", ConsistentRead=True
        )
        counts[logical] = sum(page["Count"] for page in pages)
    return counts


@pytest.fixture(scope="module")
def world(embedded_aws):
    """Customer 1 with USD accounts (acc-a, acc-c) and an EUR one; customer 2 with a USD account (acc-b)."""
    world = world_on_dynamodb(dynamodb_stores())
    p = world.prefix
    now = world.clock.utc()
    world.ledger.open_account(NewAccount(p + "acc-eur", p + CUSTOMER, "EUR", AccountKind.CUSTOMER), now)
    return world


@pytest.mark.parametrize(
    ("sub", "body", "status", "code", "field"),
    [
        # customer 2 debits customer 1's account
        (OTHER_CUSTOMER, {"debit_account_id": "acc-a", "credit_account_id": "acc-b"}, 404,
         "account_not_found", "debit_account_id"),
        # customer 2 pays USD into customer 1's EUR account: answered as for a missing account
        (OTHER_CUSTOMER, {"debit_account_id": "acc-b", "credit_account_id": "acc-eur"}, 404,
         "account_not_found", "credit_account_id"),
        (OTHER_CUSTOMER, {"debit_account_id": "acc-b", "credit_account_id": "acc-nowhere"}, 404,
         "account_not_found", "credit_account_id"),
        # customer 1: an amount above any tier's limit; USD from their own EUR account
        (CUSTOMER, {"debit_account_id": "acc-a", "credit_account_id": "acc-b", "amount": 2**63 + 1}, 422,
         "per_transfer_limit_exceeded", "amount"),
        (CUSTOMER, {"debit_account_id": "acc-eur", "credit_account_id": "acc-b"}, 422,
         "currency_mismatch", "currency"),
    ],
    ids=["others-debit-account", "others-eur-payee", "missing-payee", "amount-2-to-the-63-plus-1",
         "own-eur-source"],
)
def test_a_refused_transfer_is_answered_at_once_and_writes_nothing(world, sub, body, status, code, field):
    p = world.prefix
    request = {"amount": 2_500, "currency": "USD", **body}
    request["debit_account_id"] = p + request["debit_account_id"]
    request["credit_account_id"] = p + request["credit_account_id"]
    before = item_counts()

    reply = world.start_transfer(request, key=f"key-{code}-{field}", sub=p + sub)

    assert (reply.status_code, reply.json()["code"]) == (status, code), reply.content
    assert [e["field"] for e in reply.json()["errors"]] == [field]
    assert item_counts() == before


def test_an_accepted_transfer_still_writes_its_order_and_execution(world):
    p = world.prefix
    before = item_counts()
    body = {"debit_account_id": p + "acc-a", "credit_account_id": p + "acc-b", "amount": 2_500,
            "currency": "USD"}

    reply = world.start_transfer(body, key="accepted")

    assert reply.status_code == 202, reply.content
    after = item_counts()
    assert after["transferorders"] == before["transferorders"] + 1
    assert after["executions"] > before["executions"]
