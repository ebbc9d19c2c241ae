"""The bureau over HTTP: the report request, its view and the error table (`POST /reports`)."""

from __future__ import annotations

from pydantic import BaseModel

from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.services.bureau.errors import BureauUnavailable
from finfaas.services.bureau.model import CreditReport
from finfaas.services.ledger.api import Identifier


class ReportBody(StrictModel):
    """A report on customer_id; inquiry_id names the lender's request (a loan id) for the bureau's log."""

    customer_id: Identifier
    inquiry_id: Identifier


class ReportView(BaseModel):
    customer_id: str
    inquiry_id: str
    score: int
    delinquencies: int
    open_accounts: int
    sandbox: bool = True


def report_view(report: CreditReport, inquiry_id: str) -> ReportView:
    return ReportView(customer_id=report.customer_id, inquiry_id=inquiry_id, score=report.score,
                      delinquencies=report.delinquencies, open_accounts=report.open_accounts)


ERRORS = {
    BureauUnavailable: ErrorSpec(503, BureauUnavailable.code, "Credit bureau unavailable"),
}
