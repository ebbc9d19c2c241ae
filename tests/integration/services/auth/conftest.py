"""The auth function on the embedded emulators, with its real customer stores and rate-limit table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_client(embedded_aws) -> tuple[str, str]:
    """(client_id, client_secret) of the demo client in this session's secrets folder."""
    from finfaas.platform.keys import DEMO_CREDENTIALS_FILE, write_dev_secrets

    folder = Path(os.environ["FINFAAS_SECRETS_DIR"])
    write_dev_secrets(folder, out=lambda _: None)
    credentials = json.loads((folder / DEMO_CREDENTIALS_FILE).read_text())
    return credentials["client_id"], credentials["client_secret"]


@pytest.fixture(scope="session")
def auth_function(embedded_aws, demo_client):
    """The auth handler wired as in production; argon2 runs with cheap parameters to keep tests fast."""
    from argon2 import PasswordHasher
    from finfaas.platform import config
    from finfaas_dev.testing.platform import load_function_handler

    config.settings.cache_clear()
    handler = load_function_handler("auth")
    handler.customer_auth.use(
        handler.build_customer_auth(hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)))
    return handler
