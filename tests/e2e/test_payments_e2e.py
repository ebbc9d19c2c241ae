"""The payments function as a process behind the local gateway, with auth, the ledger and risk: onboarding
a merchant opens its accounts through the ledger function with the payments function's own client
credentials (the payments-client secret and its auth-clients entry), as in a deployed suite; a customer
pays the merchant, it is captured and refunded in part, disputed (lost), the merchant is settled with a
report that reconciles, and the ledger check passes."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas_dev.bench.suite import funded_customers
from finfaas_dev.bench.suite import stack_text as bench_stack_text
from finfaas_dev.bench.transfers import _request, client_token
from finfaas_dev.ledger_check import check_store
from support.gateway_harness import http, suite_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

FUNCTIONS = ("auth", "ledger", "payments", "risk")
SETTLEMENT_LAG_SECONDS = 1


def stack_text() -> str:
    # The settlement below runs seconds after the payments it settles.
    return bench_stack_text(FUNCTIONS, {"PAYMENTS_SETTLEMENT_LAG_SECONDS": str(SETTLEMENT_LAG_SECONDS)},
                            image_prefix="test")


@pytest.fixture(scope="module")
def suite(embedded_aws, tmp_path_factory):
    with suite_gateway(tmp_path_factory.mktemp("payments-e2e"), stack_text(), embedded_aws.env(),
                       service_clients=("payments",)) as base_url:
        yield base_url


def onboard(suite: str, operator: str) -> dict:
    merchant_id = f"m-{secrets.token_hex(6)}"
    body = {"merchant_id": merchant_id, "name": "Corner Books", "currency": "USD",
            "settlement_account": {"bank_code": "SANDUS00", "account_number": "000123456789",
                                   "name": "CB LLC"},
            "fee_schedule": {"bps": 300, "fixed_minor": 0, "rounding": "half_up"}}
    status, merchant = _request("POST", f"{suite}/function/payments/_/ops/merchants", operator, body,
                                {"Idempotency-Key": secrets.token_hex(8)})
    assert status == 201, merchant
    return merchant


def customer(funded_minor: int) -> tuple[str, str]:
    """A customer's funded USD account on the ledger and the customer's token (payments scopes)."""
    run = secrets.token_hex(4)
    [(_, account_id, token)] = funded_customers(1, f"cust-{run}-", f"acc-{run}-", "USD", funded_minor,
                                                ("payments:read", "payments:write"))
    return account_id, token


def test_a_customer_pays_a_merchant_captured_in_part_refunded_in_part_and_the_books_balance(suite):
    # GIVEN a merchant, and ada with 200.00
    merchant = onboard(suite, client_token("ops", "ops:act"))
    account_id, ada = customer(20_000)
    intents = f"{suite}/function/payments/payment_intents"

    # WHEN ada authorizes 100.00 and the shop captures 30.00, then 20.00 as the final capture
    status, intent = _request("POST", intents, ada, {
        "amount": "100.00", "currency": "USD", "customer_account_id": account_id,
        "merchant_id": merchant["merchant_id"], "capture_method": "manual"}, {"Idempotency-Key": "order-1"})
    assert status == 201, intent
    key = {"Idempotency-Key": secrets.token_hex(8)}
    status, confirmed = _request("POST", f"{intents}/{intent['id']}/confirm", ada, None, key)
    assert status == 200 and confirmed["status"] == "requires_capture", confirmed
    partial_key = {"Idempotency-Key": secrets.token_hex(8)}
    for _ in range(2):  # the partial capture sent twice under its key: captured once, answered the same
        status, partial = _request("POST", f"{intents}/{intent['id']}/capture", ada,
                                   {"amount_to_capture": 3_000, "final_capture": False}, partial_key)
        assert status == 200 and partial["amount_received"] == 3_000, partial
    status, final = _request("POST", f"{intents}/{intent['id']}/capture", ada, {"amount_to_capture": 2_000},
                             {"Idempotency-Key": secrets.token_hex(8)})

    assert status == 200, final
    # AND refunds 10.00 of it to ada's account (its number sent twice: once)
    refund = {"refund_number": "r-1", "amount": 1_000}
    for _ in range(2):
        status, refunded = _request("POST", f"{intents}/{intent['id']}/refunds", ada, refund,
                                    {"Idempotency-Key": secrets.token_hex(8)})
        assert status == 201 and refunded["amount"] == 1_000, refunded
    # AND pays 5.00 in one call (confirm=true, automatic capture), sent twice under its key: paid once
    for _ in range(2):
        status, paid = _request("POST", intents, ada, {
            "amount": "5.00", "currency": "USD", "customer_account_id": account_id,
            "merchant_id": merchant["merchant_id"], "confirm": True}, {"Idempotency-Key": "order-2"})
        assert status == 201 and (paid["status"], paid["amount_received"]) == ("succeeded", 500), paid

    # THEN 40.00 stays with the merchant, the rest is ada's again, and the ledger reconciles
    assert (final["status"], final["amount_received"], final["amount_capturable"]) == ("succeeded", 5_000, 0)
    assert final["application_fee_amount"] == 300
    status, read = _request("GET", f"{intents}/{intent['id']}", ada)
    assert status == 200 and (read["amount_refunded"], read["application_fee_refunded"]) == (1_000, 60)
    store = ledger_store_from_config()
    ada_account = store.get_account(account_id)
    assert (ada_account.balance_minor, ada_account.debits_pending) == (15_500, 0)
    received = sum(store.get_account(a).balance_minor for a in merchant["ledger_accounts"]["receivables"])
    assert received == 4_500
    report = check_store(store)
    assert report.clean, report.problems[:10]


def test_an_operator_onboards_a_merchant_whose_accounts_the_ledger_then_holds(suite):
    operator = client_token("ops", "ops:act")
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


def rail_notice(suite: str, body: dict) -> tuple[int, dict]:
    """The rail's signed dispute notice, as the rail function sends it (rail-notice-key)."""
    import json

    from finfaas.services.rail.service import NOTICE_KEY_SECRET_NAME
    from finfaas.services.webhooks.model import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

    key = (Path(os.environ["FINFAAS_SECRETS_DIR"]) / NOTICE_KEY_SECRET_NAME).read_text().strip()
    data = json.dumps(body).encode()
    notice_id, now = f"notice_{body['dispute_id']}_{body['kind']}", int(time.time())
    headers = {ID_HEADER: notice_id, TIMESTAMP_HEADER: str(now),
               SIGNATURE_HEADER: sign(key, notice_id, now, data), "Content-Type": "application/json"}
    reply = http("POST", f"{suite}/function/payments/rail/disputes", body=data, headers=headers)
    return reply.status, json.loads(reply.body or b"{}")


def test_partial_capture_partial_refund_a_lost_dispute_and_a_settlement_that_reconciles(suite):
    # GIVEN a merchant (3 % fee), and bob with 200.00 who pays 50.00 of a 100.00 authorization in two captures
    operator = client_token("ops", "ops:act")
    merchant = onboard(suite, operator)
    account_id, bob = customer(20_000)
    intents = f"{suite}/function/payments/payment_intents"

    def post(path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
        return _request("POST", path, token, body, {"Idempotency-Key": secrets.token_hex(8)})

    status, intent = post(intents, bob, {"amount": "100.00", "currency": "USD", "capture_method": "manual",
                                         "customer_account_id": account_id,
                                         "merchant_id": merchant["merchant_id"]})
    assert status == 201, intent
    payment = f"{intents}/{intent['id']}"
    assert post(f"{payment}/confirm", bob)[0] == 200
    assert post(f"{payment}/capture", bob, {"amount_to_capture": 3_000, "final_capture": False})[0] == 200
    assert post(f"{payment}/capture", bob, {"amount_to_capture": 2_000})[0] == 200
    status, refunded = post(f"{payment}/refunds", bob, {"refund_number": "r-1", "amount": 1_000})
    assert status == 201, refunded

    # WHEN the rail opens a 15.00 dispute (its notice delivered twice) and the merchant accepts it
    opened = {"kind": "dispute.opened", "dispute_id": "dp_1", "payment_intent": intent["id"],
              "amount_minor": 1_500, "currency": "USD", "reason": "fraudulent"}
    for _ in range(2):
        status, dispute = rail_notice(suite, opened)
        assert status == 200 and dispute["status"] == "needs_response", dispute
    shop = client_token("payments:read", "payments:write")  # the merchant's app
    status, lost = post(f"{payment}/disputes/dp_1/accept", shop)
    assert status == 200 and lost["status"] == "lost", lost
    # AND the merchant is settled for the business date
    status, today = _request("GET", f"{suite}/function/ledger/_/ops/business-date?market=CN", operator)
    assert status == 200, today
    time.sleep(SETTLEMENT_LAG_SECONDS + 1)
    settlements = f"{suite}/function/payments/_/ops/merchants/{merchant['merchant_id']}/settlements"
    status, report = post(f"{settlements}/{today['business_date']}", operator)
    status_again, again = post(f"{settlements}/{today['business_date']}", operator)

    # THEN the report reconciles: 50.00 captured - 10.00 refunded - 0.90 fees (1.50 earned, 0.60 given back)
    # - 30.00 dispute losses (15.00 and the 15.00 fee) = 9.10 paid out, once
    assert status == 200, report
    assert (report["captures"], report["refunds"], report["fees"], report["dispute_losses"]) == (
        5_000, 1_000, 90, 3_000)
    assert (report["reserve"], report["payout"], report["reconciles"]) == (0, 910, True)
    assert status_again == 200 and again == report
    csv_reply = http("GET", f"{settlements}/{today['business_date']}",
                     headers={"Authorization": f"Bearer {operator}", "Accept": "text/csv"})
    assert csv_reply.status == 200 and b",910," in csv_reply.body
    store = ledger_store_from_config()
    received = sum(store.get_account(a).balance_minor for a in merchant["ledger_accounts"]["receivables"])
    assert received == 0
    ledger_report = check_store(store)
    assert ledger_report.clean, ledger_report.problems[:10]
