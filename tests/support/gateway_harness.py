"""Runs `python -m finfaas_dev.gateway` as a real process on a free port, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from finfaas_dev.net import free_port, wait_for

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "e2e" / "fixtures"
FIXTURE_STACK = FIXTURES_DIR / "stack.yml"
GATEWAY_READY_SECONDS_MAX = 30.0  # a loaded machine, emulators running
STOP_SECONDS_MAX = 20.0  # the gateway stops its function processes first


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def http(
    method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout=10.0
) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback test URL
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


class GatewayProcess:
    """The gateway under test, serving `stack`; its JSON log lines are kept in a file for assertions."""

    def __init__(
        self,
        log_dir: Path,
        extra_args: Sequence[str] = (),
        env: dict | None = None,
        *,
        stack: Path = FIXTURE_STACK,
        port: int | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "gateway.log"
        command = [sys.executable, "-m", "finfaas_dev.gateway", "--stack", str(stack),
                   "--port", str(self.port), *extra_args]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd
        )
        try:
            wait_for(self._ready, GATEWAY_READY_SECONDS_MAX, "the gateway to listen")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"gateway exited with {self.process.returncode}: {self.log_path.read_text()}"
            )
        try:
            return http("GET", self.url + "/healthz", timeout=1).status == 200
        except OSError:
            return False

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Reply:
        return http(method, self.url + path, body, headers)

    def functions(self) -> dict[str, dict]:
        return {f["name"]: f for f in self.call("GET", "/system/functions").json()}

    def events(self, name: str) -> list[dict]:
        """The gateway's JSON log lines with this event name."""
        found = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == name:
                    found.append(record)
        return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS_MAX)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@contextmanager
def suite_gateway(folder: Path, stack: str, aws_env: Mapping[str, str], *,
                  service_clients: Iterable[str] = ()) -> Iterator[str]:
    """The suite's functions in `stack` behind a gateway on the session's emulators, with the suite's dev
    secrets and these functions' service clients, each function's log in folder/functions; yields the
    gateway's base URL, which the functions call each other and fetch the JWKS through."""
    from finfaas.platform.keys import SERVICE_CLIENTS, ensure_service_clients
    from finfaas_dev.bench.transfers import write_suite_secrets

    secrets_dir = Path(os.environ["FINFAAS_SECRETS_DIR"])
    write_suite_secrets(secrets_dir)
    ensure_service_clients(secrets_dir, {name: SERVICE_CLIENTS[name] for name in service_clients},
                           out=lambda line: None)
    (folder / "stack.yml").write_text(stack)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**aws_env, "FINFAAS_GATEWAY_URL": base_url,
           "FINFAAS_JWKS_URL": f"{base_url}/function/auth/.well-known/jwks.json"}
    gateway = GatewayProcess(folder, ["--logs-dir", str(folder / "functions")], env=env,
                             stack=folder / "stack.yml", port=port)
    try:
        yield base_url
    finally:
        gateway.stop()
