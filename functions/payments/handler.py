"""The payments function: merchants, payment intents on the ledger's holds, refunds to the wallet.

Apps and customers (payments:write / payments:read; a customer only for its own accounts and intents):
  POST /payment_intents                          a new intent (Idempotency-Key required: the intent's
                                                 id derives from it, so a repeat finds the same intent)
  GET  /payment_intents                          a page, newest first, by merchant or customer, status and
                                                 creation time (sealed cursors)
  GET  /payment_intents/{payment_id}             the intent (another customer's: 404)
  POST /payment_intents/{payment_id}/confirm     risk check, then the hold (manual capture) or the
                                                 payment (automatic capture)
  POST /payment_intents/{payment_id}/capture     all or part of what is capturable
  POST /payment_intents/{payment_id}/cancel      releases what is still capturable
  POST /payment_intents/{payment_id}/refunds     all or part of what was captured, back to the account
Operators (ops scope):
  POST /_/ops/merchants                          onboard a merchant and open its ledger accounts through
                                                 the ledger function (Idempotency-Key required)
  GET  /_/ops/merchants/{merchant_id}            the merchant (settlement account masked)
  POST /_/ops/merchants/{merchant_id}/deactivate INACTIVE from now on; safe to repeat
Schedule (no token: a signed tick, or a stock scheduler's unsigned one, once a minute):
  POST /                                         the capture-expiry job: cancels intents past
                                                 capture_before (reason expired) and warns a day before
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.platform.audit import AuditLog
from finfaas.platform.http import FunctionApp, Request, Response
from finfaas.platform.http.rendering import rendered, stored_response
from finfaas.platform.idempotency import IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER, IdempotencyGuard
from finfaas.platform.ratelimit import RateLimit, RateLimiter
from finfaas.platform.schedule import ScheduleProof, schedule_keys_from_config
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.ledger.ports import CompletionRecords
from finfaas.services.payments.api import (
    ERRORS,
    CancelBody,
    CaptureBody,
    ExpiryRunView,
    IntentList,
    IntentListQuery,
    IntentView,
    KeyInTransaction,
    MerchantBalanceView,
    MerchantView,
    NewIntentBody,
    OnboardBody,
    RefundBody,
    RefundView,
    expiry_run_view,
    intent_view,
    merchant_balance_view,
    merchant_view,
    refund_view,
)
from finfaas.services.payments.model import PaymentIntent, payment_id_for
from finfaas.services.payments.service import Caller, PaymentsService, PaymentsSettings

FUNCTION_NAME = "payments"
# Operators onboard by hand or by script: the limit stops a runaway script, not a person.
OPS_LIMIT = RateLimit("payments_ops", requests_max=600, window_seconds=60, tokens_per_call=10)
# Apps charge many customers: a principal's budget, leased in blocks so the limiter costs little.
MONEY_LIMIT = RateLimit("payments_money", requests_max=6_000, window_seconds=60, tokens_per_call=50)
READ_LIMIT = RateLimit("payments_read", requests_max=12_000, window_seconds=60, tokens_per_call=50)
LIMITS = {limit.name: limit for limit in (OPS_LIMIT, MONEY_LIMIT, READ_LIMIT)}
READ, WRITE = "payments:read", "payments:write"
INTENT_PATH = "/function/payments/payment_intents/{}"
# Environment knobs (stack.yml), each with the product's default.
DEGRADED_APPROVE_ENV = "PAYMENTS_DEGRADED_AUTO_APPROVE_MAJOR"
BREAKER_FAILURES_ENV = "PAYMENTS_RISK_BREAKER_FAILURES"
BREAKER_OPEN_SECONDS_ENV = "PAYMENTS_RISK_BREAKER_OPEN_SECONDS"
GATEWAY_URL_DEFAULT = "http://127.0.0.1:8080"


@dataclass
class PaymentsServices:
    """What the routes need; built from configuration on first use, or given by tests."""

    payments: PaymentsService
    guard: IdempotencyGuard
    limiter: RateLimiter | None
    audit: AuditLog | None
    probe: Callable[[], None]
    dynamodb_calls: Callable[[], dict[str, int]] = dict
    # The idempotency table as a step's ledger transaction writes to it (the guard's own store).
    records: CompletionRecords | None = None


def build_services(suite: Any = None) -> PaymentsServices:
    """The services on this stage's tables, the gateway and the payments-client secret (lazily);
    `suite` replaces the gateway client (tests route it to handlers in process)."""
    from finfaas.platform import config
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, signing_key_from_text
    from finfaas.platform.credentials import ServiceTokens
    from finfaas.platform.cursors import CursorCodec
    from finfaas.platform.resilience import CircuitBreaker
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.payments.service import LedgerFunctionAccounts, LedgerStoreAccounts
    from finfaas.services.suite_clients import LedgerClient, RiskClient, SuiteClient
    from finfaas.store.audit_store import AuditStore
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import DynamoCallMeter, ledger_store_from_config
    from finfaas.store.payments_store import PaymentIntentsStore, PaymentsStore
    from finfaas.store.ratelimit_store import RateLimitStore

    meter = DynamoCallMeter()
    meter.start()
    if suite is None:
        gateway_url = os.environ.get("FINFAAS_GATEWAY_URL") or GATEWAY_URL_DEFAULT
        suite = SuiteClient(gateway_url, ServiceTokens.from_secret(gateway_url, client_name=FUNCTION_NAME))
    merchants = PaymentsStore()
    breaker = CircuitBreaker("risk", failures_to_open=int(os.environ.get(BREAKER_FAILURES_ENV, "5")),
                             open_seconds=float(os.environ.get(BREAKER_OPEN_SECONDS_ENV, "30")))
    settings = PaymentsSettings(int(os.environ.get(DEGRADED_APPROVE_ENV,
                                                   PaymentsSettings().degraded_auto_approve_major)))
    keys = IdempotencyStore()
    payments = PaymentsService(merchants, LedgerFunctionAccounts(LedgerClient(suite)),
                               intents=PaymentIntentsStore(merchants),
                               money=LedgerStoreAccounts(LedgerService(ledger_store_from_config())),
                               risk=RiskClient(suite), breaker=breaker, settings=settings,
                               cursors=CursorCodec.from_config())
    audit_key = signing_key_from_text(config.read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    return PaymentsServices(
        payments=payments,
        guard=IdempotencyGuard(keys, FUNCTION_NAME),
        limiter=RateLimiter(RateLimitStore(), LIMITS),
        audit=AuditLog(AuditStore(), FUNCTION_NAME, key=audit_key),
        probe=lambda: merchants.get("readiness-probe"),
        dynamodb_calls=meter.snapshot,
        records=keys,
    )


services = Lazy(build_services)
verifier = ReplaceableVerifier()
app = FunctionApp(FUNCTION_NAME, errors=ERRORS, verifier=verifier, idempotency=lambda: services.get().guard,
                  limiter=lambda: services.get().limiter, audit=lambda: services.get().audit)


def caller(req: Request) -> Caller:
    assert req.principal is not None
    return Caller(req.principal.sub, req.principal.kind)


def step_key(req: Request, render: Callable[[PaymentIntent], Response]) -> KeyInTransaction | None:
    """The request's Idempotency-Key record for its step's ledger transaction, answering what `render`
    makes of the stored intent; None leaves the key to the platform (recorded after the handler)."""
    records = services.get().records
    if req.idempotency is None or records is None:
        return None
    return KeyInTransaction(req.idempotency, records,
                            lambda intent: stored_response(rendered(render(intent))))


def intent_answer(intent: PaymentIntent) -> Response:
    return Response(intent_view(intent))


# --- payment intents ----------------------------------------------------------------------------------


@app.route("POST", "/payment_intents", scopes=[WRITE], body=NewIntentBody, status=201, response=IntentView,
           idempotency="keyed", rate_limit=MONEY_LIMIT.name, audit="outbox")
def create_intent(req: Request, body: NewIntentBody) -> Response:
    """A payment from a customer's account to a merchant, to be confirmed, or with confirm=true confirmed
    at once (automatic capture: paid in this one call). The intent is the Idempotency-Key's record (its id
    derives from the caller and the key): a repeat answers as the first did, marked replayed; the same
    key with another body is a 422."""
    key = req.header(IDEMPOTENCY_KEY_HEADER.lower())
    assert key is not None, "idempotency='keyed' routes always carry a key"
    # Known before the write, whose outbox item carries the audit facts naming it.
    req.audit_target = f"payment_intent:{payment_id_for(caller(req).sub, key)}"
    intent, repeated = services.get().payments.create_intent(caller(req), key, body, req.outbox_audit)
    headers = {"Location": INTENT_PATH.format(intent.payment_id)}
    if repeated:
        headers[REPLAYED_HEADER] = "true"
    return Response(intent_view(intent), status=201, headers=headers)


@app.route("GET", "/payment_intents", scopes=[READ], query=IntentListQuery, rate_limit=READ_LIMIT.name)
def list_intents(req: Request, query: IntentListQuery) -> IntentList:
    """Intents newest first, by merchant_id or customer (a customer: its own), status and creation
    time; pass next_cursor back as starting_after."""
    page, next_cursor = services.get().payments.list_intents(caller(req), query)
    return IntentList(data=[intent_view(i) for i in page.intents], has_more=next_cursor is not None,
                      next_cursor=next_cursor)


@app.route("GET", "/payment_intents/{payment_id}", scopes=[READ], rate_limit=READ_LIMIT.name)
def get_intent(req: Request, payment_id: str) -> IntentView:
    """The intent: status, amounts, capture_before and the ledger transfers behind it."""
    return intent_view(services.get().payments.intent(caller(req), payment_id))


# Money steps record their Idempotency-Key in the ledger transaction that moves the money
# (in_transaction): no claim before, no completion after, and a step that committed always replays.
@app.route("POST", "/payment_intents/{payment_id}/confirm", scopes=[WRITE], idempotency="in_transaction",
           rate_limit=MONEY_LIMIT.name, audit="outbox", response=IntentView)
def confirm_intent(req: Request, payment_id: str) -> Response:
    """Risk check, then a hold until capture_before (manual capture) or the payment (automatic)."""
    req.audit_target = f"payment_intent:{payment_id}"
    key = step_key(req, intent_answer)
    return intent_answer(services.get().payments.confirm(caller(req), payment_id, req.outbox_audit, key))


@app.route("POST", "/payment_intents/{payment_id}/capture", scopes=[WRITE], body=CaptureBody,
           idempotency="in_transaction", rate_limit=MONEY_LIMIT.name, audit="outbox", response=IntentView)
def capture_intent(req: Request, payment_id: str, body: CaptureBody) -> Response:
    """Capture amount_to_capture (default: all capturable); final_capture=false keeps the rest held."""
    req.audit_target = f"payment_intent:{payment_id}"
    key = step_key(req, intent_answer)
    captured = services.get().payments.capture(caller(req), payment_id, body, req.outbox_audit, key)
    return intent_answer(captured)


@app.route("POST", "/payment_intents/{payment_id}/refunds", scopes=[WRITE], body=RefundBody, status=201,
           response=RefundView, idempotency="in_transaction", rate_limit=MONEY_LIMIT.name, audit="outbox")
def refund_intent(req: Request, payment_id: str, body: RefundBody) -> Response:
    """Refund all or part of what was captured to the paying account; a refund number already used on
    this payment answers that refund (once), or 409 when it asked for another amount."""
    req.audit_target = f"payment_intent:{payment_id}"

    def answer(intent: PaymentIntent) -> Response:
        refund = intent.refund(body.refund_number)
        assert refund is not None, "a refund step stores its refund"
        return Response(refund_view(refund), status=201)

    stored, _ = services.get().payments.refund(caller(req), payment_id, body, req.outbox_audit,
                                               step_key(req, answer))
    return answer(stored)


@app.route("POST", "/payment_intents/{payment_id}/cancel", scopes=[WRITE], body=CancelBody,
           idempotency="in_transaction", rate_limit=MONEY_LIMIT.name, audit="outbox", response=IntentView)
def cancel_intent(req: Request, payment_id: str, body: CancelBody) -> Response:
    """Cancel, releasing what is still capturable; a canceled intent stays canceled."""
    req.audit_target = f"payment_intent:{payment_id}"
    key = step_key(req, intent_answer)
    return intent_answer(services.get().payments.cancel(caller(req), payment_id, body.cancellation_reason,
                                                        req.outbox_audit, key))


# --- operators ----------------------------------------------------------------------------------------


@app.route("POST", "/_/ops/merchants", body=OnboardBody, status=201, response=MerchantView,
           idempotency="required", rate_limit=OPS_LIMIT.name)
def onboard_merchant(req: Request, body: OnboardBody) -> MerchantView:
    """Onboard a merchant: its ledger accounts (receivable shards, reserve, fees payable), then its
    record; the same merchant_id and terms again answer the stored merchant."""
    req.audit_target = f"merchant:{body.merchant_id}"
    return merchant_view(services.get().payments.onboard(body))


@app.route("GET", "/_/ops/merchants/{merchant_id}", rate_limit=OPS_LIMIT.name)
def get_merchant(req: Request, merchant_id: str) -> MerchantView:
    """A merchant, its terms and its ledger accounts."""
    return merchant_view(services.get().payments.merchant(merchant_id))


@app.route("GET", "/_/ops/merchants/{merchant_id}/balance", rate_limit=OPS_LIMIT.name)
def get_merchant_balance(req: Request, merchant_id: str) -> MerchantBalanceView:
    """The merchant's receivable (summed over its shards), reserve and fees payable."""
    return merchant_balance_view(services.get().payments.merchant_balance(merchant_id))


@app.route("POST", "/_/ops/merchants/{merchant_id}/deactivate", idempotency="optional",
           rate_limit=OPS_LIMIT.name)
def deactivate_merchant(req: Request, merchant_id: str) -> MerchantView:
    """No new payments for the merchant from now on; deactivating it again changes nothing."""
    req.audit_target = f"merchant:{merchant_id}"
    return merchant_view(services.get().payments.deactivate(merchant_id))


@app.route("GET", "/_/ops/stats", rate_limit=None)
def stats(req: Request) -> dict[str, Any]:
    """This process's DynamoDB calls by operation and table, and the platform steps' cost."""
    return {"dynamodb_calls": services.get().dynamodb_calls(), "steps": app.timings.snapshot()}


# --- schedule -----------------------------------------------------------------------------------------

# stack.yml's `schedule` of this function (the cron-connector's; a PingSource's on Knative): a test keeps
# them equal, since an unsigned tick runs the expiry job at most once per this period.
CAPTURE_EXPIRY_PERIOD_SECONDS = 60


def schedule_claims() -> Any:
    """Where unsigned ticks claim their period: the rate-limit table (imports AWS code: call lazily)."""
    from finfaas.store.ratelimit_store import RateLimitStore

    return RateLimitStore()


# As the ledger's hold expiry: a signed tick, or a stock scheduler's unsigned one that wins its minute's
# claim; no token. Key and table are read on the first tick, so a cold start reads neither.
schedule_proof = ScheduleProof(FUNCTION_NAME, schedule_keys_from_config, schedule_claims,
                               CAPTURE_EXPIRY_PERIOD_SECONDS)


@app.route("POST", "/", auth=False, media_types=("application/json", "text/plain"), trigger=schedule_proof)
def scheduled_capture_expiry(req: Request) -> ExpiryRunView:
    """Cancel the intents whose capture_before has passed (reason expired, the hold released with the
    intent's new state) and warn those a day from it, one bounded batch (safe to run twice at once)."""
    return expiry_run_view(services.get().payments.expire_due())


@app.readiness_check("payments-table")
def payments_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
