"""The loans function as a process behind the local gateway, with auth, the ledger, risk and the sandbox
bureau: an operator creates a product, a customer quotes it and applies; the application is underwritten
with the loans function's own client credentials (the loans-client secret and its auth-clients entry) by
the risk function and the bureau, as in a deployed suite."""

from __future__ import annotations

import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from finfaas.domain.ledger import NewAccount
from finfaas.platform import config
from finfaas.platform.keys import SERVICE_CLIENTS, ensure_service_clients, load_keyring
from finfaas.services.bureau.model import sandbox_report
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas_dev.bench.transfers import FUNCTIONS_DIR, _request, client_token, write_suite_secrets
from finfaas_dev.net import free_port
from finfaas_dev.testing.platform import TokenMinter
from support.gateway_harness import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

FUNCTIONS = ("auth", "bureau", "ledger", "loans", "risk")
TOKEN_SECONDS = 600
CANDIDATES_MAX = 200  # customer ids tried for a clean (or a poor) bureau file: one in ten is poor


def stack_text() -> str:
    lines = ["version: 1.0", "provider:", "  name: openfaas", "  gateway: http://127.0.0.1:8080",
             "functions:"]
    for name in FUNCTIONS:
        lines += [f"  {name}:", "    lang: python3-http", f"    handler: {FUNCTIONS_DIR / name}",
                  f"    image: test/{name}", "    environment:", '      exec_timeout: "30s"']
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def suite(embedded_aws, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loans-e2e")
    secrets_dir = Path(os.environ["FINFAAS_SECRETS_DIR"])
    write_suite_secrets(secrets_dir)
    ensure_service_clients(secrets_dir, {"loans": SERVICE_CLIENTS["loans"]}, out=lambda line: None)
    (folder / "stack.yml").write_text(stack_text())
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**embedded_aws.env(), "FINFAAS_GATEWAY_URL": base_url,
           "FINFAAS_JWKS_URL": f"{base_url}/function/auth/.well-known/jwks.json"}
    gateway = GatewayProcess(folder, ["--logs-dir", str(folder / "functions")], env=env,
                             stack=folder / "stack.yml", port=port)
    try:
        yield base_url
    finally:
        gateway.stop()


def customer(poor: bool) -> tuple[str, str, str]:
    """A customer whose sandbox bureau file is clean (or poor), its USD wallet and its token."""
    for _ in range(CANDIDATES_MAX):
        customer_id = f"cust-{secrets.token_hex(4)}"
        if (sandbox_report(customer_id).delinquencies > 0) == poor:
            break
    account_id = f"acc-{secrets.token_hex(6)}"
    ledger_store_from_config().open_account(NewAccount(account_id, customer_id, "USD"), datetime.now(UTC))
    settings = config.auth_settings()
    minter = TokenMinter(load_keyring(), settings.issuer, settings.audience)
    claims = minter.claims(customer_id, ("loans:read", "loans:write"), "customer")
    return customer_id, account_id, minter.sign({**claims, "exp": int(time.time()) + TOKEN_SECONDS})


def test_a_product_is_quoted_and_applications_are_underwritten_by_risk_and_the_bureau(suite):
    # GIVEN an operator's product (Fineract's 12 %, 30/360 example) and two customers' wallets
    operator = client_token("ops", "ops:act")
    product_id = f"personal-{secrets.token_hex(4)}"
    product = {"product_id": product_id, "name": "Personal loan", "currency": "USD",
               "principal_minor_min": 10_000, "principal_minor_max": 5_000_000, "term_months_min": 3,
               "term_months_max": 60, "annual_rate": "0.12"}
    status, created = _request("POST", f"{suite}/function/loans/_/ops/loan-products", operator, product,
                               {"Idempotency-Key": secrets.token_hex(8)})
    assert status == 201, created
    clean_id, clean_account, clean = customer(poor=False)
    _, poor_account, poor = customer(poor=True)
    loans = f"{suite}/function/loans/loans"

    # WHEN the clean customer quotes 100.00 over 6 months
    status, quote = _request("POST", f"{loans}/quotes", clean,
                             {"product_id": product_id, "principal": "100.00", "term_months": 6})

    # THEN the schedule is Fineract's: 17.25 five times, then 17.28
    assert status == 200, quote
    assert [i["total_minor"] for i in quote["installments"]] == [1725] * 5 + [1728]

    # WHEN both apply for 1,000.00 over 6 months against 3,000.00 of monthly income
    application = {"product_id": product_id, "principal": "1000.00", "term_months": 6,
                   "monthly_income": "3000.00", "monthly_debt": "200.00"}
    status, approved = _request("POST", loans, clean, {**application, "account_id": clean_account},
                                {"Idempotency-Key": "apply-1"})
    status_poor, declined = _request("POST", loans, poor, {**application, "account_id": poor_account},
                                     {"Idempotency-Key": "apply-1"})

    # THEN the clean file is approved with every rule passing (risk and the bureau were asked), the
    # poor one declined by the bureau's rules, and each reads back for its owner only
    assert status == 201, approved
    assert (approved["status"], approved["decision"]["rules_fired"]) == ("approved", [])
    rules = {f["rule"] for f in approved["decision"]["findings"]}
    assert {"blocked_party", "velocity_count", "bureau_score", "income"} <= rules
    assert status_poor == 201 and declined["status"] == "declined", declined
    assert "bureau_delinquencies" in declined["decision"]["rules_fired"]
    status, read = _request("GET", f"{loans}/{approved['loan_id']}", clean)
    assert status == 200 and read == approved
    status, hidden = _request("GET", f"{loans}/{approved['loan_id']}", poor)
    assert status == 404, hidden
    assert read["owner_id"] == clean_id
