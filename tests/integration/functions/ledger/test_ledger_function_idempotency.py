"""Idempotency-Key on the ledger function's money routes, against DynamoDB Local: at most one effect."""

from __future__ import annotations

import threading

from botocore.exceptions import ConnectionClosedError
from support.ledger_function_testing import CURRENCY, FUNDING_ACCOUNT

CONCURRENT_SAME_KEY_THREADS = 8


def transfer(ids, debit: str, credit: str, amount=100, name: str = "t1") -> dict:
    return {"transfer_id": ids(name), "debit_account_id": debit, "credit_account_id": credit,
            "amount": amount, "currency": CURRENCY}


def test_same_key_and_body_replays_with_no_second_effect(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    body = transfer(ids, alice, bob, 250)

    first = ledger_function.post("/transfers", body, key=ids("k1"))
    again = ledger_function.post("/transfers", body, key=ids("k1"))

    assert (first.status, again.status) == (201, 201)
    assert again.json() == first.json()
    assert again.header("Idempotency-Replayed") == "true"
    assert again.header("Location") == f"/transfers/{ids('t1')}"
    assert (ledger_function.balance(alice), ledger_function.balance(bob)) == (750, 250)


def test_same_key_with_a_different_body_is_422_and_writes_nothing(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    ledger_function.post("/transfers", transfer(ids, alice, bob, 250), key=ids("k1"))

    reused = ledger_function.post("/transfers", transfer(ids, alice, bob, 300, name="t2"), key=ids("k1"))

    assert reused.status == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert ledger_function.get(f"/transfers/{ids('t2')}").status == 404
    assert ledger_function.balance(bob) == 250


def test_concurrent_requests_with_one_key_have_one_effect(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    body = transfer(ids, alice, bob, 100)
    replies, start = [], threading.Barrier(CONCURRENT_SAME_KEY_THREADS)

    def send() -> None:
        start.wait()
        replies.append(ledger_function.post("/transfers", body, key=ids("same")))

    threads = [threading.Thread(target=send) for _ in range(CONCURRENT_SAME_KEY_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.status for r in replies) == [201] * CONCURRENT_SAME_KEY_THREADS
    assert len({r.body for r in replies}) == 1
    assert sum(r.header("Idempotency-Replayed") is None for r in replies) >= 1
    assert (ledger_function.balance(alice), ledger_function.balance(bob)) == (900, 100)


def test_a_money_post_without_a_key_is_400_and_moves_nothing(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")

    reply = ledger_function.post("/transfers", transfer(ids, alice, bob), key=None)

    assert reply.status == 400
    assert reply.json()["code"] == "idempotency_key_missing"
    assert ledger_function.balance(bob) == 0


def test_a_refusal_is_replayed_under_its_key_even_after_the_state_changes(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=100), open_account("bob")
    body = transfer(ids, alice, bob, 500)

    refused = ledger_function.post("/transfers", body, key=ids("k1"))
    ledger_function.post("/transfers", transfer(ids, FUNDING_ACCOUNT, alice, 1_000, name="topup"),
                         key=ids("topup"))
    again = ledger_function.post("/transfers", body, key=ids("k1"))
    fresh_key = ledger_function.post("/transfers", body, key=ids("k2"))

    assert refused.status == again.status == 409
    assert refused.json()["code"] == "insufficient_funds"
    assert again.header("Idempotency-Replayed") == "true"
    assert fresh_key.status == 201  # a new key is a new attempt
    assert ledger_function.balance(bob) == 500


def test_a_lost_dynamodb_response_applies_once_and_answers_the_transfer(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    lost = []

    def lose_first_commit(model, **_):
        # The transaction committed in DynamoDB; its answer never reaches the function.
        if model.name == "TransactWriteItems" and not lost:
            lost.append(model.name)
            raise ConnectionClosedError(endpoint_url="http://dynamodb.local (response lost)")

    ledger_function.store.register_hook("after-call.dynamodb", lose_first_commit)
    try:
        reply = ledger_function.post("/transfers", transfer(ids, alice, bob, 300), key=ids("k1"))
    finally:
        ledger_function.store.unregister_hook("after-call.dynamodb", lose_first_commit)

    assert lost and reply.status == 201
    assert reply.json()["transfer_id"] == ids("t1")
    assert (ledger_function.balance(alice), ledger_function.balance(bob)) == (700, 300)


def test_a_fresh_transfer_is_one_transaction_and_no_idempotency_call(ledger_function, open_account, ids):
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    before = ledger_function.module.services.get().dynamodb_calls()

    reply = ledger_function.post("/transfers", transfer(ids, alice, bob), key=ids("k1"))

    after = ledger_function.module.services.get().dynamodb_calls()
    calls = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    assert reply.status == 201
    assert calls.pop("TransactWriteItems (transaction)") == 1
    assert not any("idempotency" in name for name in calls)
    # the audit record rides in the transaction's outbox item; the rest is at most a rate-limit lease
    assert not any("audit" in name for name in calls)
    assert set(calls) <= {name for name in calls if name.endswith("-ratelimits")}
