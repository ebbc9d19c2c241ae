"""The sandbox bureau's one use case: a customer's credit report, or a failure when set to fail."""

from __future__ import annotations

from collections.abc import Callable

from finfaas.services.bureau.errors import BureauUnavailable
from finfaas.services.bureau.model import UNAVAILABLE_CUSTOMER_SUFFIX, CreditReport, sandbox_report
from finfaas.services.bureau.ports import ReportSource


class BureauService:
    """Answers reports from `source`; `down()` true makes every answer a BureauUnavailable, and so is
    always the answer for a customer id ending in UNAVAILABLE_CUSTOMER_SUFFIX."""

    def __init__(self, down: Callable[[], bool], source: ReportSource = sandbox_report) -> None:
        self._down = down
        self._source = source

    def report(self, customer_id: str) -> CreditReport:
        if self._down():
            raise BureauUnavailable("the sandbox bureau is set to fail")
        if customer_id.endswith(UNAVAILABLE_CUSTOMER_SUFFIX):
            raise BureauUnavailable("the sandbox bureau answers nothing for this customer")
        return self._source(customer_id)
