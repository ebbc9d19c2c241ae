"""`finfaas up` as a developer runs it: everything starts, every function answers, Ctrl-C frees it all."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from finfaas_dev.net import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120
SHUTDOWN_TIMEOUT_S = 30
READY_LINE = "Ctrl-C stops everything."  # the summary's last line


def _port_is_free(port: int) -> bool:
    """Free for a server to bind again: as servers do, TIME_WAIT leftovers don't count."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_line(process: subprocess.Popen, text: str, timeout_s: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"`finfaas up` never printed {text!r}; output:\n{''.join(seen)}")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("up")
    ports = {"gateway": free_port(), "dynamodb": free_port(), "moto": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update(
        {
            "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
            "FINFAAS_STAGE": "e2eup",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("FINFAAS_SECRETS_DIR", None)
    command = [
        sys.executable,
        "-m",
        "finfaas_dev.cli",
        "up",
        "--stack",
        str(ROOT / "stack.yml"),
        "--gateway-port",
        str(ports["gateway"]),
        "--dynamodb-port",
        str(ports["dynamodb"]),
        "--moto-port",
        str(ports["moto"]),
    ]
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = _wait_for_line(process, READY_LINE, STARTUP_TIMEOUT_S)
        yield {
            "process": process,
            "ports": ports,
            "workdir": workdir,
            "output": output,
            "base": f"http://127.0.0.1:{ports['gateway']}",
        }
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=SHUTDOWN_TIMEOUT_S)


def _stack_functions() -> set[str]:
    import yaml

    return set(yaml.safe_load((ROOT / "stack.yml").read_text())["functions"])


def test_lists_every_function_in_the_stack(suite):
    listed = requests.get(f"{suite['base']}/system/functions", timeout=10).json()
    assert {fn["name"] for fn in listed} == _stack_functions()


def test_every_function_answers_health_and_readiness_through_the_gateway(suite):
    for name in sorted(_stack_functions()):
        health = requests.get(f"{suite['base']}/function/{name}/_/health", timeout=30)
        assert health.status_code == 200, (name, health.text)
        ready = requests.get(f"{suite['base']}/function/{name}/_/ready", timeout=30)
        assert ready.status_code == 200, (name, ready.text)


def test_the_printed_first_request_works_with_the_demo_client(suite):
    credentials = json.loads(
        (suite["workdir"] / ".finfaas" / "secrets" / "demo-client-credentials.json").read_text()
    )
    reply = requests.post(
        f"{suite['base']}/function/auth/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(credentials["client_id"], credentials["client_secret"]),
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["token_type"].lower() == "bearer"
    assert any("curl" in line for line in suite["output"])


def _readme_walkthrough() -> str:
    """The shell block of the README's "Try it" section, exactly as a reader would paste it."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Try it"):]
    start = section.index("```sh\n") + len("```sh\n")
    return section[start:section.index("\n```", start)]


def test_the_readme_walkthrough_works_as_written(suite):
    # GIVEN the README's walkthrough, pointed at this suite's gateway and this interpreter
    script = _readme_walkthrough()
    script = script.replace("localhost:8080", f"localhost:{suite['ports']['gateway']}")
    script = script.replace(".venv/bin/finfaas", f"{sys.executable} -m finfaas_dev.cli")
    # WHEN it runs in the suite's folder, stopping at the first failing command
    reply = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script], cwd=suite["workdir"],
        capture_output=True, text=True, timeout=120,
    )
    # THEN the saga completed, the ledger reconciles and the audit chains verify
    assert reply.returncode == 0, reply.stdout[-3000:] + reply.stderr[-3000:]
    assert '"status":"COMPLETED"' in reply.stdout
    assert '"balance_after_minor":7500' in reply.stdout
    assert "trial balance per currency: USD 0; OK" in reply.stdout
    assert "SUCCEEDED" in reply.stdout
    assert re.search(r"tr_[0-9a-f]{32}\s+COMPLETED\s+25\.00 USD", reply.stdout)  # ada's list
    assert "AWAITING_REVIEW 0" in reply.stdout  # the operators' counts
    assert " 0 problem(s)" in reply.stdout


def test_ctrl_c_stops_everything_and_frees_the_ports(suite):
    # Runs last in this module: it stops the suite the others used.
    process: subprocess.Popen = suite["process"]
    children = psutil.Process(process.pid).children(recursive=True)
    assert children, "emulators and functions run as child processes"

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=SHUTDOWN_TIMEOUT_S) == 0

    gone, alive = psutil.wait_procs(children, timeout=SHUTDOWN_TIMEOUT_S)
    assert not alive, f"orphans left behind: {[p.pid for p in alive]}"
    for name, port in suite["ports"].items():
        assert _port_is_free(port), f"{name} port {port} still bound"
