"""Cold start of the ledger function: health and readiness of the module need no AWS code at import."""

from __future__ import annotations

from support.cold_start import cold_health_probe

HEAVY_MODULES = ("boto3", "botocore", "pynamodb", "aws_xray_sdk", "jwt", "requests", "flask")

def test_health_imports_no_aws_sdk_and_builds_no_service():
    report = cold_health_probe("ledger", HEAVY_MODULES)

    assert (report["status"], report["heavy"]) == (200, [])
