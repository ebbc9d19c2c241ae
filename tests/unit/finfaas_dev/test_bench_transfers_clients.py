"""`finfaas bench transfers` runs as many clients at once as it is asked for, pausing when told to."""

from __future__ import annotations

import asyncio
import threading
import time

from finfaas_dev.bench.transfers import Customer, Customers, Outcome, run_phase

BARRIER_SECONDS_MAX = 5.0


def test_eight_clients_have_eight_transfers_in_flight_at_once():
    # GIVEN a send that returns only once eight transfers are in flight together
    clients = 8
    together = threading.Barrier(clients, timeout=BARRIER_SECONDS_MAX)

    def send(base_url: str, sender: Customer, payee: Customer) -> Outcome:
        together.wait()
        return Outcome("t", "COMPLETED", 1.0, 0.0, 1)

    customers = Customers([Customer(f"c{n}", f"a{n}", "token") for n in range(2)])

    # WHEN the phase runs eight clients for eight transfers
    result = asyncio.run(run_phase("http://127.0.0.1:9", customers, clients, clients, 30.0, send=send))

    # THEN all eight met at the barrier: none waited for a free thread
    assert not result.errors
    assert len(result.completed) == clients


def test_a_pausing_client_leaves_the_pause_between_one_final_transfer_and_the_next():
    # GIVEN a send that notes when each transfer is sent and returns it final at once
    sent: list[float] = []

    def send(base_url: str, sender: Customer, payee: Customer) -> Outcome:
        sent.append(time.monotonic())
        return Outcome("t", "COMPLETED", 1.0, 0.0, 1)

    customers = Customers([Customer(f"c{n}", f"a{n}", "token") for n in range(2)])

    # WHEN one client sends three transfers, pausing 0.2 s after each
    result = asyncio.run(run_phase("http://127.0.0.1:9", customers, 1, 3, 30.0, send=send, pause_seconds=0.2))

    # THEN each transfer went out at least 0.2 s after the one before had come back final
    assert len(result.completed) == 3
    assert all(later - earlier >= 0.2 for earlier, later in zip(sent, sent[1:], strict=False))


def test_every_counted_call_is_attributed_to_the_function_that_made_it():
    # GIVEN the user agents botocore sends with AWS_SDK_UA_APP_ID set (a function) and unset (the gateway)
    from collections import Counter

    from finfaas_dev.bench.transfers import _caller, per_function, stack_text, unattributed

    agent = "Boto3/1.40 md/Botocore#1.44.8 ua/2.1 os/linux"
    assert _caller({"User-Agent": f"{agent} app/risk cfg/retry-mode#legacy"}) == "risk"
    assert _caller({"User-Agent": agent}) == "gateway"
    # AND every function of the bench's stack is given its own name as the app id
    assert 'AWS_SDK_UA_APP_ID: "orchestrator"' in stack_text()

    # WHEN the proxy's counts (by operation, and by caller and operation) are split per transfer
    counts = Counter({"dynamodb GetItem": 6, "risk: dynamodb GetItem": 2, "transfers: dynamodb GetItem": 4})

    # THEN each function's calls come per transfer, and the totals leave the attributed rows out
    expected = {"risk": {"dynamodb GetItem": 1.0}, "transfers": {"dynamodb GetItem": 2.0}}
    assert per_function(counts, 2) == expected
    assert unattributed(counts) == Counter({"dynamodb GetItem": 6})
