"""The payments function: merchants, and (to come) payment intents, captures and refunds on the ledger.

Operators (ops scope):
  POST /_/ops/merchants                          onboard a merchant and open its ledger accounts through
                                                 the ledger function (Idempotency-Key required)
  GET  /_/ops/merchants/{merchant_id}            the merchant (settlement account masked)
  POST /_/ops/merchants/{merchant_id}/deactivate INACTIVE from now on; safe to repeat
"""

# The shared package on the path: in the function image stack.yml's `configuration.copy` puts it next
# to this file, outside site-packages; where finfaas is installed (.venv) the folder is absent and this
# changes nothing. Same text in every handler (tests/unit/functions/test_handler_header.py); the imports
# after it are exempt from E402 in pyproject.toml.
import sys
from pathlib import Path

_SHARED = Path(__file__).resolve().parent / "shared"
if _SHARED.is_dir() and str(_SHARED) not in sys.path:
    sys.path.insert(0, str(_SHARED))

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.platform.audit import AuditLog
from finfaas.platform.http import FunctionApp, Request
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.platform.ratelimit import RateLimit, RateLimiter
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.payments.api import ERRORS, MerchantView, OnboardBody, merchant_view
from finfaas.services.payments.service import PaymentsService

FUNCTION_NAME = "payments"
# Operators onboard by hand or by script: the limit stops a runaway script, not a person.
OPS_LIMIT = RateLimit("payments_ops", requests_max=600, window_seconds=60, tokens_per_call=10)
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


def build_services(suite: Any = None) -> PaymentsServices:
    """The services on this stage's tables, the gateway and the payments-client secret (lazily);
    `suite` replaces the gateway client (tests route it to handlers in process)."""
    from finfaas.platform import config
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, signing_key_from_text
    from finfaas.platform.credentials import ServiceTokens
    from finfaas.services.payments.service import LedgerFunctionAccounts
    from finfaas.services.suite_clients import LedgerClient, SuiteClient
    from finfaas.store.audit_store import AuditStore
    from finfaas.store.idempotency_store import IdempotencyStore
    from finfaas.store.ledger_store import DynamoCallMeter
    from finfaas.store.payments_store import PaymentsStore
    from finfaas.store.ratelimit_store import RateLimitStore

    meter = DynamoCallMeter()
    meter.start()
    if suite is None:
        gateway_url = os.environ.get("FINFAAS_GATEWAY_URL") or GATEWAY_URL_DEFAULT
        suite = SuiteClient(gateway_url, ServiceTokens.from_secret(gateway_url, client_name=FUNCTION_NAME))
    merchants = PaymentsStore()
    audit_key = signing_key_from_text(config.read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    return PaymentsServices(
        payments=PaymentsService(merchants, LedgerFunctionAccounts(LedgerClient(suite))),
        guard=IdempotencyGuard(IdempotencyStore(), FUNCTION_NAME),
        limiter=RateLimiter(RateLimitStore(), {OPS_LIMIT.name: OPS_LIMIT}),
        audit=AuditLog(AuditStore(), FUNCTION_NAME, key=audit_key),
        probe=lambda: merchants.get("readiness-probe"),
        dynamodb_calls=meter.snapshot,
    )


services = Lazy(build_services)
verifier = ReplaceableVerifier()
app = FunctionApp(FUNCTION_NAME, errors=ERRORS, verifier=verifier, idempotency=lambda: services.get().guard,
                  limiter=lambda: services.get().limiter, audit=lambda: services.get().audit)


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


@app.readiness_check("payments-table")
def payments_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
