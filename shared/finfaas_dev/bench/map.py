"""`finfaas bench map`: the paged batch pattern (infra/statemachines/demo-paged-batch.asl.json) over
`--items` items, every item a cheap function call over loopback HTTP, on DynamoDB Local.

Everything runs in a sandbox of its own: DynamoDB Local and moto on free ports, the infra template
under a fresh stage, and demo-batch as a small threaded HTTP server in this process (pages of item
ids with a next cursor; an item route that applies each Idempotency-Key once and replays it).

Two runs of the same job:
  clean   the engine in this process: items/s end to end, and DynamoDB writes per item
          (checkpoints, chunk records, lease renewals) from pynamodb's send signal;
  killed  the engine in a child process, SIGKILLed once `--kill-at` of the items are applied; a new
          child drives on at once, as a restarted orchestrator would. resume_seconds is the time from
          the kill to the first item the new process applies (the lease must lapse first: 4 s).
Each item must be applied exactly once in both runs. A Map's input holds at most 64 KiB, so the
items come in pages (`--page-items`), one Map per page. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from finfaas_dev.net import free_port

STATE_MACHINE = "demo-paged-batch"
ITEMS_DEFAULT = 20_000
ITEMS_MAX = 200_000
PAGE_ITEMS_DEFAULT = 2_000
PAGE_ITEMS_MAX = 5_000  # item ids of up to 7 characters: a page stays under the 64 KiB input limit
KILL_AT_DEFAULT = 0.5
RUN_SECONDS_MAX = 600.0
POLL_SECONDS = 0.05
WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "TransactWriteItems"})


class _Job:
    """demo-batch's state: the items applied, by item, once per Idempotency-Key."""

    def __init__(self, items: int, page_items: int) -> None:
        self.items = items
        self.page_items = page_items
        self.applied: Counter[str] = Counter()
        self.answers: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def answer(self, route: str, key: str, body: dict[str, Any]) -> bytes:
        if route == "pages":
            start = int(body.get("cursor") or 0)
            end = min(start + self.page_items, self.items)
            more = str(end) if end < self.items else None
            return json.dumps({"items": [f"i{n}" for n in range(start, end)], "next": more}).encode()
        with self.lock:
            if key not in self.answers:
                self.applied[body["item"]] += 1
                self.answers[key] = b'{"ok":true}'
            return self.answers[key]

    def applied_count(self) -> int:
        with self.lock:
            return len(self.applied)


def _handler(job: _Job) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm holds the body
            # until the client's delayed ACK (40 ms), which would be most of a cheap call.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            route = self.path.rstrip("/").rsplit("/", 1)[-1]
            answer = job.answer(route, self.headers.get("Idempotency-Key") or "", body)
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def _function(job: _Job) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(job))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _StaticToken:
    """demo-batch takes any caller: the engine's HTTP client still sends a bearer token."""

    def token(self) -> str:
        return "bench"

    def invalidate(self) -> None:
        return None


def _engine(function_url: str, owner: str) -> Any:
    from finfaas.store.executions_store import ExecutionsStore
    from finfaas.workflow.asl import DefinitionRegistry, definitions_dir, load_definition_file
    from finfaas.workflow.engine import Engine
    from finfaas.workflow.tasks import HttpTasks

    from finfaas_dev.fakes.workflow import InMemoryWaker

    definition = load_definition_file(definitions_dir() / f"{STATE_MACHINE}.asl.json")
    waker = InMemoryWaker(lambda: int(time.time() * 1000))  # continuations are driven by the loop below
    tasks = HttpTasks(function_url, _StaticToken())
    return Engine(DefinitionRegistry([definition]), ExecutionsStore(), tasks, waker, owner=owner)


def _drive_until_stopped(engine: Any, execution_id: str) -> str:
    """A queue in miniature: drive again while the execution runs (a lapsed lease first answers not_due)."""
    deadline = time.monotonic() + RUN_SECONDS_MAX
    while time.monotonic() < deadline:
        execution = engine.store.get(execution_id)
        if execution.status.terminal:
            return str(execution.status.value)
        if engine.drive(execution_id, "continue") in ("not_due", "nothing_to_do"):
            time.sleep(POLL_SECONDS)
    return "RUNNING"


def _clean_run(job: _Job, function_url: str) -> dict[str, Any]:
    from finfaas.store.call_meter import DynamoCallMeter

    engine = _engine(function_url, "bench-clean")
    meter = DynamoCallMeter()
    meter.start()
    began = time.monotonic()
    started = engine.start(STATE_MACHINE, "clean", {"job": "clean", "cursor": None})
    status = _drive_until_stopped(engine, started.execution.execution_id)
    seconds = time.monotonic() - began
    meter.stop()
    calls = meter.snapshot()
    writes = sum(count for name, count in calls.items() if name.split(" ", 1)[0] in WRITE_OPERATIONS)
    return {
        "status": status,
        "seconds": round(seconds, 2),
        "items_per_s": round(job.items / seconds, 1),
        "checkpoint_writes_per_item": round(writes / job.items, 4),
        "dynamodb_calls": calls,
    }


def _killed_run(job: _Job, function_url: str, kill_at: float, env: dict[str, str]) -> dict[str, Any]:
    engine = _engine(function_url, "bench-starter")
    started = engine.start(STATE_MACHINE, "killed", {"job": "killed", "cursor": None})
    execution_id = started.execution.execution_id
    first = _driver(execution_id, function_url, env)
    deadline = time.monotonic() + RUN_SECONDS_MAX
    while job.applied_count() < kill_at * job.items and first.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    os.killpg(first.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    first.wait()
    applied_at_kill = job.applied_count()
    second = _driver(execution_id, function_url, env)
    while job.applied_count() <= applied_at_kill and time.monotonic() < deadline and second.poll() is None:
        time.sleep(POLL_SECONDS / 5)
    resumed_at = time.monotonic()
    second.wait(timeout=max(deadline - time.monotonic(), 1.0))
    status = engine.store.get(execution_id).status.value
    return {
        "status": status,
        "applied_at_kill": applied_at_kill,
        "resume_seconds": round(resumed_at - killed_at, 2),
    }


def _driver(execution_id: str, function_url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """An orchestrator process of its own, in its own process group so one kill stops all of it."""
    command = [sys.executable, "-m", "finfaas_dev.bench.map", "--drive", execution_id,
               "--function-url", function_url]
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", type=int, default=ITEMS_DEFAULT, help="items in the job")
    parser.add_argument("--page-items", type=int, default=PAGE_ITEMS_DEFAULT,
                        help="items per page (one Map)")
    parser.add_argument("--kill-at", type=float, default=KILL_AT_DEFAULT, help="share applied at the kill")


def run(args: argparse.Namespace) -> int:
    if not (0 < args.items <= ITEMS_MAX and 0 < args.page_items <= PAGE_ITEMS_MAX and 0 < args.kill_at < 1):
        print(f"bench map: need 0 < --items <= {ITEMS_MAX}, 0 < --page-items <= {PAGE_ITEMS_MAX}, "
              "0 < --kill-at < 1", file=sys.stderr)
        return 2
    from finfaas_dev.emulators import EmbeddedAWS
    from finfaas_dev.infra import deploy
    from finfaas_dev.tools import ensure_dynamodb_local

    ensure_dynamodb_local()
    aws = EmbeddedAWS(dynamodb_port=free_port(), moto_port=free_port())
    aws.start()
    try:
        stage = f"benchmap-{uuid.uuid4().hex[:8]}"
        os.environ.update({**aws.env(), "FINFAAS_STAGE": stage})
        deploy(stage, "embedded")
        env = {**os.environ}
        clean_job = _Job(args.items, args.page_items)
        with _function(clean_job) as url:
            clean = _clean_run(clean_job, url)
        killed_job = _Job(args.items, args.page_items)
        with _function(killed_job) as url:
            killed = _killed_run(killed_job, url, args.kill_at, env)
    finally:
        aws.stop()
    once = all(set(job.applied.values()) == {1} and len(job.applied) == args.items
               for job in (clean_job, killed_job))
    summary = {
        "items": args.items,
        "page_items": args.page_items,
        "items_per_s": clean["items_per_s"],
        "checkpoint_writes_per_item": clean["checkpoint_writes_per_item"],
        "resume_seconds": killed["resume_seconds"],
        "clean_seconds": clean["seconds"],
        "applied_at_kill": killed["applied_at_kill"],
        "statuses": [clean["status"], killed["status"]],
        "each_item_applied_once": once,
        "dynamodb_calls_clean_run": clean["dynamodb_calls"],
    }
    print(f"{args.items} items: {clean['items_per_s']} items/s, {clean['checkpoint_writes_per_item']} "
          f"writes an item; killed at {killed['applied_at_kill']} applied, "
          f"resumed {killed['resume_seconds']} s later")
    print(json.dumps(summary))
    return 0 if once and summary["statuses"] == ["SUCCEEDED", "SUCCEEDED"] else 1


def _drive_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drive", required=True)
    parser.add_argument("--function-url", required=True)
    args = parser.parse_args(argv)
    engine = _engine(args.function_url, f"bench-{os.getpid()}")
    return 0 if _drive_until_stopped(engine, args.drive) == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(_drive_main(sys.argv[1:]))
