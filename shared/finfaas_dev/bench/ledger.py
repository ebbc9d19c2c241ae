"""`finfaas bench ledger`: transfers/s through the gateway and the ledger function, against raw
TransactWriteItems/s of the very same items on the same DynamoDB Local.

Everything runs on loopback in this process's own sandbox: DynamoDB Local and moto on free ports,
the infra template under a fresh stage, dev secrets (an auth client, an audit HMAC key), and the
local gateway with the auth and ledger functions. A client_credentials token comes from the auth
function, as an internal service would get it.

Sides, each with `--clients` concurrent clients, in F-R-N-N-R-F order (a neighbour's load weighs on
all alike):
  F  POST /function/ledger/transfers among `--accounts` accounts, a fresh Idempotency-Key each;
  R  raw TransactWriteItems of the items the function writes for one transfer (2 conditional
     account updates, the transfer put, 2 entries, the outbox event, the idempotency record),
     captured from the ledger's own code path and replayed with fresh ids among other accounts;
  N  the same without the idempotency record, to show what that record costs inside the transaction.
DynamoDB calls per transfer come from the function's /_/ops/stats (pynamodb's send signal), and so do
the costs of rate limiting, audit and idempotency. `finfaas ledger check` runs at the end over every
account the run touched. Last line: JSON with transfers_per_s, raw_per_s, ratio,
dynamodb_calls_per_transfer and the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import hashlib
import itertools
import json
import os
import random
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finfaas_dev.bench.suite import FUNCTIONS_DIR, Sandbox, running_suite, stack_text

CURRENCY = "USD"
CLIENTS_DEFAULT = 8
ACCOUNTS_DEFAULT = 50
ROUND_SECONDS_DEFAULT = 5.0
WARMUP_SECONDS_DEFAULT = 5.0  # DynamoDB Local's JIT keeps speeding up for a while
ROUNDS_DEFAULT = 2  # per side, interleaved
REQUESTS_PER_ROUND_MAX = 50_000
SECONDS_PER_ROUND_MAX = 120.0
ACCOUNT_OPENING_MINOR = 10**15  # more than any run can spend: no refusal for want of funds
TRANSFER_AMOUNT_MINOR = 1
REQUEST_TIMEOUT_SECONDS = 15.0
RATIO_TARGET = 0.7
ERRORS_SHOWN_MAX = 3
AUDIT_KEY_BYTES = 48
CHECK_TIMEOUT_SECONDS = 300
CAPTURE_DEBIT, CAPTURE_CREDIT, CAPTURE_TRANSFER = "benchcapdebit", "benchcapcredit", "benchcaptransfer"
FUNCTION_SIDE, RAW_SIDE, RAW_NO_KEY_SIDE = "function", "raw", "raw_no_idempotency"


# --- load results ---------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """One round: successes, failures by kind, wall seconds and the summed latency of successes."""

    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    latency_seconds: float = 0.0
    samples: list[str] = field(default_factory=list)

    def fail(self, kind: str, sample: str = "") -> None:
        self.failed[kind] = self.failed.get(kind, 0) + 1
        if sample and len(self.samples) < ERRORS_SHOWN_MAX:
            self.samples.append(sample[:300])

    @property
    def attempts(self) -> int:
        return self.ok + sum(self.failed.values())


def merged(results: list[LoadResult]) -> LoadResult:
    total = LoadResult()
    for result in results:
        total.ok += result.ok
        total.seconds += result.seconds
        total.latency_seconds += result.latency_seconds
        for kind, count in result.failed.items():
            total.failed[kind] = total.failed.get(kind, 0) + count
        total.samples += result.samples[: ERRORS_SHOWN_MAX - len(total.samples)]
    return total


def per_second(result: LoadResult) -> float:
    return result.ok / result.seconds if result.seconds else 0.0


def mean_ms(result: LoadResult) -> float:
    return result.latency_seconds * 1000 / result.ok if result.ok else 0.0


# --- the function side ----------------------------------------------------------------------------


class TransferRequests:
    """Fresh transfers among the accounts: each with its own transfer id and Idempotency-Key."""

    def __init__(self, accounts: list[str], run_id: str, token: str) -> None:
        self._accounts = accounts
        self._run_id = run_id
        self._numbers = itertools.count()
        self._auth = f"Bearer {token}"

    def next(self, rng: random.Random) -> tuple[list[tuple[str, str]], bytes]:
        debit, credit = rng.sample(self._accounts, 2)
        transfer_id = f"{self._run_id}-{next(self._numbers)}"
        body = json.dumps({"transfer_id": transfer_id, "debit_account_id": debit, "credit_account_id": credit,
                           "amount": TRANSFER_AMOUNT_MINOR, "currency": CURRENCY}).encode()
        headers = [("Authorization", self._auth), ("Content-Type", "application/json"),
                   ("Idempotency-Key", transfer_id)]
        return headers, body


async def function_load(port: int, requests: TransferRequests, clients: int, seconds: float,
                        requests_max: int) -> LoadResult:
    """POST transfers through the gateway over `clients` keep-alive connections, time- and count-bound."""
    from finfaas_dev.upstream import UpstreamError, UpstreamPool

    pool = UpstreamPool("127.0.0.1", port, clients)
    result = LoadResult()
    deadline = time.monotonic() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline and result.attempts < requests_max:
            headers, body = requests.next(rng)
            began = time.perf_counter()
            try:
                response = await pool.request("POST", "/function/ledger/transfers", headers, body,
                                              REQUEST_TIMEOUT_SECONDS)
            except (UpstreamError, TimeoutError) as error:
                result.fail(type(error).__name__, str(error))
                continue
            if response.status == 201:
                result.ok += 1
                result.latency_seconds += time.perf_counter() - began
            else:
                result.fail(str(response.status), response.body.decode("utf-8", "replace"))

    began = time.monotonic()
    try:
        await asyncio.gather(*(client(seed) for seed in range(clients)))
    finally:
        pool.close()
    result.seconds = time.monotonic() - began
    return result


# --- the raw side ---------------------------------------------------------------------------------


class TransactionTemplate:
    """The TransactWriteItems request of one captured transfer, re-issued with fresh ids.

    Substituted per request: the two account ids, the transfer id, the entry time (so each
    account's entry keys keep growing, as its update condition demands) and the idempotency key.
    """

    def __init__(self, params: dict[str, Any], micros_text: str, idempotency_key: str | None) -> None:
        self._text = json.dumps(params)
        self._micros_text = micros_text
        self._idempotency_key = idempotency_key

    def render(self, debit: str, credit: str, transfer_id: str, micros_text: str) -> dict[str, Any]:
        text = (self._text.replace(CAPTURE_DEBIT, debit).replace(CAPTURE_CREDIT, credit)
                .replace(CAPTURE_TRANSFER, transfer_id).replace(self._micros_text, micros_text))
        if self._idempotency_key is not None:
            fresh = "v1:ledger:" + hashlib.sha256(transfer_id.encode()).hexdigest()
            text = text.replace(self._idempotency_key, fresh)
        return json.loads(text)

    def without_idempotency(self, table_name: str) -> TransactionTemplate:
        params = json.loads(self._text)
        params["TransactItems"] = [item for item in params["TransactItems"]
                                   if item.get("Put", {}).get("TableName") != table_name]
        return TransactionTemplate(params, self._micros_text, None)

    @property
    def items(self) -> int:
        return len(json.loads(self._text)["TransactItems"])


def raw_load(template: TransactionTemplate, accounts: list[str], run_id: str, clients: int, seconds: float,
             requests_max: int, micros_counter: Iterator[int]) -> LoadResult:
    """`clients` threads, each with its own botocore client, sending the template's transactions."""
    result = LoadResult()
    lock = threading.Lock()
    numbers = itertools.count()
    deadline = time.monotonic() + seconds

    def client(seed: int) -> None:
        dynamodb = _raw_client(clients)
        rng = random.Random(seed)
        local = LoadResult()
        while time.monotonic() < deadline and local.attempts * clients < requests_max:
            debit, credit = rng.sample(accounts, 2)
            transfer_id = f"{run_id}-{next(numbers)}"
            began = time.perf_counter()
            if commit_like_the_store(dynamodb, template, debit, credit, transfer_id, micros_counter, local):
                local.ok += 1
                local.latency_seconds += time.perf_counter() - began
        with lock:
            result.ok += local.ok
            result.latency_seconds += local.latency_seconds
            for kind, count in local.failed.items():
                result.failed[kind] = result.failed.get(kind, 0) + count
            result.samples += local.samples[: ERRORS_SHOWN_MAX - len(result.samples)]

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - began
    return result


def commit_like_the_store(dynamodb, template: TransactionTemplate, debit: str, credit: str, transfer_id: str,
                          micros_counter: Iterator[int], result: LoadResult) -> bool:
    """Send one transfer's transaction, retried as the ledger store retries: after a conflict or a
    stale entry time (a later request reached the account first), with a fresh time and the same
    jittered backoff. Funds never run out here, so a failed account condition is always one of those."""
    from finfaas.store.ledger_store import (
        operation_attempts_max,
        retry_wait_seconds_base,
        retry_wait_seconds_max,
    )

    for attempt in range(operation_attempts_max):
        try:
            params = template.render(debit, credit, transfer_id, str(next(micros_counter)))
            dynamodb.transact_write_items(**params)
            return True
        except Exception as error:  # counted, not fatal: conflicts are part of the load
            result.fail(_error_code(error), str(error))
            time.sleep(random.uniform(0, min(retry_wait_seconds_max, retry_wait_seconds_base * 2**attempt)))
    return False


def _raw_client(clients: int):
    import botocore.session
    from botocore.config import Config

    # The same retry budget pynamodb gives the ledger store's connection (2 attempts).
    config = Config(retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=clients)
    return botocore.session.get_session().create_client(
        "dynamodb", region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"), config=config)


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    reasons = {r.get("Code") for r in response.get("CancellationReasons", []) if r.get("Code") != "None"}
    code = response.get("Error", {}).get("Code") or type(error).__name__
    return f"{code}({','.join(sorted(reasons))})" if reasons else code


def capture_template(store, records, guard, client_id: str) -> TransactionTemplate:
    """Run one transfer through the function's own code path and keep its TransactWriteItems request."""
    from finfaas.platform.http import TransactionalIdempotency
    from finfaas.services.ledger.api import LedgerApi, LedgerCaller, TransferBody
    from finfaas.services.ledger.service import LedgerService

    body = TransferBody(transfer_id=CAPTURE_TRANSFER, debit_account_id=CAPTURE_DEBIT,
                        credit_account_id=CAPTURE_CREDIT, amount=TRANSFER_AMOUNT_MINOR, currency=CURRENCY)
    raw_body = body.model_dump_json().encode()
    scope = guard.scope(principal=client_id, route="POST /transfers", key=CAPTURE_TRANSFER, method="POST",
                        path="/transfers", body=raw_body, required=True)
    captured: list[dict] = []

    def keep(params, **_):
        captured.append(copy.deepcopy(params))

    event = "before-parameter-build.dynamodb.TransactWriteItems"
    store.register_hook(event, keep)
    try:
        LedgerApi(LedgerService(store), records).transfer(
            LedgerCaller(client_id, "client"), body, TransactionalIdempotency(guard, scope))
    finally:
        store.unregister_hook(event, keep)
    params = captured[-1]
    params.pop("ClientRequestToken", None)  # a fresh one per call, as botocore does
    # An entry key starts with the entry time in microseconds and names the transfer further on.
    match = re.search(r"(\d{16,17})#[^\"]*" + CAPTURE_TRANSFER, json.dumps(params))
    assert match is not None, "the captured transaction has no entry key"
    return TransactionTemplate(params, str(int(match.group(1))), scope.storage_key)


# --- secrets, tokens and accounts -----------------------------------------------------------------


def write_secrets(secrets_dir: Path) -> tuple[str, str]:
    """Dev auth secrets and an audit HMAC key; returns the demo client's id and secret."""
    from finfaas.platform import keys
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME

    from finfaas_dev.up import ensure_secret

    created = keys.write_dev_secrets(secrets_dir, out=lambda line: None)
    # Kept when present: a new key would leave the records already signed unverifiable.
    ensure_secret(secrets_dir / AUDIT_KEY_SECRET_NAME, secrets.token_urlsafe(AUDIT_KEY_BYTES))
    if created.client_secret is not None:
        return created.client_id, created.client_secret
    # The folder already had its demo client (another suite of the same test session wrote it).
    demo = json.loads((secrets_dir / keys.DEMO_CREDENTIALS_FILE).read_text())
    return demo["client_id"], demo["client_secret"]


def http_json(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> Any:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def client_token(base_url: str, client_id: str, client_secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    reply = http_json("POST", f"{base_url}/function/auth/oauth/token",
                      b"grant_type=client_credentials&scope=ledger:write+ledger:read+ops",
                      {"Authorization": f"Basic {basic}",
                       "Content-Type": "application/x-www-form-urlencoded"})
    return reply["access_token"]


def open_accounts(store, prefix: str, count: int) -> list[str]:
    """Customer accounts, each funded from the funding account far beyond what the run can spend."""
    return open_funded(store, [f"{prefix}{i}" for i in range(count)])


def open_funded(store, accounts: list[str]) -> list[str]:
    from finfaas.domain.ledger import NewAccount
    from finfaas.services.ledger.service import LedgerService

    service = LedgerService(store)
    for account_id in accounts:
        store.open_account(NewAccount(account_id, "bench-owner", CURRENCY), datetime.now(UTC))
        service.deposit(account_id, ACCOUNT_OPENING_MINOR, CURRENCY, transfer_id=f"{account_id}-opening")
    return accounts


# --- measuring ------------------------------------------------------------------------------------


def stats(base_url: str, token: str) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    return http_json("GET", f"{base_url}/function/ledger/_/ops/stats", None, headers)


def stats_delta(before: dict, after: dict) -> dict:
    calls = {name: count - before["dynamodb_calls"].get(name, 0)
             for name, count in after["dynamodb_calls"].items()}
    steps = {}
    for name, step in after["steps"].items():
        earlier = before["steps"].get(name, {"calls": 0, "ms_total": 0.0})
        steps[name] = {"calls": step["calls"] - earlier["calls"],
                       "ms_total": step["ms_total"] - earlier["ms_total"]}
    return {"dynamodb_calls": {name: count for name, count in calls.items() if count},
            "steps": {name: step for name, step in steps.items() if step["calls"]}}


def table_kind(name: str, stage: str) -> str:
    """'UpdateItem finfaas-<stage>-ratelimits' -> 'UpdateItem ratelimits'."""
    return name.replace(f"finfaas-{stage}-", "")


def role_processes(gateway_pid: int) -> dict[str, Any]:
    """The processes whose CPU a round spends: DynamoDB Local, gateway, ledger function, this one."""
    import psutil

    me = psutil.Process()
    gateway = psutil.Process(gateway_pid)
    java = next(p for p in me.children(recursive=True) if p.name().startswith("java"))
    ledger = next(p for p in gateway.children(recursive=True)
                  if any(str(FUNCTIONS_DIR / "ledger") in part for part in p.cmdline()))
    return {"dynamodb_local": java, "gateway": gateway, "ledger_function": ledger, "bench_clients": me}


def cpu_seconds(processes: dict[str, Any]) -> dict[str, float]:
    return {role: sum(process.cpu_times()[:2]) for role, process in processes.items()}


async def measure(args: argparse.Namespace, sandbox: Sandbox, client_id: str, client_secret: str,
                  gateway_pid: int) -> dict:
    from finfaas.platform.config import resource_name
    from finfaas.platform.idempotency import IdempotencyGuard
    from finfaas.services.ledger.service import LedgerService
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import ledger_store_from_config

    base_url = f"http://127.0.0.1:{sandbox.gateway_port}"
    token = client_token(base_url, client_id, client_secret)
    store = ledger_store_from_config()
    LedgerService(store).ensure_system_accounts(CURRENCY)
    function_accounts = open_accounts(store, "bench-f", args.accounts)
    raw_accounts = open_accounts(store, "bench-r", args.accounts)
    open_funded(store, [CAPTURE_DEBIT, CAPTURE_CREDIT])
    records = IdempotencyStore()
    template = capture_template(store, records, IdempotencyGuard(records, "ledger"), client_id)
    templates = {RAW_SIDE: template,
                 RAW_NO_KEY_SIDE: template.without_idempotency(resource_name("idempotency"))}
    micros_counter = itertools.count(int(time.time() * 1_000_000) + 1)
    run_id = secrets.token_hex(3)
    requests = TransferRequests(function_accounts, f"bench-{run_id}", token)

    print(f"warming up each side for {args.warmup_seconds} s (function start, JWKS, pools, the JVM's JIT)",
          flush=True)
    await function_load(sandbox.gateway_port, requests, args.clients, args.warmup_seconds, args.requests_max)
    await asyncio.to_thread(raw_load, templates[RAW_SIDE], raw_accounts, f"raw{run_id}w", args.clients,
                            args.warmup_seconds, args.requests_max, micros_counter)
    results: dict[str, list[LoadResult]] = {FUNCTION_SIDE: [], RAW_SIDE: [], RAW_NO_KEY_SIDE: []}
    deltas: list[dict] = []
    processes = role_processes(gateway_pid)
    cpu: dict[str, dict[str, float]] = {side: {} for side in results}
    order = [FUNCTION_SIDE, RAW_SIDE, RAW_NO_KEY_SIDE, RAW_NO_KEY_SIDE, RAW_SIDE, FUNCTION_SIDE]
    for round_number, side in enumerate(order[: 3 * args.rounds]):
        cpu_before = cpu_seconds(processes)
        if side == FUNCTION_SIDE:
            before = stats(base_url, token)
            result = await function_load(sandbox.gateway_port, requests, args.clients, args.seconds,
                                         args.requests_max)
            deltas.append(stats_delta(before, stats(base_url, token)))
        else:
            result = await asyncio.to_thread(raw_load, templates[side], raw_accounts,
                                             f"raw{run_id}r{round_number}", args.clients, args.seconds,
                                             args.requests_max, micros_counter)
        results[side].append(result)
        for role, spent in cpu_seconds(processes).items():
            cpu[side][role] = cpu[side].get(role, 0.0) + spent - cpu_before[role]
        failures = ", ".join(f"{kind}: {n}" for kind, n in sorted(result.failed.items())) or "none"
        print(f"{side:19s} {per_second(result):8.1f}/s  mean {mean_ms(result):6.2f} ms  ({result.ok} ok; "
              f"failed attempts: {failures})", flush=True)
        for sample in result.samples:
            print(f"    e.g. {sample}", flush=True)
    return summarize(results, deltas, templates, cpu, sandbox.stage, args)


def summarize(results: dict[str, list[LoadResult]], deltas: list[dict], templates: dict,
              cpu: dict[str, dict[str, float]], stage: str, args: argparse.Namespace) -> dict:
    function, raw, raw_no_key = (merged(results[s]) for s in (FUNCTION_SIDE, RAW_SIDE, RAW_NO_KEY_SIDE))
    calls: dict[str, int] = {}
    steps: dict[str, dict[str, float]] = {}
    for delta in deltas:
        for name, count in delta["dynamodb_calls"].items():
            calls[table_kind(name, stage)] = calls.get(table_kind(name, stage), 0) + count
        for name, step in delta["steps"].items():
            total = steps.setdefault(name, {"calls": 0, "ms_total": 0.0})
            total["calls"] += step["calls"]
            total["ms_total"] += step["ms_total"]
    transfers = function.ok or 1

    def per_transfer(predicate: Callable[[str], bool]) -> float:
        return round(sum(n for name, n in calls.items() if predicate(name)) / transfers, 3)

    def step_ms(name: str) -> float:
        step = steps.get(name)
        return round(step["ms_total"] / step["calls"], 3) if step and step["calls"] else 0.0

    transfers_per_s, raw_per_s = per_second(function), per_second(raw)
    return {
        "transfers_per_s": round(transfers_per_s, 1),
        "raw_per_s": round(raw_per_s, 1),
        "ratio": round(transfers_per_s / raw_per_s, 3) if raw_per_s else None,
        "dynamodb_calls_per_transfer": per_transfer(lambda name: True),
        "dynamodb_calls_by_kind_per_transfer": {name: round(n / transfers, 3)
                                                for name, n in sorted(calls.items())},
        "raw_without_idempotency_per_s": round(per_second(raw_no_key), 1),
        "items_per_transaction": {RAW_SIDE: templates[RAW_SIDE].items,
                                  RAW_NO_KEY_SIDE: templates[RAW_NO_KEY_SIDE].items},
        "latency_ms_mean": {FUNCTION_SIDE: round(mean_ms(function), 2), RAW_SIDE: round(mean_ms(raw), 2),
                            RAW_NO_KEY_SIDE: round(mean_ms(raw_no_key), 2)},
        "idempotency": {
            "calls_per_transfer": per_transfer(lambda name: name.endswith(" idempotency")),
            "ms_in_function": step_ms("idempotency"),
            # The record rides in the transaction: its cost is the 7th item's, seen from both sides.
            "latency_ms_in_transaction": round(mean_ms(raw) - mean_ms(raw_no_key), 2),
            "dynamodb_local_cpu_ms_in_transaction": round(
                (cpu[RAW_SIDE].get("dynamodb_local", 0.0) / (raw.ok or 1)
                 - cpu[RAW_NO_KEY_SIDE].get("dynamodb_local", 0.0) / (raw_no_key.ok or 1)) * 1000, 3),
        },
        "rate_limit": {"calls_per_transfer": per_transfer(lambda name: name.endswith(" ratelimits")),
                       "ms": step_ms("rate_limit")},
        "audit": {"calls_per_transfer": per_transfer(lambda name: name.endswith(" audit")),
                  "ms": step_ms("audit"),
                  # What DynamoDB Local spends per transfer beyond the raw transaction: the audit put
                  # and the rate limiter's share.
                  "dynamodb_local_cpu_ms_beyond_raw": round(
                      (cpu[FUNCTION_SIDE].get("dynamodb_local", 0.0) / (function.ok or 1)
                       - cpu[RAW_SIDE].get("dynamodb_local", 0.0) / (raw.ok or 1)) * 1000, 3)},
        "function_request_ms_mean": step_ms("request"),
        # CPU per committed transfer is steadier than throughput on a shared machine.
        "cpu_ms_per_transfer": {side: {role: round(spent * 1000 / (merged(results[side]).ok or 1), 3)
                                       for role, spent in sorted(cpu[side].items()) if spent > 0}
                                for side in cpu},
        "failed": {side: merged(results[side]).failed for side in results if merged(results[side]).failed},
        "clients": args.clients,
        "accounts": args.accounts,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
    }


def ledger_check(stage: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finfaas_dev.cli", "ledger", "check", "--stage", stage],
                          capture_output=True, text=True, timeout=CHECK_TIMEOUT_SECONDS, env=dict(os.environ))


# --- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=CLIENTS_DEFAULT, help="concurrent clients per side")
    parser.add_argument("--accounts", type=int, default=ACCOUNTS_DEFAULT, help="accounts per side")
    parser.add_argument("--seconds", type=float, default=ROUND_SECONDS_DEFAULT, help="length of one round")
    parser.add_argument("--warmup-seconds", type=float, default=WARMUP_SECONDS_DEFAULT)
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT, choices=(1, 2),
                        help="rounds per side: 1 (F R N) or 2 (F R N N R F)")
    parser.add_argument("--requests-max", type=int, default=REQUESTS_PER_ROUND_MAX, help="cap per round")


def run(args: argparse.Namespace) -> int:
    if not 0 < args.seconds <= SECONDS_PER_ROUND_MAX or args.accounts < 2 or args.clients < 1:
        print(f"bench ledger: need 0 < --seconds <= {SECONDS_PER_ROUND_MAX}, --accounts >= 2, --clients >= 1",
              file=sys.stderr)
        return 2
    from finfaas_dev.gateway import run_on_uvloop

    # No queue connector: nothing here sends a message, and its polling would share the CPU measured.
    stack = stack_text(("auth", "ledger"))
    with running_suite("finfaas-bench-ledger-", stack, write_secrets, connector=False,
                       function_logs=False) as suite:
        client_id, client_secret = write_secrets(suite.sandbox.secrets_dir)  # the demo client's, as written
        summary = run_on_uvloop(measure(args, suite.sandbox, client_id, client_secret, suite.gateway.pid))
        check = ledger_check(suite.sandbox.stage)
    print(check.stdout.strip().splitlines()[-1] if check.stdout.strip() else check.stderr.strip())
    summary["ledger_check"] = "passed" if check.returncode == 0 else f"failed (exit {check.returncode})"
    verdict = "meets" if summary["ratio"] and summary["ratio"] >= RATIO_TARGET else "misses"
    print(f"function/raw = {summary['ratio']} ({verdict} the {RATIO_TARGET} target); "
          f"{summary['dynamodb_calls_per_transfer']} DynamoDB calls per transfer")
    print(json.dumps(summary))
    return 0 if check.returncode == 0 else 1
