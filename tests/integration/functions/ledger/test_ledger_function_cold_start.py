"""Cold start of the ledger function: health and readiness of the module need no AWS code at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

HEAVY_MODULES = ("boto3", "botocore", "pynamodb", "aws_xray_sdk", "jwt", "requests", "flask")

CHILD = textwrap.dedent(
    """
    import io, json, sys
    from finfaas.platform import logging as finfaas_logging
    finfaas_logging.configure(stream=io.StringIO())
    from finfaas_dev.testing.platform import Event, load_function_handler

    handler = load_function_handler("ledger")
    result = handler.handle(Event("GET", "/_/health"), None)
    heavy = sorted(m for m in sys.argv[1].split(",") if m in sys.modules)
    print(json.dumps({"status": result["statusCode"], "heavy": heavy}))
    """
)


def test_health_imports_no_aws_sdk_and_builds_no_service():
    child = subprocess.run([sys.executable, "-c", CHILD, ",".join(HEAVY_MODULES)],
                           env={**os.environ, "AWS_XRAY_SDK_ENABLED": "false"}, capture_output=True,
                           text=True, timeout=60)

    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout.strip().splitlines()[-1]) == {"status": 200, "heavy": []}
