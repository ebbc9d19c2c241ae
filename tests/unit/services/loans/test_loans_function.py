"""Loan products and quotes through the loans function's handle(event, context), over in-memory fakes:
operators create, read, list and deactivate products; apps quote them."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from finfaas.platform.audit import AuditLog
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.platform.ratelimit import RateLimiter
from finfaas.services.loans.service import (
    LoanApplicationService,
    LoanDisbursementService,
    LoanProductsService,
    LoanQuoteService,
    LoanRepaymentService,
)
from finfaas_dev.fakes.loans import FakeBureau, FakeRisk, InMemoryLoanProducts, InMemoryLoans
from finfaas_dev.fakes.platform import InMemoryAuditStore, InMemoryIdempotencyStore, InMemoryRateLimitStore
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler
from support.loans_world import FakeOrchestrator

BUSINESS_DATE = date(2024, 1, 1)
# Fineract's EMICalculation.feature C3154 product: 12 % a year, 30/360, equal installments.
PERSONAL = {
    "product_id": "personal-eur", "name": "Personal loan", "currency": "EUR",
    "principal_minor_min": 10_000, "principal_minor_max": 5_000_000, "term_months_min": 3,
    "term_months_max": 60, "annual_rate": "0.12",
}


class World:
    """The handler with its services on fakes, an operator's token and a customer's."""

    def __init__(self) -> None:
        self.handler = load_function_handler("loans")
        self.minter = TokenMinter.generate()
        self.handler.verifier.use(self.minter.verifier())
        self.products = InMemoryLoanProducts()
        quotes = LoanQuoteService(self.products, lambda: BUSINESS_DATE)
        self.handler.services.use(self.handler.LoansServices(
            products=LoanProductsService(self.products),
            quotes=quotes,
            applications=LoanApplicationService(self.products, InMemoryLoans(), {}, quotes, FakeRisk(),
                                                FakeBureau(), orchestrator=FakeOrchestrator()),
            disbursements=LoanDisbursementService(self.products, InMemoryLoans(), {}, lambda: BUSINESS_DATE,
                                                  FakeOrchestrator()),
            repayments=LoanRepaymentService(self.products, InMemoryLoans(), {}, lambda: BUSINESS_DATE),
            guard=IdempotencyGuard(InMemoryIdempotencyStore(), "loans"),
            limiter=RateLimiter(InMemoryRateLimitStore(), self.handler.LIMITS),
            audit=AuditLog(InMemoryAuditStore(), "loans"),
            probe=lambda: None,
        ))
        self.operator = self.minter.mint("ops-console", ["ops", "ops:act"], kind="client")
        self.customer = self.minter.mint("cust-1", ["loans:read", "loans:write"])

    def create(self, body: dict | None = None, token: str | None = None):
        return call(self.handler.handle, "POST", "/_/ops/loan-products", token=token or self.operator,
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                    json_body=PERSONAL if body is None else body)

    def get(self, product_id: str, token: str | None = None):
        return call(self.handler.handle, "GET", f"/_/ops/loan-products/{product_id}",
                    token=token or self.operator)

    def quote(self, body: dict):
        return call(self.handler.handle, "POST", "/loans/quotes", token=self.customer, json_body=body)


@pytest.fixture
def world() -> World:
    return World()


def test_an_operators_product_is_stored_with_its_defaults_and_reads_back(world):
    reply = world.create()

    assert reply.status == 201, reply.body
    body = reply.json()
    assert (body["status"], body["version"], body["annual_rate"]) == ("active", 1, "0.12")
    assert body["allocation_order"] == ["penalty", "fee", "interest", "principal"]
    assert [b["name"] for b in body["buckets"]] == ["1-10", "11-30", "31-60", "61+"]
    assert body["overpayment"] == "refuse"
    assert world.get("personal-eur").json() == body
    customer_view = call(world.handler.handle, "GET", "/loans/products/personal-eur", token=world.customer)
    assert customer_view.json() == body


def test_a_quote_uses_the_stored_product_fineracts_worked_example(world):
    world.create()

    reply = world.quote({"product_id": "personal-eur", "principal": "100.00", "term_months": 6})

    assert reply.status == 200, reply.body
    body = reply.json()
    assert [i["total_minor"] for i in body["installments"]] == [1725] * 5 + [1728]
    assert [i["interest_minor"] for i in body["installments"]] == [100, 84, 67, 51, 34, 17]
    assert (body["disbursement_date"], body["interest_minor"]) == ("2024-01-01", 353)
    assert world.products.page(10, None).products[0].version == 1  # a quote writes nothing


def test_creating_the_same_product_again_answers_it_and_other_terms_are_refused(world):
    first = world.create()

    again = world.create()
    other = world.create({**PERSONAL, "annual_rate": "0.2"})

    assert again.status == 201 and again.json() == first.json()
    assert other.status == 409 and other.json()["code"] == "loan_product_exists_with_different_fields"
    assert world.get("personal-eur").json()["annual_rate"] == "0.12"


@pytest.mark.parametrize(("change", "field"), [
    ({"principal_minor_min": 6_000_000}, "principal_minor_min"),
    ({"term_months_min": 61}, "term_months_min"),
    ({"annual_rate": "1.5"}, "annual_rate"),
    ({"annual_rate": 0.12}, "annual_rate"),  # a JSON number: rates are decimal strings
    ({"daily_penalty_rate": "0.5"}, "daily_penalty_rate"),
    ({"principal_grace_months": 1, "interest_grace_months": 2}, "interest_grace_months"),
    ({"allocation_order": ["fee", "fee", "interest", "principal"]}, "allocation_order"),
    ({"buckets": [{"name": "a", "first_day": 5, "last_day": 2}]}, "buckets"),
    ({"buckets": [{"name": "a", "first_day": 1}, {"name": "b", "first_day": 30}]}, "buckets"),
    ({"currency": "XYZ"}, "currency"),
    ({"principal_minor_max": -1}, "principal_minor_max"),
])
def test_a_product_breaking_a_rule_is_a_422_naming_the_field_and_writes_nothing(world, change, field):
    reply = world.create({**PERSONAL, **change})

    assert reply.status == 422, reply.body
    assert any(error["field"].startswith(field) for error in reply.json()["errors"]), reply.json()
    assert world.products.get("personal-eur") is None


def test_a_deactivated_product_is_no_longer_quoted_and_deactivating_again_changes_nothing(world):
    world.create()
    path = "/_/ops/loan-products/personal-eur/deactivate"

    first = call(world.handler.handle, "POST", path, token=world.operator)
    again = call(world.handler.handle, "POST", path, token=world.operator)
    quote = world.quote({"product_id": "personal-eur", "principal": 10_000, "term_months": 6})

    assert first.status == 200 and (first.json()["status"], first.json()["version"]) == ("inactive", 2)
    assert again.json() == first.json()
    assert quote.status == 422 and quote.json()["code"] == "product_inactive"
    assert [e["field"] for e in quote.json()["errors"]] == ["product_id"]


def test_products_list_in_id_order_page_by_page(world):
    for product_id in ("c-loan", "a-loan", "b-loan"):
        world.create({**PERSONAL, "product_id": product_id})

    first = call(world.handler.handle, "GET", "/_/ops/loan-products", token=world.operator,
                 query={"limit": "2"})
    rest = call(world.handler.handle, "GET", "/_/ops/loan-products", token=world.operator,
                query={"limit": "2", "starting_after": first.json()["next_cursor"]})

    assert [p["product_id"] for p in first.json()["data"]] == ["a-loan", "b-loan"]
    assert first.json()["has_more"] is True
    assert [p["product_id"] for p in rest.json()["data"]] == ["c-loan"]
    assert rest.json()["has_more"] is False
    forged = call(world.handler.handle, "GET", "/_/ops/loan-products", token=world.operator,
                  query={"starting_after": "a-loan"})
    assert forged.status == 422 and forged.json()["code"] == "invalid_cursor"


@pytest.mark.parametrize(("change", "code", "field"), [
    ({"product_id": "car-eur"}, "unknown_product", "product_id"),
    ({"principal": 5_000_001}, "principal_outside_product", "principal"),
    ({"principal": "100.005"}, "invalid_principal", "principal"),
    ({"principal": -100}, None, "principal"),
    ({"term_months": 61}, "term_outside_product", "term_months"),
])
def test_a_quote_outside_the_product_is_a_422_naming_the_field(world, change, code, field):
    world.create()

    reply = world.quote({"product_id": "personal-eur", "principal": 10_000, "term_months": 6, **change})

    assert reply.status == 422, reply.body
    assert code is None or reply.json()["code"] == code
    assert field in {error["field"] for error in reply.json()["errors"]}


def test_unknown_products_are_404_to_operators(world):
    assert world.get("nothing").status == 404
    path = "/_/ops/loan-products/nothing/deactivate"
    reply = call(world.handler.handle, "POST", path, token=world.operator)
    assert reply.status == 404 and reply.json()["code"] == "loan_product_not_found"


def test_products_are_managed_by_operators_only(world):
    assert world.create(token=world.customer).status == 403
    assert world.products.get("personal-eur") is None
    world.create()
    assert world.get("personal-eur", token=world.customer).status == 403
