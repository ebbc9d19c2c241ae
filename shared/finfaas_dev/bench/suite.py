"""What the gateway benches share: the suite on loopback in a sandbox of its own (emulators, a fresh stage,
secrets, the local gateway with a stack of its own), and customers with funded accounts and tokens."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from finfaas_dev.net import free_port, wait_for

FUNCTIONS_DIR = Path(__file__).resolve().parents[3] / "functions"
GATEWAY_READY_SECONDS_MAX = 30.0
FUNCTION_READY_SECONDS_MAX = 60.0  # each function's first start, on a loaded machine
EXEC_TIMEOUT = "30s"
TOKEN_SECONDS = 3600
LOG_LINES_SHOWN = 10
GATEWAY_STOP_SECONDS_MAX = 30


@dataclass
class Sandbox:
    folder: Path
    stage: str
    gateway_port: int
    secrets_dir: Path


def export_environment(aws_env: dict[str, str], sandbox: Sandbox) -> None:
    """This process and its children (deploy, gateway, functions) see only the sandbox."""
    from finfaas.platform import config

    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            del os.environ[name]
    os.environ.update(aws_env)
    gateway_url = f"http://127.0.0.1:{sandbox.gateway_port}"
    os.environ.update({
        "FINFAAS_STAGE": sandbox.stage,
        "FINFAAS_SECRETS_DIR": str(sandbox.secrets_dir),
        "FINFAAS_GATEWAY_URL": gateway_url,
        "FINFAAS_JWKS_URL": f"{gateway_url}/function/auth/.well-known/jwks.json",
        "AWS_XRAY_SDK_ENABLED": "false",
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    config.settings.cache_clear()
    config.auth_settings.cache_clear()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return response.status == 200
    except OSError:
        return False


def stack_text(names: Iterable[str], environment: Mapping[str, str] | None = None, *,
               per_function: Mapping[str, Mapping[str, str]] | None = None,
               topics: Mapping[str, str] | None = None, image_prefix: str = "bench") -> str:
    """An OpenFaaS stack of functions/<name> for the local gateway: each with an exec_timeout of 30 s and
    `environment`, then its own `per_function` variables; a queue topic for those in `topics`."""
    lines = ["version: 1.0", "provider:", "  name: openfaas", "  gateway: http://127.0.0.1:8080",
             "functions:"]
    for name in names:
        lines += [f"  {name}:", "    lang: python3-http", f"    handler: {FUNCTIONS_DIR / name}",
                  f"    image: {image_prefix}/{name}"]
        if topics and name in topics:
            lines += ["    annotations:", f"      topic: {topics[name]}"]
        own = (per_function or {}).get(name, {})
        variables = {"exec_timeout": EXEC_TIMEOUT, **(environment or {}), **own}
        lines += ["    environment:", *(f'      {key}: "{value}"' for key, value in variables.items())]
    return "\n".join(lines) + "\n"


def start_gateway(sandbox: Sandbox, stack: str, *, connector: bool = True,
                  function_logs: bool = True) -> subprocess.Popen:
    """The local gateway on the sandbox's port, its output in gateway.log; each function's in
    functions/<name>.log when `function_logs`."""
    path = sandbox.folder / "stack.yml"
    path.write_text(stack)
    log = (sandbox.folder / "gateway.log").open("wb")
    command = [sys.executable, "-m", "finfaas_dev.gateway", "--stack", str(path), "--port",
               str(sandbox.gateway_port)]
    command += ["--logs-dir", str(sandbox.folder / "functions")] if function_logs else []
    command += [] if connector else ["--no-connector"]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))


@dataclass
class RunningSuite:
    sandbox: Sandbox
    base_url: str
    gateway: subprocess.Popen
    run_id: str  # the stage's suffix: ids made by the bench carry it too


@contextmanager
def running_suite(prefix: str, stack: str, write_secrets: Callable[[Path], object], *,
                  service_clients: Iterable[str] = (), ready: Iterable[str] = (), connector: bool = True,
                  function_logs: bool = True,
                  before_gateway: Callable[[Sandbox, dict[str, str]], list[subprocess.Popen]] | None = None,
                  ) -> Iterator[RunningSuite]:
    """The suite on loopback for a bench: emulators on free ports, the infra template under a fresh stage,
    secrets (and the named functions' service clients), whatever `before_gateway` starts (given the
    emulators' environment), the gateway, and the functions in `ready` started, so no phase pays their cold
    start; all stopped on exit, the logs' last lines shown on error."""
    from finfaas.platform.keys import SERVICE_CLIENTS, ensure_service_clients

    from finfaas_dev import emulators, infra, tools

    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        run_id = secrets.token_hex(3)
        sandbox = Sandbox(Path(folder), f"bench{run_id}", free_port(), Path(folder) / "secrets")
        aws = emulators.EmbeddedAWS(free_port(), free_port(), log_dir=sandbox.folder / "logs")
        children: list[subprocess.Popen] = []
        try:
            tools.ensure_dynamodb_local()
            aws.start()
            export_environment(aws.env(), sandbox)
            infra.deploy(sandbox.stage, "embedded")
            write_secrets(sandbox.secrets_dir)
            clients = {name: SERVICE_CLIENTS[name] for name in service_clients}
            ensure_service_clients(sandbox.secrets_dir, clients, out=lambda line: None)
            children += before_gateway(sandbox, aws.env()) if before_gateway is not None else []
            gateway = start_gateway(sandbox, stack, connector=connector, function_logs=function_logs)
            children.append(gateway)
            base_url = f"http://127.0.0.1:{sandbox.gateway_port}"
            wait_for(lambda: answers(f"{base_url}/healthz"), GATEWAY_READY_SECONDS_MAX, "the gateway")
            for name in ready:
                wait_for(lambda name=name: answers(f"{base_url}/function/{name}/_/health"),
                         FUNCTION_READY_SECONDS_MAX, name)
            yield RunningSuite(sandbox, base_url, gateway, run_id)
        except Exception:
            show_logs(sandbox)
            raise
        finally:
            for child in reversed(children):
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=GATEWAY_STOP_SECONDS_MAX)
                except subprocess.TimeoutExpired:
                    child.kill()
            aws.stop()


def show_logs(sandbox: Sandbox) -> None:
    for log in [sandbox.folder / "gateway.log", *sorted((sandbox.folder / "functions").glob("*.log"))]:
        if log.is_file():
            tail = log.read_text(errors="replace").splitlines()[-LOG_LINES_SHOWN:]
            print(f"{log.name} (last lines):\n" + "\n".join(tail), file=sys.stderr)


def customer_tokens(scopes: tuple[str, ...]) -> Callable[[str], str]:
    """Signs a customer's token with these scopes, for TOKEN_SECONDS, with the suite's dev signing key."""
    from finfaas.platform import config
    from finfaas.platform.keys import load_keyring

    from finfaas_dev.testing.platform import TokenMinter

    settings = config.auth_settings()
    minter = TokenMinter(load_keyring(), settings.issuer, settings.audience)

    def sign(customer_id: str) -> str:
        claims = minter.claims(customer_id, scopes, "customer")
        return minter.sign({**claims, "exp": int(time.time()) + TOKEN_SECONDS})

    return sign


def funded_customers(count: int, customer_prefix: str, account_prefix: str, currency: str, opening_minor: int,
                     scopes: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(customer id, account id, token) of `count` customers numbered after the prefixes: each account opened
    on the ledger and funded with `opening_minor` from the funding account, each token with these scopes."""
    from finfaas.domain.ledger import NewAccount
    from finfaas.services.ledger.service import LedgerService
    from finfaas.store.ledger_store import ledger_store_from_config

    store = ledger_store_from_config()
    ledger = LedgerService(store)
    ledger.ensure_system_accounts(currency)
    token = customer_tokens(scopes)
    customers = []
    for n in range(count):
        customer_id, account_id = f"{customer_prefix}{n}", f"{account_prefix}{n}"
        store.open_account(NewAccount(account_id, customer_id, currency), datetime.now(UTC))
        ledger.deposit(account_id, opening_minor, currency, transfer_id=f"{account_id}-opening")
        customers.append((customer_id, account_id, token(customer_id)))
    return customers

