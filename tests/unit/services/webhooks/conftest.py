"""Fixtures shared by the webhooks tests that go through the function's entry point."""

from __future__ import annotations

import pytest
from finfaas_dev.testing.platform import TokenMinter


@pytest.fixture(scope="module")
def tokens() -> TokenMinter:
    """The issuer whose tokens the webhooks function under test trusts."""
    return TokenMinter.generate()
