"""The operator console in a real browser: Debian's Chromium driven by Playwright, against the saga's
functions and the console behind the local gateway. An operator signs in, approves a transfer under
review, watches its execution complete and finds the transfer's hold in the ledger explorer; a read-only
operator and a form without its CSRF token are refused with a page that says why, and nothing is done.
A transfer above the second-approval amount takes two different operators; a payment intent's page shows
its hold and capture."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
from finfaas.platform import keys
from finfaas_dev.bench import payments as payments_bench
from finfaas_dev.bench.suite import FUNCTIONS_DIR
from finfaas_dev.bench.transfers import (
    Customer,
    _request,
    client_token,
    open_customers,
    stack_text,
    write_suite_secrets,
)
from finfaas_dev.net import free_port, wait_for
from finfaas_dev.tools import CHROMIUM_PATH
from support.gateway_harness import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# Chromium as the brief pins it: Debian's binary, nothing of its own downloaded, no network of its own.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Set to docs/console to refresh the screenshots docs/console.md shows.
SCREENSHOTS_DIR_ENV = "FINFAAS_CONSOLE_SCREENSHOTS_DIR"
REVIEW_SECONDS_MAX = 60
COMPLETE_SECONDS_MAX = 60
PAGE_TIMEOUT_MS = 20_000
AUTH_READY_SECONDS_MAX = 60
ACTOR, READER, CHECKER = "operator-ada", "operator-rex", "operator-cy"
# Operators read executions and ledger transfers through the orchestrator's and the ledger's APIs,
# which need their read scopes as well.
OPERATORS = {ACTOR: ("ops", "ops:act", "orchestrator:read", "ledger:read"),
             READER: ("ops", "orchestrator:read", "ledger:read"),
             CHECKER: ("ops", "ops:act", "orchestrator:read", "ledger:read")}
# Above this a review's approval takes two operators: the module's other transfers (15,000.00) stay below.
SECOND_APPROVAL_ABOVE_MAJOR = 20_000
TWO_OPERATORS_AMOUNT_MINOR = 2_500_000
# The console, the accounts function its ledger pages read statements from, payments for its page, and the
# relay that serves the queues' figures and dead letters (no schedule here: nothing else of it runs).
CONSOLE_STACK_ENTRY = "".join(f"""  {name}:
    lang: python3-http
    handler: {FUNCTIONS_DIR / name}
    image: bench/{name}
    environment:
      exec_timeout: "30s"
""" for name in ("console", "accounts", "payments", "relay"))


@pytest.fixture(scope="module")
def suite(embedded_aws, tmp_path_factory):
    """The gateway with the saga's functions and the console; two operator accounts in auth-clients."""
    folder = tmp_path_factory.mktemp("console-e2e")
    secrets_dir = Path(os.environ["FINFAAS_SECRETS_DIR"])
    write_suite_secrets(secrets_dir)
    keys.ensure_service_clients(secrets_dir, {**OPERATORS, "payments": keys.SERVICE_CLIENTS["payments"]},
                                out=lambda line: None)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # A function's settings come from its stack.yml entry, as in its container.
    transfers_app_id = '      AWS_SDK_UA_APP_ID: "transfers"\n'
    stack = stack_text()
    assert stack.count(transfers_app_id) == 1
    stack = stack.replace(transfers_app_id, transfers_app_id +
                          f'      TRANSFERS_SECOND_APPROVAL_ABOVE_MAJOR: "{SECOND_APPROVAL_ABOVE_MAJOR}"\n')
    (folder / "stack.yml").write_text(stack + CONSOLE_STACK_ENTRY)
    env = {**os.environ, **embedded_aws.env(), "FINFAAS_GATEWAY_URL": base_url,
           "FINFAAS_JWKS_URL": f"{base_url}/function/auth/.well-known/jwks.json",
           "RAIL_SANDBOX_SETTLE_SECONDS": "1"}
    gateway = GatewayProcess(folder, ["--logs-dir", str(folder / "functions")], env=env,
                             stack=folder / "stack.yml", port=port)
    try:
        # Every function's first call fetches the auth function's keys with a 3 s timeout: start auth first,
        # so a slow cold start of it on a loaded machine is not taken for missing keys.
        jwks = f"{base_url}/function/auth/.well-known/jwks.json"
        wait_for(lambda: _request("GET", jwks, "")[0] == 200, AUTH_READY_SECONDS_MAX, "the auth function")
        yield base_url
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def operators() -> dict[str, str]:
    """Each operator's secret, as the account's owner was given it."""
    folder = Path(os.environ["FINFAAS_SECRETS_DIR"])
    return {name: json.loads((folder / f"{name}-client").read_text())["client_secret"] for name in OPERATORS}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium with a fresh profile for the module; each test starts signed out."""
    if not CHROMIUM_PATH.exists():
        pytest.fail(f"{CHROMIUM_PATH} is missing: run `finfaas tools install`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM_PATH),
            args=CHROMIUM_ARGS, headless=True, viewport=DESKTOP)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    browser.clear_cookies()
    tab = browser.new_page()
    yield tab
    tab.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    configured = os.environ.get(SCREENSHOTS_DIR_ENV)
    folder = Path(configured) if configured else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def customers(suite) -> list[Customer]:
    return open_customers(2, secrets.token_hex(3))


def held_for_review(base_url: str, sender: Customer, payee: Customer, amount_minor: int = 1_500_000) -> str:
    """A transfer over the risk's review amount: it waits for an operator's review."""
    ops = client_token("ops", "ops:act")
    tier_path = f"/function/transfers/_/ops/customers/{sender.customer_id}/tier"
    status, _ = _request("PUT", base_url + tier_path, ops, {"tier": "PREMIUM"})
    assert status == 204
    status, answer = _request("POST", f"{base_url}/function/transfers/transfers", sender.token,
                              {"debit_account_id": sender.account_id, "credit_account_id": payee.account_id,
                               "currency": "USD", "amount": amount_minor},
                              {"Idempotency-Key": secrets.token_hex(8)})
    assert status == 202, answer
    transfer_id = answer["transfer_id"]
    wait_for(lambda: transfer_status(base_url, sender, transfer_id)["decision_pending"] == "review",
             REVIEW_SECONDS_MAX, "the review request")
    return transfer_id


def transfer_status(base_url: str, customer: Customer, transfer_id: str) -> dict:
    path = f"/function/transfers/transfers/{transfer_id}?wait=1"
    status, view = _request("GET", base_url + path, customer.token)
    assert status == 200, view
    return view


def sign_in(page, base_url: str, operator: str, secret: str) -> None:
    page.goto(f"{base_url}/function/console/sign-in")
    page.fill("input[name=operator]", operator)
    page.fill("input[name=secret]", secret)
    page.click("text=Sign in >> nth=-1")
    page.wait_for_url("**/function/console/executions")


def post_form(page, action: str, fields: dict[str, str]) -> None:
    """Submit a form the page does not offer, as a hand-made or cross-site request would."""
    # The submit only starts a navigation: wait for the page it leads to, not the one already loaded.
    with page.expect_navigation():
        page.evaluate("""([action, fields]) => {
            const form = document.createElement("form");
            form.method = "post"; form.action = action;
            for (const [name, value] of Object.entries(fields)) {
                const input = document.createElement("input");
                input.type = "hidden"; input.name = name; input.value = value; form.appendChild(input);
            }
            document.body.appendChild(form); form.submit();
        }""", [action, fields])


def test_an_operator_approves_a_transfer_under_review_and_watches_it_complete(
        suite, customers, operators, page, screenshots):
    # GIVEN a transfer waiting for an operator's review
    sender, payee = customers
    transfer_id = held_for_review(suite, sender, payee)

    # WHEN the acting operator signs in, finds it in the review queue and approves it with a reason
    sign_in(page, suite, ACTOR, operators[ACTOR])
    page.click("text=Review queue")
    row = page.locator(f"tr[data-transfer='{transfer_id}']")
    assert "15000.00 USD" in row.inner_text()
    page.screenshot(path=str(screenshots / "reviews.png"), full_page=True)
    row.locator("input[name=reason]").fill("called the customer")
    row.locator("button[value=approve]").click()

    # THEN the console says so, and the execution's page shows the saga reaching its end
    assert f"Transfer {transfer_id} approved." in page.inner_text("main")
    execution_url = f"{suite}/function/console/executions/transfer:{transfer_id}"

    def succeeded() -> bool:
        page.goto(execution_url)
        return page.get_attribute("[data-status]", "data-status") == "SUCCEEDED"

    wait_for(succeeded, COMPLETE_SECONDS_MAX, "the saga to succeed")
    assert transfer_status(suite, sender, transfer_id)["status"] == "COMPLETED"
    assert page.get_attribute("g[data-state='Validate']", "data-outcome") == "succeeded"
    assert page.locator("line.taken").count() >= 3
    page.screenshot(path=str(screenshots / "execution.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(screenshots / "execution-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)
    page.goto(f"{suite}/function/console/executions?status=SUCCEEDED&state_machine=transfer")
    assert page.locator(f"tr[data-execution='transfer:{transfer_id}']").count() == 1
    page.screenshot(path=str(screenshots / "executions.png"), full_page=True)

    # AND the sender's account in the ledger explorer shows the transfer's hold, posted by the saga, and its
    # expiry: none, since the saga's hold waits for the rail however long it takes
    page.click("text=Ledger")
    page.fill("input[name=account]", sender.account_id)
    page.click("text=Open the account")
    assert page.locator("[data-available]").count() == 1
    hold = page.locator(f"tr[data-hold='{transfer_id}-hold']")
    assert "POSTED" in hold.inner_text() and f"{transfer_id}-post" in hold.inner_text()
    assert hold.locator("[data-expires]").inner_text() == "never"
    page.screenshot(path=str(screenshots / "ledger-account.png"), full_page=True)

    # AND the explorer's Checks page, run again, finds this stage's ledger and audit log consistent once the
    # saga has ended (tampered entries and chain links: tests/unit/services/ledger/test_ledger_ops_checks.py)
    page.click("text=Ledger")
    page.click("a[data-checks]")
    page.click("a[data-run-again]")
    assert page.get_attribute("[data-check=ledger]", "data-status") == "passed"
    assert page.get_attribute("[data-check=audit]", "data-status") == "passed", page.inner_text("main")
    page.screenshot(path=str(screenshots / "ledger-checks.png"), full_page=True)


def test_a_read_only_operator_is_refused_an_approval_and_nothing_is_decided(
        suite, customers, operators, page, screenshots):
    # GIVEN a transfer under review and a read-only operator signed in, who is offered no decision
    sender, payee = customers
    transfer_id = held_for_review(suite, sender, payee)
    sign_in(page, suite, READER, operators[READER])
    page.click("text=Review queue")
    assert page.locator(f"tr[data-transfer='{transfer_id}']").inner_text().strip().endswith("read-only")
    csrf = page.get_attribute("input[name=csrf]", "value")

    # WHEN the operator sends an approval anyway, with the session's own CSRF token
    post_form(page, f"/function/console/reviews/{transfer_id}",
              {"csrf": csrf, "decision": "approve", "reason": "not mine to decide"})

    # THEN the page says why, and the transfer still waits for a review
    assert "read-only" in page.inner_text("main") and "Nothing was done" in page.inner_text("main")
    page.screenshot(path=str(screenshots / "refused.png"), full_page=True)
    assert transfer_status(suite, sender, transfer_id)["decision_pending"] == "review"


def test_a_stop_without_its_csrf_token_is_refused_and_the_execution_keeps_running(
        suite, customers, operators, page):
    # GIVEN a saga waiting for a review and the acting operator on its page
    sender, payee = customers
    transfer_id = held_for_review(suite, sender, payee)
    sign_in(page, suite, ACTOR, operators[ACTOR])
    page.goto(f"{suite}/function/console/executions/transfer:{transfer_id}")
    assert page.get_attribute("[data-status]", "data-status") == "RUNNING"

    # WHEN a stop arrives without the CSRF token
    post_form(page, f"/function/console/executions/transfer:{transfer_id}/stop", {"reason": "forged"})

    # THEN it is refused with a page that says why, and the saga still waits
    assert "CSRF" in page.inner_text("main")
    page.goto(f"{suite}/function/console/executions/transfer:{transfer_id}")
    assert page.get_attribute("[data-status]", "data-status") == "RUNNING"

    # AND WHEN the operator stops it through the page's own form, the saga's Catch fails the transfer
    page.fill("input[name=reason]", "customer withdrew the order")
    page.click("button:has-text('Stop')")
    assert "Stop requested." in page.inner_text("main")
    wait_for(lambda: transfer_status(suite, sender, transfer_id)["status"] == "FAILED", COMPLETE_SECONDS_MAX,
             "the stopped transfer to fail")

    # AND WHEN the failed execution is redriven from its page, it resumes where it stopped: its Fail state,
    # so it fails again and the transfer stays failed, its hold never taken again
    def execution_status() -> str:
        page.goto(f"{suite}/function/console/executions/transfer:{transfer_id}")
        return page.get_attribute("[data-status]", "data-status")

    wait_for(lambda: execution_status() == "FAILED", COMPLETE_SECONDS_MAX, "the stopped execution to fail")
    page.click("button:has-text('Redrive')")
    assert "Redriven." in page.inner_text("main")
    wait_for(lambda: execution_status() == "FAILED", COMPLETE_SECONDS_MAX, "the redriven execution to end")
    assert transfer_status(suite, sender, transfer_id)["status"] == "FAILED"


def queue_counts(queue: str) -> dict[str, int]:
    from finfaas.platform.config import resource_name
    from finfaas_dev.awsclients import client

    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=resource_name(queue))["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {name: int(attributes[name]) for name in names}


def test_a_dead_letter_is_redriven_by_an_actor_only_and_its_queue_consumes_it(
        suite, operators, page, screenshots):
    # GIVEN a wake-up of the orchestrator (sealed, as the suite sends them) that ended in its dead-letter
    # queue
    from finfaas.platform.config import resource_name
    from finfaas.workflow.wakeups import SWEEP, SqsWaker, Wakeup

    SqsWaker(queue_name=resource_name("orchestrator-dlq")).send(Wakeup(SWEEP, reason="sweep"))
    assert queue_counts("orchestrator-dlq")["ApproximateNumberOfMessages"] == 1

    # WHEN a read-only operator sends a redrive the page does not offer them
    sign_in(page, suite, READER, operators[READER])
    page.goto(f"{suite}/function/console/dead-letters/orchestrator")
    row = page.locator("tr[data-letter]")
    assert row.count() == 1 and row.inner_text().strip().endswith("read-only")
    message_id = row.get_attribute("data-letter")
    post_form(page, "/function/console/dead-letters/orchestrator/redrive",
              {"csrf": page.get_attribute("input[name=csrf]", "value"), "message_id": message_id})

    # THEN it is refused and the letter stays
    assert "ops:act" in page.inner_text("main") and "Nothing was done" in page.inner_text("main")
    assert queue_counts("orchestrator-dlq")["ApproximateNumberOfMessages"] == 1

    # WHEN the acting operator finds it from the queues' list, reads it and redrives it
    page.context.clear_cookies()
    sign_in(page, suite, ACTOR, operators[ACTOR])
    page.click("text=Dead letters")
    assert page.get_attribute("tr[data-queue='orchestrator'] [data-letters]", "data-letters") == "1"
    page.screenshot(path=str(screenshots / "dead-letters.png"), full_page=True)
    page.click("tr[data-queue='orchestrator'] a")
    letter = page.locator(f"tr[data-letter='{message_id}']")
    shown = letter.inner_text()
    assert '"kind": "sweep"' in shown and "dev.finfaas.orchestrator.sweep" in shown
    page.screenshot(path=str(screenshots / "dead-letter-queue.png"), full_page=True)
    letter.locator("button:has-text('Redrive')").click()

    # THEN the page says it went back, the dead-letter queue is empty, and the orchestrator consumed it
    assert "1 letter(s) sent back to the orchestrator queue." in page.inner_text("main")
    assert page.locator("[data-empty]").count() == 1

    def consumed() -> bool:
        counts = queue_counts("orchestrator")
        return counts == {"ApproximateNumberOfMessages": 0, "ApproximateNumberOfMessagesNotVisible": 0}

    wait_for(consumed, COMPLETE_SECONDS_MAX, "the orchestrator to consume the redriven wake-up")
    assert queue_counts("orchestrator-dlq") == {"ApproximateNumberOfMessages": 0,
                                               "ApproximateNumberOfMessagesNotVisible": 0}

    # AND the health page shows the queues' depths and the running functions' breakers and refusals
    page.click("text=Health")
    assert page.locator("tr[data-queue='orchestrator'] [data-visible]").inner_text().isdigit()
    assert page.locator("tr[data-resilience='relay']").count() == 1
    page.screenshot(path=str(screenshots / "health.png"), full_page=True)


def test_an_approval_above_the_second_approval_amount_takes_two_different_operators(
        suite, customers, operators, browser, page, screenshots):
    # GIVEN a 25,000.00 transfer under review, above the 20,000 second-approval amount
    sender, payee = customers
    transfer_id = held_for_review(suite, sender, payee, TWO_OPERATORS_AMOUNT_MINOR)
    row = f"tr[data-transfer='{transfer_id}']"

    # WHEN one operator approves it
    sign_in(page, suite, ACTOR, operators[ACTOR])
    page.click("text=Review queue")
    page.locator(row).locator("input[name=reason]").fill("called the customer")
    page.locator(row).locator("button[value=approve]").click()

    # THEN the approval waits for a second operator: the queue shows it, and the saga still waits
    assert "awaits a second, different operator" in page.inner_text("main")
    assert page.get_attribute(f"{row} [data-pending-approval]", "data-pending-approval") == ACTOR
    assert transfer_status(suite, sender, transfer_id)["decision_pending"] == "review"

    # WHEN the same operator approves again
    page.locator(row).locator("input[name=reason]").fill("still fine")
    page.locator(row).locator("button[value=approve]").click()

    # THEN the transfers function refuses, naming the rule, and nothing moved
    assert "second, different operator" in page.inner_text("main")
    assert transfer_status(suite, sender, transfer_id)["decision_pending"] == "review"

    # WHEN a second operator, in a session of their own, confirms it
    browser.clear_cookies()
    sign_in(page, suite, CHECKER, operators[CHECKER])
    page.click("text=Review queue")
    assert "awaits your confirmation" in page.locator(row).inner_text()
    page.screenshot(path=str(screenshots / "reviews-second-approval.png"), full_page=True)
    page.locator(row).locator("input[name=reason]").fill("four eyes: agreed")
    page.locator(row).locator("button[value=approve]").click()

    # THEN the saga takes the approval and the transfer completes
    assert f"Transfer {transfer_id} approved." in page.inner_text("main")
    wait_for(lambda: transfer_status(suite, sender, transfer_id)["status"] == "COMPLETED",
             COMPLETE_SECONDS_MAX, "the approved transfer to complete")


def test_a_payment_intents_page_shows_its_hold_capture_and_ledger_transfers(
        suite, operators, page, screenshots):
    # GIVEN a merchant and a payment authorized, then captured
    merchant_id = f"m-{secrets.token_hex(4)}"
    payments_bench.onboard(suite, client_token("ops", "ops:act"), merchant_id)
    [(account_id, token)] = payments_bench.open_customers(secrets.token_hex(3), 1)
    payment_id = payments_bench.pay(suite, account_id, token, merchant_id, way="manual")

    # WHEN a read-only operator looks it up by id
    sign_in(page, suite, READER, operators[READER])
    page.click("text=Ledger")
    page.fill("input[name=payment]", payment_id)
    page.click("text=Open the payment")

    # THEN the page shows its status, amounts and the ledger transfers behind them
    assert page.get_attribute("[data-intent-status]", "data-intent-status") == "succeeded"
    assert page.locator("[data-received]").inner_text() == "1.00"
    assert page.locator("tr[data-ledger-step='capture']").count() == 1
    page.screenshot(path=str(screenshots / "payment-intent.png"), full_page=True)


def test_a_read_only_operators_token_is_refused_an_ops_action_by_the_function_itself(suite, customers):
    # GIVEN a transfer under review and a read-only operator's token (ops, without ops:act)
    sender, payee = customers
    transfer_id = held_for_review(suite, sender, payee)
    reader = client_token("ops", "orchestrator:read", "ledger:read")

    # WHEN it approves through the transfers function's API directly, as curl would
    status, problem = _request("POST", f"{suite}/function/transfers/_/ops/transfers/{transfer_id}/decision",
                               reader, {"decision": "approve", "note": "not mine"},
                               {"Idempotency-Key": secrets.token_hex(8)})

    # THEN the function refuses for the missing acting scope (problem+json), and the transfer still waits
    assert status == 403 and '"code":"insufficient_scope"' in problem and "ops:act" in problem
    assert transfer_status(suite, sender, transfer_id)["decision_pending"] == "review"
