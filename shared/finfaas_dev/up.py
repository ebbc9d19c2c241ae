"""`finfaas up`: the embedded default — emulators, infra, dev secrets, gateway and every function."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from finfaas.platform import audit, config, keys

from finfaas_dev import emulators, gateway, infra, relay, schedules, stackfile, tools

STATE_DIR = Path(".finfaas")
SECRETS_DIR = STATE_DIR / "secrets"
LOGS_DIR = STATE_DIR / "logs"
ENV_FILE = STATE_DIR / "env"
XRAY_DAEMON_ADDRESS = "127.0.0.1:2000"
OTLP_ENDPOINT = "http://127.0.0.1:4318"  # OTLP/HTTP, for FINFAAS_TRACING=otel
AUDIT_KEY_RANDOM_BYTES = 48  # token_urlsafe text of 64 characters, above audit's 32-byte minimum


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", type=Path, default=Path("stack.yml"))
    parser.add_argument("--stage", default=os.environ.get("FINFAAS_STAGE", config.DEFAULT_STAGE))
    parser.add_argument("--gateway-port", type=int, default=gateway.GATEWAY_PORT_DEFAULT)
    parser.add_argument("--dynamodb-port", type=int, default=emulators.DYNAMODB_PORT_DEFAULT)
    parser.add_argument("--moto-port", type=int, default=emulators.MOTO_PORT_DEFAULT)
    parser.add_argument(
        "--idle-seconds", type=float, default=None,
        help="scale functions to zero after this many idle seconds (default: each function's label)",
    )


def run(args: argparse.Namespace) -> int:
    stack = stackfile.load_stack(args.stack)
    aws = emulators.EmbeddedAWS(args.dynamodb_port, args.moto_port, log_dir=LOGS_DIR)
    # Explicitly: a shell that starts us in the background leaves SIGINT ignored, and Ctrl-C or
    # `kill -INT` must still stop everything.
    signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    outbox_relay = ticker = None
    try:
        tools.ensure_dynamodb_local()
        started = time.monotonic()
        aws.start()
        _export(aws.env(), args.stage, args.gateway_port)
        outputs = infra.deploy(args.stage, "embedded")
        ensure_local_secrets(SECRETS_DIR)
        _write_env_file(ENV_FILE)
        outbox_relay = relay.start_relay(SECRETS_DIR)
        ticker = start_schedules(stack, os.environ["FINFAAS_GATEWAY_URL"])
        summary = partial(_print_summary, aws, args, stack, outputs, started)
        return gateway.run_on_uvloop(_serve(_gateway_config(stack, args), summary))
    except (emulators.EmulatorError, infra.InfraError, tools.ToolsError, stackfile.StackError) as error:
        print(f"finfaas up: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if ticker is not None:
            ticker.stop()
        if outbox_relay is not None:
            outbox_relay.stop()
        aws.stop()


def start_schedules(stack: stackfile.Stack, gateway_url: str) -> schedules.LocalTicker:
    """Ticks stack.yml's scheduled functions (`topic: cron-function`, `schedule`) as the cron-connector
    does on OpenFaaS: an unsigned POST through the gateway."""
    try:
        jobs = schedules.local_jobs({name: fn.annotations for name, fn in stack.functions.items()})
    except ValueError as error:
        raise stackfile.StackError(f"{stack.path}: {error}") from None
    ticker = schedules.LocalTicker(jobs, gateway_url)
    ticker.start()
    return ticker


def ensure_local_secrets(folder: Path, out: Callable[[str], None] = print) -> None:
    """Every secret the functions read, created where missing (existing ones are kept)."""
    keys.write_dev_secrets(folder, out=out)
    keys.ensure_service_clients(folder, out=out)
    relay.ensure_events_mac_key(folder)
    _ensure_audit_key(folder)
    _ensure_rail_notice_key(folder)
    _ensure_schedule_key(folder)
    _ensure_pii_digest_key(folder)
    _ensure_console_session_key(folder)


def _write_env_file(path: Path) -> None:
    """`source .finfaas/env` gives another shell what the `finfaas` commands need to reach the suite."""
    names = sorted(k for k in os.environ if k.startswith(("AWS_", "FINFAAS_")))
    path.write_text("".join(f"export {name}={shlex.quote(os.environ[name])}\n" for name in names))


def _ensure_audit_key(folder: Path) -> None:
    """A fresh machine gets an audit HMAC key, so audit records are signed from the first one."""
    ensure_secret(folder / audit.AUDIT_KEY_SECRET_NAME, secrets.token_urlsafe(AUDIT_KEY_RANDOM_BYTES))


def _ensure_rail_notice_key(folder: Path) -> None:
    """The sandbox rail signs its settlement notices with this key."""
    from finfaas.services.rail import service as rail

    ensure_secret(folder / rail.NOTICE_KEY_SECRET_NAME, rail.new_notice_key())


def _ensure_schedule_key(folder: Path) -> None:
    """Hand-run ticks (`python -m finfaas.platform.schedule`) are signed with this key."""
    from finfaas.platform import mac_keys, schedule

    ensure_secret(folder / schedule.SCHEDULE_KEY_SECRET_NAME, mac_keys.new_mac_key_text())


def _ensure_pii_digest_key(folder: Path) -> None:
    """Transfers and risk fingerprint payees with this key (an HMAC: account numbers are guessable)."""
    from finfaas.platform import mac_keys, pii

    ensure_secret(folder / pii.DIGEST_KEY_SECRET_NAME, mac_keys.new_mac_key_text())


def _ensure_console_session_key(folder: Path) -> None:
    """The console seals its operators' session cookies with this key."""
    from finfaas.platform import mac_keys
    from finfaas.services.console.session import SESSION_KEY_SECRET_NAME

    ensure_secret(folder / SESSION_KEY_SECRET_NAME, mac_keys.new_mac_key_text())


def ensure_secret(path: Path, value: str) -> None:
    """Creates the secret file owner-only from the first byte (never readable under the umask)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # kept: a new key would leave what the old one signed unverifiable
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")


async def _serve(gateway_config: gateway.GatewayConfig, on_listening) -> int:
    """Run the gateway until SIGINT/SIGTERM; announce the suite only once it accepts requests."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    server = gateway.Gateway(gateway_config)
    try:
        await server.start()
        on_listening()
        await stopping.wait()
    except OSError as error:
        print(f"finfaas up: gateway cannot listen on port {gateway_config.port}: {error}", file=sys.stderr)
        return 1
    finally:
        await server.stop()
    return 0


def _export(aws_env: dict[str, str], stage: str, gateway_port: int) -> None:
    """Everything started from here (deploy, gateway, functions) sees the embedded endpoints.

    FINFAAS_* and AWS_* set here win over stack.yml's values, which name the cluster's addresses.
    """
    os.environ.update(aws_env)
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    os.environ["FINFAAS_GATEWAY_URL"] = gateway_url
    for name in [n for n in os.environ if n.startswith(config.FUNCTION_URL_ENV_PREFIX)]:
        del os.environ[name]  # locally every call goes through the gateway
    os.environ["FINFAAS_JWKS_URL"] = f"{gateway_url}/function/auth/.well-known/jwks.json"
    os.environ["FINFAAS_STAGE"] = stage
    os.environ["FINFAAS_SECRETS_DIR"] = str(SECRETS_DIR.resolve())
    os.environ.setdefault("AWS_XRAY_DAEMON_ADDRESS", XRAY_DAEMON_ADDRESS)
    os.environ.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP_ENDPOINT)  # read when FINFAAS_TRACING=otel
    os.environ["FINFAAS_WEBHOOK_TARGETS"] = "loopback"  # webhooks reach only this machine
    os.environ.pop("AWS_PROFILE", None)
    config.settings.cache_clear()


def _gateway_config(stack, args: argparse.Namespace) -> gateway.GatewayConfig:
    return gateway.GatewayConfig(
        stack=stack,
        port=args.gateway_port,
        idle_seconds_override=args.idle_seconds,
        logs_dir=LOGS_DIR,
        connector=True,
        xray_collector=True,
        xray_address=os.environ["AWS_XRAY_DAEMON_ADDRESS"],
        env=dict(os.environ),
    )


def _print_summary(aws, args, stack, outputs: dict[str, str], started: float) -> None:
    elapsed_s = time.monotonic() - started
    base = f"http://127.0.0.1:{args.gateway_port}"
    names = ", ".join(sorted(stack.functions))
    tables = sum(1 for key in outputs if key.endswith("TableName"))
    lines = [
        f"FinFaaS is up in {elapsed_s:.1f} s (stage {args.stage}).",
        f"  gateway         {base}  functions: {names}",
        f"  DynamoDB Local  {aws.dynamodb_endpoint}  ({tables} tables)",
        f"  moto            {aws.moto_endpoint}  (SQS, KMS, X-Ray, CloudFormation)",
        f"  X-Ray daemon    udp://{os.environ['AWS_XRAY_DAEMON_ADDRESS']}",
        f"  OTLP (traces)   {os.environ['OTEL_EXPORTER_OTLP_ENDPOINT']}",
        f"  secrets, logs   {SECRETS_DIR}/, {LOGS_DIR}/",
        f"  other shells    source {ENV_FILE}   (then: finfaas ledger check, finfaas executions list)",
        "",
        "Try:",
        f"  curl -s {base}/system/functions",
        f"  curl -s {base}/function/auth/.well-known/jwks.json",
        f"  curl -s -u demo-app:$(python3 -c \"import json;print(json.load(open('{SECRETS_DIR}/"
        f"{keys.DEMO_CREDENTIALS_FILE}'))['client_secret'])\") -d grant_type=client_credentials "
        f"{base}/function/auth/oauth/token",
        "",
        "Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
