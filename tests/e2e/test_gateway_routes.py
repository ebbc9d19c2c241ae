"""The suite's own functions behind the local gateway, as processes serving the project's index.py:
requests Flask would have answered with text/html, and token-less entry points called by a stranger."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from finfaas.platform.events import EVENTS_MAC_KEY_SECRET_NAME
from finfaas.platform.mac_keys import new_mac_key_text
from finfaas.platform.schedule import SCHEDULE_HEADER, SCHEDULE_KEY_SECRET_NAME, period_start
from support.gateway_harness import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"
PING_TYPE = "dev.knative.sources.ping"
HOLD_EXPIRY_PERIOD_SECONDS = 60  # the ledger's schedule in stack.yml


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, embedded_aws):
    folder = tmp_path_factory.mktemp("gateway-routes")
    secrets_dir = folder / "secrets"  # the suite's keys, so a refusal is about the caller, not the setup
    secrets_dir.mkdir()
    (secrets_dir / EVENTS_MAC_KEY_SECRET_NAME).write_text(new_mac_key_text())
    (secrets_dir / SCHEDULE_KEY_SECRET_NAME).write_text(new_mac_key_text())
    env = {**embedded_aws.env(), "FINFAAS_SECRETS_DIR": str(secrets_dir)}  # scheduled routes claim there
    process = GatewayProcess(folder, ["--no-connector"], env=env, stack=ROOT / "stack.yml")
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


def test_the_relay_refuses_a_forged_tick_without_starting_a_run(gateway):
    first = gateway.call("POST", "/function/relay/", b"{}", {"Content-Type": "application/json",
                                                             SCHEDULE_HEADER: "t=1,v1=forged"})
    second = gateway.call("POST", "/function/relay/", b"", {SCHEDULE_HEADER: ""})

    # A run would have held the first for 50 s and answered the second 202 already_running.
    assert (first.status, second.status) == (401, 401)
    assert _problem(first)["code"] == _problem(second)["code"] == "schedule_proof_invalid"


def test_a_stranger_s_unsigned_ticks_run_the_hold_expiry_at_most_once_a_minute(gateway):
    # GIVEN a caller with no token and no key, posting to the ledger's scheduled route as the
    # cron-connector does, twice, then as a PingSource does
    before = period_start(time.time(), HOLD_EXPIRY_PERIOD_SECONDS)
    replies = [gateway.call("POST", "/function/ledger/", b"", {}),
               gateway.call("POST", "/function/ledger/", b"{}", {"Content-Type": "application/json"}),
               gateway.call("POST", "/function/ledger/", b"", {"ce-specversion": "1.0", "ce-id": "p",
                                                               "ce-source": "ping", "ce-type": PING_TYPE})]
    after = period_start(time.time(), HOLD_EXPIRY_PERIOD_SECONDS)

    # THEN at most one ran in this minute (another test's tick may have run it first); the rest
    # answered 200 saying so, which a scheduler does not retry
    assert [reply.status for reply in replies] == [200, 200, 200]
    bodies = [json.loads(reply.body) for reply in replies]
    ran = [body for body in bodies if "transfers" in body]
    if before == after:
        assert len(ran) <= 1
        assert all(body == {"ran": False, "reason": "already_ran_this_period", "period_start": before}
                   for body in bodies if "transfers" not in body)


@pytest.mark.parametrize("function", ["orchestrator", "rail", "transfers"])
def test_queue_routes_refuse_an_unsealed_message(gateway, function):
    body = json.dumps({"kind": "sweep", "reason": "sweep"}).encode()
    headers = {"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "x", "ce-type": "x",
               "ce-source": "stranger"}

    reply = gateway.call("POST", f"/function/{function}/", body, headers)

    assert reply.status == 401
    assert _problem(reply)["code"] == "event_mac_invalid"
