"""Loan quotes: the full schedule for a product, an amount and a term, computed and never stored.

Pure enough to run on every move of an app's slider: one catalogue lookup and the domain's schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from finfaas.domain.calendar import MarketCalendar
from finfaas.domain.errors import LedgerError
from finfaas.domain.loans import LoanRuleError, Schedule, build_schedule
from finfaas.domain.money import parse_amount
from finfaas.services.loans.errors import (
    InvalidDisbursementDate,
    InvalidLoanRequest,
    InvalidPrincipal,
    PrincipalOutsideProduct,
    TermOutsideProduct,
    UnknownProduct,
)
from finfaas.services.loans.model import LoanProduct, Quote, QuoteRequest, product_id_chars_max
from finfaas.services.loans.ports import LoanProducts

# A quote is for a loan about to be disbursed; a year ahead is planning, further is a typing error.
disbursement_days_ahead_max = 366


class LoanQuoteService:
    """Quotes repayment schedules of the catalogue's products, dated by the business date."""

    def __init__(self, products: LoanProducts, business_date: Callable[[], date],
                 business_calendar: MarketCalendar | None = None) -> None:
        self._products = products
        self._business_date = business_date
        self._calendar = business_calendar

    def quote(self, request: QuoteRequest) -> Quote:
        """The schedule the request would get if disbursed on its date (the business date by default)."""
        product = self._product(request.product_id)
        principal_minor = _principal(product, request.principal)
        if not product.term_months_min <= request.term_months <= product.term_months_max:
            bounds = f"{product.term_months_min}-{product.term_months_max} months"
            raise TermOutsideProduct(f"term must be {bounds} for {product.product_id}",
                                     errors=(("term_months", bounds),))
        disbursed_on = self._disbursement_date(request.disbursement_date)
        try:
            schedule = _schedule(product, principal_minor, request.term_months, disbursed_on, self._calendar)
        except LoanRuleError as error:
            raise InvalidLoanRequest(str(error), errors=((error.field, str(error)),)) from None
        return Quote(product, disbursed_on, request.term_months, schedule)

    def _product(self, product_id: str) -> LoanProduct:
        product = self._products.get(product_id)
        if product is None:
            raise UnknownProduct(f"no loan product {product_id[:product_id_chars_max]!r}",
                                 errors=(("product_id", "unknown product"),))
        return product

    def _disbursement_date(self, requested: date | None) -> date:
        today = self._business_date()
        if requested is None:
            return today
        if not today <= requested <= today + timedelta(days=disbursement_days_ahead_max):
            raise InvalidDisbursementDate(
                f"disbursement date must be from the business date {today.isoformat()} up to "
                f"{disbursement_days_ahead_max} days after it",
                errors=(("disbursement_date", "outside the business date's range"),))
        return requested


def _principal(product: LoanProduct, value: int | str) -> int:
    """The principal in the product's minor units, within the product's bounds."""
    try:
        principal_minor = parse_amount(value, product.currency, field="principal")
    except LedgerError as error:
        raise InvalidPrincipal(str(error), errors=(("principal", str(error)),)) from None
    if not product.principal_minor_min <= principal_minor <= product.principal_minor_max:
        raise PrincipalOutsideProduct(
            f"principal must be {product.principal_minor_min}-{product.principal_minor_max} minor units of "
            f"{product.currency} for {product.product_id}",
            errors=(("principal", "outside the product's bounds"),))
    return principal_minor


def _schedule(product: LoanProduct, principal_minor: int, term_months: int, disbursed_on: date,
              business_calendar: MarketCalendar | None) -> Schedule:
    return build_schedule(product.terms(principal_minor, term_months, disbursed_on), business_calendar)
