"""The console's pages and actions against a fake suite: who may do what, and what is refused."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from finfaas.platform.wiring import Lazy
from finfaas.services.console.errors import FunctionDown
from finfaas.services.console.service import ConsoleService
from finfaas.services.console.session import COOKIE_NAME, SessionCodec
from finfaas.workflow.asl import definitions_dir
from finfaas_dev.testing.platform import call, load_function_handler

NOW = 1_800_000_000.0
ACCOUNTS = {"op-ada": ("s3cret-ada", "ops ops:act"), "op-rex": ("s3cret-rex", "ops"),
            "app": ("s3cret-app", "x")}
HELD = {"transfer_id": "tr_1", "status": "AWAITING_REVIEW", "amount_minor": 1_500_000, "exponent": 2,
        "currency": "USD", "owner_id": "c1", "created_at": "2027-01-15T10:00:00Z", "debit_account_id": "a1",
        "reference": "", "steps": []}
ACCOUNT = {"account_id": "acc_1", "currency": "USD", "exponent": 2, "kind": "CUSTOMER", "status": "OPEN",
           "opened_at": "2027-01-01T00:00:00Z", "owner_id": "c1", "balances": {}}
BALANCE = {"account_id": "acc_1", "currency": "USD", "exponent": 2, "kind": "CUSTOMER", "status": "OPEN",
           "posted_minor": 50_000, "pending_debits_minor": 12_000, "pending_credits_minor": 0,
           "available_minor": 38_000}
ENTRY = {"transfer_id": "hold_1", "kind": "PENDING", "side": "debit", "counterparty_id": "sys-settlement-USD",
         "amount_minor": 12_000, "posted_delta_minor": 0, "pending_delta_minor": -12_000,
         "balance_after_minor": 50_000, "created_at": "2027-01-15T10:00:00Z"}
STATEMENT = {"account_id": "acc_1", "currency": "USD", "exponent": 2, "data": [ENTRY], "has_more": False,
             "next_cursor": None}
LEG = {"kind": "POSTED", "debit_account_id": "acc_1", "credit_account_id": "acc_2", "amount_minor": 700,
       "currency": "USD", "exponent": 2, "created_at": "2027-01-15T10:00:00Z", "metadata": "",
       "batch_size": 1}
LOAN = {"loan_id": "ln_1", "owner_id": "c1", "product_id": "p1", "account_id": "acc_1", "currency": "JPY",
        "principal_minor": 120_000, "term_months": 2, "status": "active", "outstanding_minor": 61_000,
        "days_past_due": 12, "bucket": "1-29", "decision": {"outcome": "approved", "decided_by": None},
        "schedule": [{"number": 1, "due_date": "2027-02-01", "total_minor": 61_000, "principal_minor": 60_000,
                      "interest_minor": 1_000, "owed_minor": 0},
                     {"number": 2, "due_date": "2027-03-01", "total_minor": 61_000, "principal_minor": 60_000,
                      "interest_minor": 1_000, "owed_minor": 61_000}],
        "transactions": [{"kind": "repayment", "transfer_id": "ln_1-r1", "on": "2027-02-01",
                          "amount_minor": 61_000}]}
INTENT = {"id": "pi_1", "status": "succeeded", "amount": 2_500, "amount_capturable": 0,
          "amount_received": 1_500, "amount_refunded": 500, "currency": "USD", "exponent": 2,
          "customer_account_id": "acc_1", "merchant_id": "m_1", "capture_method": "manual",
          "application_fee_amount": 75, "metadata": {}, "statement_descriptor": "", "owner_id": "c1",
          "refunds": [{"refund_number": "1", "amount": 500, "application_fee_refunded": 15,
                       "reason": "requested_by_customer", "status": "succeeded", "transfer_id": "pi_1-r1",
                       "created_at": "2027-01-16T10:00:00Z"}],
          "application_fee_refunded": 15, "amount_disputed": 0,
          "disputes": [{"dispute_id": "dp_1", "payment_intent": "pi_1", "status": "won", "amount": 300,
                        "fee": 1_500, "reason": "fraudulent", "source_account_id": "m_1-r0",
                        "transfer_ids": ["dp_1-take"], "evidence": "", "accepted": False,
                        "reinstated_transfer_id": "dp_1-back", "created_at": "2027-01-17T10:00:00Z"}],
          "ledger_transfers": [{"kind": "hold", "transfer_id": "pi_1-h", "amount_minor": 2_500},
                               {"kind": "capture", "transfer_id": "pi_1-c1", "amount_minor": 1_500}],
          "created_at": "2027-01-15T10:00:00Z"}
ORDER = {"order_id": "o-9", "kind": "REDEMPTION", "product_id": "mmf-1", "account_id": "acc_1"}
POSITION = {"product_id": "mmf-1", "kind": "MMF", "units": 1_000_000, "available_units": 900_000,
            "value": 1_000_000, "yesterday_income": 27, "cumulative_income": 81,
            "last_income_date": "2027-03-03",
            "pending_orders": [{**ORDER,
                                "amount": 100_000, "currency": "CNY", "maturity_instruction": None,
                                "placed_at": "2027-03-03T09:00:00Z", "trade_date": "2027-03-03",
                                "confirmation_date": "2027-03-04", "status": "PENDING"}],
            "customer_id": "c1", "currency": "CNY", "exponent": 2,
            "income": [{"date": "2027-03-03", "income": 27}, {"date": "2027-03-02", "income": 27}]}
EXECUTION = {"execution_id": "transfer:tr_9", "state_machine": "transfer", "name": "tr_9", "status": "FAILED",
             "current_state": None, "started_at": "2027-01-15T10:00:00Z", "history_events": 1, "version": 3,
             "input": {"transfer_id": "tr_9", "amount_minor": 2_500,
                       "creditor": {"name": "Carol Danvers", "iban": "GB33BUKB20201555555555"}},
             "output": {"email": "carol@example.com", "status": "FAILED"}}
EXITED_EVENT = {"seq": 1, "type": "StateExited", "state": "Validate", "at": "2027-01-15T10:00:00Z",
                "detail": {"next": "Hold", "output": {**EXECUTION["input"], "validated": "yes-it-was"}}}
LARGE_EXIT_EVENT = {"seq": 2, "type": "StateExited", "state": "Hold", "at": "2027-01-15T10:00:01Z",
                    "detail": {"next": "Post", "output_bytes": 4096}}
FAILED_EVENT = {"seq": 3, "type": "TaskFailed", "state": "Hold", "at": "2027-01-15T10:00:00Z",
                "detail": {"cause": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "payee_name": "Carol Danvers"}}
TRANSFERS = {
    "hold_1": {**LEG, "transfer_id": "hold_1", "kind": "PENDING", "state": "POSTED", "amount_minor": 12_000,
               "expires_at": "2027-01-16T10:00:00Z", "resolved_by": "post_1"},
    "post_1": {**LEG, "transfer_id": "post_1", "kind": "POST", "pending_id": "hold_1",
               "amount_minor": 12_000},
    "leg_2": {**LEG, "transfer_id": "leg_2", "batch_id": "leg_1", "batch_size": 2},
    "leg_1": {**LEG, "transfer_id": "leg_1", "batch_id": "leg_1", "batch_size": 2},
    "sale_1": {**LEG, "transfer_id": "sale_1", "batch_id": "sale_1", "batch_size": 3},
    "fee_1": {**LEG, "transfer_id": "fee_1", "batch_id": "sale_1", "batch_size": 3,
              "credit_account_id": "fees", "amount_minor": 30},
    "tax_1": {**LEG, "transfer_id": "tax_1", "batch_id": "sale_1", "batch_size": 3,
              "credit_account_id": "tax", "amount_minor": 5},
}
LEDGER_CHECK = {"status": "failed", "accounts": 4, "transfers": 3, "entries": 6,
                "trial_balance_minor": {"USD": 0}, "problems_total": 1,
                "problems": ["account bob: credits_posted 351 != sum of entries 350"],
                "records_max": 20_000, "seconds_max": 10.0, "detail": ""}
AUDIT_VERIFY = {"status": "passed", "records": 3, "problems_total": 0, "signatures_checked": True,
                "records_max": 20_000, "seconds_max": 10.0, "detail": "",
                "chains": [{"chain": name, "records": n, "head_seq": n, "ok": True, "problems": []}
                           for name, n in (("ledger-0", 2), ("ledger-outbox-3", 1))]}


OPEN_HOLD = {**LEG, "transfer_id": "hold_0", "kind": "PENDING", "state": "PENDING", "amount_minor": 2_000,
             "created_at": "2026-12-20T10:00:00Z", "expires_at": "2027-01-20T10:00:00Z"}


class FakeSuite:
    """The functions the console calls: answers by path, a set of functions that are down, every call kept."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str, object]] = []
        self.down: set[str] = set()
        self.pending_approval: dict | None = None  # what the transfers function answers a first approval

    def token(self, client_id: str, client_secret: str):
        secret, scope = ACCOUNTS.get(client_id, ("", ""))
        if secret != client_secret:
            return 401, {"error": "invalid_client"}
        return 200, {"access_token": f"token-of-{client_id}", "expires_in": 600, "scope": scope}

    def gateway_functions(self, token):
        if "gateway" in self.down:
            raise FunctionDown("gateway", "ConnectionRefusedError")
        self.calls.append(("gateway", "GET", "/system/functions", token, None))
        return 200, [{"name": "transfers", "replicas": 1, "availableReplicas": 1, "invocationCount": 42,
                      "coldStarts": 3, "crashes": 0, "createdAt": "2027-01-15T09:00:00+00:00"},
                     {"name": "ledger", "replicas": 0, "availableReplicas": 0, "invocationCount": 0,
                      "coldStarts": 0, "crashes": 0, "createdAt": None}]

    def call(self, function, method, path, token, body=None, headers=None):
        if function in self.down:
            raise FunctionDown(function, "ConnectionRefusedError")
        self.calls.append((function, method, path, token, body))
        if path.startswith("/_/ops/transfers?"):
            return 200, {"data": [HELD], "has_more": False, "next_cursor": None}
        if path.startswith("/executions?"):
            return 200, {"data": [], "has_more": False, "next_cursor": None}
        if function == "accounts" and path == "/_/ops/accounts/acc_1":
            return 200, ACCOUNT
        if function == "accounts" and path.startswith("/_/ops/accounts/acc_1/statement?"):
            return 200, STATEMENT
        if function == "ledger" and path == "/accounts/acc_1/balance":
            return 200, BALANCE
        if function == "ledger" and path == "/_/ops/ledger-check":
            return 200, LEDGER_CHECK
        if function == "ledger" and path == "/_/ops/audit-verify":
            return 200, AUDIT_VERIFY
        if function == "ledger" and path.startswith("/accounts/acc_1/holds?"):
            return 200, {"data": [OPEN_HOLD], "has_more": False, "next_cursor": None}
        if function == "loans" and path == "/_/ops/loans/ln_1":
            return 200, LOAN
        if function == "orchestrator" and path == "/executions/transfer%3Atr_9":
            return 200, EXECUTION
        if function == "orchestrator" and path.startswith("/executions/transfer%3Atr_9/history?"):
            return 200, {"data": [EXITED_EVENT, LARGE_EXIT_EVENT, FAILED_EVENT]}
        if function == "payments" and path == "/_/ops/payment_intents/pi_1":
            return 200, INTENT
        if function == "wealth" and path == "/_/ops/positions/c1/mmf-1":
            return 200, POSITION
        if function == "transfers" and path.endswith("/decision") and self.pending_approval:
            return 200, {**HELD, "pending_approval": self.pending_approval}
        if function == "ledger" and path.startswith("/transfers?batch_id="):
            batch_id = path.removeprefix("/transfers?batch_id=")
            return 200, {"transfers": [t for t in TRANSFERS.values() if t.get("batch_id") == batch_id]}
        if function == "ledger" and path.startswith("/transfers/"):
            found = TRANSFERS.get(path.removeprefix("/transfers/"))
            if found is None:
                return 404, {"code": "transfer_not_found", "detail": "No such transfer."}
            return 200, found
        return 200, {}


@pytest.fixture
def console():
    handler = load_function_handler("console")
    suite = FakeSuite()
    codec = SessionCodec("unit-test-session-key", lambda: NOW)
    service = ConsoleService(suite, codec, definitions_dir(), lambda: NOW)
    handler.console = Lazy.ready(handler.Console(service, codec, "/function/console"))
    return handler, suite


def sign_in(handler, operator: str, headers: dict | None = None, secret: str | None = None):
    """The sign-in page, then its form sent back with the operator's id and secret."""
    form_page = call(handler.handle, "GET", "/sign-in")
    nonce = re.search(r'name="csrf" value="([^"]+)"', form_page.body).group(1)
    secret = ACCOUNTS[operator][0] if secret is None else secret
    form = urlencode({"operator": operator, "secret": secret, "csrf": nonce}).encode()
    return call(handler.handle, "POST", "/sign-in", body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded",
                         "Cookie": cookie_of(form_page), **(headers or {})})


def cookie_of(reply) -> str:
    return reply.header("set-cookie").split(";")[0]


def csrf_of(handler, cookie: str) -> str:
    page = call(handler.handle, "GET", "/reviews", headers={"Cookie": cookie})
    return re.search(r'name="csrf" value="([^"]+)"', page.body).group(1)


def post(handler, path: str, cookie: str, form: dict):
    return call(handler.handle, "POST", path, body=urlencode(form).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})


def test_sign_in_sets_an_httponly_strict_cookie_secure_behind_tls(console):
    handler, _ = console

    plain = sign_in(handler, "op-ada")
    behind_tls = sign_in(handler, "op-ada", {"X-Forwarded-Proto": "https"})

    assert plain.status == 303 and plain.header("location") == "/function/console/executions"
    attributes = plain.header("set-cookie")
    assert attributes.startswith(f"{COOKIE_NAME}=") and "HttpOnly" in attributes
    assert "SameSite=Strict" in attributes and "Path=/function/console" in attributes
    assert "Secure" not in attributes and behind_tls.header("set-cookie").endswith("; Secure")


def test_an_account_without_the_ops_scope_or_a_wrong_secret_is_not_signed_in(console):
    handler, _ = console

    for operator, secret in (("app", "s3cret-app"), ("op-ada", "wrong")):
        reply = sign_in(handler, operator, secret=secret)
        assert reply.status == 401 and reply.header("set-cookie").startswith(f"{COOKIE_NAME}=;")


def test_a_sign_in_without_the_forms_token_is_refused(console):
    # GIVEN a sign-in sent from another site: the browser sends no sign-in cookie with it
    handler, suite = console
    form = urlencode({"operator": "op-ada", "secret": ACCOUNTS["op-ada"][0], "csrf": "guessed"}).encode()

    reply = call(handler.handle, "POST", "/sign-in", body=form,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert reply.status == 403 and "CSRF" in reply.body
    assert (reply.header("set-cookie") or "").find(f"{COOKIE_NAME}=gAAAA") == -1


def test_an_actor_approves_with_its_own_token_and_reason(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-ada"))

    reply = post(handler, "/reviews/tr_1", cookie,
                 {"csrf": csrf_of(handler, cookie), "decision": "approve", "reason": "called the customer"})

    assert reply.status == 303
    assert suite.calls[-1] == ("transfers", "POST", "/_/ops/transfers/tr_1/decision", "token-of-op-ada",
                               {"decision": "approve", "note": "called the customer"})


def test_a_read_only_operator_is_refused_an_action_and_nothing_is_sent(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))
    csrf = csrf_of(handler, cookie)
    sent = len(suite.calls)

    reply = post(handler, "/reviews/tr_1", cookie, {"csrf": csrf, "decision": "approve", "reason": "ok"})

    assert reply.status == 403 and "read-only" in reply.body and "Nothing was done" in reply.body
    assert len(suite.calls) == sent


@pytest.mark.parametrize("csrf", [None, "not-this-sessions"])
def test_an_action_without_the_sessions_csrf_token_is_refused_and_nothing_is_sent(console, csrf):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-ada"))
    form = {"decision": "approve", "reason": "ok", **({"csrf": csrf} if csrf else {})}

    reply = post(handler, "/executions/transfer:tr_1/stop", cookie, form)

    assert reply.status == 403 and "CSRF" in reply.body
    assert suite.calls == []


def test_a_forged_session_is_refused_with_a_page_and_cleared(console):
    handler, suite = console

    reply = call(handler.handle, "GET", "/reviews", headers={"Cookie": f"{COOKIE_NAME}=gAAAAABforged"})

    assert reply.status == 401 and "sign in again" in reply.body
    assert reply.header("set-cookie").startswith(f"{COOKIE_NAME}=;") and suite.calls == []


def test_a_function_that_is_down_is_named_and_the_other_pages_work(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-ada"))
    suite.down.add("transfers")

    queue = call(handler.handle, "GET", "/reviews", headers={"Cookie": cookie})
    executions = call(handler.handle, "GET", "/executions", headers={"Cookie": cookie})

    assert queue.status == 200 and 'data-down="transfers"' in queue.body
    assert executions.status == 200 and "data-down" not in executions.body


def test_pages_load_nothing_from_elsewhere_and_cannot_be_framed(console):
    handler, _ = console

    reply = call(handler.handle, "GET", "/sign-in")

    assert reply.status == 200 and reply.header("content-type").startswith("text/html")
    assert "default-src 'none'" in reply.header("content-security-policy")
    assert "frame-ancestors 'none'" in reply.header("content-security-policy")


def test_a_read_only_operator_cannot_stop_or_redrive(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))
    csrf = csrf_of(handler, cookie)
    sent = len(suite.calls)

    stopped = post(handler, "/executions/transfer:tr_1/stop", cookie, {"csrf": csrf, "reason": "no"})
    redriven = post(handler, "/executions/transfer:tr_1/redrive", cookie, {"csrf": csrf})

    assert stopped.status == redriven.status == 403 and "read-only" in redriven.body
    assert len(suite.calls) == sent


def test_an_action_on_a_function_that_is_down_says_which_and_does_nothing_else(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-ada"))
    csrf = csrf_of(handler, cookie)
    suite.down.add("transfers")

    reply = post(handler, "/reviews/tr_1", cookie, {"csrf": csrf, "decision": "approve", "reason": "ok"})

    assert reply.status == 503 and "The transfers function is not answering" in reply.body
    assert 'data-down="transfers"' in reply.body


def test_a_decision_another_function_refuses_is_shown_with_its_status(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-ada"))
    csrf = csrf_of(handler, cookie)
    suite.call = lambda *args, **kwargs: (409, {"code": "decision_already_recorded",
                                                "detail": "This transfer was already approved."})

    reply = post(handler, "/reviews/tr_1", cookie, {"csrf": csrf, "decision": "reject", "reason": "late"})

    assert reply.status == 409 and "already approved" in reply.body


def test_served_at_a_hosts_root_the_links_and_cookie_path_start_at_the_root(console):
    handler, _ = console
    current = handler.console.get()
    handler.console = Lazy.ready(handler.Console(current.service, current.codec, "/"))

    reply = sign_in(handler, "op-ada")

    assert reply.header("location") == "/executions" and "Path=/;" in reply.header("set-cookie")


def get(handler, path: str, cookie: str):
    return call(handler.handle, "GET", path, headers={"Cookie": cookie})


def table_row(html: str, attr: str, value: str) -> str:
    """The cells of the page's row `<tr data-{attr}="{value}">`."""
    match = re.search(rf'<tr data-{attr}="{re.escape(value)}">(.*?)</tr>', html, re.S)
    assert match is not None, f'no <tr data-{attr}="{value}">'
    return match.group(1)


def test_an_accounts_page_shows_its_balances_statement_and_holds_with_their_expiry(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    reply = get(handler, "/ledger/accounts/acc_1", cookie)

    assert reply.status == 200
    assert "data-posted>500.00 USD" in reply.body and "data-available>380.00 USD" in reply.body
    hold = table_row(reply.body, "hold", "hold_1")
    assert "120.00 USD" in hold and "POSTED" in hold and "2027-01-16T10:00:00Z" in hold
    assert {(f, p.split("?")[0], t) for f, _, p, t, _ in suite.calls[-5:]} == {
        ("accounts", "/_/ops/accounts/acc_1", "token-of-op-rex"),
        ("ledger", "/accounts/acc_1/balance", "token-of-op-rex"),
        ("accounts", "/_/ops/accounts/acc_1/statement", "token-of-op-rex"),
        ("ledger", "/accounts/acc_1/holds", "token-of-op-rex"),
        ("ledger", "/transfers/hold_1", "token-of-op-rex")}


def test_an_accounts_page_lists_every_open_hold_even_one_on_no_statement_page_shown(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    reply = get(handler, "/ledger/accounts/acc_1", cookie)

    # hold_0 is on no statement page shown: the ledger's list of open holds finds it, with its expiry.
    hold = table_row(reply.body, "open-hold", "hold_0")
    assert "20.00 USD" in hold and "2027-01-20T10:00:00Z" in hold
    assert re.findall(r'data-open-hold="([^"]+)"', reply.body) == ["hold_0"]  # hold_1 is posted
    holds_call = next(p for f, _, p, _, _ in suite.calls if p.startswith("/accounts/acc_1/holds?"))
    assert "state=PENDING" in holds_call


def test_a_hold_still_open_on_the_statement_page_is_shown_from_the_open_holds_not_read_again(console,
                                                                                             monkeypatch):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))
    # GIVEN the statement page shows an open hold (hold_0) beside a posted one (hold_1)
    entries = [ENTRY, {**ENTRY, "transfer_id": "hold_0", "amount_minor": 2_000}]
    monkeypatch.setitem(STATEMENT, "data", entries)

    reply = get(handler, "/ledger/accounts/acc_1", cookie)

    # THEN both are shown with their state and expiry, and only the posted one costs a read of its own
    hold = table_row(reply.body, "hold", "hold_0")
    assert "20.00 USD" in hold and "PENDING" in hold and "2027-01-20T10:00:00Z" in hold
    assert re.findall(r'<tr data-hold="([^"]+)"', reply.body) == ["hold_1", "hold_0"]
    reads = [p for f, _, p, _, _ in suite.calls if f == "ledger" and p.startswith("/transfers/")]
    assert reads == ["/transfers/hold_1"]


def test_an_accounts_page_without_the_ledger_names_it_and_keeps_the_statement(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))
    suite.down.add("ledger")

    reply = get(handler, "/ledger/accounts/acc_1", cookie)

    assert reply.status == 200 and 'data-down="ledger"' in reply.body
    assert "sys-settlement-USD" in reply.body and "data-available" not in reply.body


def test_a_ledger_transfers_page_shows_the_transfers_it_links_to(console):
    handler, _ = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    hold = get(handler, "/ledger/transfers/hold_1", cookie)
    leg = get(handler, "/ledger/transfers/leg_2", cookie)
    missing = get(handler, "/ledger/transfers/nope", cookie)

    assert 'data-link="resolved_by"' in hold.body and "post_1" in hold.body
    assert 'data-link="batch_id"' in leg.body and "leg_1" in leg.body and "leg of 2" in leg.body
    assert missing.status == 200 and "No such transfer." in missing.body


def test_the_checks_page_shows_both_results_naming_each_problem_and_chain(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    explorer = get(handler, "/ledger", cookie)
    checks = get(handler, "/ledger/checks", cookie)

    assert 'href="/function/console/ledger/checks" data-checks' in explorer.body
    assert checks.status == 200 and 'data-check="ledger" data-status="failed"' in checks.body
    assert "account bob: credits_posted 351 != sum of entries 350" in checks.body
    assert 'data-check="audit" data-status="passed"' in checks.body
    assert 'data-chain="ledger-0"' in checks.body and 'data-chain="ledger-outbox-3"' in checks.body
    assert 'href="/function/console/ledger/checks" data-run-again' in checks.body
    assert [(p, t) for f, _, p, t, _ in suite.calls if f == "ledger"] == [
        ("/_/ops/ledger-check", "token-of-op-rex"), ("/_/ops/audit-verify", "token-of-op-rex")]


def test_the_checks_page_without_the_ledger_names_it_and_the_explorer_still_works(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))
    suite.down.add("ledger")

    checks = get(handler, "/ledger/checks", cookie)
    account = get(handler, "/ledger/accounts/acc_1", cookie)

    assert checks.status == 200 and 'data-down="ledger"' in checks.body and "data-check=" not in checks.body
    assert account.status == 200 and "sys-settlement-USD" in account.body


def test_a_ledger_transfers_page_lists_its_batchs_every_leg_in_order_each_linked(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    reply = get(handler, "/ledger/transfers/fee_1", cookie)

    assert reply.status == 200
    legs = re.findall(r'<tr data-leg="([^"]+)"', reply.body)
    assert legs == ["sale_1", "fee_1", "tax_1"]
    for leg in legs:
        assert f'href="/function/console/ledger/transfers/{leg}"' in reply.body
    assert ("ledger", "GET", "/transfers?batch_id=sale_1", "token-of-op-rex", None) in suite.calls


def test_a_legs_page_takes_its_batchs_first_leg_from_the_batch_not_from_a_second_read(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    reply = get(handler, "/ledger/transfers/fee_1", cookie)

    first = table_row(reply.body, "link", "batch_id")
    assert "sale_1" in first and "leg of 3" in first
    assert [p for f, _, p, _, _ in suite.calls if f == "ledger"] == [
        "/transfers/fee_1", "/transfers?batch_id=sale_1"]


def test_an_actor_resolves_a_transfer_needing_attention_by_posting_its_hold(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-ada"))

    queue = get(handler, "/attention", cookie)
    reply = post(handler, "/attention/tr_1", cookie,
                 {"csrf": csrf_of(handler, cookie), "decision": "post", "reason": "rail confirmed"})

    assert ("transfers", "GET", "/_/ops/transfers?status=NEEDS_ATTENTION&limit=50", "token-of-op-ada",
            None) in suite.calls
    assert 'value="post"' in queue.body and 'value="approve"' not in queue.body
    assert reply.status == 303
    assert reply.header("location").startswith("/function/console/attention?done=post")
    assert suite.calls[-1] == ("transfers", "POST", "/_/ops/transfers/tr_1/decision", "token-of-op-ada",
                               {"decision": "post", "note": "rail confirmed"})


def test_a_review_queue_refuses_an_attention_decision_and_sends_nothing(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-ada"))
    csrf = csrf_of(handler, cookie)
    sent = len(suite.calls)

    reply = post(handler, "/reviews/tr_1", cookie, {"csrf": csrf, "decision": "void", "reason": "no"})

    assert reply.status == 422 and "approve or reject" in reply.body and len(suite.calls) == sent


def test_the_health_page_shows_each_functions_replicas_and_last_cold_start(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    reply = get(handler, "/health", cookie)
    suite.down.add("gateway")
    without = get(handler, "/health", cookie)

    row = table_row(reply.body, "function", "transfers")
    assert "1 / 1" in row and "42" in row and "2027-01-15T09:00:00+00:00" in row
    assert "not running" in table_row(reply.body, "function", "ledger")
    assert ("gateway", "GET", "/system/functions", "token-of-op-rex", None) in suite.calls
    assert without.status == 200 and 'data-down="gateway"' in without.body


def test_a_loans_page_shows_its_schedule_payments_and_bucket_in_its_currencys_units(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    reply = get(handler, "/loans/ln_1", cookie)
    suite.down.add("loans")
    without = get(handler, "/loans/ln_1", cookie)

    assert reply.status == 200 and "data-bucket>1-29<" in reply.body
    assert "data-outstanding>61000 JPY<" in reply.body  # yen have no minor unit
    second = table_row(reply.body, "installment", "2")
    assert "2027-03-01" in second and second.rstrip().endswith("<td>61000</td>")
    assert "ln_1-r1" in reply.body
    assert suite.calls[-1] == ("loans", "GET", "/_/ops/loans/ln_1", "token-of-op-rex", None)
    assert without.status == 200 and 'data-down="loans"' in without.body


def test_a_first_approval_above_the_second_approval_amount_says_it_waits_for_another_operator(console):
    # GIVEN the transfers function records an approval as pending a second operator's
    handler, suite = console
    proposal = {"decision": "approve", "operator": "op-ada", "note": "called the customer",
                "at": "2027-01-15T10:05:00Z"}
    suite.pending_approval = proposal
    cookie = cookie_of(sign_in(handler, "op-ada"))

    # WHEN the operator approves
    reply = post(handler, "/reviews/tr_1", cookie,
                 {"csrf": csrf_of(handler, cookie), "decision": "approve", "reason": "called the customer"})

    # THEN the page says it waits for a second operator's approval, not that it was approved
    assert reply.status == 303 and "done=proposed" in reply.header("location")
    shown = call(handler.handle, "GET", "/reviews", headers={"Cookie": cookie},
                 query={"done": "proposed", "transfer": "tr_1"})
    assert "awaits a second, different operator" in shown.body


def test_the_review_queue_shows_a_pending_approval_with_its_operator(console):
    handler, suite = console
    HELD["pending_approval"] = {"decision": "approve", "operator": "op-ada", "note": "ok",
                                "at": "2027-01-15T10:05:00Z"}
    try:
        ada, rex = cookie_of(sign_in(handler, "op-ada")), cookie_of(sign_in(handler, "op-rex"))
        own, other = get(handler, "/reviews", ada), get(handler, "/reviews", rex)
    finally:
        del HELD["pending_approval"]

    assert 'data-pending-approval="op-ada"' in own.body and "another operator must confirm it" in own.body
    assert "awaits your confirmation" in other.body


def test_a_payment_intents_page_shows_its_captures_refunds_disputes_and_ledger_transfers(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    reply = get(handler, "/payments/pi_1", cookie)
    found = call(handler.handle, "GET", "/ledger", headers={"Cookie": cookie}, query={"payment": "pi_1"})
    suite.down.add("payments")
    without = get(handler, "/payments/pi_1", cookie)

    assert reply.status == 200 and 'data-intent-status="succeeded"' in reply.body
    assert "data-received>15.00<" in reply.body and "data-refunded>5.00<" in reply.body
    assert 'data-ledger-step="capture"' in reply.body and "pi_1-c1" in reply.body
    assert 'data-refund="1"' in reply.body and "pi_1-r1" in reply.body
    assert 'data-dispute="dp_1"' in reply.body and "dp_1-back" in reply.body
    assert suite.calls[-1] == ("payments", "GET", "/_/ops/payment_intents/pi_1", "token-of-op-rex", None)
    assert found.status == 303 and found.header("location") == "/function/console/payments/pi_1"
    assert without.status == 200 and 'data-down="payments"' in without.body


def test_a_wealth_positions_page_shows_its_units_value_income_and_pending_orders(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    reply = get(handler, "/wealth/c1/mmf-1", cookie)
    found = call(handler.handle, "GET", "/ledger", headers={"Cookie": cookie},
                 query={"customer": "c1", "product": "mmf-1"})

    assert reply.status == 200 and "data-value>10000.00 CNY<" in reply.body
    assert "data-cumulative-income>0.81 CNY<" in reply.body
    assert 'data-income-day="2027-03-02"' in reply.body and 'data-order="o-9"' in reply.body
    assert suite.calls[-1] == ("wealth", "GET", "/_/ops/positions/c1/mmf-1", "token-of-op-rex", None)
    assert found.status == 303 and found.header("location") == "/function/console/wealth/c1/mmf-1"


def test_an_executions_page_shows_its_input_output_and_events_with_personal_data_redacted(console):
    handler, _ = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    reply = get(handler, "/executions/transfer:tr_9", cookie)

    assert reply.status == 200 and "amount_minor" in reply.body and "2500" in reply.body
    # each state's input and output: Validate's from its exit, Hold's input is Validate's output
    assert 'data-state-io="Validate"' in reply.body and "yes-it-was" in reply.body
    hold_row = reply.body.split('data-state-io="Hold"', 1)[1].split("</tr>", 1)[0]
    assert "yes-it-was" in hold_row and "4096 bytes, not kept" in hold_row
    for personal in ("Carol Danvers", "GB33BUKB", "carol@example.com", "eyJhbGciOiJSUzI1NiJ9"):
        assert personal not in reply.body
