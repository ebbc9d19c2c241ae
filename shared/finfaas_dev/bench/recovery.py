"""`finfaas bench recovery`: how soon a transfer saga takes its next step after the orchestrator
process driving it is killed, and what a sweep of overdue executions costs.

The suite runs as under `bench transfers` (loopback only: DynamoDB Local and moto on free ports behind
a counting proxy, a fresh stage, the local gateway with every function a process). Then, `--sagas`
transfers in rounds of `--per-kill`: a round sends its transfers at once (each POST answers once the
saga has started), waits a random 0-KILL_DELAY_SECONDS_MAX, and SIGKILLs the orchestrator's process
group (its pid from the gateway's /system/functions; the gateway starts a new one on the next call
or tick), then follows every transfer until it is final.

Recovery of a saga: from the kill to the first event its execution's history records after it, for
every saga that had started before the kill and was not finished at it (the rest were not hurt).
Sweep cost: one sweeper tick (what the tick message runs: is anything running, the claim, what is
due) run here against the same tables through the proxy, its DynamoDB calls by operation.
Last line: JSON with recovery_p50_s, recovery_p99_s, recovery_max_s, and the rest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import signal
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import urllib3

from finfaas_dev.bench.ledger import ledger_check
from finfaas_dev.bench.suite import Sandbox
from finfaas_dev.bench.transfers import (
    CURRENCY,
    DRAIN_SECONDS_MAX,
    FINAL_STATUSES,
    TRANSFER_AMOUNT_MINOR,
    TRANSFERS_PER_CUSTOMER_MAX,
    Customer,
    Customers,
    Proxy,
    _request,
    client_token,
    no_execution_running,
    open_customers,
    percentile_ms,
    running_suite,
    unattributed,
)

SAGAS_DEFAULT = 100
PER_KILL_DEFAULT = 10
SAGAS_LIMIT = 1_000
KILL_DELAY_SECONDS_MAX = 0.5  # after a round's POSTs answered: most sagas are then mid-task
ROUND_SECONDS_MAX = 180.0  # every transfer of a round final within this, or the bench fails
STATUS_WAIT_SECONDS = 5
ORCHESTRATOR = "orchestrator"
WARMUP_SAGAS = 10
SEND_ATTEMPTS_MAX = 5
# A read sent just after the kill may reach the dying process (a 502) or find none yet (a 503 while it
# starts): asked again, as a GET may be.
READ_ATTEMPTS_MAX = 10
READ_RETRY_SECONDS = 0.5
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
ENDED = frozenset({"ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut"})


def orchestrator_pid(base_url: str) -> int | None:
    status, listed = _request("GET", f"{base_url}/system/functions", "none")
    if status != 200:
        raise RuntimeError(f"/system/functions answered {status}")
    return next((f["pid"] for f in listed if f["name"] == ORCHESTRATOR), None)


def kill_orchestrator(base_url: str) -> bool:
    """SIGKILL the orchestrator's process group; False when none was running."""
    pid = orchestrator_pid(base_url)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def send(base_url: str, sender: Customer, payee: Customer) -> str:
    body = {
        "debit_account_id": sender.account_id,
        "credit_account_id": payee.account_id,
        "amount": TRANSFER_AMOUNT_MINOR,
        "currency": CURRENCY,
    }
    headers = {"Idempotency-Key": secrets.token_hex(8)}
    url = f"{base_url}/function/transfers/transfers"
    answer: Any = None
    for _ in range(SEND_ATTEMPTS_MAX):  # a process may be starting (again): retried with the same key
        try:
            status, answer = _request("POST", url, sender.token, body, headers)
        except urllib3.exceptions.HTTPError as error:
            status, answer = 0, repr(error)
        if status == 202:
            return str(answer["transfer_id"])
        time.sleep(1)
    raise RuntimeError(f"POST /transfers answered {status}: {answer}")


def follow(base_url: str, sender: Customer, transfer_id: str) -> str:
    deadline = time.monotonic() + ROUND_SECONDS_MAX
    url = f"{base_url}/function/transfers/transfers/{transfer_id}?wait={STATUS_WAIT_SECONDS}"
    while time.monotonic() < deadline:
        try:
            status, view = _request("GET", url, sender.token)
        except urllib3.exceptions.HTTPError:
            continue
        if status == 200 and view["status"] in FINAL_STATUSES:
            return str(view["status"])
        time.sleep(0.25)
    raise RuntimeError(f"transfer {transfer_id} not final after {ROUND_SECONDS_MAX} s")


def history_times(base_url: str, token: str, transfer_id: str) -> list[tuple[float, str]]:
    path = f"/function/orchestrator/executions/transfer:{transfer_id}/history?limit=200"
    for _ in range(READ_ATTEMPTS_MAX):
        try:
            status, page = _request("GET", base_url + path, token)
        except urllib3.exceptions.HTTPError as error:
            status, page = 0, repr(error)
        if status not in UNAVAILABLE_STATUSES and status != 0:
            break
        time.sleep(READ_RETRY_SECONDS)
    if status != 200:
        raise RuntimeError(f"history of {transfer_id} answered {status}: {page}")
    return [
        (datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp(), e["type"]) for e in page["data"]
    ]


def recovery_seconds(events: list[tuple[float, str]], killed_at: float) -> float | None:
    """Kill to the next recorded event, for a saga running at the kill; None for one it did not touch."""
    before = [at for at, _ in events if at < killed_at]
    after = [at for at, _ in events if at >= killed_at]
    finished_before = any(kind in ENDED and at < killed_at for at, kind in events)
    if finished_before or not before or not after:
        return None
    return min(after) - killed_at


def sweep_tick_calls(dynamodb: Proxy) -> Counter[str]:
    """The DynamoDB calls of one sweeper tick against the suite's tables, through the counting proxy."""
    from finfaas.store.executions_store import ExecutionsStore
    from finfaas.workflow.sweeper import Sweeper

    class NoQueue:
        def send(self, wakeup: Any, delay_seconds: int = 0) -> None:
            return None

    store = ExecutionsStore()
    before = dynamodb.counts()
    Sweeper(store, NoQueue(), clock=lambda: time.time() + 3600).tick()  # an hour on: its turn is due
    return dynamodb.counts() - before


def measure(args: argparse.Namespace, sandbox: Sandbox, dynamodb: Proxy) -> dict[str, Any]:
    base_url = f"http://127.0.0.1:{sandbox.gateway_port}"
    total = WARMUP_SAGAS + args.sagas
    customers = Customers(
        open_customers(max(2, math.ceil(total / TRANSFERS_PER_CUSTOMER_MAX) + 1), secrets.token_hex(3))
    )
    reader = client_token("orchestrator:read")
    rng = random.Random(args.seed)
    threads = ThreadPoolExecutor(max_workers=max(args.per_kill, WARMUP_SAGAS), thread_name_prefix="bench")
    try:
        # One first, alone: under load, ten cold starts at once outlast a request's timeout.
        sender, payee = customers.pair()
        follow(base_url, sender, send(base_url, sender, payee))
        pairs = [customers.pair() for _ in range(WARMUP_SAGAS)]
        list(threads.map(lambda p: follow(base_url, p[0], send(base_url, *p)), pairs))
        recoveries: list[float] = []
        statuses: Counter[str] = Counter()
        kills = redriven = 0
        for first in range(0, args.sagas, args.per_kill):
            pairs = [customers.pair() for _ in range(min(args.per_kill, args.sagas - first))]
            ids = list(threads.map(lambda p: send(base_url, *p), pairs))
            time.sleep(rng.uniform(0, KILL_DELAY_SECONDS_MAX))
            killed_at = time.time()
            kills += kill_orchestrator(base_url)
            senders = [sender for sender, _ in pairs]
            finals = list(threads.map(lambda s, i: follow(base_url, s, i), senders, ids))
            statuses.update(finals)
            for transfer_id in ids:
                events = history_times(base_url, reader, transfer_id)
                redriven += sum(1 for _, kind in events if kind == "TaskRedriven")
                seconds = recovery_seconds(events, killed_at)
                if seconds is not None:
                    recoveries.append(seconds)
            hit = len(recoveries)
            print(f"round {first // args.per_kill + 1}: killed, {hit} sagas hit so far", flush=True)
    finally:
        threads.shutdown(wait=True)
    tick = sweep_tick_calls(dynamodb)
    as_s = [r * 1000 for r in recoveries]
    return {
        "sagas": args.sagas,
        "kills": kills,
        "sagas_running_at_a_kill": len(recoveries),
        "recovery_p50_s": round(percentile_ms(as_s, 0.5) / 1000, 2),
        "recovery_p99_s": round(percentile_ms(as_s, 0.99) / 1000, 2),
        "recovery_max_s": round(max(recoveries, default=0.0), 2),
        "tasks_redriven": redriven,
        "statuses": dict(statuses),
        # The proxy counts each call twice, by operation and by the calling process: the first only.
        "sweep_tick_dynamodb_calls": {
            name.split(" ", 1)[1]: n for name, n in sorted(unattributed(tick).items())
        },
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sagas", type=int, default=SAGAS_DEFAULT, help="transfer sagas measured")
    parser.add_argument("--per-kill", type=int, default=PER_KILL_DEFAULT, help="sagas in flight per kill")
    parser.add_argument("--seed", type=int, default=None, help="of the random kill delays")


def run(args: argparse.Namespace) -> int:
    if not (0 < args.sagas <= SAGAS_LIMIT and 0 < args.per_kill <= min(args.sagas, 64)):
        print(f"bench recovery: need 0 < --sagas <= {SAGAS_LIMIT}, 0 < --per-kill <= 64", file=sys.stderr)
        return 2
    with running_suite("finfaas-bench-recovery-", ("AWS_ENDPOINT_URL_DYNAMODB",)) as (sandbox, proxies):
        summary = measure(args, sandbox, proxies[0])
        drained = no_execution_running(DRAIN_SECONDS_MAX)
        check = ledger_check(sandbox.stage)
    summary["ledger_check"] = "passed" if check.returncode == 0 else f"failed (exit {check.returncode})"
    summary["executions_left_running"] = not drained
    print(
        f"kill -> next step over {summary['sagas_running_at_a_kill']} sagas: "
        f"p50 {summary['recovery_p50_s']} s, p99 {summary['recovery_p99_s']} s, "
        f"max {summary['recovery_max_s']} s"
    )
    print(json.dumps(summary))
    return 0 if check.returncode == 0 and drained else 1
