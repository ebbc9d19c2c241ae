"""Gateway throughput against calling the function process directly, same handler, same load.

The handler is the template's hello world; the gateway runs in its own process (as in `make up`),
and the load comes from one client process (the gateway's own lean keep-alive HTTP client, in
the spirit of wrk) with N concurrent connections. The two sides alternate in short slices
(A-B-B-A...) so a neighbour's load drifting over time weighs on both sides alike.
Last line of output: {"direct_rps": .., "gateway_rps": .., "ratio": ..}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psutil

from finfaas_dev.net import free_port
from finfaas_dev.process_pool import function_environment, start_function_process
from finfaas_dev.stackfile import load_stack
from finfaas_dev.upstream import UpstreamError, UpstreamPool

PEER_HANDLER_DIR = Path(__file__).resolve().parent / "peer_hello"
CONCURRENCY_DEFAULT = 8
SECONDS_PER_SIDE_DEFAULT = 5.0
SLICE_SECONDS_DEFAULT = 0.5
WARMUP_SECONDS_DEFAULT = 1.0
REQUESTS_PER_SLICE_MAX = 100_000
GATEWAY_READY_SECONDS_MAX = 20.0
REQUEST_TIMEOUT_SECONDS = 10.0
RATIO_TARGET = 0.8
SIDES = ("direct", "gateway")


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


class LoadClient:
    """GETs one URL over `concurrency` keep-alive connections, kept open across slices.

    It is the gateway's own lean HTTP/1.1 client (pre-encoded request, no per-request objects
    beyond the response), so the load generator costs little of the CPU it measures.
    """

    def __init__(self, url: str, concurrency: int) -> None:
        parts = urlsplit(url)
        self._pool = UpstreamPool(parts.hostname, parts.port, concurrency)
        self._target = parts.path + (f"?{parts.query}" if parts.query else "")
        self._concurrency = concurrency

    async def run(self, seconds: float, requests_max: int) -> LoadResult:
        counts = {"ok": 0, "errors": 0}
        deadline = time.monotonic() + seconds

        async def client() -> None:
            while time.monotonic() < deadline and counts["ok"] + counts["errors"] < requests_max:
                try:
                    response = await self._pool.request("GET", self._target, [], b"", REQUEST_TIMEOUT_SECONDS)
                    counts["ok" if response.status == 200 else "errors"] += 1
                except (UpstreamError, TimeoutError):
                    counts["errors"] += 1

        began = time.monotonic()
        await asyncio.gather(*(client() for _ in range(self._concurrency)))
        return LoadResult(counts["ok"], counts["errors"], time.monotonic() - began)

    def close(self) -> None:
        self._pool.close()


async def load(url: str, concurrency: int, seconds: float, requests_max: int) -> LoadResult:
    """One bounded load run against url."""
    client = LoadClient(url, concurrency)
    try:
        return await client.run(seconds, requests_max)
    finally:
        client.close()


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
        "finfaas_dev.gateway",
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
    port = free_port()
    gateway = _start_gateway(stack_path, port)
    clients: dict[str, LoadClient] = {}
    try:
        await _wait_http_ok(f"http://127.0.0.1:{port}/healthz", GATEWAY_READY_SECONDS_MAX)
        urls = {"direct": direct.base_url + "/", "gateway": f"http://127.0.0.1:{port}/function/hello/"}
        clients = {side: LoadClient(url, args.concurrency) for side, url in urls.items()}
        for client in clients.values():  # warm-up: cold start, pooled connections, bytecode caches
            await client.run(args.warmup_seconds, args.requests_max)
        processes = {"direct": _processes(direct.pid, "function"), "gateway": _gateway_processes(gateway.pid)}
        results: dict[str, list[LoadResult]] = {"direct": [], "gateway": []}
        usage: dict[str, dict[str, Usage]] = {"direct": {}, "gateway": {}}
        load_before = os.getloadavg()[0]
        for side in _interleaved_order(args.seconds, args.slice_seconds):
            before = _usage(processes[side])
            results[side].append(await clients[side].run(args.slice_seconds, args.requests_max))
            for role, after in _usage(processes[side]).items():
                usage[side][role] = usage[side].get(role, Usage()) + (after - before[role])
        load_averages = (load_before, os.getloadavg()[0])
        for side, runs in results.items():
            requests = sum(r.requests for r in runs)
            seconds = sum(r.seconds for r in runs)
            errors = sum(r.errors for r in runs)
            rps = requests / seconds
            print(f"{side:8s} {rps:9.1f} req/s  ({requests} ok, {errors} errors, {seconds:.1f} s)")
    finally:
        for client in clients.values():
            client.close()
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=15)
        await direct.stop()
    return _summary(results, usage, load_averages, args)


def _interleaved_order(seconds_per_side: float, slice_seconds: float) -> list[str]:
    """Short slices in A-B-B-A order, so a neighbour's load drifting over time hits both sides alike."""
    pairs = max(1, round(seconds_per_side / slice_seconds))
    order: list[str] = []
    for pair in range(pairs):
        order += ["direct", "gateway"] if pair % 2 == 0 else ["gateway", "direct"]
    return order


def _processes(pid: int, role: str) -> dict[str, psutil.Process]:
    return {role: psutil.Process(pid)}


def _gateway_processes(pid: int) -> dict[str, psutil.Process]:
    gateway = psutil.Process(pid)
    return {"gateway": gateway, "function": gateway.children()[0]}


@dataclass(frozen=True)
class Usage:
    """What a process spent: CPU seconds in user and kernel mode, and context switches."""

    user_seconds: float = 0.0
    system_seconds: float = 0.0
    context_switches: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.user_seconds + other.user_seconds,
            self.system_seconds + other.system_seconds,
            self.context_switches + other.context_switches,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.user_seconds - other.user_seconds,
            self.system_seconds - other.system_seconds,
            self.context_switches - other.context_switches,
        )


def _usage(processes: dict[str, psutil.Process]) -> dict[str, Usage]:
    snapshots = {}
    for role, process in processes.items():
        times, switches = process.cpu_times(), process.num_ctx_switches()
        snapshots[role] = Usage(times.user, times.system, switches.voluntary + switches.involuntary)
    return snapshots


def _summary(
    results: dict[str, list[LoadResult]],
    usage: dict[str, dict[str, Usage]],
    load_averages: tuple[float, float],
    args: argparse.Namespace,
) -> dict:
    def rps(side: str) -> float:
        runs = results[side]
        return sum(r.requests for r in runs) / sum(r.seconds for r in runs)

    def per_request(side: str, measure, digits: int = 1) -> dict[str, float]:
        requests = sum(r.requests for r in results[side]) or 1
        return {role: round(measure(spent) / requests, digits) for role, spent in usage[side].items()}

    def cpu_us(spent: Usage) -> float:
        return (spent.user_seconds + spent.system_seconds) * 1e6

    def system_us(spent: Usage) -> float:
        return spent.system_seconds * 1e6

    def context_switches(spent: Usage) -> float:
        return spent.context_switches

    direct_rps, gateway_rps = rps("direct"), rps("gateway")
    return {
        "direct_rps": round(direct_rps, 1),
        "gateway_rps": round(gateway_rps, 1),
        "ratio": round(gateway_rps / direct_rps, 3) if direct_rps else None,
        "concurrency": args.concurrency,
        "seconds_per_side": args.seconds,
        "slice_seconds": args.slice_seconds,
        "errors": sum(r.errors for runs in results.values() for r in runs),
        # CPU per request is steadier than req/s on a shared machine: it shows what the hop costs.
        "cpu_us_per_request": {side: per_request(side, cpu_us) for side in SIDES},
        # Diagnostics: kernel share, and context switches (the price of sharing cores with more processes).
        "system_us_per_request": {side: per_request(side, system_us) for side in SIDES},
        "context_switches_per_request": {side: per_request(side, context_switches, 2) for side in SIDES},
        # Other work on the machine moves req/s a lot: the 1-minute load average before and after.
        "load_average_1m": [round(value, 2) for value in load_averages],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY_DEFAULT, help="concurrent clients")
    parser.add_argument(
        "--seconds", type=float, default=SECONDS_PER_SIDE_DEFAULT, help="measured time per side"
    )
    parser.add_argument(
        "--slice-seconds", type=float, default=SLICE_SECONDS_DEFAULT, help="sides alternate every slice"
    )
    parser.add_argument("--warmup-seconds", type=float, default=WARMUP_SECONDS_DEFAULT)
    parser.add_argument("--requests-max", type=int, default=REQUESTS_PER_SLICE_MAX, help="cap per slice")


def run(args: argparse.Namespace) -> int:
    from finfaas_dev.gateway import run_on_uvloop

    with tempfile.TemporaryDirectory(prefix="finfaas-bench-") as folder:
        stack_path = Path(folder) / "stack.yml"
        stack_path.write_text(bench_stack_text(PEER_HANDLER_DIR))
        summary = run_on_uvloop(_measure(args, stack_path))
    verdict = "meets" if summary["ratio"] and summary["ratio"] >= RATIO_TARGET else "misses"
    print(f"gateway/direct = {summary['ratio']} ({verdict} the {RATIO_TARGET} target)")
    print(json.dumps(summary))
    return 0
