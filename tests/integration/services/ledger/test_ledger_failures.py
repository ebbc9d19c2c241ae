"""Crashes and races: lost responses, retries by the SDK and by us, 16 threads on 10 accounts."""

from __future__ import annotations

import random
import threading

import pytest
from finfaas.domain import errors
from finfaas.domain.ledger import Actor, NewAccount, NewTransfer, PendingState, PostPending
from finfaas.store.ledger_store import StoreRejected
from finfaas_dev.ledger_check import check_store
from support.ledger_testing import LoseResponses

SYSTEM = Actor.system()
CONCURRENT_THREADS = 16
CONCURRENT_ACCOUNTS = 10
TRANSFERS_PER_THREAD = 25
OPENING_BALANCE_MINOR = 1_000


@pytest.fixture
def lose_responses(ledger_store):
    installed = []

    def install(operation: str = "TransactWriteItems", times: int = 1) -> LoseResponses:
        handler = LoseResponses(operation, times)
        ledger_store.register_hook("after-call.dynamodb", handler)
        installed.append(handler)
        return handler

    yield install
    for handler in installed:
        ledger_store.unregister_hook("after-call.dynamodb", handler)


def test_a_committed_transfer_whose_response_is_lost_applies_once(ledger_store, clock, ids, funded,
                                                                  lose_responses, count_calls):
    funding = funded()
    alice = ledger_store.open_account(NewAccount(ids("alice"), ids("u"), "USD"), clock()).account_id
    # GIVEN the first response of a committed transaction never reaches the client
    lost = lose_responses(times=1)
    # WHEN the transfer is made (the store retries the same transfer id)
    with count_calls() as calls:
        transfer = ledger_store.create_transfers([NewTransfer(ids("t1"), funding, alice, 250, "USD")],
                                                 SYSTEM, clock())[0]
    # THEN it is applied exactly once and the caller gets the stored transfer
    assert lost.lost == 1
    assert calls["TransactWriteItems"] == 2
    assert ledger_store.get_account(alice).credits_posted == 250
    assert ledger_store.get_transfer(ids("t1")) == transfer
    # AND a client retry after that is a replay, still once
    ledger_store.create_transfers([NewTransfer(ids("t1"), funding, alice, 250, "USD")], SYSTEM, clock())
    assert ledger_store.get_account(alice).credits_posted == 250


def test_a_lost_post_response_posts_the_hold_once(ledger_store, clock, ids, funded, lose_responses):
    funding = funded()
    alice = ledger_store.open_account(NewAccount(ids("alice"), ids("u"), "USD"), clock()).account_id
    ledger_store.create_transfers([NewTransfer(ids("hold"), funding, alice, 90, "USD", pending=True)],
                                  SYSTEM, clock())
    lose_responses(times=1)
    post = ledger_store.post_pending(PostPending(ids("post"), ids("hold"), 40), SYSTEM, clock())
    assert post.amount_minor == 40
    assert ledger_store.get_transfer(ids("hold")).state is PendingState.POSTED
    account = ledger_store.get_account(alice)
    assert (account.credits_posted, account.credits_pending) == (40, 0)


def test_the_sdk_resending_a_committed_request_does_not_apply_it_twice(ledger_store, clock, ids, funded):
    funding = funded()
    alice = ledger_store.open_account(NewAccount(ids("alice"), ids("u"), "USD"), clock()).account_id
    resent = []

    def resend_once(attempts, operation, response, **_):
        # 'needs-retry' returning a delay makes botocore send the very same request again.
        if operation.name == "TransactWriteItems" and not resent and response is not None:
            resent.append(attempts)
            return 0
        return None

    ledger_store.register_hook("needs-retry.dynamodb", resend_once)
    try:
        ledger_store.create_transfers([NewTransfer(ids("t1"), funding, alice, 70, "USD")], SYSTEM, clock())
    finally:
        ledger_store.unregister_hook("needs-retry.dynamodb", resend_once)
    assert resent
    assert ledger_store.get_account(alice).credits_posted == 70


def test_a_balance_beyond_dynamodb_precision_is_refused_whole(ledger_store, clock, ids, funded):
    # GIVEN an account whose credits already use all 38 digits DynamoDB keeps (set behind the ledger's back)
    funding = funded()
    alice = ledger_store.open_account(NewAccount(ids("alice"), ids("u"), "USD"), clock()).account_id
    client = ledger_store.models.account._get_connection().connection.client
    client.update_item(TableName=ledger_store.models.account.Meta.table_name,
                       Key={"account_id": {"S": alice}}, UpdateExpression="SET credits_posted = :x",
                       ExpressionAttributeValues={":x": {"N": "9" * 38}})
    # WHEN a transfer would push it past that THEN nothing at all is written
    with pytest.raises(StoreRejected):
        ledger_store.create_transfers([NewTransfer(ids("t1"), funding, alice, 10, "USD")], SYSTEM, clock())
    assert ledger_store.get_transfer(ids("t1")) is None
    assert ledger_store.get_account(funding).debits_posted == 0
    client.update_item(TableName=ledger_store.models.account.Meta.table_name,
                       Key={"account_id": {"S": alice}}, UpdateExpression="SET credits_posted = :x",
                       ExpressionAttributeValues={":x": {"N": "0"}})  # leave the shared ledger consistent


def test_sixteen_threads_conserve_money_and_respect_limits(ledger_store, clock, ids, funded):
    # GIVEN 10 limited accounts holding 1,000 each
    funding = funded()
    accounts = [ledger_store.open_account(NewAccount(ids(f"acc{i}"), ids("u"), "USD"), clock()).account_id
                for i in range(CONCURRENT_ACCOUNTS)]
    deposits = [NewTransfer(ids(f"dep{i}"), funding, a, OPENING_BALANCE_MINOR, "USD")
                for i, a in enumerate(accounts)]
    ledger_store.create_transfers(deposits, SYSTEM, clock())
    outcomes: dict[str, int] = {"committed": 0, "insufficient": 0, "busy": 0}
    committed: list[NewTransfer] = []
    busy: list[NewTransfer] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for n in range(TRANSFERS_PER_THREAD):
            debit, credit = rng.sample(accounts, 2)
            new = NewTransfer(ids(f"w{seed}-{n}"), debit, credit, rng.randint(1, 400), "USD")
            try:
                ledger_store.create_transfers([new], SYSTEM, clock())
                result, target = "committed", committed
            except errors.InsufficientFunds:
                result, target = "insufficient", None
            except errors.LedgerBusy:
                result, target = "busy", busy
            with lock:
                outcomes[result] += 1
                if target is not None:
                    target.append(new)

    # WHEN 16 threads move money among them at random
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(CONCURRENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Busy outcomes are ambiguous: settling them by retrying the same ids must be safe.
    for new in busy:
        try:
            ledger_store.create_transfers([new], SYSTEM, clock())
            committed.append(new)
        except errors.InsufficientFunds:
            pass
    print(f"\n16 threads x {TRANSFERS_PER_THREAD} transfers on {CONCURRENT_ACCOUNTS} accounts: {outcomes}")
    # THEN money is conserved, no limited account is below zero, balances match the committed transfers
    balances = {a: ledger_store.get_account(a).balance_minor for a in accounts}
    assert sum(balances.values()) == CONCURRENT_ACCOUNTS * OPENING_BALANCE_MINOR
    assert min(balances.values()) >= 0
    expected = dict.fromkeys(accounts, OPENING_BALANCE_MINOR)
    for new in committed:
        expected[new.debit_account_id] -= new.amount_minor
        expected[new.credit_account_id] += new.amount_minor
    assert balances == expected
    assert outcomes["committed"] > 0
    # AND the whole ledger reconciles
    report = check_store(ledger_store)
    assert report.clean, report.problems[:10]
