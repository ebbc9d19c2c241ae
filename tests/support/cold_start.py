"""Runs a script in a fresh interpreter, as a function's first request does, and reads its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from finfaas_dev.testing.platform import REPOSITORY_ROOT

COLD_START_SECONDS_MAX = 60

# A function's handler imported in a fresh interpreter, then one health probe; what was imported.
_HEALTH_PROBE = textwrap.dedent(
    """
    import io, json, sys, time
    started = time.perf_counter()
    from finfaas.platform import logging as finfaas_logging
    finfaas_logging.configure(stream=io.StringIO())
    from finfaas_dev.testing.platform import Event, load_function_handler
    handler = load_function_handler(sys.argv[2])
    probe = Event("GET", "/_/health")  # built first: under the template, flask has loaded werkzeug
    imported = time.perf_counter()
    result = handler.handle(probe, None)
    answered = time.perf_counter()
    heavy = sorted(m for m in sys.argv[1].split(",") if m in sys.modules)
    print(json.dumps({"status": result["statusCode"], "heavy": heavy,
                      "import_ms": (imported - started) * 1000, "health_ms": (answered - imported) * 1000}))
    """
)


def cold_start_report(script: str, heavy_modules: Sequence[str], *args: str) -> dict[str, Any]:
    """The JSON the script prints last, run as `python -c script <heavy modules, comma-separated> *args`
    with X-Ray off (so nothing is imported for tracing); the script must exit 0."""
    child = subprocess.run(
        [sys.executable, "-c", script, ",".join(heavy_modules), *args],
        env={**os.environ, "AWS_XRAY_SDK_ENABLED": "false"},
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=COLD_START_SECONDS_MAX,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


def cold_health_probe(function: str, heavy_modules: Sequence[str]) -> dict[str, Any]:
    """functions/<function> answering its first /_/health in a fresh interpreter: `status`, the `heavy`
    modules it loaded, `import_ms` and `health_ms`."""
    return cold_start_report(_HEALTH_PROBE, heavy_modules, function)
