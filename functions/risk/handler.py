"""The risk function: explainable assessments of transfers (velocity, amount, new payee, block lists).

Callers are internal services with client_credentials tokens (scope risk:assess, which also reads the
thresholds in effect from GET /rules for the in-process checks of payments and transfers; risk:read to
read a recorded assessment back); operators manage the block lists under /_/ops (scope ops) and read the
rules with their thresholds (GET /_/ops/risk/rules). Every threshold is a setting, RISK_<NAME> (README), read
when the process starts: a bad value stops it there, naming the variable.
An assessment is recorded once per assessment_id: a retry gets the same answer and counts once.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.platform.errors import NotFound
from finfaas.platform.http import FunctionApp, Request, Response
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.risk.api import (
    ERRORS,
    AssessmentBody,
    AssessmentView,
    BlockBody,
    BlockList,
    BlockView,
    NewBlockBody,
    RiskRules,
    assessment_view,
    block_view,
    risk_rules_view,
)
from finfaas.services.risk.model import policy_from_env
from finfaas.services.risk.service import RiskService

FUNCTION_NAME = "risk"
ASSESS, READ = "risk:assess", "risk:read"
# Read at import, so a stage with a bad threshold fails to start rather than assess with a guess.
POLICY = policy_from_env()


@dataclass
class RiskServices:
    """What the routes need; built from configuration on first use, or given by tests."""

    risk: RiskService
    probe: Callable[[], None]
    dynamodb_calls: Callable[[], dict[str, int]] = dict


def build_services() -> RiskServices:
    """The service on this stage's risk table (imports AWS code: call lazily)."""
    from finfaas.store.call_meter import DynamoCallMeter
    from finfaas.store.risk_store import RiskStore

    meter = DynamoCallMeter()
    meter.start()
    from functools import partial

    from finfaas.domain.creditor import payee_fingerprint
    from finfaas.platform.pii import SecretKeyedDigests

    store = RiskStore()
    service = RiskService(store, POLICY, payee_fingerprint=partial(payee_fingerprint, SecretKeyedDigests()))
    return RiskServices(risk=service, probe=lambda: store.stored_assessment("readiness-probe"),
                        dynamodb_calls=meter.snapshot)


services = Lazy(build_services)
verifier = ReplaceableVerifier()
app = FunctionApp(FUNCTION_NAME, errors=ERRORS, verifier=verifier)


@app.route("POST", "/assessments", scopes=[ASSESS], body=AssessmentBody)
def create_assessment(req: Request, body: AssessmentBody) -> AssessmentView:
    """Assess a transfer: the decision, its score and every rule's finding (recorded once per id)."""
    return assessment_view(services.get().risk.assess(body.request()))


@app.route("GET", "/assessments/{assessment_id}", scopes=[READ])
def get_assessment(req: Request, assessment_id: str) -> AssessmentView:
    """A recorded assessment, with the findings that explain it."""
    found = services.get().risk.get(assessment_id)
    if found is None:
        raise NotFound(f"No assessment {assessment_id}.")
    return assessment_view(found)


@app.route("GET", "/_/ops/blocklist")
def list_blocked(req: Request) -> BlockList:
    """The block-list entries (ops scope)."""
    return BlockList(entries=[block_view(e) for e in services.get().risk.blocked()])


@app.route("POST", "/_/ops/blocklist", body=NewBlockBody)
def block_given(req: Request, body: NewBlockBody) -> BlockView:
    """Block a customer, account or destination, a payee at another bank as bank:account (ops scope).
    The entry is recorded as the list shows it: such a payee by its fingerprint, never its number."""
    return block_view(services.get().risk.block(body.kind, body.value, body.reason))


@app.route("PUT", "/_/ops/blocklist/{kind}/{value}", body=BlockBody)
def block(req: Request, kind: str, value: str, body: BlockBody) -> BlockView:
    """Block a customer, account, internal destination or payee fingerprint (ops scope)."""
    RiskService.check_path_value(kind, value)
    return block_view(services.get().risk.block(kind, value, body.reason))


@app.route("DELETE", "/_/ops/blocklist/{kind}/{value}", status=204)
def unblock(req: Request, kind: str, value: str) -> Response:
    """Lift a block (ops scope), a payee at another bank by its fingerprint; 404 when there was none."""
    RiskService.check_path_value(kind, value)
    if not services.get().risk.unblock(kind, value):
        raise NotFound(f"{kind}:{value} is not blocked.")
    return Response(status=204)


@app.route("GET", "/rules", scopes=[ASSESS], rate_limit=None)
def published_rules(req: Request) -> RiskRules:
    """The thresholds in effect, for a caller that assesses in its own process with risk's rules and
    table (payments): the risk function stays the one place they are set."""
    return risk_rules_view(services.get().risk.policy)


@app.route("GET", "/_/ops/risk/rules", rate_limit=None)
def risk_rules(req: Request) -> RiskRules:
    """Every rule with the thresholds in effect on this stage, their defaults and their settings (ops)."""
    return risk_rules_view(services.get().risk.policy)


app.dynamodb_stats_route(lambda: services.get().dynamodb_calls())


@app.readiness_check("risk-table")
def risk_table_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
