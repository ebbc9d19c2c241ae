"""The loans function: loan products, quotes of repayment schedules, applications and their decisions.

Apps and customers (loans:write to apply, loans:read for the rest; a customer only its own loans):
  POST /loans                                    apply (Idempotency-Key required: the loan's id derives
                                                 from it, so a repeat finds the same loan); underwritten at
                                                 once: approved, declined, or in review for an operator,
                                                 with every rule's finding; one in review starts its
                                                 disbursement saga, which waits for an operator. Paid into
                                                 the wallet, or (disburse_to bank_account) to the bank
                                                 account given, sealed under the loan id for the rail
  GET  /loans/{loan_id}                          the loan and its decision; once disbursed its schedule and
                                                 transactions (another customer's: 404)
  POST /loans/{loan_id}/disburse                 accept an approved loan: starts its disbursement saga
                                                 (infra/statemachines/loan-disbursement.asl.json; 202),
                                                 an active loan answers 200 with nothing started
  POST /loans/{loan_id}/repayments               repay from the loan's wallet account (Idempotency-Key
                                                 required: the repayment's transfer id derives from it)
  GET  /loans/{loan_id}/payoff?on=YYYY-MM-DD     what closes the loan on a date (the business date)
  POST /loans/{loan_id}/payoff                   full prepayment: exactly today's payoff total closes it
  POST /loans/{loan_id}/auto-debit               {"enabled": true|false}: the nightly job repays each due
                                                 date from the wallet (also `auto_debit` when applying)
  POST /loans/quotes                             the full schedule for a product, a principal and a term,
                                                 disbursed on the business date (or a date up to a year
                                                 after it); nothing is stored
  GET  /loans/products                           the products, in id order (limit, starting_after)
  GET  /loans/products/{product_id}              one product and its terms
Operators (ops scope):
  POST /_/ops/loan-products                      create a product (Idempotency-Key required); the same
                                                 product_id and terms again answer the stored product
  GET  /_/ops/loan-products                      the products, in id order
  GET  /_/ops/loan-products/{product_id}         one product
  POST /_/ops/loan-products/{product_id}/deactivate  no new quotes or loans from now on; safe to repeat
  GET  /_/ops/loans/{loan_id}                    any loan
  POST /_/ops/loans/{loan_id}/decision           (ops:act) approve or decline a loan in review, with a
                                                 note: sent to its saga through the task token (the saga
                                                 records it, then disburses or ends); the same decision
                                                 again answers the loan, another is a 409
  POST /_/ops/loans/{loan_id}/disbursement       (ops:act) {"decision": "post"|"void", "note"}: a payout to a
                                                 bank account its saga marked (payout_attention: the
                                                 rail's answer unknown) posted or voided after asking the
                                                 rail; again: the loan; the other decision: 409
  POST /_/ops/loans/{loan_id}/repayments/{repayment_id}/reversal  undo a repayment ({"reason"}): the
                                                 loan reprocessed without it, its money back to the wallet,
                                                 one transaction; again: 409
  POST /_/ops/loans/{loan_id}/write-off          {"reason"}: outstanding principal to sys-loan_losses-<CUR>,
                                                 status written_off; repayments then a 409 naming status
The disbursement saga (the orchestrator's client, loans:saga):
  POST /saga/disburse                            the principal from sys-loans-<CUR> to the wallet and the
                                                 schedule fixed on the business date, one ledger
                                                 transaction; again: the active loan, nothing moved
                                                 (a bank account: the principal held to the rail's
                                                 clearing account, the loan disbursing)
  POST /saga/disbursement/post                   the rail paid the bank account: the hold posted and the
                                                 loan active, schedule fixed; again: the active loan
  POST /saga/disbursement/void                   the rail did not pay: the hold voided back to the funding
                                                 account, the loan disbursement_failed; again: the same
  POST /saga/disbursement/attention              the rail's answer unknown: the loan marked for an operator
                                                 (still disbursing, the principal held)
  POST /saga/review                              the operator's decision AwaitReview returned, written on
                                                 the loan with its event; again: the loan as written
The nightly job (infra/statemachines/loans-nightly.asl.json, one execution per business date):
  POST /_/ops/loans/nightly                      (ops) start it for {business_date} (default: the day
                                                 before the business date); again: the same execution
  POST /saga/nightly/pages                       (loans:saga) a page of one segment's active loans and
                                                 the next cursor
  POST /saga/nightly/close                       (loans:saga) close the date on a page of loans, once each
Schedule (no token: a signed tick, or a stock scheduler's unsigned one, every 15 minutes) and queue
`loan-reviews` (no token: sealed by the orchestrator, else 401), on the same POST /:
  POST /                                         a tick starts (or finds) the night of the day before the
                                                 business date; a review task's token is kept on its loan
                                                 once the orchestrator confirms it waits for it
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finfaas.platform.audit import AuditLog
from finfaas.platform.events import event_mac_from_config
from finfaas.platform.http import FunctionApp, KeyInTransaction, Request, Response, validation_failed
from finfaas.platform.http.rendering import rendered, stored_response
from finfaas.platform.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    REPLAYED_HEADER,
    CompletionRecords,
    IdempotencyGuard,
)
from finfaas.platform.queue_proof import QueueMessageProof, QueueOrScheduleProof
from finfaas.platform.ratelimit import RateLimit, RateLimiter
from finfaas.platform.schedule import ScheduleProof, schedule_keys_from_config
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.business_date import api as business_date_api
from finfaas.services.ledger.api import ledger_error_table
from finfaas.services.loans.api import (
    ERRORS,
    ApplicationBody,
    AutoDebitBody,
    DisburseStepBody,
    DisburseStepView,
    LoanView,
    NightlyCloseBody,
    NightlyCloseView,
    NightlyPageBody,
    NightlyPageView,
    NightlyStartBody,
    NightlyStartView,
    PayoffQuery,
    PayoffView,
    PayoutDecisionBody,
    PayoutFailedBody,
    PrepaymentBody,
    ProductBody,
    ProductList,
    ProductListQuery,
    ProductView,
    QuoteBody,
    QuoteView,
    RepaymentBody,
    ReversalBody,
    ReviewBody,
    ReviewDecision,
    ReviewStepBody,
    ReviewStepView,
    ReviewTaskMessage,
    WriteOffBody,
    disburse_step_view,
    loan_view,
    payoff_view,
    product_list,
    product_view,
    quote_view,
)
from finfaas.services.loans.nightly import LoansNightlyService, execution_name
from finfaas.services.loans.ops import LoanOpsService
from finfaas.services.loans.service import (
    Caller,
    LoanApplicationService,
    LoanDisbursementService,
    LoanProductsService,
    LoanQuoteService,
    LoanRepaymentService,
    Paid,
)

FUNCTION_NAME = "loans"
# Operators edit a few products by hand or by script: the limit stops a runaway script, not a person.
OPS_LIMIT = RateLimit("loans_ops", requests_max=600, window_seconds=60, tokens_per_call=10)
# Quotes follow an app's slider: a principal's budget, leased in blocks so the limiter costs little.
READ_LIMIT = RateLimit("loans_read", requests_max=12_000, window_seconds=60, tokens_per_call=50)
# An application calls risk and the bureau: far fewer than quotes.
APPLY_LIMIT = RateLimit("loans_apply", requests_max=600, window_seconds=60, tokens_per_call=10)
LIMITS = {limit.name: limit for limit in (OPS_LIMIT, READ_LIMIT, APPLY_LIMIT)}
READ, WRITE, SAGA = "loans:read", "loans:write", "loans:saga"
OPS_ACT = "ops:act"  # an operator's decision that lets money move, beside ops
LOAN_PATH = "/function/loans/loans/{}"
# An application waits out a cold start of risk or the bureau (3-4 s seen on a loaded machine) rather than
# send the customer to an operator; the two calls stay within the function's 15 s exec_timeout.
UNDERWRITING_CALL_SECONDS = 6.0
GATEWAY_URL_DEFAULT = "http://127.0.0.1:8080"


@dataclass
class LoansServices:
    """What the routes need; built from configuration on first use, or given by tests."""

    products: LoanProductsService
    quotes: LoanQuoteService
    applications: LoanApplicationService
    disbursements: LoanDisbursementService
    repayments: LoanRepaymentService
    guard: IdempotencyGuard
    limiter: RateLimiter | None
    audit: AuditLog | None
    probe: Callable[[], None]
    dynamodb_calls: Callable[[], dict[str, int]] = dict
    nightly: LoansNightlyService | None = None
    ops: LoanOpsService | None = None  # reversals and write-offs (worlds without ops routes leave it out)
    # The idempotency table as a payment's ledger transaction writes it (None: the platform records keys).
    records: CompletionRecords | None = None


def build_services(suite: Any = None) -> LoansServices:
    """The services on this stage's tables, the gateway and the loans-client secret (lazily); `suite`
    replaces the gateway client (tests route it to handlers in process)."""
    import os

    from finfaas.domain.creditor import CreditorVault
    from finfaas.platform import config
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, signing_key_from_text
    from finfaas.platform.calendars import load_calendars
    from finfaas.platform.credentials import ServiceTokens
    from finfaas.platform.cursors import CursorCodec
    from finfaas.platform.pii import EnvelopeCipher, KmsDataKeys, SecretKeyedDigests, pii_key_id
    from finfaas.services.business_date.model import DEFAULT_MARKET, mode_from_env
    from finfaas.services.business_date.service import BusinessDateService
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.loans.service import LedgerAccounts
    from finfaas.services.suite_clients import BureauClient, OrchestratorClient, RiskClient, SuiteClient
    from finfaas.store.audit_store import AuditStore
    from finfaas.store.business_date_store import BusinessDateStore
    from finfaas.store.call_meter import DynamoCallMeter
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.loans_store import LoansStore
    from finfaas.store.ratelimit_store import RateLimitStore

    meter = DynamoCallMeter()
    meter.start()
    if suite is None:
        gateway_url = os.environ.get("FINFAAS_GATEWAY_URL") or GATEWAY_URL_DEFAULT
        suite = SuiteClient(gateway_url, ServiceTokens.from_secret(gateway_url, client_name=FUNCTION_NAME))
    store = LoansStore()
    dates = BusinessDateService(BusinessDateStore(), mode_from_env())
    def business_date() -> Any:
        return dates.current(DEFAULT_MARKET).business_date

    # Due dates roll to the market's trading days, as every date that matters to money comes from its
    # calendar; a year the calendar does not list keeps its nominal dates (domain/loans.py roll_due_date).
    calendar = load_calendars(Path(__file__).resolve().parent).get(DEFAULT_MARKET)
    quotes = LoanQuoteService(store, business_date, calendar)
    ledger = LedgerAccounts(LedgerService(ledger_store_from_config()))
    applications = LoanApplicationService(store, store, ledger, quotes,
                                          RiskClient(suite, timeout_seconds=UNDERWRITING_CALL_SECONDS),
                                          BureauClient(suite, timeout_seconds=UNDERWRITING_CALL_SECONDS),
                                          orchestrator=OrchestratorClient(suite),
                                          # A bank account to disburse to is sealed with the stage's PII
                                          # key for the rail, fingerprinted with its digest key.
                                          vault=CreditorVault(EnvelopeCipher(KmsDataKeys(pii_key_id())),
                                                              SecretKeyedDigests()))
    disbursements = LoanDisbursementService(store, store, ledger, business_date, OrchestratorClient(suite),
                                            business_calendar=calendar)
    repayments = LoanRepaymentService(store, store, ledger, business_date)
    ops = LoanOpsService(store, store, ledger, business_date, repayments)
    audit_key = signing_key_from_text(config.read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    from finfaas.store.loans_nightly_store import LoansNightlyStore

    keys = IdempotencyStore()
    nightly = LoansNightlyService(store, store, LoansNightlyStore(store), business_date,
                                  OrchestratorClient(suite), wallets=ledger, ledger=ledger)
    return LoansServices(
        products=LoanProductsService(store, CursorCodec.from_config()),
        quotes=quotes,
        applications=applications,
        disbursements=disbursements,
        repayments=repayments,
        guard=IdempotencyGuard(keys, FUNCTION_NAME),
        limiter=RateLimiter(RateLimitStore(), LIMITS),
        audit=AuditLog(AuditStore(), FUNCTION_NAME, key=audit_key),
        probe=lambda: store.get("readiness-probe"),
        dynamodb_calls=meter.snapshot,
        nightly=nightly,
        ops=ops,
        records=keys,
    )


services = Lazy(build_services)
verifier = ReplaceableVerifier()
# The ledger's refusals (a frozen or closed wallet) when a disbursement or a repayment moves money.
app = FunctionApp(FUNCTION_NAME, errors={**ledger_error_table(), **ERRORS, **business_date_api.ERRORS},
                  verifier=verifier,
                  idempotency=lambda: services.get().guard, limiter=lambda: services.get().limiter,
                  audit=lambda: services.get().audit)


def caller(req: Request) -> Caller:
    assert req.principal is not None
    return Caller(req.principal.sub, req.principal.kind)


def paid_answer(paid: Paid) -> Response:
    return Response(loan_view(paid.loan, paid.standing), status=200,
                    headers={REPLAYED_HEADER: "true"} if paid.repeated else {})


def payment_record(req: Request) -> KeyInTransaction[Paid] | None:
    """The request's Idempotency-Key record and audit facts for its payment's ledger transaction; None
    leaves both to the platform (recorded and appended after the handler)."""
    records = services.get().records
    if req.idempotency is None or records is None:
        return None
    return KeyInTransaction(req.idempotency, records,
                            lambda paid: stored_response(rendered(paid_answer(paid))), req.outbox_audit)


# --- customers and apps ---------------------------------------------------------------------------


@app.route("POST", "/loans", scopes=[WRITE], body=ApplicationBody, status=201, response=LoanView,
           idempotency="keyed", rate_limit=APPLY_LIMIT.name)
def apply(req: Request, body: ApplicationBody) -> Response:
    """Apply for a loan: the product's bounds as a quote, the account the caller's, then the internal
    rules, the risk screen and the bureau decide (a missing bureau: the product's waiver decides, flagged,
    or an operator). The loan is the Idempotency-Key's record: a repeat answers as the first did, marked
    replayed; the same key with another body is a 422."""
    key = req.header(IDEMPOTENCY_KEY_HEADER.lower())
    assert key is not None, "idempotency='keyed' routes always carry a key"
    loan, repeated = services.get().applications.apply(caller(req), key, body.to_application())
    req.audit_target = f"loan:{loan.loan_id}"
    headers = {"Location": LOAN_PATH.format(loan.loan_id)}
    if repeated:
        headers[REPLAYED_HEADER] = "true"
    return Response(loan_view(loan), status=201, headers=headers)


@app.route("POST", "/loans/{loan_id}/disburse", scopes=[WRITE], status=202, response=LoanView,
           idempotency="optional", rate_limit=APPLY_LIMIT.name)
def disburse(req: Request, loan_id: str) -> Response:
    """Accept an approved loan: its disbursement saga starts (202; named by the loan, so a repeat finds
    it); follow GET /loans/{loan_id} until active. An active loan answers 200, nothing started."""
    req.audit_target = f"loan:{loan_id}"
    loan, started = services.get().disbursements.start(caller(req), loan_id)
    return Response(loan_view(loan), status=202 if started else 200,
                    headers={"Location": LOAN_PATH.format(loan.loan_id)})


@app.route("GET", "/loans/{loan_id}", scopes=[READ], rate_limit=READ_LIMIT.name)
def get_loan(req: Request, loan_id: str) -> LoanView:
    """The loan, its status and its decision with every finding; once disbursed, its schedule with what
    was paid of each installment, its transactions, days past due and bucket (as of the business date)."""
    loan = services.get().applications.loan(caller(req), loan_id)
    return loan_view(loan, services.get().repayments.standing(loan))


@app.route("POST", "/loans/{loan_id}/repayments", scopes=[WRITE], body=RepaymentBody, response=LoanView,
           idempotency="in_transaction", rate_limit=APPLY_LIMIT.name,
           audit="outbox")
def repay(req: Request, loan_id: str, body: RepaymentBody) -> Response:
    """Repay from the loan's wallet: allocated by the product's order, oldest installment first; more than
    is due prepays (a lower installment) or is refused, per product. The same key again: the loan, once."""
    key = req.header(IDEMPOTENCY_KEY_HEADER.lower())
    assert key is not None, "idempotency='in_transaction' routes always carry a key"
    req.audit_target = f"loan:{loan_id}"
    service = services.get().repayments
    return paid_answer(service.repay(caller(req), loan_id, key, body.amount, body.currency,
                                     payment_record(req)))


@app.route("POST", "/loans/{loan_id}/prepayments", scopes=[WRITE], body=PrepaymentBody, response=LoanView,
           idempotency="in_transaction", rate_limit=APPLY_LIMIT.name,
           audit="outbox")
def prepay(req: Request, loan_id: str, body: PrepaymentBody) -> Response:
    """Prepay part of the loan today: what is due first, the rest prepays principal and the schedule is
    recomputed for a shorter term or a smaller installment (`mode`); refused (422 naming amount) where
    the product refuses overpayments. The same key again: the loan, once."""
    key = req.header(IDEMPOTENCY_KEY_HEADER.lower())
    assert key is not None, "idempotency='in_transaction' routes always carry a key"
    req.audit_target = f"loan:{loan_id}"
    service = services.get().repayments
    return paid_answer(service.prepay(caller(req), loan_id, key, body.amount, body.currency, body.mode,
                                      payment_record(req)))


@app.route("POST", "/loans/{loan_id}/auto-debit", scopes=[WRITE], body=AutoDebitBody, response=LoanView,
           idempotency="optional", rate_limit=APPLY_LIMIT.name)
def set_auto_debit(req: Request, loan_id: str, body: AutoDebitBody) -> LoanView:
    """Turn the loan's auto-debit on or off; the same setting again answers the loan unchanged."""
    req.audit_target = f"loan:{loan_id}"
    loan = services.get().applications.set_auto_debit(caller(req), loan_id, body.enabled)
    return loan_view(loan, services.get().repayments.standing(loan))


@app.route("POST", "/loans/{loan_id}/payoff", scopes=[WRITE], body=RepaymentBody, response=LoanView,
           idempotency="in_transaction", rate_limit=APPLY_LIMIT.name,
           audit="outbox")
def pay_off(req: Request, loan_id: str, body: RepaymentBody) -> Response:
    """Pay the loan off today: the amount must be the payoff quote's total (principal, interest to the
    date, unpaid fees and penalties, the prepayment penalty); the loan closes. The same key: once."""
    key = req.header(IDEMPOTENCY_KEY_HEADER.lower())
    assert key is not None, "idempotency='in_transaction' routes always carry a key"
    req.audit_target = f"loan:{loan_id}"
    service = services.get().repayments
    return paid_answer(service.pay_off(caller(req), loan_id, key, body.amount, body.currency,
                                       payment_record(req)))


@app.route("GET", "/loans/{loan_id}/payoff", scopes=[READ], query=PayoffQuery, rate_limit=READ_LIMIT.name)
def payoff(req: Request, loan_id: str, query: PayoffQuery) -> PayoffView:
    """Principal, interest accrued to the date, unpaid fees and penalties and the prepayment penalty."""
    quote, on = services.get().repayments.payoff(caller(req), loan_id, query.on)
    return payoff_view(loan_id, quote, on)


@app.route("POST", "/loans/quotes", scopes=[READ], body=QuoteBody, rate_limit=READ_LIMIT.name)
def create_quote(req: Request, body: QuoteBody) -> QuoteView:
    """Every installment's due date, principal, interest, fee, total and balance, and the totals;
    computed from the product's rules, never stored (a POST only because it carries a body)."""
    return quote_view(services.get().quotes.quote(body.to_request()))


@app.route("GET", "/loans/products", scopes=[READ], query=ProductListQuery, rate_limit=READ_LIMIT.name)
def list_products(req: Request, query: ProductListQuery) -> ProductList:
    """Products in id order, active or not (status says); pass next_cursor back as starting_after."""
    return _products_page(req, query)


@app.route("GET", "/loans/products/{product_id}", scopes=[READ], rate_limit=READ_LIMIT.name)
def get_product(req: Request, product_id: str) -> ProductView:
    """One product and its terms."""
    return product_view(services.get().products.product(product_id))


def _products_page(req: Request, query: ProductListQuery) -> ProductList:
    assert req.principal is not None
    page, next_cursor = services.get().products.page(req.principal.sub, query.limit, query.starting_after)
    return product_list(page, next_cursor)


# --- operators ------------------------------------------------------------------------------------


@app.route("POST", "/_/ops/loan-products", body=ProductBody, status=201, response=ProductView,
           idempotency="required", rate_limit=OPS_LIMIT.name)
def create_product(req: Request, body: ProductBody) -> ProductView:
    """A new product; its terms never change in place (deactivate it and create another)."""
    req.audit_target = f"loan_product:{body.product_id}"
    return product_view(services.get().products.create(body.to_product))


@app.route("GET", "/_/ops/loan-products", query=ProductListQuery, rate_limit=OPS_LIMIT.name)
def list_products_ops(req: Request, query: ProductListQuery) -> ProductList:
    """Products in id order; pass next_cursor back as starting_after."""
    return _products_page(req, query)


@app.route("GET", "/_/ops/loan-products/{product_id}", rate_limit=OPS_LIMIT.name)
def get_product_ops(req: Request, product_id: str) -> ProductView:
    """One product, its terms, status and version."""
    return product_view(services.get().products.product(product_id))


@app.route("POST", "/_/ops/loan-products/{product_id}/deactivate", idempotency="optional",
           rate_limit=OPS_LIMIT.name)
def deactivate_product(req: Request, product_id: str) -> ProductView:
    """No new quotes or loans of the product from now on; deactivating it again changes nothing."""
    req.audit_target = f"loan_product:{product_id}"
    return product_view(services.get().products.deactivate(product_id))


@app.route("GET", "/_/ops/loans/{loan_id}", rate_limit=OPS_LIMIT.name)
def get_loan_ops(req: Request, loan_id: str) -> LoanView:
    """Any loan, its status, decision, schedule and transactions."""
    loan = services.get().applications.loan(Caller("ops", "client"), loan_id)
    return loan_view(loan, services.get().repayments.standing(loan))


@app.route("POST", "/_/ops/loans/{loan_id}/decision", scopes=[OPS_ACT], body=ReviewBody,
           idempotency="optional", rate_limit=OPS_LIMIT.name)
def decide_loan(req: Request, loan_id: str, body: ReviewBody) -> LoanView:
    """Approve or decline a loan in review through its saga's task token; the loan as it stands (the
    saga records the decision); the same decision again answers it, another is a 409."""
    assert req.principal is not None
    req.audit_target = f"loan:{loan_id}"
    approve = body.decision is ReviewDecision.APPROVE
    return loan_view(services.get().applications.review(req.principal.sub, loan_id, approve, body.note))


@app.route("POST", "/_/ops/loans/{loan_id}/disbursement", scopes=[OPS_ACT], body=PayoutDecisionBody,
           idempotency="optional", rate_limit=OPS_LIMIT.name)
def decide_payout(req: Request, loan_id: str, body: PayoutDecisionBody) -> LoanView:
    """Post or void a payout its saga could not settle (the rail's answer unknown), as the rail says it
    went; the same decision again answers the loan, the other is a 409."""
    assert req.principal is not None
    req.audit_target = f"loan:{loan_id}"
    loan = services.get().disbursements.decide_payout(req.principal.sub, loan_id, body.decision == "post",
                                                      body.note)
    return loan_view(loan, services.get().repayments.standing(loan))


@app.route("POST", "/_/ops/loans/{loan_id}/repayments/{repayment_id}/reversal", body=ReversalBody,
           idempotency="optional", rate_limit=OPS_LIMIT.name)
def reverse_repayment(req: Request, loan_id: str, repayment_id: str, body: ReversalBody) -> LoanView:
    """Undo a repayment (a bounced payment): its ledger moves reversed, the loan reprocessed as if it
    never happened, in one transaction; reversing it again is a 409."""
    req.audit_target = f"loan:{loan_id}"
    loan = _ops().reverse(loan_id, repayment_id, body.reason)
    return loan_view(loan, services.get().repayments.standing(loan))


@app.route("POST", "/_/ops/loans/{loan_id}/write-off", body=WriteOffBody, idempotency="optional",
           rate_limit=OPS_LIMIT.name)
def write_off_loan(req: Request, loan_id: str, body: WriteOffBody) -> LoanView:
    """Write an active loan off: its outstanding principal to the loan-losses account, accruals stop,
    status written_off; later repayments are a 409 naming status."""
    req.audit_target = f"loan:{loan_id}"
    loan = _ops().write_off(loan_id, body.reason)
    return loan_view(loan, services.get().repayments.standing(loan))


def _ops() -> LoanOpsService:
    ops = services.get().ops
    assert ops is not None, "the loans services are built with their ops use cases"
    return ops


# --- the disbursement saga's step -------------------------------------------------------------------


@app.route("POST", "/saga/disburse", scopes=[SAGA], body=DisburseStepBody, rate_limit=None)
def saga_disburse(req: Request, body: DisburseStepBody) -> DisburseStepView:
    """Pay the principal out and fix the schedule, in one ledger transaction; a retry (the same step
    again, after a crash or a lost answer) finds the loan active and moves nothing."""
    req.audit_target = f"loan:{body.loan_id}"
    return disburse_step_view(services.get().disbursements.disburse(body.loan_id))


@app.route("POST", "/saga/disbursement/post", scopes=[SAGA], body=DisburseStepBody, rate_limit=None)
def saga_post_disbursement(req: Request, body: DisburseStepBody) -> DisburseStepView:
    """The rail settled the payout: the hold posted as the disbursement and the loan active with its
    schedule fixed on the business date, in one ledger transaction; again: the active loan."""
    req.audit_target = f"loan:{body.loan_id}"
    return disburse_step_view(services.get().disbursements.settle_payout(body.loan_id))


@app.route("POST", "/saga/disbursement/void", scopes=[SAGA], body=PayoutFailedBody, rate_limit=None)
def saga_void_disbursement(req: Request, body: PayoutFailedBody) -> DisburseStepView:
    """The rail did not pay: the hold voided back to the funding account and the loan
    disbursement_failed, in one ledger transaction; again: the failed loan."""
    req.audit_target = f"loan:{body.loan_id}"
    return disburse_step_view(services.get().disbursements.fail_payout(body.loan_id, body.error.Error))


@app.route("POST", "/saga/disbursement/attention", scopes=[SAGA], body=PayoutFailedBody, rate_limit=None)
def saga_flag_disbursement(req: Request, body: PayoutFailedBody) -> DisburseStepView:
    """The rail's answer is unknown: the loan marked for an operator, still disbursing with the principal
    held (POST /_/ops/loans/{id}/disbursement decides)."""
    req.audit_target = f"loan:{body.loan_id}"
    return disburse_step_view(services.get().disbursements.flag_payout(body.loan_id, body.error.Error))


# --- the nightly job (infra/statemachines/loans-nightly.asl.json) -------------------------------------


@app.route("POST", "/saga/review", scopes=[SAGA], body=ReviewStepBody, rate_limit=None)
def saga_review(req: Request, body: ReviewStepBody) -> ReviewStepView:
    """Write the operator's decision on the loan; the saga disburses an approved one next."""
    loan = services.get().applications.record_review(body.operator, body.loan_id,
                                                     body.decision is ReviewDecision.APPROVE, body.note)
    return ReviewStepView(loan_id=loan.loan_id, status=loan.status.value)


def nightly() -> LoansNightlyService:
    found = services.get().nightly
    assert found is not None, "the nightly job is wired in build_services"
    return found


@app.route("POST", "/_/ops/loans/nightly", body=NightlyStartBody, status=202, idempotency="optional",
           rate_limit=OPS_LIMIT.name)
def start_nightly(req: Request, body: NightlyStartBody) -> NightlyStartView:
    """Start the nightly job for a business date (the day before the current one by default); the
    execution is named by the date, so a second start answers the first."""
    day, _ = nightly().start(body.business_date)
    req.audit_target = f"loans-nightly:{day.isoformat()}"
    return NightlyStartView(business_date=day, execution=execution_name(day))


@app.route("POST", "/saga/nightly/pages", scopes=[SAGA], body=NightlyPageBody, rate_limit=None)
def saga_nightly_page(req: Request, body: NightlyPageBody) -> NightlyPageView:
    """The next page of active loans for the night's execution."""
    nightly().checked_date(body.business_date)
    page = nightly().page(body.cursor, segment=body.segment, segments=body.segments)
    return NightlyPageView(loan_ids=list(page.loan_ids), next=page.next)


@app.route("POST", "/saga/nightly/close", scopes=[SAGA], body=NightlyCloseBody, rate_limit=None)
def saga_nightly_close(req: Request, body: NightlyCloseBody) -> NightlyCloseView:
    """Close the business date on a page of loans; a retried page changes only the loans not yet done."""
    result = nightly().close_loans(body.business_date, body.loan_ids)
    return NightlyCloseView(closed=result.closed, unchanged=result.unchanged,
                            auto_debits_due_minor=result.auto_debits_due_minor,
                            unprocessable=list(result.unprocessable))


# stack.yml's `schedule` of this function: each tick starts the night of the day before the business date;
# its execution is named by that date, so every tick after the first of a date finds the same one.
NIGHTLY_PERIOD_SECONDS = 900


def schedule_claims() -> Any:
    """Where unsigned ticks claim their period: the rate-limit table (imports AWS code: call lazily)."""
    from finfaas.store.ratelimit_store import RateLimitStore

    return RateLimitStore()


schedule_proof = ScheduleProof(FUNCTION_NAME, schedule_keys_from_config, schedule_claims,
                               NIGHTLY_PERIOD_SECONDS)


# The same POST / takes the `loan-reviews` queue's messages: a body sealed with the events MAC is one.
trigger = QueueOrScheduleProof(QueueMessageProof(event_mac_from_config), schedule_proof)


@app.route("POST", "/", auth=False, media_types=("application/json", "text/plain"), trigger=trigger)
def on_trigger(req: Request) -> NightlyStartView | dict[str, Any]:
    """A tick: start (or find) the nightly job of the day before the business date. A review task:
    keep its token on the loan."""
    if trigger.is_message(req):
        return on_review_task(req)
    day, _ = nightly().start(None)
    return NightlyStartView(business_date=day, execution=execution_name(day))


def on_review_task(req: Request) -> dict[str, Any]:
    """A message of the `loan-reviews` queue: kept only if the orchestrator waits for its token."""
    from pydantic import ValidationError

    try:
        message = ReviewTaskMessage.model_validate(trigger.queue.message(req))
    except ValidationError as error:
        raise validation_failed("The review task message is not valid.", error) from None
    return {"outcome": services.get().applications.take_review_task(message.loan_id, message.task_token)}


@app.route("GET", "/_/ops/stats", rate_limit=None)
def stats(req: Request) -> dict[str, Any]:
    """This process's DynamoDB calls by operation and table, and the platform steps' cost."""
    return {"dynamodb_calls": services.get().dynamodb_calls(), "steps": app.timings.snapshot()}


@app.readiness_check("loans-table")
def loans_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
