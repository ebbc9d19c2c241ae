"""The business date through the gateway (ledger function): show, advance, refused backwards, refused in
clock mode, and the `finfaas business-date` command against it."""

from __future__ import annotations

import argparse
import json
import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from finfaas_dev import business_date as business_date_cli
from finfaas_dev.bench.transfers import write_suite_secrets
from finfaas_dev.testing.platform import loopback_http_server
from support.gateway_harness import GatewayProcess, http
from support.http_testing import json_document_handler

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
REQUEST_TIMEOUT_SECONDS = 15.0
PATH = "/_/ops/business-date"


def stack_text() -> str:
    """The ledger function twice: as a sandbox stage runs it (manual) and as production does (clock)."""
    handler_dir = REPOSITORY_ROOT / "functions" / "ledger"
    functions = ""
    for name, mode in (("ledger", "manual"), ("ledgerclock", "clock")):
        functions += (f"  {name}:\n    lang: python3-http\n    handler: {handler_dir}\n"
                      f"    image: finfaas/ledger:test\n    environment:\n      exec_timeout: 15s\n"
                      f"      BUSINESS_DATE_MODE: {mode}\n")
    return ("version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://127.0.0.1:8080\nfunctions:\n"
            + functions)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, embedded_aws, minter):
    folder = tmp_path_factory.mktemp("business-date-gateway")
    stack = folder / "stack.yml"
    stack.write_text(stack_text())
    # The suite's secrets, as a deployed stage has them: the ledger signs its audit records with the audit
    # key, and later modules verify the stage's audit log with it.
    write_suite_secrets(Path(os.environ["FINFAAS_SECRETS_DIR"]))
    with loopback_http_server(json_document_handler(minter.keyring.jwks())) as jwks_url:
        env = {**embedded_aws.env(), "FINFAAS_JWKS_URL": f"{jwks_url}/jwks.json"}
        process = GatewayProcess(folder, ["--no-connector"], env=env, stack=stack)
        try:
            yield process
        finally:
            process.stop()


@pytest.fixture(scope="module")
def ops(minter) -> str:
    return minter.mint(sub="ops-e2e", scopes=("ops", "ops:act"), kind="client")


def show(gateway, token: str, function: str = "ledger"):
    return http("GET", f"{gateway.url}/function/{function}{PATH}?market=CN", None,
                {"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT_SECONDS)


def advance(gateway, token: str, body: dict, key: str, function: str = "ledger"):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": key}
    return http("POST", f"{gateway.url}/function/{function}{PATH}", json.dumps(body).encode(), headers,
                timeout=REQUEST_TIMEOUT_SECONDS)


def test_an_operator_moves_the_business_date_forward_only(gateway, ops, minter):
    # GIVEN the sandbox's business date
    shown = show(gateway, ops)
    assert shown.status == 200, shown.body
    start = date.fromisoformat(shown.json()["business_date"])
    assert shown.json()["mode"] == "manual" and shown.json()["time_zone"] == "Asia/Shanghai"

    # WHEN the operator advances it by three days, and retries with the same key
    moved = advance(gateway, ops, {"days": 3}, "bd-e2e-1")
    replay = advance(gateway, ops, {"days": 3}, "bd-e2e-1")

    # THEN it moved three days once, and every reader sees it
    assert moved.status == 200, moved.body
    assert moved.json()["business_date"] == (start + timedelta(days=3)).isoformat()
    assert replay.status == 200 and replay.headers.get("Idempotency-Replayed") == "true"
    assert show(gateway, ops).json()["business_date"] == (start + timedelta(days=3)).isoformat()

    # AND a date not after it is refused naming `to`, with nothing written
    back = advance(gateway, ops, {"to": start.isoformat()}, "bd-e2e-2")
    assert back.status == 422, back.body
    problem = back.json()
    assert problem["code"] == "invalid_advance"
    assert [e["field"] for e in problem["errors"]] == ["to"]
    assert show(gateway, ops).json()["business_date"] == (start + timedelta(days=3)).isoformat()

    # AND an advance without a key, or by a token without the ops scope, is refused
    unkeyed = http("POST", f"{gateway.url}/function/ledger{PATH}", b'{"days": 1}',
                   {"Authorization": f"Bearer {ops}", "Content-Type": "application/json"})
    assert (unkeyed.status, unkeyed.json()["code"]) == (400, "idempotency_key_missing")
    app = minter.mint(sub="svc-e2e", scopes=("ledger:write", "ledger:read"), kind="client")
    assert advance(gateway, app, {"days": 1}, "bd-e2e-3").status == 403
    assert show(gateway, ops).json()["business_date"] == (start + timedelta(days=3)).isoformat()


def test_in_clock_mode_the_date_is_shown_and_an_advance_is_refused(gateway, ops):
    shown = show(gateway, ops, "ledgerclock")
    assert shown.status == 200, shown.body
    assert shown.json()["mode"] == "clock"
    refused = advance(gateway, ops, {"days": 1}, "bd-e2e-clock", "ledgerclock")
    assert refused.status == 409, refused.body
    assert refused.json()["code"] == "business_date_follows_clock"
    assert show(gateway, ops, "ledgerclock").json()["business_date"] == shown.json()["business_date"]


def test_the_command_line_shows_and_advances_through_the_gateway(gateway, ops, capsys):
    def run(*words: str) -> int:
        parser = argparse.ArgumentParser()
        business_date_cli.add_arguments(parser)
        args = parser.parse_args([*words, "--gateway", gateway.url, "--token", ops])
        return business_date_cli.run(args)

    assert run("show", "--json") == 0
    before = date.fromisoformat(json.loads(capsys.readouterr().out)["business_date"])
    assert run("advance", "--to", (before + timedelta(days=2)).isoformat()) == 0
    assert capsys.readouterr().out.startswith(f"CN {(before + timedelta(days=2)).isoformat()} (manual")
    assert run("advance", "--to", before.isoformat()) == business_date_cli.EXIT_REFUSED
    assert "invalid_advance" in capsys.readouterr().err
