"""The transfers function: money transfers as durable sagas (infra/statemachines/transfer.asl.json).

Apps (customer tokens, scopes transfers:write / transfers:read):
  POST /transfers              202 + the transfer id and its status URL (Idempotency-Key required)
  GET  /transfers              the caller's own, newest first; filters status, account, created_after/
                               created_before; cursor pagination (limit, starting_after)
  GET  /transfers/{id}?wait=s  status and steps; waits up to `wait` seconds (at most 30) for a final
                               status. A waiting request reads the order once, then parks its thread
                               while the process's one status watcher reads every watched order per tick
                               (services/transfers/watcher.py). At most TRANSFERS_WAITERS_MAX (default
                               256) wait at once; the WSGI server has that many threads more than the
                               template's 4 (SERVER_OPTIONS), so the saga's steps always find one free.
                               Past the limit: the current status at once, with Retry-After
The saga (the orchestrator's token, scope transfers:saga): POST /saga/validate|complete|fail|attention.
Queue `reviews` (POST /): the callback tasks that wait for an operator; their tokens are checked
with the orchestrator before they are kept. Operators (ops): decisions, customer tiers, the transfers not
yet final by status (oldest first) and their counts.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.platform import config
from finfaas.platform.events import event_mac_from_config
from finfaas.platform.http import FunctionApp, Request, Response, validation_failed
from finfaas.platform.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    REPLAYED_HEADER,
    IdempotencyGuard,
)
from finfaas.platform.queue_proof import QueueMessageProof
from finfaas.platform.ratelimit import RateLimit, RateLimiter
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.transfers.api import (
    ERRORS,
    Accepted,
    AttentionBody,
    DecisionBody,
    FailBody,
    NewTransferBody,
    OpsTransferList,
    OpsTransferListQuery,
    OpsTransferView,
    StepBody,
    SummaryQuery,
    TaskMessage,
    TierBody,
    TransferList,
    TransferListQuery,
    TransferSummary,
    TransferView,
    ValidateBody,
    WaitQuery,
    ops_transfer_view,
    refusing_step,
    transfer_view,
)
from finfaas.services.transfers.service import TransfersService, TransfersSettings
from pydantic import ValidationError

FUNCTION_NAME = "transfers"
READ, WRITE, SAGA = "transfers:read", "transfers:write", "transfers:saga"
CUSTOMER_KIND = "customer"
STATUS_ROUTE = "/transfers/{}"
CREATE_LIMIT = RateLimit("transfers_create", requests_max=120, window_seconds=60, tokens_per_call=5)
# A page is a Query and a BatchGetItem of up to 100 orders: a client paging through its history at once
# fits, a loop re-listing does not.
LIST_LIMIT = RateLimit("transfers_list", requests_max=120, window_seconds=60, tokens_per_call=10)
# Environment knobs (stack.yml), each with the product's default.
DEGRADED_APPROVE_ENV = "TRANSFERS_DEGRADED_AUTO_APPROVE_MAJOR"
BREAKER_FAILURES_ENV = "TRANSFERS_RISK_BREAKER_FAILURES"
BREAKER_OPEN_SECONDS_ENV = "TRANSFERS_RISK_BREAKER_OPEN_SECONDS"
WAITERS_MAX_ENV = "TRANSFERS_WAITERS_MAX"
SECOND_APPROVAL_ENV = "TRANSFERS_SECOND_APPROVAL_ABOVE_MAJOR"
# A status request that found every waiting slot taken is told to come back this much later.
BUSY_RETRY_AFTER_SECONDS = 1
# What the python3-http template's waitress runs with; the waiting requests come on top of it.
TEMPLATE_THREADS = 4
TEMPLATE_CONNECTIONS_MAX = 100


@dataclass
class TransfersServices:
    """What the routes need; built from configuration on first use, or given by tests."""

    transfers: TransfersService
    guard: IdempotencyGuard
    limiter: RateLimiter | None
    probe: Callable[[], None]
    dynamodb_calls: Callable[[], dict[str, int]] = dict


def settings_from_env(environ: Any = os.environ) -> TransfersSettings:
    defaults = TransfersSettings()
    approve_major = environ.get(DEGRADED_APPROVE_ENV, defaults.degraded_auto_approve_major)
    waiters = environ.get(WAITERS_MAX_ENV, defaults.waiters_max)
    second_major = environ.get(SECOND_APPROVAL_ENV, defaults.second_approval_above_major)
    return TransfersSettings(degraded_auto_approve_major=int(approve_major), waiters_max=int(waiters),
                             second_approval_above_major=int(second_major))


def server_options(settings: TransfersSettings) -> dict[str, int]:
    """waitress's sizing (read by the template's index.py): one parked thread and one open connection
    per waiting status request, on top of the template's threads and connections for everything else."""
    return {
        "threads": TEMPLATE_THREADS + settings.waiters_max,
        "connection_limit": TEMPLATE_CONNECTIONS_MAX + settings.waiters_max,
    }


SERVER_OPTIONS = server_options(settings_from_env())


def build_services() -> TransfersServices:
    """The services on this stage's tables, the gateway and the transfers-client secret (lazily)."""
    from finfaas.domain.creditor import CreditorVault
    from finfaas.platform.credentials import ServiceTokens
    from finfaas.platform.cursors import CursorCodec
    from finfaas.platform.pii import EnvelopeCipher, KmsDataKeys, SecretKeyedDigests, pii_key_id
    from finfaas.platform.resilience import CircuitBreaker
    from finfaas.services.risk.in_process import InProcessRisk
    from finfaas.services.risk.service import RiskService
    from finfaas.services.suite_clients import OrchestratorClient, RiskClient, SuiteClient
    from finfaas.services.transfers.service import LedgerAccounts
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import DynamoCallMeter, ledger_store_from_config
    from finfaas.store.ratelimit_store import RateLimitStore
    from finfaas.store.risk_store import RiskStore
    from finfaas.store.transfer_reads import TransferValidationReads
    from finfaas.store.transfers_store import TransfersStore

    meter = DynamoCallMeter()
    meter.start()
    addresses = config.function_addresses()  # the gateway, or each function's own address
    suite = SuiteClient(addresses, ServiceTokens.from_secret(addresses, client_name=FUNCTION_NAME))
    breaker = CircuitBreaker("risk", failures_to_open=int(os.environ.get(BREAKER_FAILURES_ENV, "5")),
                             open_seconds=float(os.environ.get(BREAKER_OPEN_SECONDS_ENV, "30")))
    # Risk's rules run here on risk's table, with the thresholds the risk function publishes: validation
    # reads risk's items with its own and writes the decision with the order (services/risk/in_process.py).
    risk_store = RiskStore()
    risk = InProcessRisk(lambda policy: RiskService(risk_store, policy), RiskClient(suite).rules)
    orders = TransfersStore(risk=risk_store)
    ledger = ledger_store_from_config()
    # Payees are sealed with the stage's PII key and fingerprinted with its digest key (read on first use).
    vault = CreditorVault(EnvelopeCipher(KmsDataKeys(pii_key_id())), SecretKeyedDigests())
    service = TransfersService(orders, LedgerAccounts(ledger), risk,
                               OrchestratorClient(suite), breaker=breaker, settings=settings_from_env(),
                               vault=vault, cursors=CursorCodec.from_config(),
                               reads=TransferValidationReads(orders, ledger.models.account),
                               risk_in_process=risk)
    return TransfersServices(
        transfers=service,
        guard=IdempotencyGuard(IdempotencyStore(), FUNCTION_NAME),
        limiter=RateLimiter(RateLimitStore(), {limit.name: limit for limit in (CREATE_LIMIT, LIST_LIMIT)}),
        probe=lambda: orders.get("readiness-probe"),
        dynamodb_calls=meter.snapshot,
    )


services = Lazy(build_services)
queue_proof = QueueMessageProof(event_mac_from_config)
verifier = ReplaceableVerifier()
app = FunctionApp(FUNCTION_NAME, errors=ERRORS, verifier=verifier, idempotency=lambda: services.get().guard,
                  limiter=lambda: services.get().limiter)
SAGA_ROUTE = {"scopes": [SAGA], "rate_limit": None}


def _owner_filter(req: Request) -> str | None:
    """Customers see only their own transfers; client apps and operators see any."""
    assert req.principal is not None
    return req.principal.sub if req.principal.kind == CUSTOMER_KIND else None


# --- apps ---------------------------------------------------------------------------------------------


@app.route("POST", "/transfers", scopes=[WRITE], body=NewTransferBody, status=202, response=Accepted,
           idempotency="keyed", rate_limit=CREATE_LIMIT.name)
def create_transfer(req: Request, body: NewTransferBody) -> Response:
    """Start a transfer from one of the caller's accounts; 202 with where to follow it. What the request
    and the caller's accounts already decide (ownership, status, currency, the tier's per-transfer limit)
    is refused here, before anything is recorded.

    The order is the Idempotency-Key's record (its id is derived from the caller and the key), so no
    separate claim is written before it: a repeat answers as the first did, marked replayed."""
    assert req.principal is not None
    key = req.header(IDEMPOTENCY_KEY_HEADER.lower())
    assert key is not None, "idempotency='keyed' routes always carry a key"
    acceptance = services.get().transfers.accept(req.principal.sub, key, body)
    order = acceptance.order
    req.audit_target = f"transfer:{order.transfer_id}"
    # Below the gateway's /function/transfers on OpenFaaS; the Service's own path on Knative.
    location = config.function_addresses().route_path(FUNCTION_NAME, STATUS_ROUTE.format(order.transfer_id))
    accepted = Accepted(transfer_id=order.transfer_id, status=order.status, status_url=location)
    headers = {"Location": location}
    if acceptance.repeated:
        headers[REPLAYED_HEADER] = "true"
    return Response(accepted, status=202, headers=headers)


@app.route("GET", "/transfers", scopes=[READ], query=TransferListQuery, rate_limit=LIST_LIMIT.name)
def list_transfers(req: Request, query: TransferListQuery) -> TransferList:
    """The caller's own transfers, newest first: filters status (repeatable), account, created_after and
    created_before (strict, RFC 3339); cursor pagination."""
    assert req.principal is not None
    return services.get().transfers.list_mine(req.principal.sub, query)


@app.route("GET", "/transfers/{transfer_id}", scopes=[READ], query=WaitQuery, response=TransferView,
           rate_limit=None)
def get_transfer(req: Request, transfer_id: str, query: WaitQuery) -> Response:
    """A transfer's status and steps; `wait` (seconds, at most 30) waits for a final status while one of
    the process's waiting slots is free, and answers at once with Retry-After otherwise."""
    answer = services.get().transfers.follow(transfer_id, _owner_filter(req), query.wait)
    headers = {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)} if answer.busy else {}
    return Response(transfer_view(answer.order), headers=headers)


# --- the saga's own steps -----------------------------------------------------------------------------


@app.route("POST", "/saga/validate", body=ValidateBody, **SAGA_ROUTE)
def saga_validate(req: Request, body: ValidateBody) -> dict[str, Any]:
    """Accounts, ownership, currency and tier limits, then the risk decision (risk's rules in this process,
    degraded when its thresholds or table cannot be had); the day's total, the order and the decision
    with risk's count in one write."""
    hint = body.hint()
    return refusing_step(lambda: services.get().transfers.validate(body.transfer_id, hint))


@app.route("POST", "/saga/complete", body=StepBody, **SAGA_ROUTE)
def saga_complete(req: Request, body: StepBody) -> dict[str, Any]:
    """COMPLETED, with the transfer.completed event."""
    return services.get().transfers.complete(body.transfer_id)


@app.route("POST", "/saga/fail", body=FailBody, **SAGA_ROUTE)
def saga_fail(req: Request, body: FailBody) -> dict[str, Any]:
    """FAILED or COMPENSATED with its event; the day's total is given back."""
    return services.get().transfers.fail(body.transfer_id, body.outcome, body.error)


@app.route("POST", "/saga/attention", body=AttentionBody, **SAGA_ROUTE)
def saga_attention(req: Request, body: AttentionBody) -> dict[str, Any]:
    """NEEDS_ATTENTION: an operator must decide to post or void the hold."""
    return services.get().transfers.flag_attention(body.transfer_id, body.error)


@app.route("POST", "/", auth=False, trigger=queue_proof)
def on_task_message(req: Request) -> dict[str, Any]:
    """A callback task of the `reviews` queue (sealed by the orchestrator, else 401); kept only if the
    orchestrator waits for its token."""
    document = queue_proof.message(req)
    try:
        message = TaskMessage.model_validate(document)
    except ValidationError as error:
        raise validation_failed("The task message is not valid.", error) from None
    return {"outcome": services.get().transfers.take_task(message)}


# --- operators ----------------------------------------------------------------------------------------


@app.route("POST", "/_/ops/transfers/{transfer_id}/decision", body=DecisionBody, idempotency="required",
           rate_limit=None)
def decide(req: Request, transfer_id: str, body: DecisionBody) -> OpsTransferView:
    """An operator's decision: approve|reject a review; post|void a transfer that needs attention.
    Approve or post above the second-approval amount waits (pending_approval) for a different operator."""
    assert req.principal is not None
    req.audit_target = f"transfer:{transfer_id}"
    return ops_transfer_view(services.get().transfers.decide(transfer_id, body, req.principal.sub))


@app.route("GET", "/_/ops/transfers", query=OpsTransferListQuery, rate_limit=None)
def list_open_transfers(req: Request, query: OpsTransferListQuery) -> OpsTransferList:
    """Transfers not yet final in one status (AWAITING_REVIEW, NEEDS_ATTENTION, ACCEPTED, PROCESSING),
    oldest first, with their owners; cursor pagination."""
    assert req.principal is not None
    return services.get().transfers.list_open(req.principal.sub, query)


@app.route("GET", "/_/ops/transfers/summary", query=SummaryQuery, rate_limit=None)
def transfers_summary(req: Request, query: SummaryQuery) -> TransferSummary:
    """How many transfers wait for a review, need attention, or are in flight, and how many of those in
    flight were created longer than in_flight_older_than_s seconds ago."""
    return services.get().transfers.summary(query)


@app.route("PUT", "/_/ops/customers/{customer_id}/tier", body=TierBody, status=204, rate_limit=None)
def set_tier(req: Request, customer_id: str, body: TierBody) -> Response:
    """Set a customer's limits tier (BASIC, STANDARD, PREMIUM, BUSINESS)."""
    services.get().transfers.set_tier(customer_id, body.tier)
    return Response(status=204)


@app.route("GET", "/_/ops/stats", rate_limit=None)
def stats(req: Request) -> dict[str, Any]:
    """This process's DynamoDB calls by operation and table, the order reads of status requests (one
    GetItem each), what the status watcher does (requests waiting and the transfers they wait on now,
    its batch reads so far, requests refused a slot), and the platform steps' cost."""
    current = services.get()
    watch = current.transfers.status_watch()
    return {
        "dynamodb_calls": current.dynamodb_calls(),
        "status_reads": current.transfers.status_reads(),
        "status_waiting": watch.waiting,
        "status_watched": watch.watched,
        "status_batch_reads": watch.batch_reads,
        "status_orders_batch_read": watch.orders_read,
        "status_waits_refused": watch.refused,
        "steps": app.timings.snapshot(),
    }


@app.readiness_check("transfer-orders-table")
def orders_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
