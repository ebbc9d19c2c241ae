"""The payments function as a process behind the local gateway, with auth and the ledger: onboarding a
merchant opens its accounts through the ledger function with the payments function's own client
credentials (the payments-client secret and its auth-clients entry), as in a deployed suite."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from finfaas.platform.keys import SERVICE_CLIENTS, ensure_service_clients
from finfaas_dev.bench.transfers import FUNCTIONS_DIR, _request, client_token, write_suite_secrets
from finfaas_dev.net import free_port, wait_for
from support.gateway_harness import http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

GATEWAY_READY_SECONDS_MAX = 30
STOP_SECONDS_MAX = 20
FUNCTIONS = ("auth", "ledger", "payments")


def stack_text() -> str:
    lines = ["version: 1.0", "provider:", "  name: openfaas", "  gateway: http://127.0.0.1:8080",
             "functions:"]
    for name in FUNCTIONS:
        lines += [f"  {name}:", "    lang: python3-http", f"    handler: {FUNCTIONS_DIR / name}",
                  f"    image: test/{name}", "    environment:", '      exec_timeout: "30s"']
    return "\n".join(lines) + "\n"


def _answers(url: str) -> bool:
    try:
        return http("GET", url, timeout=1).status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def suite(embedded_aws, tmp_path_factory):
    folder = tmp_path_factory.mktemp("payments-e2e")
    secrets_dir = Path(os.environ["FINFAAS_SECRETS_DIR"])
    write_suite_secrets(secrets_dir)
    ensure_service_clients(secrets_dir, {"payments": SERVICE_CLIENTS["payments"]}, out=lambda line: None)
    (folder / "stack.yml").write_text(stack_text())
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **embedded_aws.env(), "FINFAAS_GATEWAY_URL": base_url,
           "FINFAAS_JWKS_URL": f"{base_url}/function/auth/.well-known/jwks.json"}
    log = (folder / "gateway.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "finfaas_dev.gateway", "--stack", str(folder / "stack.yml"),
         "--port", str(port), "--logs-dir", str(folder / "functions")],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: _answers(base_url + "/healthz"), GATEWAY_READY_SECONDS_MAX, "the gateway")
        yield base_url
    finally:
        process.terminate()
        process.wait(STOP_SECONDS_MAX)
        log.close()


def test_an_operator_onboards_a_merchant_whose_accounts_the_ledger_then_holds(suite):
    operator = client_token("ops")
    merchant_id = f"m-{secrets.token_hex(6)}"
    body = {"merchant_id": merchant_id, "name": "Corner Books", "currency": "USD",
            "settlement_account": {"bank_code": "SANDUS00", "account_number": "000123456789",
                                   "name": "CB LLC"},
            "fee_schedule": {"bps": 290, "fixed_minor": 30, "rounding": "half_up"}, "reserve_bps": 1000}

    status, merchant = _request("POST", f"{suite}/function/payments/_/ops/merchants", operator, body,
                                {"Idempotency-Key": secrets.token_hex(8)})

    assert status == 201, merchant
    accounts = merchant["ledger_accounts"]
    assert len(accounts["receivables"]) == 8
    for account_id in [*accounts["receivables"], accounts["reserve"], accounts["fees_payable"]]:
        status, balance = _request("GET", f"{suite}/function/ledger/accounts/{account_id}/balance", operator)
        assert status == 200, balance
        assert (balance["kind"], balance["currency"], balance["posted_minor"]) == ("MERCHANT", "USD", 0)
    status, read = _request("GET", f"{suite}/function/payments/_/ops/merchants/{merchant_id}", operator)
    assert status == 200 and read == merchant
