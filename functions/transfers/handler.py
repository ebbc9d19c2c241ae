"""The transfers function: money transfers as durable sagas (infra/statemachines/transfer.asl.json).

Apps (customer tokens, scopes transfers:write / transfers:read):
  POST /transfers              202 + the transfer id and its status URL (Idempotency-Key required)
  GET  /transfers/{id}?wait=s  status and steps; waits up to `wait` seconds for a final status. At most
                               TRANSFERS_WAITERS_MAX requests (default 2) wait at once per process, so
                               waiters never hold every request thread the saga's steps need; any other
                               answers at once with the current status, as with wait=0
The saga (the orchestrator's token, scope transfers:saga): POST /saga/validate|screen|complete|fail|attention.
Queue `reviews` (POST /): the callback tasks that wait for an operator; their tokens are checked
with the orchestrator before they are kept. Operators (ops): decisions, customer tiers.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    StepBody,
    TaskMessage,
    TierBody,
    TransferView,
    WaitQuery,
    refusing_step,
    transfer_view,
)
from finfaas.services.transfers.service import TransfersService, TransfersSettings
from pydantic import ValidationError

FUNCTION_NAME = "transfers"
READ, WRITE, SAGA = "transfers:read", "transfers:write", "transfers:saga"
CUSTOMER_KIND = "customer"
STATUS_PATH = "/function/transfers/transfers/{}"
CREATE_LIMIT = RateLimit("transfers_create", requests_max=120, window_seconds=60, tokens_per_call=5)
# Environment knobs (stack.yml), each with the product's default.
DEGRADED_APPROVE_ENV = "TRANSFERS_DEGRADED_AUTO_APPROVE_MAJOR"
BREAKER_FAILURES_ENV = "TRANSFERS_RISK_BREAKER_FAILURES"
BREAKER_OPEN_SECONDS_ENV = "TRANSFERS_RISK_BREAKER_OPEN_SECONDS"
WAITERS_MAX_ENV = "TRANSFERS_WAITERS_MAX"
GATEWAY_URL_DEFAULT = "http://127.0.0.1:8080"


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
    return TransfersSettings(degraded_auto_approve_major=int(approve_major), waiters_max=int(waiters))


def build_services() -> TransfersServices:
    """The services on this stage's tables, the gateway and the transfers-client secret (lazily)."""
    from finfaas.domain.creditor import CreditorVault
    from finfaas.platform.credentials import ServiceTokens
    from finfaas.platform.pii import EnvelopeCipher, KmsDataKeys, SecretKeyedDigests, pii_key_id
    from finfaas.platform.resilience import CircuitBreaker
    from finfaas.services.suite_clients import OrchestratorClient, RiskClient, SuiteClient
    from finfaas.services.transfers.service import LedgerAccounts
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import DynamoCallMeter, ledger_store_from_config
    from finfaas.store.ratelimit_store import RateLimitStore
    from finfaas.store.transfers_store import TransfersStore

    meter = DynamoCallMeter()
    meter.start()
    gateway_url = os.environ.get("FINFAAS_GATEWAY_URL") or GATEWAY_URL_DEFAULT
    suite = SuiteClient(gateway_url, ServiceTokens.from_secret(gateway_url, client_name=FUNCTION_NAME))
    breaker = CircuitBreaker("risk", failures_to_open=int(os.environ.get(BREAKER_FAILURES_ENV, "5")),
                             open_seconds=float(os.environ.get(BREAKER_OPEN_SECONDS_ENV, "30")))
    orders = TransfersStore()
    # Payees are sealed with the stage's PII key and fingerprinted with its digest key (read on first use).
    vault = CreditorVault(EnvelopeCipher(KmsDataKeys(pii_key_id())), SecretKeyedDigests())
    service = TransfersService(orders, LedgerAccounts(ledger_store_from_config()), RiskClient(suite),
                               OrchestratorClient(suite), breaker=breaker, settings=settings_from_env(),
                               vault=vault)
    return TransfersServices(
        transfers=service,
        guard=IdempotencyGuard(IdempotencyStore(), FUNCTION_NAME),
        limiter=RateLimiter(RateLimitStore(), {CREATE_LIMIT.name: CREATE_LIMIT}),
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
    location = STATUS_PATH.format(order.transfer_id)
    accepted = Accepted(transfer_id=order.transfer_id, status=order.status, status_url=location)
    headers = {"Location": location}
    if acceptance.repeated:
        headers[REPLAYED_HEADER] = "true"
    return Response(accepted, status=202, headers=headers)


@app.route("GET", "/transfers/{transfer_id}", scopes=[READ], query=WaitQuery, rate_limit=None)
def get_transfer(req: Request, transfer_id: str, query: WaitQuery) -> TransferView:
    """A transfer's status and steps; `wait` (seconds, at most 5) waits for a final status while one of
    the process's waiting slots is free, and answers at once otherwise."""
    return transfer_view(services.get().transfers.get(transfer_id, _owner_filter(req), query.wait))


# --- the saga's own steps -----------------------------------------------------------------------------


@app.route("POST", "/saga/validate", body=StepBody, **SAGA_ROUTE)
def saga_validate(req: Request, body: StepBody) -> dict[str, Any]:
    """Accounts, ownership, currency and tier limits; counts the amount in the day's total."""
    return refusing_step(lambda: services.get().transfers.validate(body.transfer_id))


@app.route("POST", "/saga/screen", body=StepBody, **SAGA_ROUTE)
def saga_screen(req: Request, body: StepBody) -> dict[str, Any]:
    """The risk decision (degraded when the risk function is failing)."""
    return services.get().transfers.screen(body.transfer_id)


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
def decide(req: Request, transfer_id: str, body: DecisionBody) -> TransferView:
    """An operator's decision: approve|reject a review; post|void a transfer that needs attention."""
    assert req.principal is not None
    req.audit_target = f"transfer:{transfer_id}"
    return transfer_view(services.get().transfers.decide(transfer_id, body, req.principal.sub))


@app.route("PUT", "/_/ops/customers/{customer_id}/tier", body=TierBody, status=204, rate_limit=None)
def set_tier(req: Request, customer_id: str, body: TierBody) -> Response:
    """Set a customer's limits tier (BASIC, STANDARD, PREMIUM, BUSINESS)."""
    services.get().transfers.set_tier(customer_id, body.tier)
    return Response(status=204)


@app.route("GET", "/_/ops/stats", rate_limit=None)
def stats(req: Request) -> dict[str, Any]:
    """This process's DynamoDB calls by operation and table, the order reads of status requests (each
    one a GetItem), the transfers waiting requests follow now, and the platform steps' cost."""
    current = services.get()
    return {
        "dynamodb_calls": current.dynamodb_calls(),
        "status_reads": current.transfers.status_reads(),
        "status_waiting": current.transfers.status_waiting(),
        "steps": app.timings.snapshot(),
    }


@app.readiness_check("transfer-orders-table")
def orders_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
