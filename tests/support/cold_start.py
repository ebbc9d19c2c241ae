"""Runs a script in a fresh interpreter, as a function's first request does, and reads its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from finfaas_dev.testing.platform import REPOSITORY_ROOT

COLD_START_SECONDS_MAX = 60


def cold_start_report(script: str, heavy_modules: Sequence[str]) -> dict[str, Any]:
    """The JSON the script prints last, run as `python -c script <heavy modules, comma-separated>`
    with X-Ray off (so nothing is imported for tracing); the script must exit 0."""
    child = subprocess.run(
        [sys.executable, "-c", script, ",".join(heavy_modules)],
        env={**os.environ, "AWS_XRAY_SDK_ENABLED": "false"},
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=COLD_START_SECONDS_MAX,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])
