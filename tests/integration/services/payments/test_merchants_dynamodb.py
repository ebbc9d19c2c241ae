"""Merchants onboarded through the payments handler on DynamoDB Local, their accounts opened by the
ledger function (in process): what the ledger and the payments table hold afterwards."""

from __future__ import annotations

import uuid

import pytest
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler
from support.payments_testing import wire_payments

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def world(embedded_aws):
    minter = TokenMinter.generate()
    payments, ledger = load_function_handler("payments"), load_function_handler("ledger")
    payments.verifier.use(minter.verifier())
    gateway = wire_payments(payments, ledger, minter)
    return payments, gateway, minter.mint("ops-console", ["ops", "ops:act"], kind="client")


def onboard(world, merchant_id: str, **changes):
    payments, _, operator = world
    body = {"merchant_id": merchant_id, "name": "Night Market", "currency": "JPY",
            "settlement_account": {"bank_code": "SANDJP00", "account_number": "12345678", "name": "NM KK"},
            "fee_schedule": {"bps": 325, "fixed_minor": 0, "rounding": "down"}, "receivable_shards": 2,
            **changes}
    return call(payments.handle, "POST", "/_/ops/merchants", token=operator,
                headers={"Idempotency-Key": uuid.uuid4().hex}, json_body=body)


def test_a_merchants_accounts_are_opened_on_the_ledger_as_merchant_accounts_it_owns(world):
    merchant_id = f"m-{uuid.uuid4().hex[:12]}"

    reply = onboard(world, merchant_id)

    assert reply.status == 201, reply.body
    accounts = reply.json()["ledger_accounts"]
    ledger = ledger_store_from_config()
    for account_id in [*accounts["receivables"], accounts["reserve"], accounts["fees_payable"]]:
        account = ledger.get_account(account_id)
        assert (account.owner_id, account.currency, account.kind.value) == (merchant_id, "JPY", "MERCHANT")
        assert account.balance_minor == 0


def test_onboarding_again_opens_nothing_new_and_answers_the_stored_merchant(world):
    _, gateway, _ = world
    merchant_id = f"m-{uuid.uuid4().hex[:12]}"
    first = onboard(world, merchant_id)
    calls = len(gateway.calls)

    again = onboard(world, merchant_id)
    other_terms = onboard(world, merchant_id, reserve_bps=500)

    assert again.status == 201 and again.json() == first.json()
    assert other_terms.status == 409 and other_terms.json()["code"] == "merchant_exists_with_different_fields"
    assert len(gateway.calls) == calls  # the stored merchant answers before any ledger call
