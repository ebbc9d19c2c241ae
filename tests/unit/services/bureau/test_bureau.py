"""The sandbox bureau through its handle(event, context): the same report for the same customer, a 503
problem when set to fail, and lenders only."""

from __future__ import annotations

import pytest
from finfaas.platform.config import ConfigError
from finfaas.services.bureau.model import down_from_env, sandbox_report
from finfaas.services.bureau.service import BureauService
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler


@pytest.fixture
def bureau():
    handler = load_function_handler("bureau")
    minter = TokenMinter.generate()
    handler.verifier.use(minter.verifier())
    lender = minter.mint("loans", ["bureau:read"], kind="client")
    return handler, minter, lender


def test_a_customers_report_is_the_same_every_time(bureau):
    handler, _, lender = bureau
    body = {"customer_id": "cust-1", "inquiry_id": "loan_1"}

    first = call(handler.handle, "POST", "/reports", token=lender, json_body=body)
    again = call(handler.handle, "POST", "/reports", token=lender, json_body={**body, "inquiry_id": "loan_2"})

    assert first.status == 200, first.body
    report = first.json()
    assert (report["score"], report["delinquencies"], report["sandbox"]) == (659, 0, True)
    assert {k: v for k, v in again.json().items() if k != "inquiry_id"} == \
        {k: v for k, v in report.items() if k != "inquiry_id"}


def test_reports_spread_over_clean_and_poor_files():
    reports = [sandbox_report(f"cust-{n}") for n in range(200)]

    assert all(300 <= r.score <= 850 for r in reports)
    poor = [r for r in reports if r.delinquencies]
    assert 5 <= len(poor) <= 40 and all(r.score < 550 for r in poor)


def test_set_to_fail_it_answers_a_503_problem(bureau):
    handler, _, lender = bureau
    handler.services.use(BureauService(lambda: True))

    reply = call(handler.handle, "POST", "/reports", token=lender,
                 json_body={"customer_id": "cust-1", "inquiry_id": "loan_1"})

    assert reply.status == 503 and reply.json()["code"] == "bureau_unavailable"


def test_a_customer_id_ending_in_bureau_down_gets_a_503_while_the_others_get_reports(bureau):
    handler, _, lender = bureau
    handler.services.use(BureauService(lambda: False))

    down = call(handler.handle, "POST", "/reports", token=lender,
                json_body={"customer_id": "cust-9-bureau-down", "inquiry_id": "loan_1"})
    other = call(handler.handle, "POST", "/reports", token=lender,
                 json_body={"customer_id": "cust-9", "inquiry_id": "loan_2"})

    assert down.status == 503 and down.json()["code"] == "bureau_unavailable"
    assert other.status == 200, other.body


def test_only_a_lender_with_bureau_read_gets_reports(bureau):
    handler, minter, _ = bureau
    customer = minter.mint("cust-1", ["loans:read", "loans:write"])

    reply = call(handler.handle, "POST", "/reports", token=customer,
                 json_body={"customer_id": "cust-1", "inquiry_id": "loan_1"})

    assert reply.status == 403


def test_the_failure_switch_is_true_or_false_only():
    assert down_from_env({"BUREAU_SANDBOX_DOWN": "true"}) is True
    assert down_from_env({}) is False
    with pytest.raises(ConfigError, match="BUREAU_SANDBOX_DOWN"):
        down_from_env({"BUREAU_SANDBOX_DOWN": "yes"})
