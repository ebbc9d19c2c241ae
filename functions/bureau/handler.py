"""SANDBOX credit bureau: deterministic credit reports keyed by customer, for loan underwriting.

Lenders (bureau:read, the loans function's client):
  POST /reports    {customer_id, inquiry_id}: score (300-850), delinquencies, open accounts; the same
                   customer always gets the same report. BUREAU_SANDBOX_DOWN=true makes it answer 503,
                   to see the loans function decide without a bureau; so does a customer id ending in
                   `-bureau-down`, whatever the setting.
"""

from typing import Any

from finfaas.platform.http import FunctionApp, Request
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.bureau.api import ERRORS, ReportBody, ReportView, report_view
from finfaas.services.bureau.model import down_from_env
from finfaas.services.bureau.service import BureauService

FUNCTION_NAME = "bureau"
READ = "bureau:read"
# Read at import, so a bad value stops the function at start rather than answer with a guess.
DOWN = down_from_env()

services: Lazy[BureauService] = Lazy(lambda: BureauService(lambda: DOWN))
verifier = ReplaceableVerifier()
app = FunctionApp(FUNCTION_NAME, errors=ERRORS, verifier=verifier)


@app.route("POST", "/reports", scopes=[READ], body=ReportBody)
def create_report(req: Request, body: ReportBody) -> ReportView:
    """The customer's credit report (nothing is stored: the sandbox derives it)."""
    return report_view(services.get().report(body.customer_id), body.inquiry_id)


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
