"""Every function starts from its own build context with only what its image installs.

As `faas-cli build` makes the image: a fresh virtualenv gets the python3-http template's requirements,
then the function's requirements.txt (nothing of the dev virtualenv, no PYTHONPATH), and the
template's index.py serves the build context. /_/health must answer, and the X-Ray SDK must load
and send a segment; the OpenTelemetry path must load.
Cost on a clean clone: one `pip download` of the wheels (about 15 s), one virtualenv per distinct
requirements.txt (about 10 s each, two at a time), both kept in .cache/ by digest of their pins, and
one start per function (2-8 s).
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
from pathlib import Path

import pytest
from finfaas_dev.bench.coldstart import context_specs, measure_context_once
from finfaas_dev.build import function_build_context, load_stack
from finfaas_dev.image_venv import function_venvs, image_environment, wheelhouse
from finfaas_dev.net import LOOPBACK_HOST, free_port, wait_for
from finfaas_dev.stackfile import load_stack as load_stack_specs

ROOT = Path(__file__).resolve().parents[3]
STACK = load_stack(ROOT / "stack.yml")
FUNCTIONS = sorted(STACK["functions"])
FIRST_ANSWER_SECONDS_MAX = 30
STOP_SECONDS_MAX = 10
TRACING_OFF_LOG = "tracing is off"
SEGMENT_WAIT_SECONDS_MAX = 10
OTEL_LOAD = (
    "import sys; sys.path.insert(0, 'function/shared'); from finfaas.platform import config, tracing; "
    "tracing._load_otel('probe', config.TracingSettings(True, '', True, config.TRACING_OTEL), ()); "
    "print('loaded')"
)
TRACED_PROBE_PATH = "/_/no-such-route"


def _segment(daemon: socket.socket) -> dict:
    """The first segment the function sent to the daemon address (an empty dict if none came)."""
    try:
        packet, _ = daemon.recvfrom(65536)
    except TimeoutError:
        return {}
    _header, _, body = packet.partition(b"\n")  # the daemon protocol's {"format":"json",...} line first
    return json.loads(body)


def _requirements(name: str) -> Path:
    return ROOT / STACK["functions"][name]["handler"] / "requirements.txt"


@pytest.fixture(scope="module")
def interpreters() -> dict[Path, Path]:
    """requirements.txt -> the interpreter of its image's virtualenv, built two at a time."""
    files = [_requirements(name) for name in FUNCTIONS]
    return function_venvs(files, wheelhouse(files))


def _get(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection(LOOPBACK_HOST, port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_answers_health_from_its_build_context_with_only_its_requirements(name, interpreters,
                                                                                    tmp_path):
    # GIVEN the build context and an interpreter holding only the template's and the function's requirements
    context = function_build_context(name, STACK, ROOT, tmp_path / "build")
    (context / "function" / "__init__.py").touch()  # the Dockerfile's step before copying the handler
    python = interpreters[_requirements(name)]
    port = free_port()
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # stands in for the X-Ray daemon
    daemon.bind((LOOPBACK_HOST, 0))
    daemon.settimeout(SEGMENT_WAIT_SECONDS_MAX)
    environment = image_environment({
        **STACK["functions"][name].get("environment", {}), "AWS_XRAY_SDK_ENABLED": "true",
        "FINFAAS_XRAY_SAMPLE_ALL": "true",
        "AWS_XRAY_DAEMON_ADDRESS": f"{LOOPBACK_HOST}:{daemon.getsockname()[1]}",
    }, port, context)
    probe = "import importlib.util as u; print(u.find_spec('finfaas'))"
    without_context = {key: value for key, value in environment.items() if key != "PYTHONPATH"}
    no_runtime = subprocess.run([str(python), "-c", probe], env=without_context, capture_output=True,
                                text=True, timeout=30, check=True)
    assert no_runtime.stdout.strip() == "None"  # only the context's copy can serve
    log = tmp_path / "function.log"
    # WHEN the template's index.py serves it
    with log.open("w") as output:
        process = subprocess.Popen([str(python), "index.py"], cwd=context, env=environment,
                                   stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        try:
            status = wait_for(lambda: _get(port, "/_/health"), FIRST_ANSWER_SECONDS_MAX, f"{name} /_/health")
            traced = _get(port, TRACED_PROBE_PATH)  # health is untraced; this waits for the SDK
            segment = _segment(daemon)
        finally:
            process.terminate()
            process.wait(STOP_SECONDS_MAX)
            daemon.close()

    # THEN it answers, and tracing came up with what the image holds: a segment reached the daemon
    text = log.read_text()
    assert status == 200, text
    assert traced == 404, text
    assert TRACING_OFF_LOG not in text
    assert segment.get("name") == name, text
    # AND the OpenTelemetry path (FINFAAS_TRACING=otel) loads from what the image holds too
    otel = subprocess.run([str(python), "-c", OTEL_LOAD], cwd=context, env=environment, capture_output=True,
                          text=True, timeout=60, check=False)
    assert otel.returncode == 0 and otel.stdout.strip() == "loaded", otel.stderr


def test_cold_start_bench_measures_a_function_from_its_build_context(tmp_path, interpreters):
    stack = load_stack_specs(ROOT / "stack.yml")
    specs = context_specs(ROOT / "stack.yml", {"risk": stack.functions["risk"]}, tmp_path)

    run = measure_context_once(specs["risk"])

    assert specs["risk"].python == interpreters[_requirements("risk")]
    assert "PYTHONPATH" not in specs["risk"].environment
    assert run.status == 200 and run.cold_start_ms > 0
