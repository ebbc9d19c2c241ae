"""Gateway throughput against calling the function process directly, same handler, same load.

The handler is the template's hello world; the gateway runs in its own process (as in `make up`),
and the load comes from one client process (the gateway's own lean keep-alive HTTP client, in
the spirit of wrk) with N concurrent connections. Rounds run in
A-B-B-A order so a neighbour's load drifting over time weighs on both sides alike.
Last line of output: {"direct_rps": .., "gateway_rps": .., "ratio": ..}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psutil

from finfaas.local.process_pool import function_environment, start_function_process
from finfaas.local.stackfile import load_stack
from finfaas.local.upstream import UpstreamError, UpstreamPool

PEER_HANDLER_DIR = Path(__file__).resolve().parent / "peer_hello"
CONCURRENCY_DEFAULT = 8
ROUND_SECONDS_DEFAULT = 5.0
WARMUP_SECONDS_DEFAULT = 1.0
ROUNDS_DEFAULT = 2  # each side runs this many rounds, interleaved
REQUESTS_PER_ROUND_MAX = 200_000
GATEWAY_READY_SECONDS_MAX = 20.0
REQUEST_TIMEOUT_SECONDS = 10.0
RATIO_TARGET = 0.8


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def bench_stack_text(handler_dir: Path) -> str:
    return (
        "version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://127.0.0.1:8080\n"
        f"functions:\n  hello:\n    lang: python3-http\n    handler: {handler_dir}\n    image: bench/hello\n"
    )


async def load(url: str, concurrency: int, seconds: float, requests_max: int) -> LoadResult:
    """GET url over `concurrency` keep-alive connections until the time or request budget is spent.

    The client is the gateway's own lean HTTP/1.1 client (pre-encoded request, no per-request
    objects beyond the response), so the load generator costs little of the CPU it measures.
    """
    parts = urlsplit(url)
    pool = UpstreamPool(parts.hostname, parts.port, concurrency)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    counts = {"ok": 0, "errors": 0}
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < deadline and counts["ok"] + counts["errors"] < requests_max:
            try:
                response = await pool.request("GET", target, [], b"", REQUEST_TIMEOUT_SECONDS)
                counts["ok" if response.status == 200 else "errors"] += 1
            except (UpstreamError, TimeoutError):
                counts["errors"] += 1

    began = time.monotonic()
    try:
        await asyncio.gather(*(client() for _ in range(concurrency)))
    finally:
        pool.close()
    return LoadResult(counts["ok"], counts["errors"], time.monotonic() - began)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _wait_http_ok(url: str, seconds_max: float) -> None:
    deadline = time.monotonic() + seconds_max
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {seconds_max} s")
            await asyncio.sleep(0.05)


def _start_gateway(stack_path: Path, port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "finfaas.local.gateway",
        "--stack",
        str(stack_path),
        "--port",
        str(port),
        "--no-connector",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _measure(args: argparse.Namespace, stack_path: Path) -> dict:
    spec = load_stack(stack_path).functions["hello"]
    # Output discarded on both sides alike (the gateway's children inherit its DEVNULL).
    direct = await start_function_process(spec, function_environment(spec, os.environ), subprocess.DEVNULL)
    port = _free_port()
    gateway = _start_gateway(stack_path, port)
    try:
        await _wait_http_ok(f"http://127.0.0.1:{port}/healthz", GATEWAY_READY_SECONDS_MAX)
        urls = {"direct": direct.base_url + "/", "gateway": f"http://127.0.0.1:{port}/function/hello/"}
        for url in urls.values():  # warm-up: cold start, pooled connections, bytecode caches
            await load(url, args.concurrency, args.warmup_seconds, args.requests_max)
        results: dict[str, list[LoadResult]] = {"direct": [], "gateway": []}
        processes = {"direct": _processes(direct.pid, "function"), "gateway": _gateway_processes(gateway.pid)}
        cpu_seconds: dict[str, dict[str, float]] = {"direct": {}, "gateway": {}}
        order = ["direct", "gateway", "gateway", "direct"] * ((args.rounds + 1) // 2)
        for side in order[: 2 * args.rounds]:
            before = _cpu(processes[side])
            result = await load(urls[side], args.concurrency, args.seconds, args.requests_max)
            for role, spent in _cpu(processes[side]).items():
                cpu_seconds[side][role] = cpu_seconds[side].get(role, 0.0) + spent - before[role]
            results[side].append(result)
            print(
                f"{side:8s} {result.rps:9.1f} req/s  ({result.requests} ok, {result.errors} errors, "
                f"{result.seconds:.1f} s)"
            )
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=15)
        await direct.stop()
    return _summary(results, cpu_seconds, args)


def _processes(pid: int, role: str) -> dict[str, psutil.Process]:
    return {role: psutil.Process(pid)}


def _gateway_processes(pid: int) -> dict[str, psutil.Process]:
    gateway = psutil.Process(pid)
    return {"gateway": gateway, "function": gateway.children()[0]}


def _cpu(processes: dict[str, psutil.Process]) -> dict[str, float]:
    return {role: sum(process.cpu_times()[:2]) for role, process in processes.items()}


def _summary(
    results: dict[str, list[LoadResult]], cpu_seconds: dict[str, dict[str, float]], args: argparse.Namespace
) -> dict:
    def rps(side: str) -> float:
        runs = results[side]
        return sum(r.requests for r in runs) / sum(r.seconds for r in runs)

    def cpu_us_per_request(side: str) -> dict[str, float]:
        requests = sum(r.requests for r in results[side]) or 1
        return {role: round(spent / requests * 1e6, 1) for role, spent in cpu_seconds[side].items()}

    direct_rps, gateway_rps = rps("direct"), rps("gateway")
    return {
        "direct_rps": round(direct_rps, 1),
        "gateway_rps": round(gateway_rps, 1),
        "ratio": round(gateway_rps / direct_rps, 3) if direct_rps else None,
        "concurrency": args.concurrency,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "errors": sum(r.errors for runs in results.values() for r in runs),
        # CPU per request is steadier than req/s on a shared machine: it shows what the hop costs.
        "cpu_us_per_request": {side: cpu_us_per_request(side) for side in ("direct", "gateway")},
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY_DEFAULT, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=ROUND_SECONDS_DEFAULT, help="length of one round")
    parser.add_argument("--warmup-seconds", type=float, default=WARMUP_SECONDS_DEFAULT)
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT, help="rounds per side, interleaved")
    parser.add_argument("--requests-max", type=int, default=REQUESTS_PER_ROUND_MAX, help="cap per round")


def run(args: argparse.Namespace) -> int:
    from finfaas.local.gateway import run_on_uvloop

    with tempfile.TemporaryDirectory(prefix="finfaas-bench-") as folder:
        stack_path = Path(folder) / "stack.yml"
        stack_path.write_text(bench_stack_text(PEER_HANDLER_DIR))
        summary = run_on_uvloop(_measure(args, stack_path))
    verdict = "meets" if summary["ratio"] and summary["ratio"] >= RATIO_TARGET else "misses"
    print(f"gateway/direct = {summary['ratio']} ({verdict} the {RATIO_TARGET} target)")
    print(json.dumps(summary))
    return 0
