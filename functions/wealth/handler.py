"""The wealth function: money-market funds, NAV funds and fixed terms on the ledger, and their batch.

Customers (wealth:write / wealth:read; a customer sees only its own orders and positions, 404 otherwise):
  POST /subscriptions                            hold the amount on the wallet; confirmed on T+1
  POST /redemptions                              mode standard (paid on T+1) or fast (at once, capped)
  GET  /orders, /orders/{order_id}               the customer's orders
  GET  /positions, /positions/{product_id}       units, value, yesterday's and cumulative income, pending
  GET  /positions/{product_id}/income            income per day, newest first
  GET  /products/{product_id}/yields             published figures and 7-day yields (?from=&to=)
Operators (ops scope, and ops:act for every POST; POSTs take an Idempotency-Key):
  POST /_/ops/products                           create a product (opens the fund's ledger accounts)
  GET  /_/ops/products/{product_id}              the product
  GET  /_/ops/positions/{customer_id}/{product_id}  any customer's position with its income history
  POST /_/ops/products/{product_id}/close        no new subscriptions
  POST /_/ops/products/{product_id}/income       a day's income per 10,000 units, once per day
  POST /_/ops/products/{product_id}/nav          a NAV fund's NAV of a trading day, once per day
  POST /_/ops/products/{product_id}/income/{date}/correction   ops:act, with a reason: a day not settled
  POST /_/ops/products/{product_id}/nav/{date}/correction      ops:act, with a reason: re-prices its orders
  POST /_/ops/batch                              start the daily batch for the market's business date
The daily batch (the orchestrator's Tasks, scope wealth:batch; infra/statemachines/wealth-daily):
  POST /batch/begin, /batch/confirm, /batch/income, /batch/settle, /batch/maturity, /batch/end
Schedule (no token: a signed tick, or a stock scheduler's unsigned one):
  POST /                                         where the business date follows the clock, start
                                                 yesterday's batch (named by the date: once a day)
"""

import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from finfaas.domain.money import currency_exponent
from finfaas.platform.audit import AuditLog
from finfaas.platform.http import FunctionApp, Request
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.platform.ratelimit import RateLimit, RateLimiter
from finfaas.platform.schedule import ScheduleProof, schedule_keys_from_config
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.business_date import api as business_date_api
from finfaas.services.wealth.api import (
    ERRORS,
    BatchBody,
    BatchPageView,
    DailyIncomeList,
    DailyIncomeView,
    IncomeBody,
    IncomeCorrectionBody,
    IncomeLine,
    IncomeStatement,
    NavBody,
    NavCorrectionBody,
    NavCorrectionView,
    NavView,
    NewProductBody,
    OpsPositionView,
    OrderList,
    OrderView,
    PositionList,
    PositionView,
    ProductView,
    RedeemBody,
    SettlementList,
    SubscribeBody,
    batch_page_view,
    daily_income_view,
    nav_correction_view,
    nav_view,
    order_view,
    position_view,
    product_view,
    settlement_view,
)
from finfaas.services.wealth.service import WealthService

FUNCTION_NAME = "wealth"
STATE_MACHINE = "wealth-daily"
OPS_LIMIT = RateLimit("wealth_ops", requests_max=600, window_seconds=60, tokens_per_call=10)
MONEY_LIMIT = RateLimit("wealth_money", requests_max=6_000, window_seconds=60, tokens_per_call=50)
READ_LIMIT = RateLimit("wealth_read", requests_max=12_000, window_seconds=60, tokens_per_call=50)
LIMITS = {limit.name: limit for limit in (OPS_LIMIT, MONEY_LIMIT, READ_LIMIT)}
READ, WRITE, BATCH = "wealth:read", "wealth:write", "wealth:batch"
OPS_ACT = "ops:act"  # an operator's action that changes money already moved (corrections), beside ops
GATEWAY_URL_DEFAULT = "http://127.0.0.1:8080"
# A figures list reads at most this many days.
yields_days_max = 92


@dataclass
class WealthServices:
    """What the routes need; built from configuration on first use, or given by tests."""

    wealth: WealthService
    guard: IdempotencyGuard | None
    limiter: RateLimiter | None
    audit: AuditLog | None
    orchestrator: Any
    business_dates: Any


def build_services(suite: Any = None) -> WealthServices:
    """The services on this stage's tables and the ledger in process; `suite` replaces the gateway
    client (tests route it to handlers in process)."""
    from finfaas.platform import config
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, signing_key_from_text
    from finfaas.platform.calendars import load_calendars
    from finfaas.platform.credentials import ServiceTokens
    from finfaas.services.business_date.model import mode_from_env
    from finfaas.services.business_date.service import BusinessDateService
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.suite_clients import OrchestratorClient, SuiteClient
    from finfaas.services.wealth.service import InProcessLedger
    from finfaas.store.audit_store import AuditStore
    from finfaas.store.business_date_store import BusinessDateStore
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.ratelimit_store import RateLimitStore
    from finfaas.store.wealth_store import WealthStore, ledger_balances_reader

    if suite is None:
        gateway_url = os.environ.get("FINFAAS_GATEWAY_URL") or GATEWAY_URL_DEFAULT
        suite = SuiteClient(gateway_url, ServiceTokens.from_secret(gateway_url, client_name=FUNCTION_NAME))
    ledger_store = ledger_store_from_config()
    business_dates = BusinessDateService(BusinessDateStore(), mode_from_env())
    wealth = WealthService(WealthStore(), InProcessLedger(LedgerService(ledger_store),
                                                          ledger_balances_reader(ledger_store)),
                           business_dates, load_calendars(Path(__file__).resolve().parent))
    audit_key = signing_key_from_text(config.read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    return WealthServices(wealth=wealth, guard=IdempotencyGuard(IdempotencyStore(), FUNCTION_NAME),
                          limiter=RateLimiter(RateLimitStore(), LIMITS),
                          audit=AuditLog(AuditStore(), FUNCTION_NAME, key=audit_key),
                          orchestrator=OrchestratorClient(suite), business_dates=business_dates)


services = Lazy(build_services)
verifier = ReplaceableVerifier()
app = FunctionApp(FUNCTION_NAME, errors={**ERRORS, **business_date_api.ERRORS}, verifier=verifier,
                  idempotency=lambda: services.get().guard,
                  limiter=lambda: services.get().limiter, audit=lambda: services.get().audit)


def customer(req: Request) -> str:
    assert req.principal is not None
    return req.principal.sub


# --- customers ----------------------------------------------------------------------------------------


@app.route("POST", "/subscriptions", scopes=[WRITE], body=SubscribeBody, status=201, response=OrderView,
           idempotency="required", rate_limit=MONEY_LIMIT.name)
def subscribe(req: Request, body: SubscribeBody) -> OrderView:
    """Hold the amount on the wallet and record the order, confirmed on T+1 (T: the trading day of the
    business date, or the next one after the cut-off); the same order_id again answers the order."""
    req.audit_target = f"wealth_order:{body.order_id}"
    return order_view(services.get().wealth.subscribe(customer(req), body.command()))


@app.route("POST", "/redemptions", scopes=[WRITE], body=RedeemBody, status=201, response=OrderView,
           idempotency="required", rate_limit=MONEY_LIMIT.name)
def redeem(req: Request, body: RedeemBody) -> OrderView:
    """Standard: the units held, paid to the wallet on T+1; fast: paid at once within the daily cap."""
    req.audit_target = f"wealth_order:{body.order_id}"
    return order_view(services.get().wealth.redeem(customer(req), body.command()))


@app.route("GET", "/orders", scopes=[READ], rate_limit=READ_LIMIT.name)
def list_orders(req: Request) -> OrderList:
    """The customer's orders (at most 100), by order id."""
    return OrderList(data=[order_view(o) for o in services.get().wealth.orders(customer(req))])


@app.route("GET", "/orders/{order_id}", scopes=[READ], rate_limit=READ_LIMIT.name)
def get_order(req: Request, order_id: str) -> OrderView:
    """The customer's order (another customer's: 404)."""
    return order_view(services.get().wealth.order(customer(req), order_id))


@app.route("GET", "/positions", scopes=[READ], rate_limit=READ_LIMIT.name)
def list_positions(req: Request) -> PositionList:
    """The customer's positions."""
    return PositionList(data=[position_view(p) for p in services.get().wealth.positions(customer(req))])


@app.route("GET", "/positions/{product_id}", scopes=[READ], rate_limit=READ_LIMIT.name)
def get_position(req: Request, product_id: str) -> PositionView:
    """Units, value, yesterday's income, cumulative income and pending orders of one position."""
    return position_view(services.get().wealth.position(customer(req), product_id))


@app.route("GET", "/positions/{product_id}/income", scopes=[READ], rate_limit=READ_LIMIT.name)
def income_statement(req: Request, product_id: str) -> IncomeStatement:
    """The position's income per day, newest first (the last 31 days)."""
    days = services.get().wealth.income_statement(customer(req), product_id)
    return IncomeStatement(product_id=product_id, data=[IncomeLine(date=d, income=i) for d, i in days])


@app.route("GET", "/products/{product_id}/yields", scopes=[READ], rate_limit=READ_LIMIT.name)
def yields(req: Request, product_id: str) -> DailyIncomeList:
    """The product's published income per 10,000 units and 7-day yields, the last 31 days settled."""
    wealth = services.get().wealth
    product = wealth.product(product_id)
    last = services.get().business_dates.current(product.market).business_date
    figures = wealth.daily_incomes(product_id, last - timedelta(days=yields_days_max), last)
    return DailyIncomeList(data=[daily_income_view(f) for f in figures])


# --- operators ----------------------------------------------------------------------------------------


@app.route("POST", "/_/ops/products", body=NewProductBody, status=201, response=ProductView,
           idempotency="required", rate_limit=OPS_LIMIT.name)
def create_product(req: Request, body: NewProductBody) -> ProductView:
    """A product of the catalogue, with the fund's ledger accounts (its own, its rounding account)."""
    req.audit_target = f"wealth_product:{body.product_id}"
    return product_view(services.get().wealth.create_product(body.product()))


@app.route("GET", "/_/ops/products/{product_id}", rate_limit=OPS_LIMIT.name)
def get_product(req: Request, product_id: str) -> ProductView:
    return product_view(services.get().wealth.product(product_id))


@app.route("GET", "/_/ops/positions/{customer_id}/{product_id}", rate_limit=OPS_LIMIT.name)
def get_position_ops(req: Request, customer_id: str, product_id: str) -> OpsPositionView:
    """Any customer's position: units, value, pending orders and its income per day, newest first."""
    wealth = services.get().wealth
    found = wealth.position(customer_id, product_id)
    days = wealth.income_statement(customer_id, product_id)
    currency = found.product.currency
    return OpsPositionView(customer_id=customer_id, currency=currency, exponent=currency_exponent(currency),
                           income=[IncomeLine(date=d, income=i) for d, i in days],
                           **position_view(found).model_dump())


@app.route("POST", "/_/ops/products/{product_id}/close", idempotency="optional", rate_limit=OPS_LIMIT.name)
def close_product(req: Request, product_id: str) -> ProductView:
    """No new subscriptions from now on; holdings run on. Safe to repeat."""
    req.audit_target = f"wealth_product:{product_id}"
    return product_view(services.get().wealth.close_product(product_id))


@app.route("POST", "/_/ops/products/{product_id}/income", body=IncomeBody, status=201,
           response=DailyIncomeView, idempotency="required", rate_limit=OPS_LIMIT.name)
def publish_income(req: Request, product_id: str, body: IncomeBody) -> DailyIncomeView:
    """A day's income per 10,000 units (at most 4 decimals); a published day is a 409 naming date (a
    correction is POST .../income/{date}/correction)."""
    from decimal import Decimal

    req.audit_target = f"wealth_product:{product_id}"
    figure = services.get().wealth.publish_income(product_id, body.date, Decimal(body.income_per_10k_units))
    return daily_income_view(figure)


@app.route("POST", "/_/ops/products/{product_id}/income/{day}/correction", scopes=[OPS_ACT],
           body=IncomeCorrectionBody, response=DailyIncomeView, idempotency="required",
           rate_limit=OPS_LIMIT.name)
def correct_income(req: Request, product_id: str, day: str, body: IncomeCorrectionBody) -> DailyIncomeView:
    """Correct a day's income before the batch posts it (the reason kept on the figure); a day the batch
    settled or is posting is a 409 naming date."""
    from decimal import Decimal

    assert req.principal is not None
    req.audit_target = f"wealth_figure:{product_id}:{day}"
    figure = services.get().wealth.correct_income(product_id, _day(day), Decimal(body.income_per_10k_units),
                                                  body.reason, req.principal.sub)
    return daily_income_view(figure)


@app.route("POST", "/_/ops/products/{product_id}/nav", body=NavBody, status=201, response=NavView,
           idempotency="required", rate_limit=OPS_LIMIT.name)
def publish_nav(req: Request, product_id: str, body: NavBody) -> NavView:
    """A NAV fund's NAV of a trading day (at most 4 decimals); a published day is a 409 naming date (a
    correction is POST .../nav/{date}/correction). A late NAV is taken: its waiting orders are confirmed
    by the next batch."""
    from decimal import Decimal

    req.audit_target = f"wealth_product:{product_id}"
    figure = services.get().wealth.publish_nav(product_id, body.date, Decimal(body.nav))
    return nav_view(figure)


@app.route("POST", "/_/ops/products/{product_id}/nav/{day}/correction", scopes=[OPS_ACT],
           body=NavCorrectionBody, response=NavCorrectionView, idempotency="required",
           rate_limit=OPS_LIMIT.name)
def correct_nav(req: Request, product_id: str, day: str, body: NavCorrectionBody) -> NavCorrectionView:
    """Correct a published NAV (the reason kept on the figure): each order priced at it has its
    confirmation reversed and made again at the corrected NAV; `more`: send it again for the rest."""
    from decimal import Decimal

    assert req.principal is not None
    req.audit_target = f"wealth_figure:{product_id}:{day}"
    result = services.get().wealth.correct_nav(product_id, _day(day), Decimal(body.nav), body.reason,
                                               req.principal.sub)
    return nav_correction_view(result)


def _day(text: str) -> date:
    """A date of the path, refused naming `date` (422) when it is not one."""
    from finfaas.domain.wealth import WealthError

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise WealthError("date: YYYY-MM-DD", field="date") from None


@app.route("POST", "/_/ops/batch", body=BatchBody, idempotency="optional", rate_limit=OPS_LIMIT.name)
def start_batch(req: Request, body: BatchBody) -> dict[str, Any]:
    """Start the daily batch for business_date (the market's current one): one execution per date."""
    return start_daily_batch(body.market, body.business_date)


def start_daily_batch(market: str, day: date) -> dict[str, Any]:
    name = f"{market}-{day.isoformat()}"
    execution = services.get().orchestrator.start(STATE_MACHINE, name,
                                                  {"market": market, "business_date": day.isoformat()},
                                                  reference=f"wealth-daily:{name}")
    return {"execution_id": execution.get("execution_id"), "status": execution.get("status")}


# --- the daily batch's Tasks --------------------------------------------------------------------------


@app.route("POST", "/batch/begin", scopes=[BATCH], body=BatchBody, rate_limit=None)
def batch_begin(req: Request, body: BatchBody) -> dict[str, bool]:
    """run: the date is the market's business date; false when the batch already moved past it."""
    return {"run": services.get().wealth.begin_day(body.market, body.business_date)}


@app.route("POST", "/batch/confirm", scopes=[BATCH], body=BatchBody, rate_limit=None)
def batch_confirm(req: Request, body: BatchBody) -> BatchPageView:
    """Confirm a page of the orders due on the date; `next` resumes."""
    return batch_page_view(services.get().wealth.confirm_page(body.market, body.business_date, body.cursor))


@app.route("POST", "/batch/income", scopes=[BATCH], body=BatchBody, rate_limit=None)
def batch_income(req: Request, body: BatchBody) -> BatchPageView:
    """Post a page of holders' income for the date; `next` resumes."""
    return batch_page_view(services.get().wealth.income_page(body.market, body.business_date, body.cursor))


@app.route("POST", "/batch/maturity", scopes=[BATCH], body=BatchBody, rate_limit=None)
def batch_maturity(req: Request, body: BatchBody) -> BatchPageView:
    """Mature a page of the fixed terms ending on the date; `next` resumes."""
    return batch_page_view(services.get().wealth.maturity_page(body.market, body.business_date, body.cursor))


@app.route("POST", "/batch/settle", scopes=[BATCH], body=BatchBody, rate_limit=None)
def batch_settle(req: Request, body: BatchBody) -> SettlementList:
    """Book each fund's rounding remainder and publish its 7-day yield for the date."""
    settled = services.get().wealth.settle(body.market, body.business_date)
    return SettlementList(data=[settlement_view(s) for s in settled])


@app.route("POST", "/batch/end", scopes=[BATCH], body=BatchBody, rate_limit=None)
def batch_end(req: Request, body: BatchBody) -> dict[str, str]:
    """Advance the business date past the date (a rerun finds it moved)."""
    return {"business_date": services.get().wealth.end_day(body.market, body.business_date).isoformat()}


# --- schedule -----------------------------------------------------------------------------------------

# stack.yml's `schedule` of this function (every minute): a tick starts the ended day's execution, which
# every later tick of the day finds started (the orchestrator answers the existing one), so a missed
# tick costs a minute, never a day.
BATCH_TICK_PERIOD_SECONDS = 60
DEFAULT_MARKET = "CN"


def schedule_claims() -> Any:
    """Where unsigned ticks claim their period: the rate-limit table (imports AWS code: call lazily)."""
    from finfaas.store.ratelimit_store import RateLimitStore

    return RateLimitStore()


schedule_proof = ScheduleProof(FUNCTION_NAME, schedule_keys_from_config, schedule_claims,
                               BATCH_TICK_PERIOD_SECONDS)


@app.route("POST", "/", auth=False, media_types=("application/json", "text/plain"), trigger=schedule_proof)
def scheduled_daily_batch(req: Request) -> dict[str, Any]:
    """Where the business date follows the clock, start the batch of the day that just ended (named by
    the date, so a second tick finds it); in manual mode an operator starts it (POST /_/ops/batch)."""
    from finfaas.services.business_date.model import BusinessDateMode

    current = services.get().business_dates.current(DEFAULT_MARKET)
    if current.mode is not BusinessDateMode.CLOCK:
        return {"execution_id": None, "status": "manual business date: started by an operator"}
    return start_daily_batch(DEFAULT_MARKET, current.business_date - timedelta(days=1))


@app.readiness_check("wealth-table")
def wealth_reachable() -> None:
    services.get().wealth.probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
