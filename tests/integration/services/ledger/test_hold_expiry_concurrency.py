"""Hold expiry is a scheduled job: two runs at once (a retried tick, two replicas) expire each hold once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from finfaas.domain.ledger import Actor, NewAccount, NewTransfer, PendingState, expiry_transfer_id

SYSTEM = Actor.system()
HOLDS = 12
HOLD_MINOR = 50
FUNDS_MINOR = 1_000
RUNS_AT_ONCE = 2
EXPIRY_BATCH_MAX = 1000


def test_two_expiry_runs_at_once_release_each_hold_exactly_once(ledger_store, clock, ids, funded):
    # GIVEN an account holding twelve holds whose timeout has passed
    funding = funded()
    alice = ledger_store.open_account(NewAccount(ids("alice"), ids("owner"), "USD"), clock()).account_id
    shop = ledger_store.open_account(NewAccount(ids("shop"), ids("owner-shop"), "USD"), clock()).account_id
    fund = NewTransfer(ids("fund"), funding, alice, FUNDS_MINOR, "USD")
    ledger_store.create_transfers([fund], SYSTEM, clock())
    holds = set()
    for n in range(HOLDS):
        hold = NewTransfer(ids(f"hold-{n}"), alice, shop, HOLD_MINOR, "USD", pending=True, timeout_seconds=1)
        holds.add(ledger_store.create_transfers([hold], SYSTEM, clock())[0].transfer_id)
    assert ledger_store.get_account(alice).available_minor == FUNDS_MINOR - HOLDS * HOLD_MINOR
    later = clock() + timedelta(seconds=5)

    # WHEN two expiry runs start at the same instant
    start = threading.Barrier(RUNS_AT_ONCE)
    results: list[list] = [[] for _ in range(RUNS_AT_ONCE)]
    failures: list[BaseException] = []

    def run(slot: int) -> None:
        try:
            start.wait()
            results[slot] = ledger_store.expire_due_holds(later, EXPIRY_BATCH_MAX)
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(RUNS_AT_ONCE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures

    # THEN each hold has one expiry (a run that lost the race answers with the winner's, as a replay),
    # and the funds came back once
    expiries = {(t.pending_id, t.transfer_id) for result in results for t in result if t.pending_id in holds}
    assert Counter(hold for hold, _ in expiries) == Counter(dict.fromkeys(holds, 1))
    assert {expiry for _, expiry in expiries} == {expiry_transfer_id(hold) for hold in holds}
    assert all(ledger_store.get_transfer(hold).state is PendingState.EXPIRED for hold in holds)
    assert ledger_store.get_account(alice).available_minor == FUNDS_MINOR
    assert ledger_store.get_account(shop).available_minor == 0
    # and a third run finds nothing left to do
    assert not {t.pending_id for t in ledger_store.expire_due_holds(later, EXPIRY_BATCH_MAX)} & holds
