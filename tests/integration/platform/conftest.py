"""Platform stores against the embedded emulators; the store contracts live next to the fakes' tests."""

from __future__ import annotations

import pytest

PLATFORM_TABLES = ("idempotency", "ratelimits", "audit")


@pytest.fixture(scope="session")
def table_names(embedded_aws) -> dict[str, str]:
    """Physical names of the platform tables deployed by infra/template.yaml for this session."""
    return {logical: f"finfaas-{embedded_aws.stage}-{logical}" for logical in PLATFORM_TABLES}
