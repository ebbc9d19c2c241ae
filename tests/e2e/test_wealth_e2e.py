"""A money-market fund through the gateway, as a customer and an operator use it: the wealth function with
auth, the ledger and the orchestrator (woken over SQS by the connector). An operator creates the fund and
publishes each day's income; a customer subscribes; each business date's batch runs as an orchestrator
execution (started by the operator, as the sandbox's manual business date asks) and advances the date;
the customer sees the income, redeems fast (capped) and standard (paid on T+1); a NAV fund's subscription
is confirmed at its trade date's published NAV and re-priced by an operator's correction; a fixed term
bought on Monday matures on Thursday and pays out; another customer's order and position are 404."""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from finfaas.domain.calendar import parse_calendar
from finfaas.domain.ledger import NewAccount
from finfaas.platform import config
from finfaas.platform.keys import (
    DEMO_CREDENTIALS_FILE,
    SIGNING_KEYS_SECRET,
    KeyRing,
    ensure_service_clients,
    write_dev_secrets,
)
from finfaas.services.business_date.model import BusinessDateMode
from finfaas.services.business_date.service import BusinessDateService
from finfaas.services.ledger.service import LedgerService
from finfaas.store.business_date_store import BusinessDateStore
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas_dev.net import free_port, wait_for
from finfaas_dev.relay import ensure_events_mac_key
from finfaas_dev.testing.platform import TokenMinter
from support.gateway_harness import GatewayProcess, http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

REPOSITORY = Path(__file__).resolve().parents[2]
CALENDAR = parse_calendar((REPOSITORY / "infra" / "calendars" / "cn-2027.json").read_text())
FIRST_DAY = date(2027, 3, 1)  # the sample calendar's 2027; the suite's CN date only moves forward
EXECUTION_SECONDS_MAX = 90
WALLET_MINOR = 5_000_000
TOKEN_SECONDS = 900


def _stack(folder: Path) -> Path:
    path = folder / "stack.yml"
    functions = ""
    for name, extra in (("auth", "    secrets: [auth-signing-keys, auth-clients]\n"),
                        ("ledger", ""),
                        ("wealth", "    environment:\n      BUSINESS_DATE_MODE: manual\n"
                                   "      exec_timeout: 60s\n    secrets: [wealth-client]\n"),
                        ("orchestrator", "    annotations:\n      topic: orchestrator\n    environment:\n"
                                         "      exec_timeout: 60s\n    secrets: [orchestrator-client]\n")):
        functions += (f"  {name}:\n    lang: python3-http\n    handler: {REPOSITORY / 'functions' / name}\n"
                      f"    image: finfaas/{name}:test\n{extra}")
    path.write_text("version: 1.0\nprovider:\n  name: openfaas\n  gateway: http://127.0.0.1:8080\n"
                    f"functions:\n{functions}")
    return path


class Suite:
    def __init__(self, folder: Path, aws_env: dict[str, str]) -> None:
        secrets_dir = folder / "secrets"
        write_dev_secrets(secrets_dir, out=lambda _: None)
        ensure_service_clients(secrets_dir, out=lambda _: None)
        ensure_events_mac_key(secrets_dir)
        demo = json.loads((secrets_dir / DEMO_CREDENTIALS_FILE).read_text())
        keyring = KeyRing.from_entries(json.loads((secrets_dir / SIGNING_KEYS_SECRET).read_text()))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, **aws_env, "FINFAAS_SECRETS_DIR": str(secrets_dir),
               "FINFAAS_GATEWAY_URL": self.url,
               "FINFAAS_JWKS_URL": f"{self.url}/function/auth/.well-known/jwks.json"}
        self.gateway = GatewayProcess(folder, env=env, stack=_stack(folder), port=port)
        try:
            self.ops = self._client_token(demo)
            settings = config.auth_settings()
            minter = TokenMinter(keyring, settings.issuer, settings.audience)
            self.customers = {}
            for name in ("ada", "bob"):
                claims = minter.claims(f"cus-{name}-{secrets.token_hex(3)}", ("wealth:read", "wealth:write"),
                                       "customer")
                expires = int(time.time()) + TOKEN_SECONDS
                self.customers[name] = (claims["sub"], minter.sign({**claims, "exp": expires}))
        except BaseException:
            self.gateway.stop()
            raise

    def _client_token(self, demo: dict) -> str:
        basic = base64.b64encode(f"{demo['client_id']}:{demo['client_secret']}".encode()).decode()
        reply = http("POST", self.url + "/function/auth/oauth/token", b"grant_type=client_credentials",
                     {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
                     timeout=30)
        assert reply.status == 200, reply.body
        return reply.json()["access_token"]

    def call(self, method: str, path: str, body=None, token: str | None = None, key: bool = False):
        headers = {"Authorization": f"Bearer {token or self.ops}", "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = secrets.token_hex(8)
        data = json.dumps(body).encode() if body is not None else None
        return http(method, self.url + path, data, headers, timeout=60)

    def run_batch(self, day: date) -> dict:
        started = self.call("POST", "/function/wealth/_/ops/batch", {"market": "CN",
                                                                     "business_date": day.isoformat()})
        assert started.status == 200, started.body
        execution_id = started.json()["execution_id"]

        def finished():
            view = self.call("GET", f"/function/orchestrator/executions/{execution_id}").json()
            return view if view["status"] != "RUNNING" else None

        view = wait_for(finished, EXECUTION_SECONDS_MAX, f"{execution_id} to stop")
        assert view["status"] == "SUCCEEDED", view
        return view


@pytest.fixture(scope="module")
def suite(embedded_aws, tmp_path_factory):
    running = Suite(tmp_path_factory.mktemp("wealth-e2e"), embedded_aws.env())
    try:
        yield running
    finally:
        running.gateway.stop()


def a_monday_from(current: date) -> date:
    """The first Monday after the suite's business date from which four trading days run."""
    day = max(current + timedelta(days=1), FIRST_DAY)
    def trades(n: int) -> bool:
        return CALENDAR.is_trading_day(day + timedelta(days=n))

    while not (day.weekday() == 0 and all(trades(n) for n in range(4))):
        day += timedelta(days=1)
    return day


def wallet(customer_id: str) -> str:
    ledger = LedgerService(ledger_store_from_config())
    ledger.ensure_system_accounts("CNY")
    account_id = f"w-{secrets.token_hex(6)}"
    ledger_store_from_config().open_account(NewAccount(account_id, customer_id, "CNY"), datetime.now(UTC))
    ledger.deposit(account_id, WALLET_MINOR, "CNY", transfer_id=f"{account_id}-opening")
    return account_id


def test_subscribe_before_the_cut_off_advance_the_date_see_the_income_redeem_fast_and_standard(suite):
    dates = BusinessDateService(BusinessDateStore(), BusinessDateMode.MANUAL)
    monday = a_monday_from(dates.current("CN").business_date)
    dates.advance("CN", to=monday)
    product_id = f"mmf-{secrets.token_hex(4)}"
    created = suite.call("POST", "/function/wealth/_/ops/products",
                         {"product_id": product_id, "kind": "mmf", "name": "Cash Plus", "minimum": 100,
                          "cutoff": "23:59:59"}, key=True)
    assert created.status == 201, created.body
    for n in range(7):
        published = suite.call("POST", f"/function/wealth/_/ops/products/{product_id}/income",
                               {"date": (monday + timedelta(days=n)).isoformat(),
                                "income_per_10k_units": "0.6512"}, key=True)
        assert published.status == 201, published.body
    again = suite.call("POST", f"/function/wealth/_/ops/products/{product_id}/income",
                       {"date": monday.isoformat(), "income_per_10k_units": "0.70001"}, key=True)
    assert again.status == 422 and again.json()["errors"][0]["field"] == "income_per_10k_units"

    ada, ada_token = suite.customers["ada"]
    ada_wallet = wallet(ada)
    # a NAV fund (1.2 % subscription fee) and a 2-day fixed term (3.6 % ACT/360), bought from another
    # wallet of ada's on Monday: confirmed Tuesday by the same batches
    nav_id, term_id = f"nav-{secrets.token_hex(4)}", f"ft-{secrets.token_hex(4)}"
    for body in ({"product_id": nav_id, "kind": "nav_fund", "name": "Growth", "minimum": 100,
                  "cutoff": "23:59:59", "subscription_fee_rate": "0.012",
                  "fee_tiers": [[0, "0.015"], [7, "0.005"]]},
                 {"product_id": term_id, "kind": "fixed_term", "name": "Two days", "minimum": 100_000,
                  "cutoff": "23:59:59", "rate": "0.036", "demand_rate": "0.003", "term_days": 2,
                  "day_count": "ACT/360"}):
        made = suite.call("POST", "/function/wealth/_/ops/products", body, key=True)
        assert made.status == 201, made.body
    other_wallet = wallet(ada)
    for body in ({"order_id": "nav-1", "product_id": nav_id, "account_id": other_wallet,
                  "amount": 1_000_000},
                 {"order_id": "term-1", "product_id": term_id, "account_id": other_wallet,
                  "amount": 1_000_000, "maturity_instruction": "pay_out"}):
        placed = suite.call("POST", "/function/wealth/subscriptions", body, token=ada_token, key=True)
        assert placed.status == 201, placed.body
    published = suite.call("POST", f"/function/wealth/_/ops/products/{nav_id}/nav",
                           {"date": monday.isoformat(), "nav": "1.1800"}, key=True)
    assert published.status == 201, published.body
    # Ada subscribes 10,000.00 on Monday before the cut-off (this product's is 23:59:59)
    order = suite.call("POST", "/function/wealth/subscriptions",
                       {"order_id": "sub-1", "product_id": product_id, "account_id": ada_wallet,
                        "amount": 1_000_000}, token=ada_token, key=True)
    assert order.status == 201, order.body
    assert (order.json()["trade_date"], order.json()["status"]) == (monday.isoformat(), "pending")
    assert order.json()["confirmation_date"] == (monday + timedelta(days=1)).isoformat()

    # the batches of Monday and Tuesday: confirmed Tuesday, which earns 0.65 on 10,000.00
    suite.run_batch(monday)
    suite.run_batch(monday + timedelta(days=1))
    position = suite.call("GET", f"/function/wealth/positions/{product_id}", token=ada_token)
    assert position.status == 200, position.body
    assert (position.json()["units"], position.json()["yesterday_income"],
            position.json()["cumulative_income"]) == (1_000_065, 65, 65)
    income = suite.call("GET", f"/function/wealth/positions/{product_id}/income", token=ada_token).json()
    assert income["data"] == [{"date": (monday + timedelta(days=1)).isoformat(), "income": 65}]
    # an operator sees the same position, its currency and income history (the console's position page)
    ops_view = suite.call("GET", f"/function/wealth/_/ops/positions/{ada}/{product_id}")
    assert ops_view.status == 200, ops_view.body
    assert (ops_view.json()["customer_id"], ops_view.json()["currency"], ops_view.json()["units"]) == (
        ada, "CNY", 1_000_065)
    assert ops_view.json()["income"] == income["data"]

    # the NAV order, confirmed on Tuesday at Monday's NAV: net 9,881.42 ÷ 1.1800 = 8,374.08 units, fee 118.58
    nav_order = suite.call("GET", "/function/wealth/orders/nav-1", token=ada_token).json()
    assert (nav_order["status"], nav_order["nav"], nav_order["units"], nav_order["fee"]) == (
        "confirmed", "1.1800", 837_408, 11_858)
    # the NAV is published once; an operator's correction (ops:act, with a reason) re-prices the order
    again = suite.call("POST", f"/function/wealth/_/ops/products/{nav_id}/nav",
                       {"date": monday.isoformat(), "nav": "1.2000"}, key=True)
    assert again.status == 409 and again.json()["errors"][0]["field"] == "date", again.body
    correction = f"/function/wealth/_/ops/products/{nav_id}/nav/{monday.isoformat()}/correction"
    unexplained = suite.call("POST", correction, {"nav": "1.2000"}, key=True)
    assert unexplained.status == 422, unexplained.body
    assert unexplained.json()["errors"][0]["field"] == "reason"
    corrected = suite.call("POST", correction, {"nav": "1.2000", "reason": "restated by the manager"},
                           key=True)
    assert corrected.status == 200, corrected.body
    assert (corrected.json()["repriced"], corrected.json()["corrections"][0]["previous"]) == (1, "1.1800")
    nav_order = suite.call("GET", "/function/wealth/orders/nav-1", token=ada_token).json()
    assert (nav_order["nav"], nav_order["units"], nav_order["corrections"]) == ("1.2000", 823_452, 1)

    # Wednesday: a fast redemption is paid at once; past the 10,000.00 cap it is refused naming the amount
    fast = suite.call("POST", "/function/wealth/redemptions",
                      {"order_id": "fast-1", "product_id": product_id, "account_id": ada_wallet,
                       "amount": 600_000, "mode": "fast"}, token=ada_token, key=True)
    assert fast.status == 201, fast.body
    over = suite.call("POST", "/function/wealth/redemptions",
                      {"order_id": "fast-2", "product_id": product_id, "account_id": ada_wallet,
                       "amount": 400_001, "mode": "fast"}, token=ada_token, key=True)
    assert over.status == 422 and over.json()["errors"][0]["field"] == "amount", over.body
    ledger = LedgerService(ledger_store_from_config())
    assert ledger.get_account(ada_wallet).balance_minor == WALLET_MINOR - 1_000_000 + 600_000

    # a standard redemption on Wednesday is paid on Thursday (T+1), the units earning until then
    standard = suite.call("POST", "/function/wealth/redemptions",
                          {"order_id": "std-1", "product_id": product_id, "account_id": ada_wallet,
                           "amount": 100_000}, token=ada_token, key=True)
    assert standard.status == 201, standard.body
    thursday = date.fromisoformat(standard.json()["confirmation_date"])
    assert thursday == monday + timedelta(days=3)
    suite.run_batch(monday + timedelta(days=2))
    suite.run_batch(thursday)
    assert ledger.get_account(ada_wallet).balance_minor == WALLET_MINOR - 1_000_000 + 700_000
    confirmed = suite.call("GET", "/function/wealth/orders/std-1", token=ada_token).json()
    assert confirmed["status"] == "confirmed"

    # the fixed term (value date Tuesday, 2 days) matured on Thursday: 10,000.00 and 2.00 interest paid out
    term = suite.call("GET", "/function/wealth/orders/term-1", token=ada_token).json()
    assert term["status"] == "matured", term
    assert ledger.get_account(other_wallet).balance_minor == WALLET_MINOR - 1_000_000 + 200

    # Bob sees neither Ada's order nor a position of his own
    _, bob_token = suite.customers["bob"]
    assert suite.call("GET", "/function/wealth/orders/sub-1", token=bob_token).status == 404
    assert suite.call("GET", f"/function/wealth/positions/{product_id}", token=bob_token).status == 404
