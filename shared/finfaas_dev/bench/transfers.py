"""`finfaas bench transfers`: completed transfer sagas per second, end-to-end latency, AWS calls per
transfer, and the orchestration overhead, with the whole suite running as it does under `finfaas up`.

Everything runs on loopback in a sandbox of its own: DynamoDB Local and moto on free ports, the infra
template under a fresh stage, dev secrets with the service clients (orchestrator, transfers, rail),
and the local gateway with its queue connector and the auth, ledger, orchestrator, transfers, risk
and rail functions. Every AWS call of every process goes through a counting proxy (a separate
process), so DynamoDB and SQS calls per completed transfer are counted, not estimated. The proxy
adds about a millisecond to every call (0.8-1.3 ms to a GetItem on an idle DynamoDB Local), to the
steps' calls and the orchestrator's alike: every latency reported here includes it.

Customers (one account each, funded from the ledger's funding account) send internal transfers to
one another with customer tokens signed by the suite's dev signing key. Phases:
  low load  1 client, pausing 50 ms between transfers: end-to-end latency and the orchestration
            overhead, i.e. end-to-end latency divided by the sum of the saga steps' latencies as the
            orchestrator times each call (`overhead_ratio`: the histories' `call_ms`, from the request
            leaving the orchestrator to its answer parsed), and, stricter, divided by the steps' time in
            their handlers (`overhead_ratio_handler_time`: their request times in the functions' logs,
            transfers /saga/*, ledger /pending*; risk is inside /saga/validate), which leaves the hops
            to and from each function on the overhead's side;
  load      `--clients` clients, each sending its next transfer when the last one is final.
End-to-end latency runs from the client sending POST /transfers to the moment the transfer's final
step was recorded (its `steps[-1].at`). Meanwhile each client follows its transfer as an app should,
with GET /transfers/{id}?wait=30; when an answer comes back before the transfer is final it asks again,
at once if the wait ran out, after its Retry-After if the function's waiting slots were all taken.
`status_requests_per_transfer` counts those GETs. A status request reads the order once, and the
function's status watcher reads the orders it follows in batches: the DynamoDB calls per transfer leave
out both as the transfers function counts them (its /_/ops/stats `status_reads`, `status_batch_reads`).
Afterwards `finfaas ledger check` must pass and no execution may be left running.
Last line: JSON with sagas_per_s, p50_ms, p99_ms, overhead_ratio, dynamodb_calls_per_transfer,
sqs_calls_per_transfer and the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import urllib3

from finfaas_dev.bench import suite
from finfaas_dev.bench.ledger import ledger_check, write_secrets
from finfaas_dev.net import free_port, wait_for

CURRENCY = "USD"
CLIENTS_DEFAULT = 8
TRANSFERS_DEFAULT = 160  # in the load phase
LOW_LOAD_TRANSFERS_DEFAULT = 20
# Sent by `--clients` clients before anything is measured: besides starting the functions and
# filling their pools, it lets DynamoDB Local's JIT compile the saga's request paths, which
# otherwise goes on through the low-load phase and slows whichever calls it happens to meet.
WARMUP_TRANSFERS = 80
SECONDS_MAX_DEFAULT = 90.0  # per phase
SECONDS_MAX_LIMIT = 300.0
TRANSFERS_LIMIT = 2_000
# Risk flags a customer's 10th transfer in an hour for review: customers send fewer than that.
TRANSFERS_PER_CUSTOMER_MAX = 8
ACCOUNT_OPENING_MINOR = 10**12
TRANSFER_AMOUNT_MINOR = 1
ERROR_PAUSE_SECONDS = 0.25  # after a status request that failed without a Retry-After
RETRY_AFTER_SECONDS_MAX = 5.0  # the most the client honours of a Retry-After
# Low load is one saga at a time on a quiet suite: the client hears of the final step the moment it
# is recorded, while the saga still writes its last checkpoint, so it waits this long before the
# next transfer, lest that one's first steps share the machine with the last one's end.
LOW_LOAD_PAUSE_SECONDS = 0.05
STATUS_WAIT_SECONDS = 30  # GET /transfers/{id}?wait=: the most the function waits
STATUS_REQUEST_TIMEOUT_SECONDS = STATUS_WAIT_SECONDS + 15.0
TRANSFER_SECONDS_MAX = 60.0  # one saga; longer is a failure
DRAIN_SECONDS_MAX = 60.0
REQUEST_TIMEOUT_SECONDS = 15.0
OVERHEAD_TARGET = 1.3  # end to end over the steps' calls as the orchestrator times them, at low load
PROXY_READY_SECONDS_MAX = 15.0
# Endpoint variables the load bench counts calls on, each through a proxy of its own.
PROXIED_ENDPOINTS = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL")
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "COMPENSATED"})
# The saga's own steps, by function and route as the functions log them (risk runs inside /saga/validate).
STEP_ROUTES = {
    "transfers": ("/saga/validate", "/saga/complete", "/saga/fail", "/saga/attention"),
    "ledger": ("/pending", "/pending/{pending_id}/post", "/pending/{pending_id}/void"),
    "rail": ("/", "/payments/{payment_id}/recall"),
}
SERVICE_CLIENT_SCOPES = {
    "orchestrator": ("ledger:read", "ledger:write", "transfers:saga", "rail:recall"),
    "transfers": ("orchestrator:start", "orchestrator:read", "orchestrator:callback", "risk:assess"),
    "rail": ("orchestrator:callback",),
}
FUNCTIONS = {
    # name: (queue topic or None, extra environment)
    "auth": (None, {}),
    "ledger": (None, {}),
    "orchestrator": ("orchestrator", {"exec_timeout": "100s"}),
    # A waiting status request may take 30 s: the gateway gives it more.
    "transfers": ("reviews", {"exec_timeout": "45s"}),
    "risk": (None, {}),
    "rail": ("rail", {"RAIL_SANDBOX_SETTLE_SECONDS": "0"}),
}


# --- the counting proxy (runs in its own process) -----------------------------------------------------


def serve_counting_proxy(listen_port: int, upstream: str) -> None:
    """Forward every request to upstream, counting them by AWS operation; GET /__counts answers the counts."""
    from aiohttp import ClientSession, ClientTimeout, web

    counts: Counter[str] = Counter()
    dropped = {"host", "content-length", "transfer-encoding", "connection"}

    async def counted(request: web.Request) -> web.Response:
        if request.path == "/__counts":
            return web.json_response(dict(counts))
        body = await request.read()
        operation = _operation(request.headers, body)
        counts[operation] += 1
        counts[f"{_caller(request.headers)}: {operation}"] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in dropped}
        session: ClientSession = request.app["session"]
        async with session.request(
            request.method, upstream + request.path_qs, headers=headers, data=body
        ) as reply:
            payload = await reply.read()
            kept = {
                k: v
                for k, v in reply.headers.items()
                if k.lower() not in dropped and k.lower() != "content-encoding"
            }
            return web.Response(status=reply.status, headers=kept, body=payload)

    async def session_context(app: web.Application):
        app["session"] = ClientSession(timeout=ClientTimeout(total=60), auto_decompress=False)
        yield
        await app["session"].close()

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", counted)
    web.run_app(app, host="127.0.0.1", port=listen_port, print=None, handle_signals=True)


def _caller(headers: Any) -> str:
    """The function that sent a call, from botocore's `app/<id>` user-agent token (its AWS_SDK_UA_APP_ID,
    which stack_text sets to the function's name); `gateway` for the rest: while a phase is measured,
    the bench itself calls nothing, and what remains is the gateway's queue connector."""
    for token in headers.get("User-Agent", "").split():
        if token.startswith("app/"):
            return token[len("app/"):]
    return "gateway"


def _operation(headers: Any, body: bytes) -> str:
    """`DynamoDB_20120810.GetItem` -> `dynamodb GetItem`; `AmazonSQS.SendMessage` -> `sqs SendMessage`;
    query-protocol calls by their Action."""
    target = headers.get("X-Amz-Target", "")
    if target:
        service, _, operation = target.partition(".")
        return (
            f"{'dynamodb' if service.startswith('DynamoDB') else service.lower().removeprefix('amazon')} "
            f"{operation}"
        )
    from urllib.parse import parse_qs

    action = parse_qs(body.decode("utf-8", "replace")).get("Action", ["other"])[0]
    return f"query {action}"


@dataclass
class Proxy:
    process: subprocess.Popen
    url: str

    def counts(self) -> Counter[str]:
        with urllib.request.urlopen(self.url + "/__counts", timeout=5) as reply:  # noqa: S310 - loopback
            return Counter(json.loads(reply.read()))


def start_proxy(upstream: str, folder: Path) -> Proxy:
    port = free_port()
    code = (
        f"from finfaas_dev.bench.transfers import serve_counting_proxy; "
        f"serve_counting_proxy({port}, {upstream!r})"
    )
    log = (folder / f"proxy-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: suite.answers(url + "/__counts"), PROXY_READY_SECONDS_MAX, "the counting proxy")
    return Proxy(process, url)


# --- the suite -------------------------------------------------------------------------------------------


def stack_text() -> str:
    # botocore puts the app id in every call's user agent: the counting proxy attributes calls by it.
    return suite.stack_text(FUNCTIONS, per_function={name: {"AWS_SDK_UA_APP_ID": name, **environment}
                                                     for name, (_, environment) in FUNCTIONS.items()},
                            topics={name: topic for name, (topic, _) in FUNCTIONS.items() if topic})


def client_token(*scopes: str) -> str:
    """A client token with these scopes, signed by the suite's dev signing key."""
    from finfaas.platform import config
    from finfaas.platform.keys import load_keyring

    from finfaas_dev.testing.platform import TokenMinter

    settings = config.auth_settings()
    minter = TokenMinter(load_keyring(), settings.issuer, settings.audience)
    return minter.mint("bench", scopes, kind="client")


def write_suite_secrets(secrets_dir: Path) -> None:
    from finfaas.platform import keys
    from finfaas.platform.events import EVENTS_MAC_KEY_SECRET_NAME
    from finfaas.platform.mac_keys import new_mac_key_text
    from finfaas.platform.pii import DIGEST_KEY_SECRET_NAME
    from finfaas.services.console.session import SESSION_KEY_SECRET_NAME
    from finfaas.services.rail.service import NOTICE_KEY_SECRET_NAME, new_notice_key

    from finfaas_dev.up import ensure_secret

    write_secrets(secrets_dir)
    keys.ensure_service_clients(secrets_dir, SERVICE_CLIENT_SCOPES, out=lambda line: None)
    for name, text in (
        (NOTICE_KEY_SECRET_NAME, new_notice_key()),
        (EVENTS_MAC_KEY_SECRET_NAME, new_mac_key_text()),
        (DIGEST_KEY_SECRET_NAME, new_mac_key_text()),
        (SESSION_KEY_SECRET_NAME, new_mac_key_text()),
    ):
        ensure_secret(secrets_dir / name, text)  # kept when present: messages in flight were sealed with it


@dataclass
class Customer:
    customer_id: str
    account_id: str
    token: str


def open_customers(count: int, run_id: str) -> list[Customer]:
    """Customers with one funded account each, and their tokens (signed by the dev signing key)."""
    return [Customer(*customer) for customer in
            suite.funded_customers(count, f"bc{run_id}-", f"ba{run_id}-", CURRENCY, ACCOUNT_OPENING_MINOR,
                                   ("transfers:write", "transfers:read"))]


# --- load ------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    transfer_id: str
    status: str
    latency_ms: float
    sent_at: float  # epoch seconds when the POST was sent
    polls: int  # GET /transfers/{id}?wait= until the transfer was final


@dataclass
class PhaseResult:
    outcomes: list[Outcome] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def completed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "COMPLETED"]


class Customers:
    """Hands out (sender, payee) pairs so no customer sends more than TRANSFERS_PER_CUSTOMER_MAX."""

    def __init__(self, customers: list[Customer]) -> None:
        self._customers = customers
        self._next = 0

    def pair(self) -> tuple[Customer, Customer]:
        index = self._next // TRANSFERS_PER_CUSTOMER_MAX % len(self._customers)
        self._next += 1
        return self._customers[index], self._customers[(index + 1) % len(self._customers)]


# Keep-alive connections, as an app's HTTP client keeps them: a new TCP connection and urllib's
# per-request set-up would be counted in the transfers' end-to-end latency, though no part of the
# suite spends it. Thread-safe; each client thread checks out a connection of its own.
_http = urllib3.PoolManager(maxsize=64, retries=False, timeout=REQUEST_TIMEOUT_SECONDS)


def _request(
    method: str, url: str, token: str, body: Any = None, headers: dict | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
    if data is not None:
        all_headers["Content-Type"] = "application/json"
    reply = _http.request(method, url, body=data, headers=all_headers)
    if reply.status >= 400:
        return reply.status, reply.data.decode("utf-8", "replace")[:300]
    return reply.status, json.loads(reply.data or b"null")


def one_transfer(base_url: str, sender: Customer, payee: Customer) -> Outcome:
    """POST a transfer, follow it with waiting GETs until it is final; latency from sending the POST
    to its final step."""
    body = {
        "debit_account_id": sender.account_id,
        "credit_account_id": payee.account_id,
        "amount": TRANSFER_AMOUNT_MINOR,
        "currency": CURRENCY,
    }
    started = time.time()
    status, answer = _request(
        "POST",
        f"{base_url}/function/transfers/transfers",
        sender.token,
        body,
        {"Idempotency-Key": secrets.token_hex(8)},
    )
    if status != 202:
        raise RuntimeError(f"POST /transfers answered {status}: {answer}")
    transfer_id = answer["transfer_id"]
    deadline = time.monotonic() + TRANSFER_SECONDS_MAX
    polls = 0
    status_url = f"{base_url}/function/transfers/transfers/{transfer_id}?wait={STATUS_WAIT_SECONDS}"
    while time.monotonic() < deadline:
        polls += 1
        status, view, retry_after = waiting_status(status_url, sender.token)
        if status == 200 and view["status"] in FINAL_STATUSES:
            finished = datetime.fromisoformat(view["steps"][-1]["at"]).timestamp()
            return Outcome(transfer_id, view["status"], (finished - started) * 1000, started, polls)
        # The wait ran out: ask again at once. Refused a waiting slot, or an error: as the answer says.
        time.sleep(retry_after if retry_after is not None else 0.0 if status == 200 else ERROR_PAUSE_SECONDS)
    raise RuntimeError(f"transfer {transfer_id} not final after {TRANSFER_SECONDS_MAX} s")


def waiting_status(url: str, token: str) -> tuple[int, Any, float | None]:
    """A GET /transfers/{id}?wait=: its status, body and Retry-After (seconds, when it says one)."""
    reply = _http.request(
        "GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=STATUS_REQUEST_TIMEOUT_SECONDS
    )
    retry_after = reply.headers.get("Retry-After")
    seconds = min(float(retry_after), RETRY_AFTER_SECONDS_MAX) if retry_after else None
    if reply.status >= 400:
        return reply.status, reply.data.decode("utf-8", "replace")[:300], seconds
    return reply.status, json.loads(reply.data or b"null"), seconds


async def run_phase(
    base_url: str,
    customers: Customers,
    clients: int,
    transfers: int,
    seconds_max: float,
    send: Callable[[str, Customer, Customer], Outcome] = one_transfer,
    pause_seconds: float = 0.0,
) -> PhaseResult:
    """`clients` closed-loop clients until `transfers` are done or `seconds_max` has passed, each
    pausing `pause_seconds` after a transfer is final before it sends the next."""
    result = PhaseResult()
    deadline = time.monotonic() + seconds_max
    started = time.monotonic()
    issued = 0

    loop = asyncio.get_running_loop()
    # A thread per client: the default executor (asyncio.to_thread) has only cores + 4 threads,
    # which would quietly run fewer clients at once than asked for.
    threads = ThreadPoolExecutor(max_workers=clients, thread_name_prefix="bench-client")

    async def client() -> None:
        nonlocal issued
        while issued < transfers and time.monotonic() < deadline:
            issued += 1
            sender, payee = customers.pair()
            try:
                outcome = await loop.run_in_executor(threads, send, base_url, sender, payee)
                result.outcomes.append(outcome)
            except Exception as error:  # counted and shown; the run goes on
                result.errors[type(error).__name__ + ": " + str(error)[:120]] += 1
            await asyncio.sleep(pause_seconds)

    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        threads.shutdown(wait=True)
    result.seconds = time.monotonic() - started
    return result


# --- measuring ---------------------------------------------------------------------------------------


def step_ms_total(logs_dir: Path) -> tuple[float, Counter[str]]:
    """Milliseconds the saga's steps spent in their functions, from the request log lines."""
    total, by_route = 0.0, Counter()
    for function, routes in STEP_ROUTES.items():
        path = logs_dir / f"{function}.log"
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{") or '"msg":"request"' not in line:
                continue
            record = json.loads(line)
            if record.get("route") in routes and record.get("method") == "POST":
                total += float(record.get("duration_ms", 0.0))
                by_route[f"{function} {record['route']}"] += float(record.get("duration_ms", 0.0))
    return total, by_route


def ratio(end_to_end_ms: float, steps_ms: float) -> float | None:
    """End to end over the steps' time, None when no step was timed."""
    return round(end_to_end_ms / steps_ms, 2) if steps_ms > 0 else None


def percentile_ms(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)], 1)


def per_transfer(counts: Counter[str], service: str, transfers: int) -> dict[str, float]:
    return {
        name.split(" ", 1)[1]: round(n / transfers, 2)
        for name, n in sorted(counts.items())
        if name.startswith(service + " ")
    }


def per_function(counts: Counter[str], transfers: int) -> dict[str, dict[str, float]]:
    """{function: {"<service> <operation>": calls per transfer}} from the proxy's attributed counts."""
    table: dict[str, dict[str, float]] = {}
    for name, n in sorted(counts.items()):
        caller, colon, operation = name.partition(": ")
        if colon:
            table.setdefault(caller, {})[operation] = round(n / transfers, 2)
    return table


def unattributed(counts: Counter[str]) -> Counter[str]:
    """The counts by operation alone (the proxy also keeps them by calling function)."""
    return Counter({name: n for name, n in counts.items() if ": " not in name})


def breakdown_ms(base_url: str, token: str, outcomes: list[Outcome]) -> dict[str, float]:
    """Where end-to-end time goes, from the executions' histories: until the execution exists, until
    its first task starts (the wake-up through SQS), inside tasks, and between them (orchestration);
    and the task calls as the orchestrator timed them (`task_calls`) and as the gateway timed the
    functions behind them (`task_calls_at_gateway`, its X-Duration-Seconds)."""
    totals: Counter[str] = Counter()
    read = 0
    for outcome in outcomes:
        path = f"/function/orchestrator/executions/transfer:{outcome.transfer_id}/history?limit=200"
        status, page = _request("GET", base_url + path, token)
        if status != 200:
            continue
        read += 1
        events = page["data"]
        at = {e["seq"]: datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp() for e in events}
        started = next(at[e["seq"]] for e in events if e["type"] == "ExecutionStarted")
        scheduled = [at[e["seq"]] for e in events if e["type"] == "TaskScheduled"]
        results = [e for e in events if e["type"] in ("TaskSucceeded", "TaskFailed")]
        ended = [at[e["seq"]] for e in results]
        in_tasks = sum(end - begin for begin, end in zip(scheduled, ended, strict=False))
        totals["task_calls"] += sum(e["detail"].get("call_ms", 0.0) for e in results)
        totals["task_calls_at_gateway"] += sum(e["detail"].get("function_ms", 0.0) for e in results)
        totals["until_execution_started"] += (started - outcome.sent_at) * 1000
        totals["until_first_task"] += (scheduled[0] - started) * 1000
        totals["tasks_and_checkpoints"] += in_tasks * 1000
        totals["between_checkpoints"] += (max(at.values()) - scheduled[0] - in_tasks) * 1000
    count = max(read, 1)  # per transfer whose history was read: one not read adds nothing to the sums
    return {name: round(total / count, 1) for name, total in totals.items()}


def status_reads(base_url: str, token: str) -> tuple[int, int]:
    """Order reads the transfers function made for status requests so far: theirs (a GetItem each) and
    its status watcher's batches (a BatchGetItem each)."""
    status, answer = _request("GET", f"{base_url}/function/transfers/_/ops/stats", token)
    if status != 200:
        raise RuntimeError(f"transfers /_/ops/stats answered {status}: {answer}")
    return int(answer["status_reads"]), int(answer["status_batch_reads"])


def no_execution_running(timeout_seconds: float) -> bool:
    from finfaas.store.executions_store import ExecutionsStore

    store = ExecutionsStore()
    deadline = time.monotonic() + timeout_seconds
    while store.any_running():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


async def measure(args: argparse.Namespace, sandbox: suite.Sandbox, dynamodb: Proxy,
                  moto: Proxy) -> dict[str, Any]:
    base_url = f"http://127.0.0.1:{sandbox.gateway_port}"
    total = WARMUP_TRANSFERS + args.low_load_transfers + args.transfers
    customers = Customers(
        open_customers(max(2, math.ceil(total / TRANSFERS_PER_CUSTOMER_MAX) + 1), secrets.token_hex(3))
    )
    logs_dir = sandbox.folder / "functions"
    print(
        f"warming up with {WARMUP_TRANSFERS} transfers from {args.clients} clients "
        "(function starts, JWKS, pools, the emulator's JIT)",
        flush=True,
    )
    await run_phase(base_url, customers, args.clients, WARMUP_TRANSFERS, args.seconds_max)

    steps_before, routes_before = step_ms_total(logs_dir)
    low = await run_phase(
        base_url,
        customers,
        1,
        args.low_load_transfers,
        args.seconds_max,
        pause_seconds=LOW_LOAD_PAUSE_SECONDS,
    )
    steps_low, routes_low = step_ms_total(logs_dir)
    routes_low = routes_low - routes_before
    breakdown = breakdown_ms(base_url, client_token("orchestrator:read"), low.completed)
    step_ms_per_transfer = (steps_low - steps_before) / max(len(low.outcomes), 1)
    low_p50 = percentile_ms([o.latency_ms for o in low.outcomes], 0.5)
    low_mean = sum(o.latency_ms for o in low.outcomes) / max(len(low.outcomes), 1)
    # The histories' call times are those of the completed transfers: their own end to end goes with them.
    completed_mean = sum(o.latency_ms for o in low.completed) / max(len(low.completed), 1)
    print(
        f"low load, 1 client: {len(low.completed)} completed, p50 {low_p50} ms, "
        f"steps {step_ms_per_transfer:.1f} ms per transfer",
        flush=True,
    )

    ops = client_token("ops", "ops:act")
    reads_before = status_reads(base_url, ops)
    dynamodb_before, sqs_before = dynamodb.counts(), moto.counts()
    steps_before = steps_low
    load = await run_phase(base_url, customers, args.clients, args.transfers, args.seconds_max)
    steps_after, _ = step_ms_total(logs_dir)
    dynamodb_calls, sqs_calls = dynamodb.counts() - dynamodb_before, moto.counts() - sqs_before
    reads_after = status_reads(base_url, ops)
    reads, batch_reads = (after - before for after, before in zip(reads_after, reads_before, strict=True))
    if reads < 0 or batch_reads < 0:  # the function restarted and its counts with it: the reads are unknown
        raise RuntimeError("the transfers function restarted during the load phase")
    done = max(len(load.completed), 1)
    # The clients' status requests and the watcher read orders, as the function counts: the saga's own
    # calls are counted without them.
    polls = sum(o.polls for o in load.outcomes)
    dynamodb_calls["dynamodb GetItem"] -= reads
    dynamodb_calls["dynamodb BatchGetItem"] -= batch_reads
    dynamodb_calls["transfers: dynamodb GetItem"] -= reads
    dynamodb_calls["transfers: dynamodb BatchGetItem"] -= batch_reads
    by_function = per_function(dynamodb_calls + sqs_calls, done)
    dynamodb_calls, sqs_calls = unattributed(dynamodb_calls), unattributed(sqs_calls)
    latencies = [o.latency_ms for o in load.completed]
    load_mean = sum(latencies) / done
    load_steps = (steps_after - steps_before) / max(len(load.outcomes), 1)
    print(
        f"load {args.clients} clients: {len(load.completed)} completed in {load.seconds:.1f} s, "
        f"p50 {percentile_ms(latencies, 0.5)} ms, p99 {percentile_ms(latencies, 0.99)} ms",
        flush=True,
    )
    for error, count in load.errors.most_common(3):
        print(f"    {count} x {error}", flush=True)
    return {
        "sagas_per_s": round(len(load.completed) / load.seconds, 2) if load.seconds else 0.0,
        "p50_ms": percentile_ms(latencies, 0.5),
        "p99_ms": percentile_ms(latencies, 0.99),
        "overhead_ratio": ratio(completed_mean, breakdown.get("task_calls", 0.0)),
        "overhead_ratio_handler_time": ratio(low_mean, step_ms_per_transfer),
        "overhead_ratio_under_load_handler_time": ratio(load_mean, load_steps),
        "dynamodb_calls_per_transfer": round(sum(dynamodb_calls.values()) / done, 2),
        "sqs_calls_per_transfer": round(sum(sqs_calls.values()) / done, 2),
        "dynamodb_calls_by_operation": per_transfer(dynamodb_calls, "dynamodb", done),
        "sqs_calls_by_operation": per_transfer(sqs_calls, "sqs", done),
        "calls_by_function": by_function,
        "status_requests_per_transfer": round(polls / done, 2),
        "status_reads_per_transfer": round(reads / done, 2),
        "status_batch_reads_per_transfer": round(batch_reads / done, 2),
        "low_load": {
            "p50_ms": low_p50,
            "mean_ms": round(low_mean, 1),
            "breakdown_ms": breakdown,
            "step_ms_per_transfer": round(step_ms_per_transfer, 1),
            "step_ms_by_route": {
                k: round(v / max(len(low.outcomes), 1), 1) for k, v in sorted(routes_low.items())
            },
        },
        "completed": len(load.completed),
        "not_completed": {
            s: n for s, n in Counter(o.status for o in load.outcomes).items() if s != "COMPLETED"
        },
        "errors": sum(load.errors.values()) + sum(low.errors.values()),
        "clients": args.clients,
    }


# --- command line ----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clients", type=int, default=CLIENTS_DEFAULT, help="concurrent clients (load phase)"
    )
    parser.add_argument(
        "--transfers", type=int, default=TRANSFERS_DEFAULT, help="transfers in the load phase"
    )
    parser.add_argument(
        "--low-load-transfers",
        type=int,
        default=LOW_LOAD_TRANSFERS_DEFAULT,
        help="transfers sent one at a time for the overhead ratio",
    )
    parser.add_argument("--seconds-max", type=float, default=SECONDS_MAX_DEFAULT, help="cap per phase")


def run(args: argparse.Namespace) -> int:
    if not (
        0 < args.seconds_max <= SECONDS_MAX_LIMIT
        and 0 < args.transfers <= TRANSFERS_LIMIT
        and 0 < args.low_load_transfers <= TRANSFERS_LIMIT
        and 0 < args.clients <= 64
    ):
        print(
            f"bench transfers: need 0 < --seconds-max <= {SECONDS_MAX_LIMIT}, 0 < --transfers <= "
            f"{TRANSFERS_LIMIT}, 0 < --clients <= 64",
            file=sys.stderr,
        )
        return 2
    from finfaas_dev.gateway import run_on_uvloop

    with running_suite("finfaas-bench-transfers-", PROXIED_ENDPOINTS) as (sandbox, proxies):
        dynamodb, moto = proxies
        summary = run_on_uvloop(measure(args, sandbox, dynamodb, moto))
        drained = no_execution_running(DRAIN_SECONDS_MAX)
        check = ledger_check(sandbox.stage)
    print(check.stdout.strip().splitlines()[-1] if check.stdout.strip() else check.stderr.strip())
    summary["ledger_check"] = "passed" if check.returncode == 0 else f"failed (exit {check.returncode})"
    summary["executions_left_running"] = not drained
    overhead = summary["overhead_ratio"]
    verdict = "meets" if overhead is not None and overhead <= OVERHEAD_TARGET else "misses"
    print(
        f"overhead ratio at low load {overhead} over the calls as the orchestrator times them ({verdict} "
        f"the {OVERHEAD_TARGET} target), {summary['overhead_ratio_handler_time']} over the handlers' time; "
        f"{summary['dynamodb_calls_per_transfer']} DynamoDB and {summary['sqs_calls_per_transfer']} "
        "SQS calls per completed transfer"
    )
    print(json.dumps(summary))
    return 0 if check.returncode == 0 and drained else 1


@contextmanager
def running_suite(prefix: str, proxied: tuple[str, ...]) -> Iterator[tuple[suite.Sandbox, list[Proxy]]]:
    """The suite of this bench's stack on loopback, with a counting proxy before each endpoint variable in
    `proxied` (in that order)."""
    proxies: list[Proxy] = []

    def start_proxies(sandbox: suite.Sandbox, aws_env: dict[str, str]) -> list[subprocess.Popen]:
        proxies.extend(start_proxy(aws_env[name], sandbox.folder) for name in proxied)
        os.environ.update({name: proxy.url for name, proxy in zip(proxied, proxies, strict=True)})
        return [proxy.process for proxy in proxies]

    stack = stack_text()
    with suite.running_suite(prefix, stack, write_suite_secrets, before_gateway=start_proxies) as running:
        yield running.sandbox, proxies
