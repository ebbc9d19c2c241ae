"""The loans function as a process behind the local gateway, with auth, the ledger, risk, the sandbox
bureau, the sandbox rail and the orchestrator (woken over SQS by the connector): an operator creates a
product, a customer quotes it and applies; the application is underwritten with the loans function's own
client credentials (the loans-client secret and its auth-clients entry) by the risk function and the bureau,
as in a deployed suite. Then a loan's life: disbursed by its saga, repaid, overdue once the business date
moves past a due date (penalty and bucket), paid off. A loan to a bank account is paid out by the rail (or
rejected by it, the principal back)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from finfaas.domain.ledger import AccountKind, NewAccount, system_account_id
from finfaas.services.bureau.model import UNAVAILABLE_CUSTOMER_SUFFIX, sandbox_report
from finfaas.services.ledger.service import LedgerService
from finfaas.services.rail.service import REJECT_SUFFIX
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas_dev.bench.suite import answers, customer_tokens
from finfaas_dev.bench.suite import stack_text as bench_stack_text
from finfaas_dev.bench.transfers import FUNCTIONS as TRANSFER_SUITE
from finfaas_dev.bench.transfers import _request, client_token
from finfaas_dev.net import wait_for
from support.gateway_harness import suite_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

FUNCTIONS = ("auth", "bureau", "ledger", "loans", "orchestrator", "rail", "risk")
# The rail as the wallet's and the transfers' suites run it: its queue, its sandbox settling at once.
RAIL_TOPIC, RAIL_ENVIRONMENT = TRANSFER_SUITE["rail"]
QUEUE_TOPICS = {"orchestrator": "orchestrator", "loans": "loan-reviews", "rail": RAIL_TOPIC}
TOP_UP_MINOR = 10_000
FUNCTION_READY_SECONDS_MAX = 90  # a function's first start on a loaded machine
DISBURSEMENT_SECONDS_MAX = 60  # the saga's one step, through the connector's SQS polling
PAYOUT_SECONDS_MAX = 90  # the saga's steps, the rail's first start, its settlement and signed notice
CANDIDATES_MAX = 200  # customer ids tried for a clean (or a poor) bureau file: one in ten is poor
FUNDING = system_account_id(AccountKind.LOANS, "USD")
REPOSITORY = Path(__file__).resolve().parents[2]
BANK = {"bank_code": "SANDUS00", "account_number": "000123456789", "name": "Ada Lovelace"}


def stack_text() -> str:
    # The test moves the business date past a due date, as an operator of a sandbox does.
    return bench_stack_text(FUNCTIONS, {"BUSINESS_DATE_MODE": "manual"}, topics=QUEUE_TOPICS,
                            per_function={"rail": RAIL_ENVIRONMENT}, image_prefix="test")


@pytest.fixture(scope="module")
def suite(embedded_aws, tmp_path_factory):
    LedgerService(ledger_store_from_config()).ensure_system_accounts("USD")  # sys-loans-USD lends
    with suite_gateway(tmp_path_factory.mktemp("loans-e2e"), stack_text(), embedded_aws.env(),
                       service_clients=("loans", "orchestrator", "rail")) as base_url:
        # The functions fetch the JWKS from auth on their first request: auth started before the tests,
        # so its cold start on a loaded machine is not charged to a function's JWKS fetch.
        jwks_url = f"{base_url}/function/auth/.well-known/jwks.json"
        wait_for(lambda: answers(jwks_url), FUNCTION_READY_SECONDS_MAX, "the JWKS")
        yield base_url


def customer(poor: bool, suffix: str = "") -> tuple[str, str, str]:
    """A customer whose sandbox bureau file is clean (or poor), its USD wallet and its token; with
    the suffix UNAVAILABLE_CUSTOMER_SUFFIX the bureau answers nothing for it."""
    for _ in range(CANDIDATES_MAX):
        customer_id = f"cust-{secrets.token_hex(4)}{suffix}"
        if (sandbox_report(customer_id).delinquencies > 0) == poor:
            break
    account_id = f"acc-{secrets.token_hex(6)}"
    ledger_store_from_config().open_account(NewAccount(account_id, customer_id, "USD"), datetime.now(UTC))
    return customer_id, account_id, customer_tokens(("loans:read", "loans:write"))(customer_id)


def create_product(suite: str, operator: str, prefix: str, **terms: object) -> str:
    """A USD product of 100.00-50,000.00 over 3-60 months at 12 % (with `terms` on top), created by the
    operator; its id."""
    product_id = f"{prefix}-{secrets.token_hex(4)}"
    product = {"product_id": product_id, "name": "Personal loan", "currency": "USD",
               "principal_minor_min": 10_000, "principal_minor_max": 5_000_000, "term_months_min": 3,
               "term_months_max": 60, "annual_rate": "0.12", **terms}
    status, created = _request("POST", f"{suite}/function/loans/_/ops/loan-products", operator, product,
                               {"Idempotency-Key": secrets.token_hex(8)})
    assert status == 201, created
    return product_id


def test_a_product_is_quoted_and_applications_are_underwritten_by_risk_and_the_bureau(suite):
    # GIVEN an operator's product (Fineract's 12 %, 30/360 example) and two customers' wallets
    operator = client_token("ops", "ops:act")
    product_id = create_product(suite, operator, "personal")
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


def minor(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def test_a_quoted_due_date_on_a_market_holiday_moves_to_the_next_trading_day(suite):
    # GIVEN the shipped calendar of the business date's market, and a holiday a month or more ahead of the
    # business date (a day of month up to 28, so the month's arithmetic cannot move it)
    from finfaas.platform.calendars import load_calendars
    from finfaas.services.business_date.model import DEFAULT_MARKET

    operator = client_token("ops", "ops:act")
    status, shown = _request("GET", f"{suite}/function/ledger/_/ops/business-date", operator)
    assert status == 200, shown
    today = date.fromisoformat(shown["business_date"])
    calendar = load_calendars(REPOSITORY / "functions" / "loans")[DEFAULT_MARKET]
    holidays = [h for h in sorted(calendar.holidays)
                if h.day <= 28 and today < month_before(h) <= today + timedelta(days=300)]
    assert holidays, f"infra/calendars has no holiday a month after {today}: ship the next year's calendar"
    holiday = holidays[0]
    product_id = create_product(suite, operator, "calendar")
    _, _, token = customer(poor=False)

    # WHEN a loan disbursed a month before it is quoted
    status, quote = _request("POST", f"{suite}/function/loans/loans/quotes", token,
                             {"product_id": product_id, "principal": "100.00", "term_months": 3,
                              "disbursement_date": month_before(holiday).isoformat()})

    # THEN its first installment's period ends on the holiday and falls due on the next trading day
    assert status == 200, quote
    first = quote["installments"][0]
    assert first["period_end"] == holiday.isoformat()
    assert first["due_date"] == calendar.next_trading_day(holiday).isoformat() != holiday.isoformat()


def month_before(day: date) -> date:
    return day.replace(year=day.year - 1, month=12) if day.month == 1 else day.replace(month=day.month - 1)


def test_a_loan_is_disbursed_repaid_falls_overdue_with_a_penalty_and_is_paid_off(suite):
    # GIVEN a product with a daily penalty of 0.1 % on overdue principal and a clean customer's loan
    operator = client_token("ops", "ops:act")
    product_id = create_product(suite, operator, "penalty", daily_penalty_rate="0.001")
    _, account_id, token = customer(poor=False)
    loans = f"{suite}/function/loans/loans"
    application = {"product_id": product_id, "principal": "1000.00", "term_months": 6,
                   "account_id": account_id, "monthly_income": "3000.00", "monthly_debt": "0"}
    status, loan = _request("POST", loans, token, application, {"Idempotency-Key": "apply-life"})
    assert status == 201 and loan["status"] == "approved", loan
    loan_url = f"{loans}/{loan['loan_id']}"

    # WHEN the customer accepts it: the disbursement saga runs on the orchestrator
    status, accepted = _request("POST", f"{loan_url}/disburse", token)
    assert status == 202, accepted

    # THEN it turns active with its schedule, the principal in the wallet
    def active():
        status, body = _request("GET", loan_url, token)
        return body if status == 200 and body["status"] == "active" else None

    loan = wait_for(active, DISBURSEMENT_SECONDS_MAX, "the loan to be disbursed")
    schedule = loan["schedule"]
    assert len(schedule) == 6 and sum(i["principal_minor"] for i in schedule) == 100_000
    assert balance(suite, account_id) == 100_000

    # WHEN the business date reaches the first due date and the customer repays that installment
    first, second = schedule[0], schedule[1]
    advance_to(suite, operator, date.fromisoformat(first["due_date"]))
    status, repaid = _request("POST", f"{loan_url}/repayments", token,
                              {"amount": first["total_minor"], "currency": "USD"},
                              {"Idempotency-Key": "repay-1"})

    # THEN it is paid, nothing is overdue
    assert status == 200, repaid
    assert repaid["schedule"][0]["owed_minor"] == 0
    assert (repaid["days_past_due"], repaid["bucket"]) == (0, None)

    # WHEN the business date moves five days past the second due date, unpaid
    second_due = date.fromisoformat(second["due_date"])
    advance_to(suite, operator, second_due + timedelta(days=5))
    status, overdue = _request("GET", loan_url, token)
    status_quote, payoff = _request("GET", f"{loan_url}/payoff", token)

    # THEN it is 5 days past due in the first bucket, and the days closed so far (the 4 after the due
    # date, before today) each charged 0.1 % of the second installment's principal
    assert status == 200 and (overdue["days_past_due"], overdue["bucket"]) == (5, "1-10"), overdue
    assert status_quote == 200, payoff
    daily_minor = minor(Decimal(second["principal_minor"]) * Decimal("0.001"))
    assert payoff["penalty_minor"] == 4 * daily_minor > 0
    assert payoff["principal_minor"] == 100_000 - first["principal_minor"]

    # WHEN the customer tops up the wallet (the loan's interest is more than what is left of it) and pays
    # the loan off with the quote's total
    LedgerService(ledger_store_from_config()).deposit(account_id, TOP_UP_MINOR, "USD",
                                                      transfer_id=f"{account_id}-top-up")
    status, closed = _request("POST", f"{loan_url}/payoff", token,
                              {"amount": payoff["total_minor"], "currency": "USD"},
                              {"Idempotency-Key": "payoff-1"})

    # THEN the loan is closed, the penalty paid with the second installment, the wallet paid exactly
    assert status == 200 and closed["status"] == "closed" and closed["outstanding_minor"] == 0, closed
    assert closed["schedule"][1]["paid_penalty_minor"] == 4 * daily_minor
    assert balance(suite, account_id) == 100_000 + TOP_UP_MINOR - first["total_minor"] - payoff["total_minor"]


def test_with_the_bureau_down_a_large_loan_waits_in_its_saga_for_an_operator_then_is_disbursed_once(suite):
    # GIVEN a product that waives the bureau up to 500.00, and a customer the bureau answers nothing for
    operator = client_token("ops", "ops:act")
    product_id = create_product(suite, operator, "review", bureau_waiver_principal_minor_max=50_000)
    _, account_id, token = customer(poor=False, suffix=UNAVAILABLE_CUSTOMER_SUFFIX)
    wallet_before = balance(suite, account_id)

    # WHEN the customer applies for 1,000.00
    status, loan = _request("POST", f"{suite}/function/loans/loans", token,
                            {"product_id": product_id, "principal": "1000.00", "term_months": 6,
                             "account_id": account_id, "monthly_income": "3000.00", "monthly_debt": "0"},
                            {"Idempotency-Key": "apply-review"})

    # THEN it waits for an operator, the bureau's absence the rule that fired
    assert status == 201 and loan["status"] == "review", loan
    assert loan["decision"]["rules_fired"] == ["bureau_unavailable"]
    decision_url = f"{suite}/function/loans/_/ops/loans/{loan['loan_id']}/decision"
    approval = {"decision": "approve", "note": "income verified by phone"}

    # WHEN an operator who may only look tries to decide, then one who may act, once the saga waits
    status_reader, refused = _request("POST", decision_url, client_token("ops"), approval)

    def decided():
        status, body = _request("POST", decision_url, operator, approval)
        assert status in (200, 409), body
        return body if status == 200 else None  # 409 loan_review_not_waiting: the token not kept yet

    wait_for(decided, DISBURSEMENT_SECONDS_MAX, "the saga to wait for a review")

    # THEN the reader is refused; the saga records the operator's approval and disburses, once
    assert status_reader == 403, refused
    loan_url = f"{suite}/function/loans/loans/{loan['loan_id']}"

    def active():
        status, body = _request("GET", loan_url, token)
        return body if status == 200 and body["status"] == "active" else None

    disbursed = wait_for(active, DISBURSEMENT_SECONDS_MAX, "the reviewed loan to be disbursed")
    assert disbursed["decision"]["decided_by"] == "bench"  # the operator's client
    assert disbursed["decision"]["note"] == "income verified by phone"
    assert disbursed["decision"]["rules_fired"] == ["bureau_unavailable"]
    assert [t["kind"] for t in disbursed["transactions"]] == ["disbursement"]
    status, again = _request("POST", f"{loan_url}/disburse", token)
    assert status == 200 and again["status"] == "active", again
    assert balance(suite, account_id) == wallet_before + 100_000


def test_a_loan_to_a_bank_account_is_paid_out_by_the_rail_once_and_a_rejected_one_is_returned(suite):
    # GIVEN a product and two clean customers: one's bank account the rail pays, the other's an account the
    # sandbox rail always rejects
    operator = client_token("ops", "ops:act")
    product_id = create_product(suite, operator, "bank")
    _, paid_wallet, paid = customer(poor=False)
    _, refused_wallet, refused = customer(poor=False)
    rejected_bank = {**BANK, "account_number": f"00012345{REJECT_SUFFIX}"}
    funding_before = funding()

    # WHEN each applies for a loan paid to the bank account (1,000.00 and 700.00) and accepts it
    paid_url = apply_to_bank(suite, paid, paid_wallet, product_id, "1000.00", BANK)
    refused_url = apply_to_bank(suite, refused, refused_wallet, product_id, "700.00", rejected_bank)

    # THEN the rail pays the first out: active with its schedule, the account number shown masked only
    loan = wait_for(lambda: decided(paid_url, paid), PAYOUT_SECONDS_MAX, "the rail to pay the loan out")
    assert loan["status"] == "active", loan
    assert len(loan["schedule"]) == 6 and sum(i["principal_minor"] for i in loan["schedule"]) == 100_000
    assert [t["kind"] for t in loan["transactions"]] == ["disbursement"]
    assert loan["bank_account"] == {"bank_code": "SANDUS00", "account_number_masked": "****6789"}
    assert BANK["account_number"] not in json.dumps(loan)
    status, again = _request("POST", f"{paid_url}/disburse", paid)
    assert status == 200 and again["status"] == "active", again

    # AND the rail rejects the second: disbursement_failed, nothing owed, the reason given
    failed = wait_for(lambda: decided(refused_url, refused), PAYOUT_SECONDS_MAX, "the rail to reject it")
    assert failed["status"] == "disbursement_failed" and failed["disbursement_failure"], failed
    assert (failed["schedule"], failed["transactions"], failed["outstanding_minor"]) == ([], [], 0)

    # AND the funding account paid the first principal once and holds nothing: the second is back whole;
    # neither wallet was paid
    posted, held = funding_before
    assert funding() == (posted - 100_000, held)
    assert (balance(suite, paid_wallet), balance(suite, refused_wallet)) == (0, 0)


def apply_to_bank(suite: str, token: str, wallet: str, product_id: str, principal: str,
                  bank: dict[str, str]) -> str:
    """The customer's loan to the bank account, approved and accepted (its saga started); its URL."""
    loans = f"{suite}/function/loans/loans"
    status, loan = _request("POST", loans, token,
                            {"product_id": product_id, "principal": principal, "term_months": 6,
                             "account_id": wallet, "monthly_income": "3000.00", "monthly_debt": "0",
                             "disburse_to": "bank_account", "bank_account": bank},
                            {"Idempotency-Key": "apply-bank"})
    assert status == 201 and loan["status"] == "approved", loan
    assert bank["account_number"] not in json.dumps(loan)
    status, accepted = _request("POST", f"{loans}/{loan['loan_id']}/disburse", token)
    assert status == 202, accepted
    return f"{loans}/{loan['loan_id']}"


def decided(loan_url: str, token: str) -> dict | None:
    """The loan once its disbursement is over (neither accepted nor on its way to the bank)."""
    status, loan = _request("GET", loan_url, token)
    assert status == 200, loan
    return None if loan["status"] in ("approved", "disbursing") else loan


def funding() -> tuple[int, int]:
    """(posted, held) of the loans' funding account: a bank payout is held first, posted on settlement."""
    account = LedgerService(ledger_store_from_config()).get_account(FUNDING)
    return account.balance_minor, account.debits_pending


def advance_to(suite: str, operator: str, day: date) -> None:
    """The suite's business date moved forward to `day` (the ops route of the ledger function)."""
    status, shown = _request("GET", f"{suite}/function/ledger/_/ops/business-date", operator)
    assert status == 200, shown
    if date.fromisoformat(shown["business_date"]) >= day:
        raise AssertionError(f"the business date {shown['business_date']} is already past {day}")
    status, moved = _request("POST", f"{suite}/function/ledger/_/ops/business-date", operator,
                             {"to": day.isoformat()}, {"Idempotency-Key": secrets.token_hex(8)})
    assert status == 200 and moved["business_date"] == day.isoformat(), moved


def balance(suite: str, account_id: str) -> int:
    status, account = _request("GET", f"{suite}/function/ledger/accounts/{account_id}/balance",
                               client_token("ops"))
    assert status == 200, account
    return int(account["posted_minor"])
