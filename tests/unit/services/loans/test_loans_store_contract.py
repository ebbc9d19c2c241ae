"""The loan products contract, written once: the in-memory fake runs it here, the DynamoDB store runs it
in tests/integration/services/loans against DynamoDB Local."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from finfaas.domain.loan_account import LoanTransaction, TransactionKind
from finfaas.domain.loan_underwriting import Decision, Finding, Outcome, Verdict
from finfaas.domain.loans import (
    Amortization,
    Bucket,
    Component,
    DayCount,
    Dues,
    InterestMethod,
    LoanTerms,
    build_schedule,
    dues_of,
)
from finfaas.services.loans.model import (
    Loan,
    LoanEvent,
    LoanFigures,
    LoanProduct,
    LoanStatus,
    OverpaymentRule,
    ProductStatus,
)
from finfaas_dev.fakes.loans import InMemoryLoanProducts, InMemoryLoans

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def new_product(product_id: str | None = None, **changes) -> LoanProduct:
    product = LoanProduct(
        product_id or f"p-{uuid.uuid4().hex[:12]}", "Personal loan", "EUR", principal_minor_min=10_000,
        principal_minor_max=5_000_000, term_months_min=3, term_months_max=60, annual_rate=Decimal("0.12"))
    return replace(product, **changes)


class LoanProductsContract:
    """Loan products; subclasses provide the `store` fixture (a table other tests may share)."""

    def test_a_created_product_reads_back_field_for_field(self, store):
        # Every setting away from its default, so a field the store forgets shows.
        product = new_product(
            amortization=Amortization.EQUAL_PRINCIPAL, interest_method=InterestMethod.FLAT,
            day_count=DayCount.ACT_ACT, principal_grace_months=2, interest_grace_months=1,
            installment_fee_minor=150, daily_penalty_rate=Decimal("0.0005"),
            prepayment_penalty_rate=Decimal("0.02"),
            allocation_order=(Component.INTEREST, Component.PRINCIPAL, Component.PENALTY, Component.FEE),
            overpayment=OverpaymentRule.PREPAY, buckets=(Bucket("early", 1, 30), Bucket("late", 31)),
            bureau_waiver_principal_minor_max=50_000)

        assert store.create(product) == product

        assert store.get(product.product_id) == product

    def test_a_taken_id_returns_the_stored_product_and_writes_nothing(self, store):
        first = new_product()
        store.create(first)

        answer = store.create(replace(first, annual_rate=Decimal("0.2")))

        assert answer == first
        assert store.get(first.product_id) == first

    def test_an_unknown_product_is_none(self, store):
        assert store.get(f"p-{uuid.uuid4().hex}") is None

    def test_a_change_is_saved_only_over_the_version_it_was_made_from(self, store):
        product = store.create(new_product())

        assert store.save(product.deactivated())
        assert not store.save(product.deactivated())  # made from a stale read

        stored = store.get(product.product_id)
        assert (stored.status, stored.version) == (ProductStatus.INACTIVE, 2)

    def test_a_product_never_created_is_not_saved(self, store):
        product = new_product()

        assert not store.save(product.deactivated())

        assert store.get(product.product_id) is None

    def test_products_come_in_id_order_page_by_page(self, store):
        prefix = f"p-{uuid.uuid4().hex[:12]}-"
        made = [store.create(new_product(f"{prefix}{n}")) for n in range(3)]

        first = store.page(2, prefix)
        second = store.page(2, first.last_key)

        assert list(first.products) == made[:2]
        assert first.last_key == made[1].product_id
        assert second.products[0] == made[2]


class TestInMemoryLoanProducts(LoanProductsContract):
    @pytest.fixture
    def store(self):
        return InMemoryLoanProducts()

    def test_the_last_page_says_there_is_no_more(self, store):
        store.create(new_product("p-a"))

        assert store.page(2, None).last_key is None


def new_loan(**changes) -> Loan:
    findings = (Finding("income", Verdict.PASS, "the installment is 17.77 % of income"),
                Finding("bureau_unavailable", Verdict.REVIEW, "no bureau report"))
    decision = Decision(Outcome.REVIEW, findings, True)
    loan = Loan(loan_id=f"loan_{uuid.uuid4().hex[:24]}", owner_id="cust-1", product_id="personal-eur",
                account_id="acc-1", currency="EUR", principal_minor=10**12, term_months=12,
                monthly_income_minor=500_000, monthly_debt_minor=0, status=LoanStatus.REVIEW,
                decision=decision, created_at=T0)
    return replace(loan, **changes)


EVENT = LoanEvent("loan.review_required", {"loan": "x"})


class LoansContract:
    """Loans; subclasses provide the `loans` fixture."""

    def test_a_created_loan_reads_back_field_for_field(self, loans):
        loan = new_loan()

        assert loans.create_loan(loan, EVENT) == loan

        assert loans.get_loan(loan.loan_id) == loan

    def test_an_active_loan_reads_back_with_its_schedule_payments_and_transactions(self, loans):
        schedule = build_schedule(LoanTerms(10_000, Decimal("0.12"), 6, date(2024, 1, 1)))
        loan = new_loan(status=LoanStatus.ACTIVE, disbursed_on=date(2024, 1, 1),
                        installments=schedule.installments,
                        paid=(Dues(3, 0, 100, 1625),) + (Dues(),) * 5,
                        transactions=(LoanTransaction("t-1", TransactionKind.DISBURSEMENT, date(2024, 1, 1),
                                                      10_000),
                                      LoanTransaction("t-2", TransactionKind.REPAYMENT, date(2024, 2, 1),
                                                      1_728),
                                      LoanTransaction("t-3", TransactionKind.REVERSAL, date(2024, 2, 2),
                                                      reverses="t-2")),
                        disbursed_installments=schedule.installments,
                        figures=LoanFigures(date(2024, 2, 1), (Dues(),) + dues_of(schedule)[1:],
                                            Dues(0, 0, 0, 7), 3, "1-10"))

        assert loans.create_loan(loan, EVENT) == loan

        stored = loans.get_loan(loan.loan_id)
        assert stored == loan
        assert [d.total_minor for d in stored.owed()][:2] == [0, 1725]

    def test_a_scan_reads_every_loan_and_no_product(self, loans):
        created = {loans.create_loan(new_loan(), EVENT).loan_id for _ in range(3)}

        assert created <= {loan.loan_id for loan in loans.scan_loans()}

    def test_a_taken_id_returns_the_stored_loan(self, loans):
        first = loans.create_loan(new_loan(), EVENT)

        assert loans.create_loan(replace(first, principal_minor=5), EVENT) == first

    def test_a_change_is_saved_only_over_the_version_it_was_made_from(self, loans):
        loan = loans.create_loan(new_loan(), EVENT)
        decided = replace(loan, status=LoanStatus.APPROVED, decided_by="ops-1",
                          review_note="seen the payslips", updated_at=T0 + timedelta(hours=1), version=2)

        assert loans.save_loan(decided, EVENT)
        assert not loans.save_loan(replace(decided, status=LoanStatus.DECLINED), EVENT)

        assert loans.get_loan(loan.loan_id) == decided
        assert loans.get_loan(f"loan_{uuid.uuid4().hex[:24]}") is None


    def test_a_review_token_is_saved_without_an_event_only_over_its_version(self, loans):
        loan = loans.create_loan(new_loan(status=LoanStatus.REVIEW), EVENT)
        waiting = replace(loan, review_token="dG9rZW4.visit-1", updated_at=T0 + timedelta(minutes=1),
                          version=2)

        assert loans.save_loan(waiting, None)
        assert not loans.save_loan(replace(waiting, review_token="dG9rZW4.visit-2"), None)

        assert loans.get_loan(loan.loan_id) == waiting


class TestInMemoryLoans(LoansContract):
    @pytest.fixture
    def loans(self):
        return InMemoryLoans()
