"""The wallet sagas with every part as a process: gateway, queue connector, orchestrator, wallet, ledger,
rail and auth, on the embedded emulators. A customer tops up from a bank account (credited once the rail's
signed notice confirms the collection), sees the balance, withdraws (held at once, posted when the payout
settles), and the ledger check passes. A merchant's refund to a bank account (payments) rides the same
saga machinery."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

import pytest
from finfaas.domain.ledger import NewAccount
from finfaas.platform import config
from finfaas.platform.keys import load_keyring
from finfaas.services.ledger.service import LedgerService
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas_dev.bench.suite import FUNCTIONS_DIR
from finfaas_dev.bench.transfers import _request, client_token, stack_text
from finfaas_dev.net import wait_for
from finfaas_dev.testing.platform import TokenMinter
from support.gateway_harness import http, suite_gateway
from support.ledger_testing import finfaas_ledger_check

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SAGA_SECONDS_MAX = 60
WARM_SECONDS_MAX = 60
# Started before the test, so its first request does not wait on a chain of cold starts (wallet, then
# auth for the wallet's token, then the orchestrator) on a busy machine.
WARMED = ("auth", "wallet", "orchestrator", "rail", "ledger")
TOKEN_SECONDS = 600
WALLET_STACK_ENTRY = f"""  wallet:
    lang: python3-http
    handler: {FUNCTIONS_DIR / "wallet"}
    image: bench/wallet
    environment:
      exec_timeout: "30s"
"""
# Payments too, for its refunds through the rail (the same saga machinery as the wallet's).
PAYMENTS_STACK_ENTRY = f"""  payments:
    lang: python3-http
    handler: {FUNCTIONS_DIR / "payments"}
    image: bench/payments
    environment:
      exec_timeout: "30s"
"""
BANK = {"bank_code": "SANDUS00", "account_number": "000123456789", "name": "Ada Lovelace"}


@pytest.fixture(scope="module")
def suite(embedded_aws, tmp_path_factory):
    # The production scopes of the wallet's own client and of the orchestrator that runs its sagas.
    with suite_gateway(tmp_path_factory.mktemp("wallet-e2e"),
                       stack_text() + WALLET_STACK_ENTRY + PAYMENTS_STACK_ENTRY,
                       {**embedded_aws.env(), "RAIL_SANDBOX_SETTLE_SECONDS": "1"},
                       service_clients=("orchestrator", "wallet", "payments")) as base_url:
        for name in WARMED:
            wait_for(lambda name=name: _ready(f"{base_url}/function/{name}/_/ready"), WARM_SECONDS_MAX,
                     f"{name} to be ready")
        yield base_url


def _ready(url: str) -> bool:
    try:
        return http("GET", url, timeout=30).status == 200
    except OSError:
        return False


def customer() -> tuple[str, str]:
    """A customer's empty USD account on the ledger and the customer's token (payments scopes)."""
    LedgerService(ledger_store_from_config()).ensure_system_accounts("USD")
    customer_id, account_id = f"cust-{secrets.token_hex(4)}", f"acc-{secrets.token_hex(6)}"
    ledger_store_from_config().open_account(NewAccount(account_id, customer_id, "USD"), datetime.now(UTC))
    settings = config.auth_settings()
    minter = TokenMinter(load_keyring(), settings.issuer, settings.audience)
    claims = minter.claims(customer_id, ("payments:read", "payments:write"), "customer")
    return account_id, minter.sign({**claims, "exp": int(time.time()) + TOKEN_SECONDS})


def balance(account_id: str) -> tuple[int, int]:
    """(balance, held) of the account, as the ledger has them."""
    account = LedgerService(ledger_store_from_config()).get_account(account_id)
    return account.balance_minor, account.debits_pending


def final(url: str, token: str) -> dict:
    def settled() -> dict | None:
        status, view = _request("GET", url, token)
        assert status == 200, view
        return view if view["status"] != "pending" else None

    return wait_for(settled, SAGA_SECONDS_MAX, f"{url} to settle")


def test_a_customer_tops_up_sees_the_balance_withdraws_and_sees_it_settle(suite, embedded_aws):
    account_id, ada = customer()
    _, other = customer()
    wallet = f"{suite}/function/wallet"
    move = {"account_id": account_id, "currency": "USD", "bank_account": BANK}

    # WHEN ada tops up 100.00 from her bank account
    status, topup = _request("POST", f"{wallet}/topups", ada, {**move, "amount": "100.00"},
                             {"Idempotency-Key": "topup-1"})
    assert status == 201 and topup["status"] == "pending", topup
    assert topup["bank_account"] == {"bank_code": "SANDUS00", "account_number_masked": "****6789"}

    # THEN it is credited once the rail confirms, and she sees the balance
    done = final(f"{wallet}/topups/{topup['id']}", ada)
    assert done["status"] == "succeeded", done
    assert balance(account_id) == (10_000, 0)
    assert _request("GET", f"{wallet}/topups/{topup['id']}", other)[0] == 404  # another customer's

    # WHEN she withdraws 40.00: held at once
    status, withdrawal = _request("POST", f"{wallet}/withdrawals", ada, {**move, "amount": 4_000},
                                  {"Idempotency-Key": "withdrawal-1"})
    assert status == 201 and withdrawal["status"] == "pending", withdrawal
    assert balance(account_id)[1] in (4_000, 0)  # held, unless the payout already settled

    # THEN the payout settles and the hold is posted
    done = final(f"{wallet}/withdrawals/{withdrawal['id']}", ada)
    assert done["status"] == "succeeded", done
    assert done["ledger_transfer_ids"] == [f"{withdrawal['id']}-hold", f"{withdrawal['id']}-post"]
    assert balance(account_id) == (6_000, 0)

    # AND more than is left is refused naming amount, with nothing held
    status, problem = _request("POST", f"{wallet}/withdrawals", ada, {**move, "amount": 6_001},
                               {"Idempotency-Key": "withdrawal-2"})
    assert status == 422 and '"amount"' in problem, problem
    assert balance(account_id) == (6_000, 0)
    status, listed = _request("GET", f"{wallet}/withdrawals", ada)
    assert status == 200 and [w["id"] for w in listed["data"]] == [withdrawal["id"]]

    result = finfaas_ledger_check(embedded_aws.env())
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_merchant_refunds_a_payment_to_the_customers_bank_through_the_rail(suite, embedded_aws):
    # GIVEN a merchant, and ada paying it 50.00 from a funded account (automatic capture)
    account_id, ada = customer()
    ledger = LedgerService(ledger_store_from_config())
    ledger.deposit(account_id, 5_000, "USD", transfer_id=f"{account_id}-in")
    merchant = f"m-{secrets.token_hex(6)}"
    operator = client_token("ops", "ops:act")
    status, body = _request("POST", f"{suite}/function/payments/_/ops/merchants", operator, {
        "merchant_id": merchant, "name": "Corner Books", "currency": "USD",
        "settlement_account": {**BANK, "name": "CB LLC"}, "fee_schedule": {"bps": 300}},
        {"Idempotency-Key": secrets.token_hex(8)})
    assert status == 201, body
    intents = f"{suite}/function/payments/payment_intents"
    status, intent = _request("POST", intents, ada, {
        "amount": "50.00", "currency": "USD", "customer_account_id": account_id, "merchant_id": merchant,
        "capture_method": "automatic"}, {"Idempotency-Key": secrets.token_hex(8)})
    assert status == 201, intent
    status, paid = _request("POST", f"{intents}/{intent['id']}/confirm", ada, None,
                            {"Idempotency-Key": secrets.token_hex(8)})
    assert status == 200 and paid["status"] == "succeeded", paid

    # WHEN 20.00 is refunded to ada's bank account: pending, its saga on the orchestrator
    status, refund = _request("POST", f"{intents}/{intent['id']}/refunds", ada,
                              {"refund_number": "r-1", "amount": 2_000, "bank_account": BANK},
                              {"Idempotency-Key": secrets.token_hex(8)})
    assert status == 201 and refund["status"] == "pending", refund

    # THEN the rail pays it out and the refund succeeds; ada's account is not credited, the books balance
    def refunded() -> dict | None:
        status, view = _request("GET", f"{intents}/{intent['id']}", ada)
        assert status == 200, view
        return view if view["refunds"][0]["status"] != "pending" else None

    done = wait_for(refunded, SAGA_SECONDS_MAX, "the rail refund to settle")
    assert (done["refunds"][0]["status"], done["amount_refunded"]) == ("succeeded", 2_000), done
    assert balance(account_id) == (0, 0)
    result = finfaas_ledger_check(embedded_aws.env())
    assert result.returncode == 0, result.stdout + result.stderr
