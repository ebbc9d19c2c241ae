"""Loan products (kept by ops) and quotes: the full schedule for a product, an amount and a term,
computed and never stored.

A quote is pure enough to run on every move of an app's slider: one product read and the domain's schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from finfaas.domain.calendar import MarketCalendar
from finfaas.domain.errors import LedgerError
from finfaas.domain.loans import LoanRuleError, Schedule, build_schedule
from finfaas.domain.money import parse_amount
from finfaas.platform.cursors import CursorCodec, InvalidCursor, binding
from finfaas.platform.retry import Change, Unchanged, read_change_save
from finfaas.services.loans.errors import (
    InvalidDisbursementDate,
    InvalidLoanRequest,
    InvalidPrincipal,
    InvalidProduct,
    PrincipalOutsideProduct,
    ProductBusy,
    ProductExists,
    ProductInactive,
    ProductNotFound,
    ProductRefused,
    TermOutsideProduct,
    UnknownProduct,
)
from finfaas.services.loans.model import (
    LoanProduct,
    ProductPage,
    ProductStatus,
    Quote,
    QuoteRequest,
    product_id_chars_max,
)
from finfaas.services.loans.ports import LoanProductRepository, LoanProducts

# A quote is for a loan about to be disbursed; a year ahead is planning, further is a typing error.
disbursement_days_ahead_max = 366
PRODUCTS_LIST_ROUTE = "loan-products"


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
        if product.status is not ProductStatus.ACTIVE:
            raise ProductInactive(f"loan product {product_id} takes no new loans",
                                  errors=(("product_id", "product inactive"),))
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


class LoanProductsService:
    """Operators' products: created once with terms that never change in place, read, listed, deactivated."""

    def __init__(self, products: LoanProductRepository, cursors: CursorCodec | None = None) -> None:
        self._products = products
        self._cursors = cursors or CursorCodec.generate()

    def create(self, build: Callable[[], LoanProduct]) -> LoanProduct:
        """The product `build` makes, stored; the stored one when the same terms were created before."""
        try:
            wanted = build()
        except InvalidProduct as error:
            raise ProductRefused(str(error), errors=((error.field, str(error)),)) from None
        stored = self._products.create(wanted)
        if _terms(stored) != _terms(wanted):
            raise ProductExists(f"loan product {wanted.product_id} exists with other terms",
                                errors=(("product_id", "exists with other terms"),))
        return stored

    def product(self, product_id: str) -> LoanProduct:
        found = self._products.get(product_id)
        if found is None:
            raise ProductNotFound(f"loan product {product_id[:product_id_chars_max]!r} not found",
                                  errors=(("product_id", "not found"),))
        return found

    def page(self, principal: str, limit: int, cursor: str | None) -> tuple[ProductPage, str | None]:
        """Products in id order and the sealed cursor to the next page (None: the last page)."""
        bound = binding(PRODUCTS_LIST_ROUTE, principal)
        after = None if cursor is None else self._cursors.open(cursor, bound)
        if after is not None and not isinstance(after, str):
            raise InvalidCursor("not a cursor of this list")
        page = self._products.page(limit, after)
        return page, None if page.last_key is None else self._cursors.seal(page.last_key, bound)

    def deactivate(self, product_id: str) -> LoanProduct:
        """INACTIVE from now on (no new quotes or loans; loans already made run on); again changes nothing."""

        def change(product: LoanProduct) -> Unchanged[LoanProduct] | Change[LoanProduct, LoanProduct]:
            if product.status is ProductStatus.INACTIVE:
                return Unchanged(product)
            updated = product.deactivated()
            return Change(updated, updated)

        return read_change_save(lambda: self.product(product_id), change, self._products.save,
                                exhausted=lambda: ProductBusy(f"loan product {product_id} kept changing"))


def _terms(product: LoanProduct) -> dict[str, Any]:
    """What a repeated create must match: every field but the stored lifecycle (status, version)."""
    return {name: value for name, value in vars(product).items() if name not in ("status", "version")}
