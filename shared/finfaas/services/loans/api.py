"""Loan quotes over HTTP: the request body, the schedule view and the error table (`POST /loans/quotes`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, Field, StrictInt

from finfaas.domain.loans import term_months_max
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.services.ledger.api import Amount, Identifier
from finfaas.services.loans.errors import (
    InvalidDisbursementDate,
    InvalidLoanRequest,
    InvalidPrincipal,
    PrincipalOutsideProduct,
    TermOutsideProduct,
    UnknownProduct,
)
from finfaas.services.loans.model import Quote, QuoteRequest


class QuoteBody(StrictModel):
    """A quote for `principal` over `term_months` of a product, disbursed on `disbursement_date`
    (the business date when absent)."""

    product_id: Identifier
    principal: Amount
    term_months: Annotated[StrictInt, Field(ge=1, le=term_months_max)]
    disbursement_date: date | None = None

    def to_request(self) -> QuoteRequest:
        return QuoteRequest(self.product_id, self.principal, self.term_months, self.disbursement_date)


class InstallmentView(BaseModel):
    number: int
    period_start: date
    period_end: date = Field(description="interest is counted to this date")
    due_date: date = Field(description="period_end rolled to the next trading day; overdue after it")
    principal_minor: int
    interest_minor: int
    fee_minor: int
    total_minor: int
    balance_minor: int = Field(description="principal outstanding once this installment is paid")


class QuoteView(BaseModel):
    product_id: str
    currency: str
    principal_minor: int
    term_months: int
    annual_rate: str = Field(description="nominal, as a decimal string: '0.12' is 12 % a year")
    amortization: str
    interest_method: str
    day_count: str
    disbursement_date: date
    installments: list[InstallmentView]
    interest_minor: int
    fee_minor: int
    total_minor: int


def quote_view(quote: Quote) -> QuoteView:
    schedule, product = quote.schedule, quote.product
    return QuoteView(
        product_id=product.product_id, currency=product.currency, principal_minor=schedule.principal_minor,
        term_months=quote.term_months, annual_rate=str(product.annual_rate),
        amortization=product.amortization.value, interest_method=product.interest_method.value,
        day_count=product.day_count.value, disbursement_date=quote.disbursed_on,
        installments=[InstallmentView(
            number=i.number, period_start=i.period_start, period_end=i.period_end, due_date=i.due_on,
            principal_minor=i.principal_minor, interest_minor=i.interest_minor, fee_minor=i.fee_minor,
            total_minor=i.total_minor, balance_minor=i.balance_minor) for i in schedule.installments],
        interest_minor=schedule.interest_minor, fee_minor=schedule.fee_minor,
        total_minor=schedule.total_minor)


ERRORS = {
    UnknownProduct: ErrorSpec(422, UnknownProduct.code, "Unknown loan product"),
    InvalidPrincipal: ErrorSpec(422, InvalidPrincipal.code, "Invalid principal"),
    PrincipalOutsideProduct: ErrorSpec(422, PrincipalOutsideProduct.code, "Principal outside the product"),
    TermOutsideProduct: ErrorSpec(422, TermOutsideProduct.code, "Term outside the product"),
    InvalidDisbursementDate: ErrorSpec(422, InvalidDisbursementDate.code, "Invalid disbursement date"),
    InvalidLoanRequest: ErrorSpec(422, InvalidLoanRequest.code, "Invalid loan terms"),
}
