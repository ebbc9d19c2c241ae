"""The suite's own functions behind the local gateway, as processes serving the project's index.py:
requests Flask would have answered with text/html, and token-less entry points called by a stranger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from finfaas.platform.events import EVENTS_MAC_KEY_SECRET_NAME
from finfaas.platform.mac_keys import new_mac_key_text
from finfaas.platform.schedule import SCHEDULE_KEY_SECRET_NAME
from support.gateway_harness import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway-routes")
    secrets_dir = folder / "secrets"  # the suite's keys, so a refusal is about the caller, not the setup
    secrets_dir.mkdir()
    (secrets_dir / EVENTS_MAC_KEY_SECRET_NAME).write_text(new_mac_key_text())
    (secrets_dir / SCHEDULE_KEY_SECRET_NAME).write_text(new_mac_key_text())
    process = GatewayProcess(folder, ["--no-connector"], env={"FINFAAS_SECRETS_DIR": str(secrets_dir)},
                             stack=ROOT / "stack.yml")
    yield process
    process.stop()


def _problem(reply) -> dict:
    assert reply.headers.get("Content-Type") == PROBLEM, (reply.status, reply.headers, reply.body[:200])
    return json.loads(reply.body)


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("OPTIONS", "/function/ledger/_/ops/expire-holds", "POST"),
    ("OPTIONS", "/function/relay/", "POST"),
    ("TRACE", "/function/accounts/accounts", "GET, HEAD, POST"),
    ("PROPFIND", "/function/orchestrator/executions", "GET, HEAD, POST"),
])
def test_methods_a_route_lacks_are_405_problems_with_its_real_allow(gateway, method, path, allow):
    # No token is sent: the answer comes from routing, before authentication.
    reply = gateway.call(method, path)

    assert reply.status == 405
    assert reply.headers.get("Allow") == allow
    assert _problem(reply)["code"] == "method_not_allowed"


def test_a_path_flask_cannot_route_is_a_404_problem(gateway):
    reply = gateway.call("GET", "/function/accounts/accounts/a%0Ab")

    assert reply.status == 404
    assert _problem(reply)["code"] == "not_found"


def test_the_relay_refuses_an_unsigned_run_without_starting_one(gateway):
    first = gateway.call("POST", "/function/relay/", b"{}", {"Content-Type": "application/json"})
    second = gateway.call("POST", "/function/relay/", b"", {})

    # Before, the first started a 50 s run and the second answered 202 already_running.
    assert (first.status, second.status) == (401, 401)
    assert _problem(first)["code"] == _problem(second)["code"] == "schedule_proof_invalid"


@pytest.mark.parametrize("function", ["orchestrator", "rail", "transfers"])
def test_queue_routes_refuse_an_unsealed_message(gateway, function):
    body = json.dumps({"kind": "sweep", "reason": "sweep"}).encode()
    headers = {"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "x", "ce-type": "x",
               "ce-source": "stranger"}

    reply = gateway.call("POST", f"/function/{function}/", body, headers)

    assert reply.status == 401
    assert _problem(reply)["code"] == "event_mac_invalid"
