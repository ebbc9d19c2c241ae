"""Test-wide environment and the embedded AWS fixture.

At import, before any test module: two free loopback ports become the DynamoDB Local and moto
endpoints, with a fresh stage, test credentials and a private secrets folder, so modules that
read settings at import see the test values. The emulators themselves start only when a test
asks for `embedded_aws`; every pytest process (and every xdist worker) gets its own.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from finfaas_dev.net import free_port
from hypothesis import settings

if TYPE_CHECKING:
    from finfaas_dev.emulators import EmbeddedAWS

LOOPBACK_HOST = "127.0.0.1"
PORT_PICK_ATTEMPTS_MAX = 3
TEST_STAGE = f"t{secrets.token_hex(4)}"

# Property tests assert behaviour, not speed: on a loaded 2-core machine one example can take longer
# than hypothesis' default 200 ms deadline, which would fail a correct test by timing alone.
settings.register_profile("finfaas", deadline=None)
settings.load_profile("finfaas")


def _endpoint_env(dynamodb_port: int, moto_port: int) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": f"http://{LOOPBACK_HOST}:{dynamodb_port}",
        "AWS_ENDPOINT_URL": f"http://{LOOPBACK_HOST}:{moto_port}",
    }


def _isolate_environment() -> None:
    secrets_dir = tempfile.mkdtemp(prefix="finfaas-test-secrets-")
    atexit.register(shutil.rmtree, secrets_dir, ignore_errors=True)
    # A developer's own AWS settings must never reach a test: no profile, no config file,
    # no other per-service endpoint, no instance metadata lookups.
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL_") or name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            del os.environ[name]
    os.environ.update(_endpoint_env(free_port(), free_port()))
    os.environ.update({
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_CONFIG_FILE": os.path.join(secrets_dir, "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(secrets_dir, "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "FINFAAS_STAGE": TEST_STAGE,
        "FINFAAS_SECRETS_DIR": secrets_dir,
        "AWS_XRAY_SDK_ENABLED": "false",
    })
    # Functions wired as in production read their cursor key from the secrets folder.
    from finfaas.platform.cursors import CURSOR_KEY_SECRET_NAME
    from finfaas.platform.mac_keys import new_mac_key_text

    with open(os.path.join(secrets_dir, CURSOR_KEY_SECRET_NAME), "w") as handle:
        handle.write(new_mac_key_text() + "\n")


_isolate_environment()


@dataclass
class EmbeddedAWSSession:
    """What `embedded_aws` yields: the running emulators and the deployed template's outputs."""

    aws: EmbeddedAWS
    stage: str
    outputs: dict[str, str] = field(default_factory=dict)
    start_s: float = 0.0
    deploy_s: float = 0.0

    def env(self) -> dict[str, str]:
        """The variables a child process needs to reach these emulators under this stage."""
        return {**self.aws.env(), "FINFAAS_STAGE": self.stage}


def _endpoint_port(variable: str) -> int:
    return int(os.environ[variable].rsplit(":", 1)[1])


def _start_emulators():
    """Start on the ports chosen at import; if another process took one meanwhile, pick again."""
    from finfaas_dev.emulators import EmbeddedAWS, EmulatorError
    from finfaas_dev.tools import ensure_dynamodb_local

    ensure_dynamodb_local()  # quick when present; lets a bare `pytest` work on a fresh clone
    for attempt in range(PORT_PICK_ATTEMPTS_MAX):
        aws = EmbeddedAWS(
            dynamodb_port=_endpoint_port("AWS_ENDPOINT_URL_DYNAMODB"),
            moto_port=_endpoint_port("AWS_ENDPOINT_URL"),
        )
        try:
            aws.start()
            return aws
        except EmulatorError as error:
            if "already in use" not in str(error) or attempt == PORT_PICK_ATTEMPTS_MAX - 1:
                raise
            os.environ.update(_endpoint_env(free_port(), free_port()))
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def embedded_aws():
    """DynamoDB Local + moto on this session's ports, with infra/template.yaml deployed."""
    from finfaas_dev.infra import deploy

    started = time.monotonic()
    aws = _start_emulators()
    try:
        start_s = time.monotonic() - started
        started = time.monotonic()
        outputs = deploy(TEST_STAGE, "embedded")
        session = EmbeddedAWSSession(aws=aws, stage=TEST_STAGE, outputs=outputs,
                                     start_s=start_s, deploy_s=time.monotonic() - started)
        yield session
    finally:
        aws.stop()


@pytest.fixture(scope="module")
def minter():
    """A token issuer of the test module's own (RS256 key, issuer, audience): functions under test are
    made to trust it, and tests sign their callers' tokens with it."""
    from finfaas_dev.testing.platform import TokenMinter

    return TokenMinter.generate()


# The team's public schemas (Knative, OpenFaaS, KEDA, CloudEvents) beside the checkout: tests that
# validate manifests and events against them skip where a developer's checkout lacks the folder, but
# CI (CI=true) always has it, so there its absence is an error rather than a silent skip.
SHARED_SCHEMAS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "schemas"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI", "").lower() == "true" and not SHARED_SCHEMAS_DIR.is_dir():
        raise pytest.UsageError(f"{SHARED_SCHEMAS_DIR} is missing: CI validates against those schemas")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    emulator = pytest.mark.emulator
    for item in items:
        if "embedded_aws" in getattr(item, "fixturenames", ()):
            item.add_marker(emulator)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"finfaas: stage {TEST_STAGE}, DynamoDB {os.environ['AWS_ENDPOINT_URL_DYNAMODB']}, "
            f"moto {os.environ['AWS_ENDPOINT_URL']}"]
