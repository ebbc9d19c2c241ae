"""Cold start and idle memory of every function, next to the template's own hello world.

For each function of stack.yml (and the peer: the python3-http template's hello handler served
the same way), the harness process is spawned N times, round-robin across functions after one
uncounted warm-up spawn each; a run is timed from spawn to the first
200 on /_/health (the request is sent at once and waits in the listen backlog, so no polling
interval is measured). Idle RSS is read after the first request has been answered. The slowest
function's imports are broken down with `python -X importtime`.

With --contexts, each function is also measured as its image runs it: its faas-cli build context
served by the template's index.py under a virtualenv holding only the template's and the function's
requirements (finfaas_dev.image_venv); index.py binds its own port, so the first request is retried
every CONTEXT_CONNECT_POLL_SECONDS until it connects (at most that much is added to a run).
Last line of output: one JSON object (see _summary). MB here means 2**20 bytes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from finfaas_dev import build
from finfaas_dev.harness import harness_command
from finfaas_dev.image_venv import function_venvs, image_environment, wheelhouse
from finfaas_dev.net import free_port
from finfaas_dev.process_pool import function_environment
from finfaas_dev.stackfile import FunctionSpec, load_stack

PEER_HANDLER_DIR = Path(__file__).resolve().parent / "peer_hello"
PEER_KEY = "(peer)"
RUNS_DEFAULT = 7
HEALTH_PATH = "/_/health"
FIRST_RESPONSE_SECONDS_MAX = 30.0
IDLE_SETTLE_SECONDS = 0.3  # after the first answer, before RSS is read
STOP_GRACE_SECONDS = 5.0
IMPORT_BREAKDOWN_MODULES = 10
COLD_START_MS_TARGET = 600
IDLE_RSS_MB_TARGET = 80
BYTES_PER_MB = 2**20
CONTEXT_CONNECT_POLL_SECONDS = 0.005
DEV_ONLY_ENV = ("PYTHONPATH", "VIRTUAL_ENV")  # an image has neither


@dataclass(frozen=True)
class ContextSpec:
    """A function as its image runs it: build context, the image's interpreter, its environment."""

    name: str
    context: Path
    python: Path
    environment: Mapping[str, str]


@dataclass(frozen=True)
class Run:
    cold_start_ms: float
    status: int
    idle_rss_mb: float


def peer_spec() -> FunctionSpec:
    return FunctionSpec(name="peer-hello", lang="python3-http", handler_dir=PEER_HANDLER_DIR, image="peer")


def measure_once(spec: FunctionSpec) -> Run:
    """Spawn the function, GET /_/health at once, time the answer, read RSS, stop it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    began = time.perf_counter()
    process = subprocess.Popen(
        harness_command(spec.handler_dir, listen_fd=listener.fileno(), parent_pid=os.getpid()),
        env=function_environment(spec, os.environ),
        pass_fds=(listener.fileno(),),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    listener.close()
    return _measured(process, began, lambda: _get_status(port, HEALTH_PATH))


def measure_context_once(spec: ContextSpec) -> Run:
    """Start index.py in the build context under the image's interpreter; time the first 200."""
    port = free_port()
    began = time.perf_counter()
    process = subprocess.Popen(
        [str(spec.python), "index.py"], cwd=spec.context,
        env=image_environment(dict(spec.environment), port, spec.context), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    return _measured(process, began, lambda: _first_status(port, HEALTH_PATH, process))


def _measured(process: subprocess.Popen, began: float, first_status: Callable[[], int]) -> Run:
    """Time the first answer from `began`, then read the idle RSS; the process is stopped either way."""
    try:
        status = first_status()
        cold_start_ms = (time.perf_counter() - began) * 1000
        time.sleep(IDLE_SETTLE_SECONDS)
        rss_mb = psutil.Process(process.pid).memory_info().rss / BYTES_PER_MB
    finally:
        _stop(process)
    return Run(round(cold_start_ms, 1), status, round(rss_mb, 1))


def _first_status(port: int, path: str, process: subprocess.Popen) -> int:
    deadline = time.monotonic() + FIRST_RESPONSE_SECONDS_MAX
    while True:
        try:
            return _get_status(port, path)
        except ConnectionRefusedError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(CONTEXT_CONNECT_POLL_SECONDS)


def context_specs(stack_path: Path, functions: Mapping[str, FunctionSpec],
                  folder: Path) -> dict[str, ContextSpec]:
    """Every function's build context in folder and its image's interpreter (built once, then cached)."""
    stack = build.load_stack(stack_path)
    root = stack_path.resolve().parent
    requirements = {name: root / fn["handler"] / "requirements.txt"
                    for name, fn in stack["functions"].items()}
    interpreters = function_venvs(requirements.values(), wheelhouse(requirements.values()))
    specs = {}
    for name, spec in functions.items():
        context = build.function_build_context(name, stack, root, folder)
        (context / build.HANDLER_OVERLAY / "__init__.py").touch()  # the Dockerfile's step
        environment = {key: value for key, value in function_environment(spec, os.environ).items()
                       if key not in DEV_ONLY_ENV}
        specs[name] = ContextSpec(name, context, interpreters[requirements[name]], environment)
    return specs


def _get_status(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=FIRST_RESPONSE_SECONDS_MAX)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_GRACE_SECONDS)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def measure_all(specs: Mapping[str, Any], runs: int,
                measure: Callable[[Any], Run] = measure_once) -> dict[str, dict]:
    """Runs round-robin across functions (one warm-up spawn each, not counted), so a burst of
    load from elsewhere on the machine lands on every function alike, not on whichever ran then."""
    for spec in specs.values():
        measure(spec)  # warm-up: bytecode caches and the page cache, as after a first deploy
    results: dict[str, list[Run]] = {name: [] for name in specs}
    for _ in range(runs):
        for name, spec in specs.items():
            results[name].append(measure(spec))
    return {name: _summarise(runs_of_one) for name, runs_of_one in results.items()}


def _summarise(results: list[Run]) -> dict:
    failed = [r.status for r in results if r.status != 200]
    return {
        "cold_start_ms_median": statistics.median(r.cold_start_ms for r in results),
        "cold_start_ms_runs": [r.cold_start_ms for r in results],
        "idle_rss_mb": statistics.median(r.idle_rss_mb for r in results),
        "health_statuses_not_200": failed,
    }


def import_breakdown(spec: FunctionSpec) -> dict[str, float]:
    """Top modules by cumulative import time (ms) when the harness loads this function."""
    script = (
        "import sys; from finfaas_dev.harness import install_function_package;"
        f"install_function_package({str(spec.handler_dir)!r});"
        "import waitress, finfaas_dev.harness.index"
    )
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        env=function_environment(spec, os.environ),
        capture_output=True,
        text=True,
        timeout=FIRST_RESPONSE_SECONDS_MAX,
        check=False,
    )
    rows = []
    for line in completed.stderr.splitlines():  # "import time: <self us> | <cumulative us> | <module>"
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        rows.append((int(fields[1]), fields[2].strip()))
    top = sorted(rows, reverse=True)[:IMPORT_BREAKDOWN_MODULES]
    return {module: round(us / 1000, 1) for us, module in top}


def _summary(functions: dict[str, dict], peer: dict, breakdown: dict) -> dict:
    heaviest = max(functions, key=lambda name: functions[name]["cold_start_ms_median"])
    return {
        "functions": {
            name: {"cold_start_ms_median": r["cold_start_ms_median"], "idle_rss_mb": r["idle_rss_mb"]}
            for name, r in functions.items()
        },
        "peer": {"cold_start_ms_median": peer["cold_start_ms_median"], "idle_rss_mb": peer["idle_rss_mb"]},
        "heaviest": heaviest,
        "heaviest_over_peer": round(
            functions[heaviest]["cold_start_ms_median"] / peer["cold_start_ms_median"], 2
        ),
        "import_breakdown": {"function": heaviest, "top_cumulative_ms": breakdown},
        "targets": {"cold_start_ms_median_max": COLD_START_MS_TARGET, "idle_rss_mb_max": IDLE_RSS_MB_TARGET},
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", type=Path, default=Path("stack.yml"))
    parser.add_argument("--runs", type=int, default=RUNS_DEFAULT, help="spawns per function")
    parser.add_argument(
        "--contexts", action="store_true",
        help="also measure each function from its build context with only its own requirements installed",
    )


def run(args: argparse.Namespace) -> int:
    stack = load_stack(args.stack)
    measured = measure_all({**stack.functions, PEER_KEY: peer_spec()}, args.runs)
    peer = measured.pop(PEER_KEY)
    functions = measured
    for name, result in functions.items():
        _print_row(name, result)
    _print_row("(peer) template hello", peer)
    heaviest = max(functions, key=lambda name: functions[name]["cold_start_ms_median"])
    breakdown = import_breakdown(stack.functions[heaviest])
    print(f"imports of {heaviest}, cumulative ms: {breakdown}")
    summary = _summary(functions, peer, breakdown)
    if args.contexts:
        with tempfile.TemporaryDirectory(prefix="finfaas-coldstart-") as folder:
            contexts = measure_all(context_specs(args.stack, stack.functions, Path(folder)), args.runs,
                                   measure_context_once)
        for name, result in contexts.items():
            _print_row(f"{name} (build context)", result)
        summary["build_contexts"] = {
            name: {"cold_start_ms_median": r["cold_start_ms_median"], "idle_rss_mb": r["idle_rss_mb"]}
            for name, r in contexts.items()
        }
        summary["slowest_median_ms"] = {
            "dev_venv": max(r["cold_start_ms_median"] for r in functions.values()),
            "build_contexts": max(r["cold_start_ms_median"] for r in contexts.values()),
        }
    misses = [
        n
        for n, r in summary["functions"].items()
        if r["cold_start_ms_median"] > COLD_START_MS_TARGET or r["idle_rss_mb"] > IDLE_RSS_MB_TARGET
    ]
    print(
        f"targets (median <= {COLD_START_MS_TARGET} ms, idle RSS <= {IDLE_RSS_MB_TARGET} MB): "
        + (f"missed by {', '.join(misses)}" if misses else "met by every function")
    )
    print(json.dumps(summary))
    return 0


def _print_row(name: str, result: dict) -> None:
    note = (
        f"  non-200 health: {result['health_statuses_not_200']}" if result["health_statuses_not_200"] else ""
    )
    print(
        f"{name:24s} cold start median {result['cold_start_ms_median']:7.1f} ms  "
        f"idle RSS {result['idle_rss_mb']:5.1f} MB  runs {result['cold_start_ms_runs']}{note}"
    )
