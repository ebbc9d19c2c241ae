"""Function processes for the local gateway: start on demand, stop when idle, forget when crashed.

Each function has at most one process (replicas 0 or 1). The gateway binds the listening
socket itself and hands it to the child, so the address is known before the child exists and
no other program can take the port; the child reports readiness on a pipe once its handler is
imported. Children run in their own process group and die with the gateway (PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from finfaas_dev.harness import READY_MESSAGE, harness_command
from finfaas_dev.stackfile import FunctionSpec
from finfaas_dev.upstream import UpstreamPool

LOOPBACK_HOST = "127.0.0.1"
LISTEN_BACKLOG_CONNECTIONS = 1024
FUNCTION_START_SECONDS_MAX = 30.0  # import + app creation; a hung import must not hang callers
STOP_GRACE_SECONDS = 5.0  # SIGTERM, then SIGKILL
EXIT_SETTLE_SECONDS = 1.0  # after a broken connection, how long to wait for the process to be gone
# Requests in flight to one function process (pooled keep-alive connections). of-watchdog sets no such
# cap: the process's own server decides what it serves at once, and the transfers function's waiting
# status requests (up to 256, 30 s each) must not queue the saga's steps behind them here.
FUNCTION_CONNECTIONS_MAX = 512
REAPER_INTERVAL_SECONDS_MIN = 0.05
REAPER_INTERVAL_SECONDS_MAX = 5.0
# Passed through from the gateway's own environment (besides AWS_* and FINFAAS_*).
PASSED_THROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
PASSED_THROUGH_ENV_PREFIXES = ("AWS_", "FINFAAS_", "OTEL_")
# stack.yml's import path names the image's copy of the runtime (/home/app/function/shared); a local
# process runs the handler from its source folder and imports finfaas as the gateway itself does.
IMAGE_ONLY_ENV = frozenset({"PYTHONPATH"})


def log_event(event: str, **fields: object) -> None:
    """One JSON line on stderr: what the local runtime did and how long it took."""
    record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **fields}
    sys.stderr.write(json.dumps(record, default=str) + "\n")
    sys.stderr.flush()


class FunctionStartError(RuntimeError):
    """The function process exited or stayed silent before its handler was imported."""


def function_environment(spec: FunctionSpec, parent_env: Mapping[str, str]) -> dict[str, str]:
    """stack.yml environment but the image's import path, then the runtime's AWS_*/FINFAAS_* (which win:
    they select endpoints/stage)."""
    env = {key: parent_env[key] for key in PASSED_THROUGH_ENV if key in parent_env}
    env.update({k: v for k, v in spec.environment.items() if k not in IMAGE_ONLY_ENV})
    env.update({k: v for k, v in parent_env.items() if k.startswith(PASSED_THROUGH_ENV_PREFIXES)})
    env["HOSTNAME"] = spec.name  # what Context.hostname reports, like a pod name would
    env["PYTHONUNBUFFERED"] = "1"  # function logs reach the console as they are written
    return env


def use_normal_scheduling() -> None:
    """Give the calling thread the default time-sharing policy (and so the threads it creates).

    The gateway runs as SCHED_BATCH (see finfaas_dev.gateway.yield_cpu_to_functions); a
    function process would inherit that, and must instead run as it runs in its container.
    """
    if hasattr(os, "sched_setscheduler"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _bound_loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK_HOST, 0))
    sock.listen(LISTEN_BACKLOG_CONNECTIONS)
    return sock


@dataclass
class FunctionProcess:
    """One running function process and the address it serves."""

    name: str
    process: asyncio.subprocess.Process
    port: int
    start_seconds: float
    started_at: datetime
    upstream: UpstreamPool
    stopping: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self.port}"

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    async def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM the process group, SIGKILL it if still there after the grace period."""
        self.stopping = True
        self.upstream.close()
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), grace_seconds)
        except TimeoutError:
            _signal_group(self.process.pid, signal.SIGKILL)
            return await self.process.wait()
        finally:
            # Helpers the handler may have forked share the group; none may outlive the function.
            _signal_group(self.process.pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def start_function_process(
    spec: FunctionSpec,
    env: Mapping[str, str],
    output: IO | int | None = None,
    start_seconds_max: float = FUNCTION_START_SECONDS_MAX,
) -> FunctionProcess:
    """Spawn the harness for spec and wait until its handler is imported and it is serving."""
    sock = _bound_loopback_socket()
    ready_read, ready_write = os.pipe()
    began = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            *harness_command(
                spec.handler_dir, listen_fd=sock.fileno(), ready_fd=ready_write, parent_pid=os.getpid()
            ),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            pass_fds=(sock.fileno(), ready_write),
            start_new_session=True,  # own process group: stopping it reaches anything it forked
            preexec_fn=use_normal_scheduling,
        )
    finally:
        # The child holds its own copies; ours must go so a dead child frees the port at once.
        port = sock.getsockname()[1]
        sock.close()
        os.close(ready_write)
    try:
        await _wait_ready(ready_read, process, spec.name, start_seconds_max)
    except BaseException:
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    return FunctionProcess(
        name=spec.name,
        process=process,
        port=port,
        start_seconds=time.monotonic() - began,
        started_at=datetime.now(UTC),
        upstream=UpstreamPool(LOOPBACK_HOST, port, FUNCTION_CONNECTIONS_MAX),
    )


async def _wait_ready(
    ready_read: int, process: asyncio.subprocess.Process, name: str, seconds_max: float
) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(ready_read, "rb", buffering=0)
    )
    try:
        line = await asyncio.wait_for(reader.readline(), seconds_max)
    except TimeoutError as error:
        raise FunctionStartError(f"function {name!r} did not start within {seconds_max:.0f} s") from error
    finally:
        transport.close()
    if line != READY_MESSAGE:
        code = await _exit_code_soon(process)
        raise FunctionStartError(f"function {name!r} exited during start (exit code {code})")


async def _exit_code_soon(process: asyncio.subprocess.Process) -> int | None:
    with contextlib.suppress(TimeoutError):
        return await asyncio.wait_for(process.wait(), EXIT_SETTLE_SECONDS)
    return None


class FunctionRuntime:
    """Zero or one process for one function: cold start on demand, idle stop, crash recovery."""

    def __init__(
        self,
        spec: FunctionSpec,
        env: Mapping[str, str],
        idle_seconds_before_stop: float | None,
        output: IO | int | None = None,
    ) -> None:
        self.spec = spec
        self.idle_seconds_before_stop = idle_seconds_before_stop  # None: never stopped for idleness
        self.invocation_count = 0
        self.cold_start_count = 0
        self.crash_count = 0
        self._env = dict(env)
        self._output = output
        self._process: FunctionProcess | None = None
        self._lock = asyncio.Lock()
        self._in_flight = 0
        self._last_activity = time.monotonic()
        self._last_start_failure: tuple[float, FunctionStartError] | None = None

    @property
    def replicas(self) -> int:
        process = self._process
        return 1 if process is not None and not process.exited else 0

    @property
    def process(self) -> FunctionProcess | None:
        return self._process

    async def acquire(self) -> FunctionProcess:
        """A running process for one request (cold-starting it if needed); pair with release()."""
        self._in_flight += 1
        self.invocation_count += 1
        self._last_activity = time.monotonic()
        process = self._process
        if process is not None and not process.exited and not process.stopping:
            return process  # the warm path takes no lock
        waiting_since = time.monotonic()
        try:
            async with self._lock:  # concurrent first requests share one start
                return await self._running_process(waiting_since)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        self._in_flight -= 1
        self._last_activity = time.monotonic()

    async def forget_broken(self, process: FunctionProcess) -> None:
        """After a broken connection: once the process is gone, the next request starts a new one."""
        await _exit_code_soon(process.process)
        if process.exited and self._process is process:
            self._process = None

    async def stop_if_idle(self, now: float) -> bool:
        if self.idle_seconds_before_stop is None or self._process is None or self._in_flight:
            return False
        if now - self._last_activity < self.idle_seconds_before_stop:
            return False
        async with self._lock:
            # Re-checked under the lock: a request may have arrived while we waited for it.
            if self._process is None or self._in_flight:
                return False
            if time.monotonic() - self._last_activity < self.idle_seconds_before_stop:
                return False
            await self._stop_current("idle")
            return True

    async def stop(self) -> None:
        async with self._lock:
            await self._stop_current("shutdown")

    async def _running_process(self, waiting_since: float) -> FunctionProcess:
        if self._process is not None and not self._process.exited:
            return self._process
        failure = self._last_start_failure
        if failure is not None and failure[0] >= waiting_since:
            raise failure[1]  # the start this request waited for failed: don't queue another
        try:
            process = await start_function_process(self.spec, self._env, self._output)
        except FunctionStartError as error:
            self._last_start_failure = (time.monotonic(), error)
            raise
        self._process = process
        self.cold_start_count += 1
        asyncio.get_running_loop().create_task(self._watch(process))
        log_event(
            "cold_start",
            function=self.spec.name,
            duration_ms=round(process.start_seconds * 1000, 1),
            pid=process.pid,
            port=process.port,
        )
        return process

    async def _stop_current(self, reason: str) -> None:
        """Stop under the lock: new requests wait for it and then start a fresh process."""
        process = self._process
        if process is None:
            return
        code = await process.stop()
        self._process = None
        log_event("function_stopped", function=self.spec.name, reason=reason, pid=process.pid, exit_code=code)

    async def _watch(self, process: FunctionProcess) -> None:
        code = await process.process.wait()
        process.upstream.close()
        if self._process is process:
            self._process = None
        if not process.stopping:
            self.crash_count += 1
            log_event("function_exited", function=self.spec.name, pid=process.pid, exit_code=code)


class FunctionPool:
    """Every function of the stack, each with its own runtime, and the idle reaper."""

    def __init__(
        self,
        specs: Mapping[str, FunctionSpec],
        parent_env: Mapping[str, str],
        idle_seconds_override: float | None = None,
        logs_dir: Path | None = None,
    ) -> None:
        self._outputs: list[IO] = []
        self.runtimes = {
            name: FunctionRuntime(
                spec,
                function_environment(spec, parent_env),
                _idle_seconds(spec, idle_seconds_override),
                self._output_for(name, logs_dir),
            )
            for name, spec in specs.items()
        }
        self._reaper: asyncio.Task | None = None

    def get(self, name: str) -> FunctionRuntime | None:
        return self.runtimes.get(name)

    def start_reaper(self) -> None:
        idle_values = [
            r.idle_seconds_before_stop for r in self.runtimes.values() if r.idle_seconds_before_stop
        ]
        if idle_values:
            interval = min(
                max(min(idle_values) / 4, REAPER_INTERVAL_SECONDS_MIN), REAPER_INTERVAL_SECONDS_MAX
            )
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever(interval))

    async def stop_all(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(*(runtime.stop() for runtime in self.runtimes.values()))
        for output in self._outputs:
            output.close()

    async def _reap_forever(self, interval_seconds: float) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            now = time.monotonic()
            for runtime in self.runtimes.values():
                await runtime.stop_if_idle(now)

    def _output_for(self, name: str, logs_dir: Path | None) -> IO | None:
        if logs_dir is None:
            return None  # inherit the gateway's stdout/stderr
        logs_dir.mkdir(parents=True, exist_ok=True)
        output = (logs_dir / f"{name}.log").open("ab")
        self._outputs.append(output)
        return output


def _idle_seconds(spec: FunctionSpec, override: float | None) -> float | None:
    if not spec.scales_to_zero:
        return None
    return override if override is not None else spec.idle_seconds_before_stop
