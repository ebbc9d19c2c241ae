"""The embedded AWS runtime: DynamoDB Local (AWS's own emulator) and moto in server mode.

Both run as child processes in their own process group, bound to 127.0.0.1, and stop with
their parent: on stop(), at interpreter exit, on Ctrl-C, and (through a closed stdin pipe)
even when the parent is killed outright.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from finfaas_dev import tools

LOOPBACK_HOST = "127.0.0.1"
DYNAMODB_PORT_DEFAULT = 8000
MOTO_PORT_DEFAULT = 4566  # LocalStack's port, so localstack-client finds it
REGION = "us-east-1"
TEST_CREDENTIAL = "test"
LOG_DIR_DEFAULT = Path(".finfaas/logs")

READY_TIMEOUT_S = 60.0
READY_POLL_INTERVAL_S = 0.05
PROBE_TIMEOUT_S = 1.0
STOP_GRACE_S = 5.0
WATCH_INTERVAL_S = 1.0
DYNAMODB_HEAP_MB_MAX = 1024
LOG_TAIL_BYTES = 4096
# moto's threaded server delivered a message to two receivers at once (1 in 600, about one run
# in four of tests/integration/finfaas_dev/test_emulators.py's 6-sender x 4-receiver test): one at a time.
MOTO_SERIALIZE_REQUESTS = True


class EmulatorError(RuntimeError):
    """An emulator could not start or is not reachable; the message is one line for the user."""


@dataclass
class _Child:
    name: str
    endpoint: str
    process: subprocess.Popen
    log_path: Path


class EmbeddedAWS:
    """DynamoDB Local on dynamodb_port and moto on moto_port; in-memory unless data_dir is given."""

    def __init__(
        self,
        dynamodb_port: int = DYNAMODB_PORT_DEFAULT,
        moto_port: int = MOTO_PORT_DEFAULT,
        data_dir: Path | str | None = None,
        log_dir: Path | str | None = None,
        dynamodb_dir: Path = tools.DYNAMODB_LOCAL_DIR,
    ) -> None:
        self.dynamodb_port = dynamodb_port
        self.moto_port = moto_port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._owns_log_dir = log_dir is None
        self._dynamodb_dir = dynamodb_dir
        self._children: list[_Child] = []
        self._lock = threading.Lock()

    @property
    def dynamodb_endpoint(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self.dynamodb_port}"

    @property
    def moto_endpoint(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self.moto_port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point botocore (and so every client) at these emulators."""
        return {
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint,
            "AWS_ENDPOINT_URL": self.moto_endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": TEST_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIAL,
        }

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start both emulators and return once both answer HTTP; stops both on any failure."""
        with self._lock:
            if self._children:
                return
            _require_free_port(self.dynamodb_port, "DynamoDB Local")
            _require_free_port(self.moto_port, "moto")
            command = self._dynamodb_command()
            log_dir = self._prepare_log_dir()
            atexit.register(self.stop)
            try:
                self._children.append(_spawn("DynamoDB Local", self.dynamodb_endpoint, command, log_dir))
                self._children.append(_spawn("moto", self.moto_endpoint, self._moto_command(), log_dir))
            except BaseException:
                self._stop_children()
                raise
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll each emulator over HTTP until it answers; EmulatorError if one dies or times out."""
        deadline = time.monotonic() + timeout_s
        for child in list(self._children):
            _wait_child_ready(child, deadline, timeout_s)

    def stop(self) -> None:
        """Stop both emulators (SIGTERM to each process group, then SIGKILL); safe to call twice."""
        with self._lock:
            self._stop_children()
            atexit.unregister(self.stop)
            if self._owns_log_dir and self._log_dir is not None:
                shutil.rmtree(self._log_dir, ignore_errors=True)
                self._log_dir = None

    def check_alive(self) -> None:
        """Raise EmulatorError if an emulator process has exited since start()."""
        for child in list(self._children):
            if child.process.poll() is not None:
                raise EmulatorError(
                    f"{child.name} exited with code {child.process.returncode}: "
                    f"{_last_log_line(child.log_path)}"
                )

    def __enter__(self) -> EmbeddedAWS:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _stop_children(self) -> None:
        for child in reversed(self._children):
            _terminate(child.process)
        self._children.clear()

    def _prepare_log_dir(self) -> Path:
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="finfaas-emulators-"))
        self._log_dir.mkdir(parents=True, exist_ok=True)
        return self._log_dir

    def _dynamodb_command(self) -> list[str]:
        java = shutil.which("java")
        if not java:
            raise EmulatorError("java not found: run `finfaas tools install` (or install a Java 17 runtime)")
        jar = tools.dynamodb_local_jar(self._dynamodb_dir)
        if not jar.is_file():
            raise EmulatorError(f"DynamoDB Local not found at {jar}: run `finfaas tools install`")
        storage = ["-inMemory"]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            storage = ["-dbPath", str(self.data_dir.resolve())]
        # -sharedDb: one database whatever the caller's access key or region, so a process started
        # with other credentials sees the same tables instead of an empty private copy.
        options = [*storage, "-sharedDb", "-port", str(self.dynamodb_port), "-disableTelemetry"]
        jvm = [java, f"-Xmx{DYNAMODB_HEAP_MB_MAX}m",
               f"-Djava.library.path={self._dynamodb_dir / tools.DYNAMODB_LOCAL_LIB}"]
        launcher = tools.ensure_loopback_launcher(self._dynamodb_dir)
        if launcher is None:
            # No compiler in this Java: the stock entry point listens on every interface.
            return [*jvm, "-jar", str(jar), *options]
        classpath = f"{jar}:{launcher}"
        return [*jvm, f"-Dfinfaas.bindHost={LOOPBACK_HOST}", "-Dfinfaas.exitOnStdinEof=true",
                "-cp", classpath, tools.LAUNCHER_CLASS, *options]

    def _moto_command(self) -> list[str]:
        command = [sys.executable, "-m", "finfaas_dev.moto_runner", "--host", LOOPBACK_HOST,
                   "--port", str(self.moto_port), "--exit-on-stdin-eof"]
        return [*command, "--serialize"] if MOTO_SERIALIZE_REQUESTS else command


def _require_free_port(port: int, name: str) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As the servers themselves do: a port whose only users are TIME_WAIT leftovers is free.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((LOOPBACK_HOST, port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise EmulatorError(
                f"{name}: port {port} on {LOOPBACK_HOST} is already in use (another emulator running?)"
            ) from None
        raise
    finally:
        probe.close()


def _spawn(name: str, endpoint: str, command: list[str], log_dir: Path) -> _Child:
    log_path = log_dir / f"{name.lower().replace(' ', '-')}.log"
    with log_path.open("ab") as log:
        # Own session: a terminal's Ctrl-C reaches only us, and we stop the whole group in order.
        # The stdin pipe stays open for the child's life; its EOF tells the child we are gone.
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return _Child(name=name, endpoint=endpoint, process=process, log_path=log_path)


def _wait_child_ready(child: _Child, deadline: float, timeout_s: float) -> None:
    while True:
        if child.process.poll() is not None:
            raise EmulatorError(
                f"{child.name} exited with code {child.process.returncode}: {_last_log_line(child.log_path)}"
            )
        if _answers_http(child.endpoint):
            return
        if time.monotonic() >= deadline:
            raise EmulatorError(f"{child.name} did not answer at {child.endpoint} within {timeout_s:.0f} s")
        time.sleep(READY_POLL_INTERVAL_S)


def _answers_http(url: str) -> bool:
    """True when anything HTTP answers at url (an error status counts: the server is up)."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S):  # noqa: S310 - loopback URL we built
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        _close_stdin(process)
        return
    _signal_group(process, signal.SIGTERM)
    _close_stdin(process)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _close_stdin(process: subprocess.Popen) -> None:
    if process.stdin is not None and not process.stdin.closed:
        try:
            process.stdin.close()
        except OSError:
            pass


def _last_log_line(log_path: Path) -> str:
    try:
        with log_path.open("rb") as log:
            log.seek(0, 2)
            log.seek(max(0, log.tell() - LOG_TAIL_BYTES))
            lines = [line.strip() for line in log.read().decode(errors="replace").splitlines()]
    except OSError:
        return "no log"
    lines = [line for line in lines if line]
    return lines[-1] if lines else "no output"


def require_endpoint(url: str, service: str = "emulator") -> None:
    """Raise EmulatorError (one line, naming url) unless something answers HTTP there."""
    if not _answers_http(url):
        raise EmulatorError(
            f"{service} not reachable at {url}: start the emulators with `finfaas emulators` or `finfaas up`"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Run DynamoDB Local and moto in the foreground until Ctrl-C."
    parser.add_argument("--dynamodb-port", type=int, default=DYNAMODB_PORT_DEFAULT)
    parser.add_argument("--moto-port", type=int, default=MOTO_PORT_DEFAULT)
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="keep DynamoDB tables in this folder (default: in memory; moto's queues and keys "
        "are always in memory, so a kept table may hold data encrypted under a key that is gone)",
    )
    parser.add_argument("--log-dir", type=Path, default=LOG_DIR_DEFAULT)


def run(args: argparse.Namespace) -> int:
    aws = EmbeddedAWS(args.dynamodb_port, args.moto_port, data_dir=args.data_dir, log_dir=args.log_dir)
    # Explicitly: a shell that starts us in the background leaves SIGINT ignored, and Ctrl-C or
    # `kill -INT` must still stop everything.
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        started = time.monotonic()
        aws.start()
        print(f"emulators ready in {time.monotonic() - started:.1f} s (logs in {args.log_dir}); Ctrl-C stops")
        for name, value in aws.env().items():
            print(f"export {name}={value}")
        sys.stdout.flush()
        _watch(aws)
    except EmulatorError as error:
        print(f"finfaas emulators: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        aws.stop()
    return 0


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _watch(aws: EmbeddedAWS) -> None:
    while True:
        aws.check_alive()
        time.sleep(WATCH_INTERVAL_S)
