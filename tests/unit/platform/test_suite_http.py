"""Calls between suite functions go straight to the gateway whatever proxy the environment names."""

from __future__ import annotations

import pytest
from finfaas.platform.suite_http import new_suite_session
from finfaas_dev.testing.platform import loopback_http_server
from support.http_testing import json_document_handler

DEAD_PROXY = "http://127.0.0.1:9"  # discard port: nothing answers there


@pytest.fixture
def gateway():
    with loopback_http_server(json_document_handler({"ok": True})) as url:
        yield url


def test_a_proxy_in_the_environment_does_not_reroute_suite_calls(gateway, monkeypatch):
    # GIVEN an environment whose proxy settings point at a dead proxy
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, DEAD_PROXY)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    # WHEN a suite session calls the gateway
    reply = new_suite_session().get(gateway + "/healthz", timeout=5)

    # THEN the call went straight there
    assert reply.status_code == 200
    assert reply.json() == {"ok": True}
