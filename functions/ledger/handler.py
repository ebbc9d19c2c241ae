"""The ledger function: transfers, holds, linked legs and reversals for internal services; ops controls.

Callers are client apps with client_credentials tokens (scopes ledger:write, ledger:read, ops).
Every money movement needs an Idempotency-Key, recorded in the ledger's own transaction, and its
audit record travels in the same transaction's outbox item (the outbox relay appends it to the audit
chain `ledger-outbox-<n>`); refusals are audited at once in `ledger-<shard>`. Status codes per
refusal are listed in finfaas.services.ledger.api.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.platform import jwt_auth
from finfaas.platform.audit import AuditLog
from finfaas.platform.http import FunctionApp, Request, Response
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.platform.ratelimit import RateLimit, RateLimiter
from finfaas.platform.schedule import ScheduleProof, schedule_keys_from_config
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.business_date import api as business_date_api
from finfaas.services.business_date.api import AdvanceBody, BusinessDateView, MarketQuery
from finfaas.services.ledger.api import (
    AccountBody,
    Answer,
    AuditVerifyView,
    BalanceList,
    BalanceView,
    BatchQuery,
    CurrencyBody,
    ExpiryQuery,
    HoldBody,
    HoldList,
    HoldsQuery,
    LedgerApi,
    LedgerCaller,
    LedgerChecks,
    LedgerCheckView,
    LinkedBody,
    PostBody,
    ResolutionBody,
    TransferBody,
    TransferList,
    TransferView,
    expiry_sweep_holds_max,
    ledger_error_table,
)

FUNCTION_NAME = "ledger"
READ, WRITE, OPS = "ledger:read", "ledger:write", jwt_auth.OPS_SCOPE
# Callers are internal services: limits protect the ledger from a runaway client, not from people.
# A lease of 100 tokens per write makes the limiter cost about 0.01 DynamoDB writes per request.
MONEY_LIMIT = RateLimit("ledger_money", requests_max=60_000, window_seconds=60, tokens_per_call=100)
READ_LIMIT = RateLimit("ledger_read", requests_max=60_000, window_seconds=60, tokens_per_call=100)
LIMITS = {limit.name: limit for limit in (MONEY_LIMIT, READ_LIMIT)}


@dataclass
class LedgerServices:
    """What the routes and the platform need; built from configuration on first use, or given by tests."""

    api: LedgerApi
    guard: IdempotencyGuard
    limiter: RateLimiter
    audit: AuditLog | None
    probe: Callable[[], None]
    dynamodb_calls: Callable[[], dict[str, int]] = dict
    ledger_store: Any = None  # the DynamoDB store itself, for botocore hooks in tests and benchmarks


def build_services() -> LedgerServices:
    """The services on this stage's tables and audit chain (imports AWS code: call lazily)."""
    from finfaas.platform import config
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, signing_key_from_text
    from finfaas.services.ledger.service import LedgerService
    from finfaas.store.audit_store import AuditStore
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import DynamoCallMeter, ledger_store_from_config
    from finfaas.store.ratelimit_store import RateLimitStore

    meter = DynamoCallMeter()
    meter.start()
    audit_key = signing_key_from_text(config.read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    ledger_store = ledger_store_from_config()
    records = IdempotencyStore()
    return LedgerServices(
        api=LedgerApi(LedgerService(ledger_store), records),
        guard=IdempotencyGuard(records, FUNCTION_NAME),
        limiter=RateLimiter(RateLimitStore(), LIMITS),
        audit=AuditLog(AuditStore(), FUNCTION_NAME, key=audit_key),
        probe=lambda: ledger_store.get_account("readiness-probe"),
        dynamodb_calls=meter.snapshot,
        ledger_store=ledger_store,
    )


def build_business_dates() -> Any:
    """The business date on this stage's table, in the stage's mode (imports AWS code: call lazily)."""
    from finfaas.services.business_date.model import mode_from_env
    from finfaas.services.business_date.service import BusinessDateService
    from finfaas.store.business_date_store import BusinessDateStore

    return BusinessDateService(BusinessDateStore(), mode_from_env())


def build_checks() -> LedgerChecks:
    """The ledger check and the audit verification on this stage's tables (imports AWS code: call lazily)."""
    from finfaas.platform import config
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, keyring_from_text
    from finfaas.store.audit_store import AuditStore
    from finfaas.store.ledger_store import ledger_store_from_config

    keyring = keyring_from_text(config.read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    return LedgerChecks(ledger_store_from_config(), AuditStore(), keyring)


services = Lazy(build_services)
checks = Lazy(build_checks)
# The business date lives here because every business line (wealth, loans) posts through the ledger
# and already depends on it; it has its own table and service, so it can move when a line needs it to.
business_dates: Lazy[Any] = Lazy(build_business_dates)
verifier = ReplaceableVerifier()
app = FunctionApp(
    FUNCTION_NAME,
    errors={**ledger_error_table(), **business_date_api.ERRORS},
    verifier=verifier,
    idempotency=lambda: services.get().guard,
    limiter=lambda: services.get().limiter,
    audit=lambda: services.get().audit,
)
# Audit facts of a money movement ride in its own transaction's outbox item; the relay seals them.
MONEY_ROUTE = {"scopes": [WRITE], "status": 201, "idempotency": "in_transaction",
               "rate_limit": MONEY_LIMIT.name, "audit": "outbox"}


def caller(req: Request) -> LedgerCaller:
    assert req.principal is not None
    return LedgerCaller(req.principal.sub, req.principal.kind)


def sent(answer: Answer) -> Response:
    return Response(answer.body, answer.status, dict(answer.headers))


# --- money movement ---------------------------------------------------------------------------------


@app.route("POST", "/transfers", body=TransferBody, response=TransferView, **MONEY_ROUTE)
def create_transfer(req: Request, body: TransferBody) -> Response:
    """Move an amount between two accounts of one currency, at once."""
    req.audit_target = f"transfer:{body.transfer_id}"
    return sent(services.get().api.transfer(caller(req), body, req.idempotency, req.outbox_audit))


@app.route("POST", "/transfers/linked", body=LinkedBody, response=TransferList, **MONEY_ROUTE)
def create_linked_transfers(req: Request, body: LinkedBody) -> Response:
    """Linked legs (fees, splits) that commit all together or not at all."""
    req.audit_target = f"transfer:{body.transfers[0].transfer_id}"
    return sent(services.get().api.transfer_linked(caller(req), body, req.idempotency, req.outbox_audit))


@app.route("POST", "/pending", body=HoldBody, response=TransferView, **MONEY_ROUTE)
def create_hold(req: Request, body: HoldBody) -> Response:
    """Reserve an amount (a hold) until it is posted, voided or expires."""
    req.audit_target = f"transfer:{body.transfer_id}"
    return sent(services.get().api.hold(caller(req), body, req.idempotency, req.outbox_audit))


@app.route("POST", "/pending/{pending_id}/post", body=PostBody, response=TransferView, **MONEY_ROUTE)
def post_hold(req: Request, pending_id: str, body: PostBody) -> Response:
    """Post a hold, in full or (amount given) in part; the rest is released."""
    api = services.get().api
    return sent(api.post_pending(caller(req), pending_id, body, req.idempotency, req.outbox_audit))


@app.route("POST", "/pending/{pending_id}/void", body=ResolutionBody, response=TransferView, **MONEY_ROUTE)
def void_hold(req: Request, pending_id: str, body: ResolutionBody) -> Response:
    """Release a hold without moving money."""
    api = services.get().api
    return sent(api.void_pending(caller(req), pending_id, body, req.idempotency, req.outbox_audit))


@app.route("POST", "/transfers/{transfer_id}/reverse", body=ResolutionBody, response=TransferView,
           **MONEY_ROUTE)
def reverse_transfer(req: Request, transfer_id: str, body: ResolutionBody) -> Response:
    """Undo a posted transfer with a new one in the opposite direction (once per transfer)."""
    return sent(services.get().api.reverse(caller(req), transfer_id, body, req.idempotency, req.outbox_audit))


# --- accounts ---------------------------------------------------------------------------------------


@app.route("POST", "/accounts", scopes=[WRITE], body=AccountBody, status=201, response=BalanceView,
           idempotency="optional", rate_limit=MONEY_LIMIT.name)
def open_account(req: Request, body: AccountBody) -> BalanceView:
    """Open a service's own account (a merchant's, for payments); the same id and fields again find it."""
    req.audit_target = f"account:{body.account_id}"
    return services.get().api.open_account(body)


# --- reading ----------------------------------------------------------------------------------------


@app.route("GET", "/transfers/{transfer_id}", scopes=[READ], rate_limit=READ_LIMIT.name)
def get_transfer(req: Request, transfer_id: str) -> TransferView:
    """One transfer (a hold shows its state and what resolved it)."""
    return services.get().api.get_transfer(caller(req), transfer_id)


@app.route("GET", "/transfers", query=BatchQuery, scopes=[READ], rate_limit=READ_LIMIT.name)
def list_batch(req: Request, query: BatchQuery) -> TransferList:
    """A linked batch's every leg in order, named by its first leg (at most the batch size limit)."""
    return services.get().api.batch(caller(req), query)


@app.route("GET", "/accounts/{account_id}/balance", scopes=[OPS], rate_limit=READ_LIMIT.name)
def get_balance(req: Request, account_id: str) -> BalanceView:
    """An account's posted, pending and available balances (ops scope)."""
    return services.get().api.balance(account_id)


@app.route("GET", "/accounts/{account_id}/holds", query=HoldsQuery, scopes=[OPS], rate_limit=READ_LIMIT.name)
def list_open_holds(req: Request, account_id: str, query: HoldsQuery) -> HoldList:
    """An account's open holds with their expiry, oldest first, a page at a time (ops scope)."""
    return services.get().api.open_holds(account_id, query)


# --- operators --------------------------------------------------------------------------------------


@app.route("POST", "/_/ops/expire-holds", query=ExpiryQuery, idempotency="optional",
           rate_limit=MONEY_LIMIT.name)
def expire_holds(req: Request, query: ExpiryQuery) -> TransferList:
    """Void the holds whose timeout has passed (the sweep a timer calls; safe to repeat)."""
    return services.get().api.expire_holds(query.limit)


# stack.yml's `schedule` of this function (the cron-connector's; a PingSource's on Knative): a test keeps
# them equal, since an unsigned tick runs the expiry at most once per this period.
HOLD_EXPIRY_PERIOD_SECONDS = 60


def schedule_claims() -> Any:
    """Where unsigned ticks claim their period: the rate-limit table (imports AWS code: call lazily)."""
    from finfaas.store.ratelimit_store import RateLimitStore

    return RateLimitStore()


# The hold-expiry schedule: a signed tick, or a stock scheduler's unsigned one that wins its minute's
# claim; no token. Key and table are read on the first tick, so a cold start that answers /_/health
# reads neither.
schedule_proof = ScheduleProof(FUNCTION_NAME, schedule_keys_from_config, schedule_claims,
                               HOLD_EXPIRY_PERIOD_SECONDS)


@app.route("POST", "/", auth=False, media_types=("application/json", "text/plain"), trigger=schedule_proof)
def scheduled_expiry(req: Request) -> TransferList:
    """Void the holds whose timeout has passed, one bounded batch (a schedule tick; safe to run twice at
    once: each expiry is a conditional transaction, and a hold is expired once)."""
    return services.get().api.expire_holds(expiry_sweep_holds_max)


@app.route("POST", "/_/ops/system-accounts", body=CurrencyBody, idempotency="optional",
           rate_limit=MONEY_LIMIT.name)
def ensure_system_accounts(req: Request, body: CurrencyBody) -> BalanceList:
    """Open the currency's funding, settlement, fees, loans and wealth accounts (safe to repeat)."""
    return services.get().api.ensure_system_accounts(body.currency)


@app.route("GET", "/_/ops/business-date", query=MarketQuery, rate_limit=READ_LIMIT.name)
def get_business_date(req: Request, query: MarketQuery) -> BusinessDateView:
    """The market's business date, the one every date rule reads, and its mode (manual or clock)."""
    return business_date_api.business_date_view(business_dates.get().current(query.market))


@app.route("POST", "/_/ops/business-date", body=AdvanceBody, idempotency="required",
           rate_limit=MONEY_LIMIT.name)
def advance_business_date(req: Request, body: AdvanceBody) -> BusinessDateView:
    """Move the business date forward by `days` or to `to` (manual mode only; 409 if another advance won)."""
    req.audit_target = f"business-date:{body.market}"
    advanced = business_dates.get().advance(body.market, days=body.days, to=body.to)
    return business_date_api.business_date_view(advanced)


@app.route("GET", "/_/ops/ledger-check", rate_limit=READ_LIMIT.name)
def ledger_check(req: Request) -> LedgerCheckView:
    """`finfaas ledger check` online: trial balance, entries against balances, holds, reversals; bounded
    (status `too_large` past its budget: run the command line)."""
    return checks.get().ledger()


@app.route("GET", "/_/ops/audit-verify", rate_limit=READ_LIMIT.name)
def audit_verify(req: Request) -> AuditVerifyView:
    """`finfaas audit verify` online: every chain of the audit log walked and named, within the same kind
    of budget."""
    return checks.get().audit()


app.dynamodb_stats_route(lambda: services.get().dynamodb_calls())


@app.readiness_check("ledger-table")
def ledger_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
