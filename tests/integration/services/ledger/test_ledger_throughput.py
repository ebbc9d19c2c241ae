"""Transfers per second straight against the store with 8 threads (bounded; -s prints the figure).

Reproduce: .venv/bin/pytest tests/integration/services/ledger/test_ledger_throughput.py -s
"""

from __future__ import annotations

import threading
import time

from finfaas.domain.ledger import Actor, NewAccount, NewTransfer

THREADS = 8
TRANSFERS_PER_THREAD = 60
ACCOUNTS_PER_THREAD = 4  # each thread moves money among its own accounts: no hot items
RUN_SECONDS_MAX = 60


def test_transfers_per_second_with_eight_threads(ledger_store, clock, ids, funded):
    funding = funded()
    accounts = [[ledger_store.open_account(NewAccount(ids(f"t{t}a{i}"), ids("u"), "USD"), clock()).account_id
                 for i in range(ACCOUNTS_PER_THREAD)] for t in range(THREADS)]
    deposits = [NewTransfer(ids(f"dep{t}-{i}"), funding, a, 1_000_000, "USD")
                for t, group in enumerate(accounts) for i, a in enumerate(group)]
    for start in range(0, len(deposits), 16):
        ledger_store.create_transfers(deposits[start:start + 16], Actor.system(), clock())
    done = [0] * THREADS
    deadline = time.monotonic() + RUN_SECONDS_MAX

    def worker(t: int) -> None:
        group = accounts[t]
        for n in range(TRANSFERS_PER_THREAD):
            if time.monotonic() > deadline:
                return
            debit, credit = group[n % len(group)], group[(n + 1) % len(group)]
            ledger_store.create_transfers([NewTransfer(ids(f"w{t}-{n}"), debit, credit, 1 + n, "USD")],
                                          Actor.system(), clock())
            done[t] += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    rate = sum(done) / elapsed
    print(f"\n{sum(done)} transfers by {THREADS} threads in {elapsed:.2f} s: {rate:.0f} transfers/s")
    assert sum(done) == THREADS * TRANSFERS_PER_THREAD
    total = sum(ledger_store.get_account(a).balance_minor for group in accounts for a in group)
    assert total == THREADS * ACCOUNTS_PER_THREAD * 1_000_000
