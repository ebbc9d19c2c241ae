"""Loan quotes (services/loans): the catalogue's rules applied to a request, each refusal naming a field."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from finfaas.domain.calendar import MarketCalendar
from finfaas.domain.loans import Amortization, Component, DayCount
from finfaas.platform.errors import ErrorTable
from finfaas.services.loans.api import ERRORS, QuoteBody, quote_view
from finfaas.services.loans.errors import (
    InvalidDisbursementDate,
    InvalidPrincipal,
    InvalidProduct,
    PrincipalOutsideProduct,
    TermOutsideProduct,
    UnknownProduct,
)
from finfaas.services.loans.model import LoanProduct, ProductCatalogue, QuoteRequest
from finfaas.services.loans.service import LoanQuoteService, disbursement_days_ahead_max
from pydantic import ValidationError

BUSINESS_DATE = date(2024, 1, 1)
# Fineract's EMICalculation.feature C3154 product: 12 % a year, 30/360, equal installments.
PERSONAL = LoanProduct("personal-eur", "Personal loan", "EUR", principal_minor_min=10000,
                       principal_minor_max=5_000_000, term_months_min=3, term_months_max=60,
                       annual_rate=Decimal("0.12"))
YEN = LoanProduct("small-jpy", "Small loan", "JPY", principal_minor_min=10_000, principal_minor_max=1_000_000,
                  term_months_min=1, term_months_max=12, annual_rate=Decimal("0.05"),
                  amortization=Amortization.EQUAL_PRINCIPAL, day_count=DayCount.ACT_365)
CATALOGUE = ProductCatalogue([PERSONAL, YEN])


def service(calendar=None):
    return LoanQuoteService(CATALOGUE, lambda: BUSINESS_DATE, calendar)


def test_a_quote_is_the_products_schedule_for_the_amount_and_term_from_the_business_date():
    quote = service().quote(QuoteRequest("personal-eur", "100.00", 6))

    view = quote_view(quote)
    assert view.disbursement_date == BUSINESS_DATE
    assert [i.total_minor for i in view.installments] == [1725] * 5 + [1728]
    assert [i.due_date for i in view.installments][:2] == [date(2024, 2, 1), date(2024, 3, 1)]
    assert (view.principal_minor, view.interest_minor, view.total_minor) == (10000, 353, 10353)
    assert view.annual_rate == "0.12"
    assert view.currency == "EUR"


def test_minor_units_and_a_decimal_string_quote_the_same():
    assert service().quote(QuoteRequest("personal-eur", 10000, 6)) == \
        service().quote(QuoteRequest("personal-eur", "100", 6))


def test_a_product_in_yen_has_no_minor_digits_and_its_own_rules():
    quote = service().quote(QuoteRequest("small-jpy", "120000", 12))

    assert [i.principal_minor for i in quote.schedule.installments] == [10000] * 12
    # ACT/365: 120000 x 5 % x 31/365 = 509.59 -> 510 yen for January.
    assert quote.schedule.installments[0].interest_minor == 510


def test_due_dates_follow_the_market_calendar():
    calendar = MarketCalendar("CN", frozenset({2024}), frozenset({date(2024, 2, 1)}))

    quote = service(calendar).quote(QuoteRequest("personal-eur", 10000, 6))

    assert quote.schedule.installments[0].due_on == date(2024, 2, 2)


def test_a_later_disbursement_date_within_a_year_moves_the_schedule():
    quote = service().quote(QuoteRequest("personal-eur", 10000, 6, date(2024, 3, 15)))

    assert quote.schedule.installments[0].period_end == date(2024, 4, 15)


@pytest.mark.parametrize(("request_", "refusal", "field"), [
    (QuoteRequest("car-eur", 10000, 6), UnknownProduct, "product_id"),
    (QuoteRequest("personal-eur", 9999, 6), PrincipalOutsideProduct, "principal"),
    (QuoteRequest("personal-eur", 5_000_001, 6), PrincipalOutsideProduct, "principal"),
    (QuoteRequest("personal-eur", "100.005", 6), InvalidPrincipal, "principal"),
    (QuoteRequest("personal-eur", -10000, 6), InvalidPrincipal, "principal"),
    (QuoteRequest("personal-eur", 0, 6), InvalidPrincipal, "principal"),
    (QuoteRequest("small-jpy", "10000.5", 6), InvalidPrincipal, "principal"),
    (QuoteRequest("personal-eur", 10000, 2), TermOutsideProduct, "term_months"),
    (QuoteRequest("personal-eur", 10000, 61), TermOutsideProduct, "term_months"),
    (QuoteRequest("personal-eur", 10000, 6, date(2023, 12, 31)), InvalidDisbursementDate,
     "disbursement_date"),
    (QuoteRequest("personal-eur", 10000, 6, date(2025, 1, 2)), InvalidDisbursementDate,
     "disbursement_date"),
])
def test_a_request_outside_the_product_is_a_422_naming_the_field(request_, refusal, field):
    with pytest.raises(refusal) as refused:
        service().quote(request_)

    problem = ErrorTable(ERRORS).problem_for(refused.value, "/loans/quotes")
    assert problem.status == 422
    assert problem.code == refusal.code
    assert [error.field for error in problem.errors] == [field]


def test_the_last_day_a_quote_may_be_dated_is_a_year_ahead():
    last = date.fromordinal(BUSINESS_DATE.toordinal() + disbursement_days_ahead_max)
    assert service().quote(QuoteRequest("personal-eur", 10000, 6, last)).disbursed_on == last


@pytest.mark.parametrize("body", [
    {"product_id": "personal-eur", "principal": 10.5, "term_months": 6},
    {"product_id": "personal-eur", "principal": True, "term_months": 6},
    {"product_id": "personal-eur", "principal": 10000, "term_months": "6"},
    {"product_id": "personal-eur", "principal": 10000, "term_months": 601},
    {"product_id": "personal eur", "principal": 10000, "term_months": 6},
    {"product_id": "personal-eur", "principal": 10000, "term_months": 6, "annual_rate": "0.01"},
])
def test_the_body_refuses_floats_strings_for_numbers_and_unknown_fields(body):
    with pytest.raises(ValidationError):
        QuoteBody.model_validate(body)


def test_a_valid_body_becomes_a_request():
    body = QuoteBody.model_validate({"product_id": "personal-eur", "principal": "100.00", "term_months": 6,
                                     "disbursement_date": "2024-01-15"})
    assert body.to_request() == QuoteRequest("personal-eur", "100.00", 6, date(2024, 1, 15))


@pytest.mark.parametrize(("changes", "field"), [
    ({"currency": "XXX"}, "currency"),
    ({"principal_minor_min": 0}, "principal_minor_min"),
    ({"principal_minor_min": 6_000_000}, "principal_minor_min"),
    ({"term_months_min": 0}, "term_months_min"),
    ({"term_months_max": 601}, "term_months_min"),
    ({"annual_rate": Decimal("1.5")}, "annual_rate"),
    ({"principal_grace_months": 3}, "principal_grace_months"),
    ({"daily_penalty_rate": Decimal("0.02")}, "daily_penalty_rate"),
    ({"prepayment_penalty_rate": Decimal("0.5")}, "prepayment_penalty_rate"),
    ({"allocation_order": (Component.PENALTY, Component.INTEREST, Component.PRINCIPAL)}, "allocation_order"),
])
def test_a_misconfigured_product_is_refused_when_the_catalogue_is_built(changes, field):
    values = {"product_id": "p", "name": "P", "currency": "EUR", "principal_minor_min": 10000,
              "principal_minor_max": 5_000_000, "term_months_min": 3, "term_months_max": 60,
              "annual_rate": Decimal("0.12")}
    with pytest.raises(InvalidProduct) as refused:
        LoanProduct(**(values | changes))
    assert refused.value.field == field


def test_a_product_id_is_listed_once():
    with pytest.raises(InvalidProduct):
        ProductCatalogue([PERSONAL, PERSONAL])
