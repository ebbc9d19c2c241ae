"""The rail function: the suite's adapter to an external payment rail, with a SANDBOX bank behind it.

Queue `rail` (POST /, binary CloudEvents): the transfer saga's hand-offs (callback tasks, checked
with the orchestrator before anything is paid) and the sandbox's own delayed settlements, both sealed
with the events key by their senders (anyone else's POST / is 401).
POST /notices: the bank's signed settlement notices (Standard Webhooks HMAC, secret rail-notice-key),
turned into the orchestrator's task success or failure.
The saga (scope rail:recall): POST /payments/{id}/recall after its wait timed out; rail:read to look.
Operators (ops scope), SANDBOX only: POST /_/ops/sandbox/disputes has the bank send payments its signed
notice of a chargeback opened or closed (won or lost) on a card payment, and answers what payments said.
Sandbox knobs (environment): RAIL_SANDBOX_SETTLE_SECONDS, RAIL_SANDBOX_REJECT_RATE, RAIL_SANDBOX_TIMEOUT_RATE.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.platform.errors import ValidationFailed
from finfaas.platform.events import delivery_type, event_mac_from_config
from finfaas.platform.http import FunctionApp, Request
from finfaas.platform.queue_proof import QueueMessageProof
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.rail.api import (
    ERRORS,
    SETTLE_EVENT_TYPE,
    DisputeDelivery,
    DisputeTrigger,
    HandOff,
    PaymentView,
    SettleMessage,
    payment_view,
)
from finfaas.services.rail.service import RailAdapter, SandboxBank, SandboxSettings
from pydantic import ValidationError

FUNCTION_NAME = "rail"
READ, RECALL = "rail:read", "rail:recall"
NOTICES_PATH = "/function/rail/notices"
PAYMENTS_DISPUTES_PATH = "/function/payments/rail/disputes"


@dataclass
class RailServices:
    """What the routes need; built from configuration on first use, or given by tests."""

    adapter: RailAdapter
    bank: SandboxBank
    probe: Callable[[], None]
    dynamodb_calls: Callable[[], dict[str, int]] = dict


def sandbox_settings(environ: Any = os.environ) -> SandboxSettings:
    return SandboxSettings(settle_seconds=int(environ.get("RAIL_SANDBOX_SETTLE_SECONDS", "1")),
                           reject_rate=float(environ.get("RAIL_SANDBOX_REJECT_RATE", "0")),
                           timeout_rate=float(environ.get("RAIL_SANDBOX_TIMEOUT_RATE", "0")))


def build_services(disputes: Any = None) -> RailServices:
    """The sandbox on this stage's rail table and queue, the gateway and the rail-client secret (lazily);
    `disputes` replaces the sender of dispute notices to payments (tests deliver them in process)."""
    from finfaas.domain.creditor import CreditorVault
    from finfaas.platform import config
    from finfaas.platform.credentials import ServiceTokens
    from finfaas.platform.pii import EnvelopeCipher, KmsDataKeys, pii_key_id
    from finfaas.services.rail.service import NOTICE_KEY_SECRET_NAME, HttpNoticeSender, SqsSettlementScheduler
    from finfaas.services.suite_clients import OrchestratorClient, SuiteClient
    from finfaas.store.call_meter import DynamoCallMeter
    from finfaas.store.rail_store import RailStore

    meter = DynamoCallMeter()
    meter.start()
    addresses = config.function_addresses()  # the gateway, or each function's own address
    notice_key = config.read_secret(NOTICE_KEY_SECRET_NAME) or ""
    store = RailStore()
    notices = HttpNoticeSender(addresses.resolve(NOTICES_PATH))
    bank = SandboxBank(store, SqsSettlementScheduler(), notices, notice_key, settings=sandbox_settings(),
                       disputes=disputes or HttpNoticeSender(addresses.resolve(PAYMENTS_DISPUTES_PATH)))
    tokens = ServiceTokens.from_secret(addresses, FUNCTION_NAME)
    orchestrator = OrchestratorClient(SuiteClient(addresses, tokens))
    # The rail only opens payees (no digest key): it pays them, it does not recognise them.
    keys = KmsDataKeys(pii_key_id())
    keys.warm()  # a cold rail is started by a hand-off, which the saga waits for with a timeout
    vault = CreditorVault(EnvelopeCipher(keys))
    adapter = RailAdapter(bank, store, orchestrator, notice_key, vault=vault)
    return RailServices(adapter=adapter, bank=bank,
                        probe=lambda: store.get("readiness-probe"), dynamodb_calls=meter.snapshot)


services = Lazy(build_services)
queue_proof = QueueMessageProof(event_mac_from_config)
verifier = ReplaceableVerifier()
app = FunctionApp(FUNCTION_NAME, errors=ERRORS, verifier=verifier)


def _parsed(model: Any, document: dict[str, Any]) -> Any:
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise ValidationFailed(f"not a {model.__name__} message: {error.error_count()} problem(s)") from None


@app.route("POST", "/", auth=False, trigger=queue_proof)
def on_queue_message(req: Request) -> dict[str, Any]:
    """A message of the `rail` queue: a saga's hand-off, or the sandbox's own settlement timer."""
    document = queue_proof.message(req)  # sealed by the orchestrator or the sandbox: else 401
    current = services.get()
    if delivery_type(req.headers) == SETTLE_EVENT_TYPE:
        payment = current.bank.settle_due(_parsed(SettleMessage, document).payment_id)
        return {"outcome": payment.status.value if payment else "unknown_payment"}
    return {"outcome": current.adapter.hand_off(_parsed(HandOff, document))}


@app.route("POST", "/notices", auth=False)
def on_notice(req: Request) -> dict[str, Any]:
    """The bank's signed notice of a payment's final status."""
    return {"outcome": services.get().adapter.on_notice(req.headers, req.body)}


@app.route("GET", "/payments/{payment_id}", scopes=[READ])
def get_payment(req: Request, payment_id: str) -> PaymentView:
    """A payment's status at the rail."""
    return payment_view(services.get().adapter.status(payment_id))


@app.route("POST", "/payments/{payment_id}/recall", scopes=[RECALL])
def recall_payment(req: Request, payment_id: str) -> PaymentView:
    """Make sure a payment never settles if it has not: CANCELLED, or its final status (SETTLED, REJECTED)."""
    return payment_view(services.get().adapter.recall(payment_id))


@app.route("POST", "/_/ops/sandbox/disputes", body=DisputeTrigger)
def sandbox_dispute(req: Request, body: DisputeTrigger) -> DisputeDelivery:
    """SANDBOX: the bank tells payments a chargeback was opened or closed (signed, as a real one would)."""
    return services.get().bank.notify_dispute(body)


app.dynamodb_stats_route(lambda: services.get().dynamodb_calls())


@app.readiness_check("rail-table")
def rail_table_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
