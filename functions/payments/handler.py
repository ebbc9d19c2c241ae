"""The payments function: merchants, payment intents on the ledger's holds, refunds to the wallet.

A payment's risk check runs risk's rules in this process, on risk's table, with the thresholds the risk
function publishes (GET /function/risk/rules, read once a minute). A customer's payment created and
confirmed at once reads its merchant, its account and risk's items in one call, and writes risk's decision
and the customer's hour count in its ledger transaction.

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
  POST /payment_intents/{payment_id}/refunds     all or part of what was captured, back to the account,
                                                 or with bank_account to a bank through the rail (pending)
  GET  /payment_intents/{payment_id}/disputes/{dispute_id}          a dispute (apps only)
  POST /payment_intents/{payment_id}/disputes/{dispute_id}/evidence the merchant's answer: under_review
  POST /payment_intents/{payment_id}/disputes/{dispute_id}/accept   the merchant gives up: lost
The rail (no token: a notice signed with the rail-notice-key secret, Standard Webhooks HMAC):
  POST /rail/disputes                            a dispute opened (amount and fee leave the merchant in
                                                 one ledger transaction) or closed (won: amount back)
The rail refund and payout sagas (the orchestrator's token, scope payments:saga):
  POST /saga/refunds/settle, /saga/refunds/fail  the rail paid the refund out, or refused it (reversed)
  POST /saga/payouts/paid, /saga/payouts/fail    the rail paid a settlement's payout, or refused it (back in
                                                 the merchant's reserve)
Operators (ops scope; every POST needs ops:act as well):
  POST /_/ops/merchants                          onboard a merchant and open its ledger accounts through
                                                 the ledger function (Idempotency-Key required)
  GET  /_/ops/merchants/{merchant_id}            the merchant (settlement account masked)
  GET  /_/ops/payment_intents/{payment_id}       any payment intent, with its payer
  POST /_/ops/merchants/{merchant_id}/deactivate INACTIVE from now on; safe to repeat
  POST /_/ops/merchants/{merchant_id}/settlements/{date}  settle the merchant for a business date (once)
  GET  /_/ops/merchants/{merchant_id}/settlements/{date}  its report: JSON, or CSV with Accept: text/csv
Operators who may act (ops and ops:act), after asking the rail about an outcome it never sent:
  POST /_/ops/payment_intents/{payment_id}/refunds/{refund_number}/outcome  {"outcome", "reason"}: a
                                                 pending rail refund settled or failed (reversed), once
  POST /_/ops/merchants/{merchant_id}/settlements/{date}/payout/outcome     {"outcome", "reason"}: a payout
                                                 in transit paid, or failed (back in the reserve), once
Schedule (no token: a signed tick, or a stock scheduler's unsigned one, once a minute):
  POST /                                         the capture-expiry job: cancels intents past
                                                 capture_before (reason expired) and warns a day before;
                                                 then the day's settlement run, a bounded batch of merchants
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from finfaas.domain.errors import InvalidInput
from finfaas.platform.audit import AuditLog
from finfaas.platform.http import FunctionApp, Request, Response
from finfaas.platform.http.rendering import rendered, stored_response
from finfaas.platform.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    REPLAYED_HEADER,
    CompletionRecords,
    IdempotencyGuard,
)
from finfaas.platform.ratelimit import RateLimit, RateLimiter
from finfaas.platform.schedule import ScheduleProof, schedule_keys_from_config
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.payments.api import (
    ERRORS,
    CancelBody,
    CaptureBody,
    DisputeView,
    EvidenceBody,
    ExpiryRunView,
    IntentList,
    IntentListQuery,
    IntentView,
    KeyInTransaction,
    MerchantBalanceView,
    MerchantView,
    NewIntentBody,
    OnboardBody,
    OpsIntentView,
    PayoutStepBody,
    RailOutcomeBody,
    RefundBody,
    RefundFailBody,
    RefundStepBody,
    RefundView,
    SettlementView,
    dispute_view,
    expiry_run_view,
    intent_view,
    merchant_balance_view,
    merchant_view,
    refund_view,
    settlement_view,
)
from finfaas.services.payments.errors import DisputeNotFound, RefundSagaNotStarted
from finfaas.services.payments.model import PaymentIntent, Refund, payment_id_for
from finfaas.services.payments.rail_payouts import RailPayouts
from finfaas.services.payments.rail_refunds import RailRefunds
from finfaas.services.payments.service import Caller, PaymentsService, PaymentsSettings
from finfaas.services.payments.settlement import (
    SETTLEMENT_MARKET,
    MerchantSettlement,
    settlement_csv,
    settlement_lag_seconds,
)

FUNCTION_NAME = "payments"
# Operators onboard by hand or by script: the limit stops a runaway script, not a person.
OPS_LIMIT = RateLimit("payments_ops", requests_max=600, window_seconds=60, tokens_per_call=10)
# Apps charge many customers: a principal's budget, leased in blocks so the limiter costs little.
MONEY_LIMIT = RateLimit("payments_money", requests_max=6_000, window_seconds=60, tokens_per_call=50)
READ_LIMIT = RateLimit("payments_read", requests_max=12_000, window_seconds=60, tokens_per_call=50)
LIMITS = {limit.name: limit for limit in (OPS_LIMIT, MONEY_LIMIT, READ_LIMIT)}
READ, WRITE, SAGA = "payments:read", "payments:write", "payments:saga"
OPS_ACT = "ops:act"  # ending a rail outcome by hand moves money: reading operators may not
SAGA_ROUTE: dict[str, Any] = {"scopes": [SAGA], "rate_limit": None}
INTENT_PATH = "/function/payments/payment_intents/{}"
# Environment knobs (stack.yml), each with the product's default.
DEGRADED_APPROVE_ENV = "PAYMENTS_DEGRADED_AUTO_APPROVE_MAJOR"
BREAKER_FAILURES_ENV = "PAYMENTS_RISK_BREAKER_FAILURES"
BREAKER_OPEN_SECONDS_ENV = "PAYMENTS_RISK_BREAKER_OPEN_SECONDS"
SETTLEMENT_LAG_ENV = "PAYMENTS_SETTLEMENT_LAG_SECONDS"
GATEWAY_URL_DEFAULT = "http://127.0.0.1:8080"
SETTLEMENTS_PATH = "/_/ops/merchants/{merchant_id}/settlements/{date}"
CSV_MEDIA_TYPE = "text/csv"
RAIL_NOTICE_KEY_SECRET_NAME = "rail-notice-key"  # noqa: S105 - the secret's name, not a secret


@dataclass
class PaymentsServices:
    """What the routes need; built from configuration on first use, or given by tests."""

    payments: PaymentsService
    guard: IdempotencyGuard
    limiter: RateLimiter | None
    audit: AuditLog | None
    probe: Callable[[], None]
    dynamodb_calls: Callable[[], dict[str, int]] = dict
    settlement: MerchantSettlement | None = None
    # The idempotency table as a step's ledger transaction writes to it (the guard's own store).
    records: CompletionRecords | None = None
    rail_refunds: RailRefunds | None = None
    rail_payouts: RailPayouts | None = None


def build_services(suite: Any = None) -> PaymentsServices:
    """The services on this stage's tables, the gateway and the payments-client secret (lazily);
    `suite` replaces the gateway client (tests route it to handlers in process)."""
    from finfaas.platform import config
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, signing_key_from_text
    from finfaas.platform.calendars import load_calendars
    from finfaas.platform.credentials import ServiceTokens
    from finfaas.platform.cursors import CursorCodec
    from finfaas.platform.resilience import CircuitBreaker
    from finfaas.services.business_date.model import mode_from_env
    from finfaas.services.business_date.service import BusinessDateService
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.payments.service import LedgerFunctionAccounts, LedgerStoreAccounts
    from finfaas.services.suite_clients import LedgerClient, OrchestratorClient, RiskClient, SuiteClient
    from finfaas.store.audit_store import AuditStore
    from finfaas.store.business_date_store import BusinessDateStore
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import DynamoCallMeter, ledger_store_from_config
    from finfaas.store.payment_reads import PaymentCreateReads
    from finfaas.store.payments_store import PaymentIntentsStore, PaymentSettlementsStore, PaymentsStore
    from finfaas.store.ratelimit_store import RateLimitStore
    from finfaas.store.risk_store import RiskStore

    meter = DynamoCallMeter()
    meter.start()
    if suite is None:
        gateway_url = os.environ.get("FINFAAS_GATEWAY_URL") or GATEWAY_URL_DEFAULT
        suite = SuiteClient(gateway_url, ServiceTokens.from_secret(gateway_url, client_name=FUNCTION_NAME))
    merchants = PaymentsStore()
    rail_notice_key = config.read_secret(RAIL_NOTICE_KEY_SECRET_NAME, required=False)
    breaker = CircuitBreaker("risk", failures_to_open=int(os.environ.get(BREAKER_FAILURES_ENV, "5")),
                             open_seconds=float(os.environ.get(BREAKER_OPEN_SECONDS_ENV, "30")))
    settings = PaymentsSettings(int(os.environ.get(DEGRADED_APPROVE_ENV,
                                                   PaymentsSettings().degraded_auto_approve_major)))
    intents = PaymentIntentsStore(merchants)
    ledger_store = ledger_store_from_config()
    money = LedgerStoreAccounts(LedgerService(ledger_store))
    dates = BusinessDateService(BusinessDateStore(), mode_from_env())
    lag = int(os.environ.get(SETTLEMENT_LAG_ENV, str(settlement_lag_seconds)))
    settlements = PaymentSettlementsStore(merchants)
    vault = pii_vault()  # bank accounts sealed for the rail: a payout's, a refund's
    orchestrator = OrchestratorClient(suite)
    payouts = RailPayouts(merchants, settlements, money, orchestrator, vault=vault)
    calendar = load_calendars(Path(__file__).resolve().parent).get(SETTLEMENT_MARKET)  # the reserve period's
    settlement = MerchantSettlement(merchants, intents, money, settlements,
                                    lambda: dates.current(SETTLEMENT_MARKET).business_date, lag_seconds=lag,
                                    on_paid=payouts.hand_to_rail, calendar=calendar)
    keys = IdempotencyStore()
    risk_store = RiskStore()
    risk = in_process_risk(RiskClient(suite), risk_store)
    # A payment created and confirmed at once reads its merchant, its account and risk's items in one call
    # and writes risk's decision in its ledger transaction.
    reads = PaymentCreateReads(merchants, ledger_store.models.account, risk_store)
    payments = PaymentsService(merchants, LedgerFunctionAccounts(LedgerClient(suite)),
                               intents=intents, money=money, risk=risk, breaker=breaker, settings=settings,
                               cursors=CursorCodec.from_config(), rail_notice_key=rail_notice_key,
                               reads=reads, risk_in_process=risk)
    rail_refunds = RailRefunds(payments, orchestrator, vault, money)
    audit_key = signing_key_from_text(config.read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    return PaymentsServices(
        payments=payments,
        guard=IdempotencyGuard(keys, FUNCTION_NAME),
        limiter=RateLimiter(RateLimitStore(), LIMITS),
        audit=AuditLog(AuditStore(), FUNCTION_NAME, key=audit_key),
        probe=lambda: merchants.get("readiness-probe"),
        dynamodb_calls=meter.snapshot,
        settlement=settlement,
        records=keys,
        rail_refunds=rail_refunds,
        rail_payouts=payouts,
    )


def in_process_risk(risk_function: Any, store: Any) -> Any:
    """Risk's rules on risk's table (store) in this process, with the thresholds the risk function publishes
    (services/risk/in_process.py): no gateway hop per payment."""
    from finfaas.services.risk.in_process import InProcessRisk
    from finfaas.services.risk.service import RiskService

    return InProcessRisk(lambda policy: RiskService(store, policy), risk_function.rules)


def pii_vault() -> Any:
    """The stage's PII vault: bank accounts (a refund's, a merchant's payout's) are sealed for the rail."""
    from finfaas.domain.creditor import CreditorVault
    from finfaas.platform.pii import EnvelopeCipher, KmsDataKeys, SecretKeyedDigests, pii_key_id

    return CreditorVault(EnvelopeCipher(KmsDataKeys(pii_key_id())), SecretKeyedDigests())


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

    key = step_key(req, answer)
    if body.bank_account is not None:
        stored, _ = rail_refunds().refund(caller(req), payment_id, body, req.outbox_audit, key)
    else:
        stored, _ = services.get().payments.refund(caller(req), payment_id, body, req.outbox_audit, key)
    return answer(stored)


def rail_refunds() -> RailRefunds:
    found = services.get().rail_refunds
    if found is None:
        raise RefundSagaNotStarted("rail refunds are not configured here")
    return found


@app.route("POST", "/saga/refunds/settle", body=RefundStepBody, **SAGA_ROUTE)
def saga_refund_settled(req: Request, body: RefundStepBody) -> RefundView:
    """The rail paid a refund out: succeeded."""
    intent = rail_refunds().settled(body.payment_intent, body.refund_number)
    return refund_view(_refund_of(intent, body.refund_number))


@app.route("POST", "/saga/refunds/fail", body=RefundFailBody, **SAGA_ROUTE)
def saga_refund_failed(req: Request, body: RefundFailBody) -> RefundView:
    """The rail did not pay a refund out: reversed to the merchant, failed."""
    intent = rail_refunds().failed(body.payment_intent, body.refund_number, body.error.Error)
    return refund_view(_refund_of(intent, body.refund_number))


@app.route("POST", "/saga/payouts/paid", body=PayoutStepBody, **SAGA_ROUTE)
def saga_payout_paid(req: Request, body: PayoutStepBody) -> SettlementView:
    """The rail paid a settlement's payout out: payout.paid."""
    return settlement_view(rail_payouts().paid(body.merchant_id, body.business_date))


@app.route("POST", "/saga/payouts/fail", body=PayoutStepBody, **SAGA_ROUTE)
def saga_payout_failed(req: Request, body: PayoutStepBody) -> SettlementView:
    """The rail did not pay the payout out: back to the merchant's reserve, payout.failed."""
    return settlement_view(rail_payouts().failed(body.merchant_id, body.business_date))


def rail_payouts() -> RailPayouts:
    found = services.get().rail_payouts
    if found is None:
        raise RefundSagaNotStarted("rail payouts are not configured here")
    return found


def _refund_of(intent: PaymentIntent, refund_number: str) -> Refund:
    refund = intent.refund(refund_number)
    assert refund is not None, "a step's refund stays on its intent"
    return refund


@app.route("POST", "/payment_intents/{payment_id}/cancel", scopes=[WRITE], body=CancelBody,
           idempotency="in_transaction", rate_limit=MONEY_LIMIT.name, audit="outbox", response=IntentView)
def cancel_intent(req: Request, payment_id: str, body: CancelBody) -> Response:
    """Cancel, releasing what is still capturable; a canceled intent stays canceled."""
    req.audit_target = f"payment_intent:{payment_id}"
    key = step_key(req, intent_answer)
    return intent_answer(services.get().payments.cancel(caller(req), payment_id, body.cancellation_reason,
                                                        req.outbox_audit, key))


# --- disputes ---------------------------------------------------------------------------------------


@app.route("GET", "/payment_intents/{payment_id}/disputes/{dispute_id}", scopes=[READ],
           rate_limit=READ_LIMIT.name)
def get_dispute(req: Request, payment_id: str, dispute_id: str) -> DisputeView:
    """A dispute on the payment: status, amount and fee, the ledger transfers behind it."""
    intent = services.get().payments.intent(caller(req), payment_id)
    dispute = intent.dispute(dispute_id)
    if dispute is None:
        raise DisputeNotFound(f"dispute {dispute_id} not found on {payment_id}")
    return dispute_view(intent, dispute)


@app.route("POST", "/payment_intents/{payment_id}/disputes/{dispute_id}/evidence", scopes=[WRITE],
           body=EvidenceBody, idempotency="optional", rate_limit=MONEY_LIMIT.name)
def dispute_evidence(req: Request, payment_id: str, dispute_id: str, body: EvidenceBody) -> DisputeView:
    """The merchant's evidence: under_review until the rail decides; a closed dispute is a 409."""
    req.audit_target = f"payment_intent:{payment_id}"
    intent, dispute = services.get().payments.submit_evidence(caller(req), payment_id, dispute_id,
                                                              body.evidence)
    return dispute_view(intent, dispute)


@app.route("POST", "/payment_intents/{payment_id}/disputes/{dispute_id}/accept", scopes=[WRITE],
           idempotency="optional", rate_limit=MONEY_LIMIT.name)
def dispute_accept(req: Request, payment_id: str, dispute_id: str) -> DisputeView:
    """The merchant accepts the dispute: lost; accepting again changes nothing."""
    req.audit_target = f"payment_intent:{payment_id}"
    intent, dispute = services.get().payments.accept_dispute(caller(req), payment_id, dispute_id)
    return dispute_view(intent, dispute)


@app.route("POST", "/rail/disputes", auth=False)
def rail_dispute_notice(req: Request) -> DisputeView:
    """The rail's signed dispute notice (opened or closed); a repeated notice changes nothing."""
    intent, dispute = services.get().payments.dispute_notice(req.headers, req.body)
    return dispute_view(intent, dispute)


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


@app.route("GET", "/_/ops/payment_intents/{payment_id}", rate_limit=OPS_LIMIT.name)
def get_intent_ops(req: Request, payment_id: str) -> OpsIntentView:
    """Any payment intent: captures, refunds, disputes and the ledger transfers behind them."""
    assert req.principal is not None
    # The ops scope reads any customer's intent, as a client app does.
    intent = services.get().payments.intent(Caller(req.principal.sub, "client"), payment_id)
    return OpsIntentView(owner_id=intent.owner_id, **intent_view(intent).model_dump())


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


def _settlement() -> MerchantSettlement:
    settlement = services.get().settlement
    assert settlement is not None, "payments built without settlement"
    return settlement


def _business_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"date: {text[:10]!r} is not a date (YYYY-MM-DD)", field="date") from None


@app.route("POST", SETTLEMENTS_PATH, idempotency="optional", status=200, response=SettlementView,
           rate_limit=OPS_LIMIT.name)
def settle_merchant(req: Request, merchant_id: str, date: str) -> SettlementView:
    """Settle the merchant for a business date (at most today's): fees, reserve and payout on the ledger,
    and the report; run again, it answers the stored settlement and pays nothing twice."""
    req.audit_target = f"merchant:{merchant_id}"
    return settlement_view(_settlement().settle(merchant_id, _business_date(date)))


@app.route("GET", SETTLEMENTS_PATH, rate_limit=OPS_LIMIT.name)
def get_settlement(req: Request, merchant_id: str, date: str) -> Any:
    """The settlement report: JSON, or one CSV header line and one line of figures (Accept: text/csv)."""
    settlement = _settlement().report(merchant_id, _business_date(date))
    if CSV_MEDIA_TYPE in (req.header("accept") or ""):
        return Response(settlement_csv(settlement), media_type=CSV_MEDIA_TYPE)
    return settlement_view(settlement)


@app.route("POST", "/_/ops/payment_intents/{payment_id}/refunds/{refund_number}/outcome", scopes=[OPS_ACT],
           body=RailOutcomeBody, idempotency="optional", rate_limit=OPS_LIMIT.name)
def resolve_rail_refund(req: Request, payment_id: str, refund_number: str,
                        body: RailOutcomeBody) -> RefundView:
    """End a pending rail refund the rail never answered: settled, or failed (back to the merchant and
    refundable again), with the operator and the reason on the refund; a late rail notice and this
    route change it once (the other repeats it or is a 409 naming refund_number)."""
    assert req.principal is not None
    req.audit_target = f"payment_intent:{payment_id}"
    intent = rail_refunds().resolve(req.principal.sub, payment_id, refund_number, body.outcome, body.reason)
    return refund_view(_refund_of(intent, refund_number))


@app.route("POST", SETTLEMENTS_PATH + "/payout/outcome", scopes=[OPS_ACT], body=RailOutcomeBody,
           idempotency="optional", rate_limit=OPS_LIMIT.name)
def resolve_payout(req: Request, merchant_id: str, date: str, body: RailOutcomeBody) -> SettlementView:
    """End a payout in transit the rail never answered: paid, or failed (back in the merchant's reserve),
    with the operator and the reason on the settlement; once, against a late answer of the rail too."""
    assert req.principal is not None
    req.audit_target = f"merchant:{merchant_id}"
    return settlement_view(rail_payouts().resolve(req.principal.sub, merchant_id, _business_date(date),
                                                  body.outcome, body.reason))


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
    intent's new state) and warn those a day from it, one bounded batch (safe to run twice at once); then
    the daily settlement run's next batch of merchants for the business date (each settled once)."""
    current = services.get()
    view = expiry_run_view(current.payments.expire_due())
    if current.settlement is not None:
        run = current.settlement.settle_due()
        view.settlement_date, view.settled, view.settlement_failed = (run.business_date, list(run.settled),
                                                                      list(run.failed))
    return view


@app.readiness_check("payments-table")
def payments_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
