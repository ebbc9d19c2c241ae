"""Loan products (Fineract-style: bounds, rate, amortisation, day count, grace, penalties) and quotes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from finfaas.domain.creditor import Creditor, SealedCreditor
from finfaas.domain.loan_account import (
    AccountRules,
    LoanAccount,
    LoanTransaction,
    OverpaymentRule,
    replay,
)
from finfaas.domain.loan_account import LoanStatus as AccountStatus
from finfaas.domain.loan_underwriting import Decision
from finfaas.domain.loans import (
    DEFAULT_ALLOCATION_ORDER,
    DEFAULT_BUCKETS,
    Amortization,
    Bucket,
    Component,
    DayCount,
    Dues,
    Installment,
    InterestMethod,
    LoanRuleError,
    LoanTerms,
    Schedule,
    check_allocation_order,
    daily_penalty_rate_max,
    prepayment_penalty_rate_max,
    term_months_max,
)
from finfaas.domain.money import CURRENCY_EXPONENTS, transfer_amount_minor_max
from finfaas.services.loans.errors import InvalidProduct

product_id_chars_max = 64
LOAN_ID_PREFIX = "loan_"
loan_id_hex_chars = 24
product_name_chars_max = 140
buckets_max = 12


class ProductStatus(StrEnum):
    ACTIVE = "active"  # quoted and lent
    INACTIVE = "inactive"  # deactivated by ops: no new quotes or loans; existing loans run on


@dataclass(frozen=True)
class LoanProduct:
    """A loan product: what a customer may borrow, for how long, and the rules of its schedule."""

    product_id: str
    name: str
    currency: str
    principal_minor_min: int
    principal_minor_max: int
    term_months_min: int
    term_months_max: int
    annual_rate: Decimal
    amortization: Amortization = Amortization.EQUAL_INSTALLMENTS
    interest_method: InterestMethod = InterestMethod.DECLINING_BALANCE
    day_count: DayCount = DayCount.THIRTY_360
    principal_grace_months: int = 0
    interest_grace_months: int = 0
    installment_fee_minor: int = 0
    daily_penalty_rate: Decimal = Decimal(0)
    prepayment_penalty_rate: Decimal = Decimal(0)
    allocation_order: tuple[Component, ...] = DEFAULT_ALLOCATION_ORDER
    overpayment: OverpaymentRule = OverpaymentRule.REFUSE
    buckets: tuple[Bucket, ...] = field(default=DEFAULT_BUCKETS)
    # Up to this principal, an application the bureau cannot answer for is decided by the internal
    # rules alone (flagged); above it, it waits for an operator. 0: every such application waits.
    bureau_waiver_principal_minor_max: int = 0
    status: ProductStatus = ProductStatus.ACTIVE
    version: int = 1  # each stored change is conditional on the version it was made from

    def __post_init__(self) -> None:
        if not 0 < len(self.product_id) <= product_id_chars_max:
            raise InvalidProduct(f"product id must be 1-{product_id_chars_max} chars", field="product_id")
        if self.currency not in CURRENCY_EXPONENTS:
            raise InvalidProduct(f"unknown currency {self.currency!r}", field="currency")
        if not 1 <= self.principal_minor_min <= self.principal_minor_max <= transfer_amount_minor_max:
            raise InvalidProduct("principal bounds must be 1 <= min <= max", field="principal_minor_min")
        if not 1 <= self.term_months_min <= self.term_months_max <= term_months_max:
            raise InvalidProduct(f"term bounds must be 1 <= min <= max <= {term_months_max}",
                                 field="term_months_min")
        if not 0 <= self.daily_penalty_rate <= daily_penalty_rate_max:
            raise InvalidProduct(f"daily penalty rate must be 0-{daily_penalty_rate_max}",
                                 field="daily_penalty_rate")
        if not 0 <= self.prepayment_penalty_rate <= prepayment_penalty_rate_max:
            raise InvalidProduct(f"prepayment penalty rate must be 0-{prepayment_penalty_rate_max}",
                                 field="prepayment_penalty_rate")
        _check_buckets(self.buckets)
        if not 0 <= self.bureau_waiver_principal_minor_max <= self.principal_minor_max:
            raise InvalidProduct("the bureau waiver is 0 up to the principal maximum",
                                 field="bureau_waiver_principal_minor_max")
        if self.version < 1:
            raise InvalidProduct("version starts at 1", field="version")
        try:
            check_allocation_order(self.allocation_order)
            # The shortest term and smallest principal must make a schedule: the rate, grace periods
            # and fee are checked by the same rules every quote goes through.
            self.terms(self.principal_minor_min, self.term_months_min, date(2000, 1, 1))
        except LoanRuleError as error:
            raise InvalidProduct(f"product {self.product_id}: {error}", field=error.field) from None

    def deactivated(self) -> LoanProduct:
        """The product taking no new quotes or loans, as the next version."""
        return replace(self, status=ProductStatus.INACTIVE, version=self.version + 1)

    def account_rules(self) -> AccountRules:
        """The settings a disbursed loan of this product follows (the loan account's fold)."""
        return AccountRules(self.allocation_order, self.overpayment,
                            daily_penalty_rate=self.daily_penalty_rate,
                            prepayment_penalty_rate=self.prepayment_penalty_rate, buckets=self.buckets)

    def terms(self, principal_minor: int, term_months: int, disbursed_on: date) -> LoanTerms:
        """The schedule terms of this product for one principal, term and disbursement date."""
        return LoanTerms(principal_minor, self.annual_rate, term_months, disbursed_on, self.amortization,
                         self.interest_method, self.day_count, self.principal_grace_months,
                         self.interest_grace_months, self.installment_fee_minor)


def _check_buckets(buckets: tuple[Bucket, ...]) -> None:
    """Buckets from 1 day past due upwards, each after the last, names distinct; only the last open-ended."""
    if not 1 <= len(buckets) <= buckets_max:
        raise InvalidProduct(f"1-{buckets_max} delinquency buckets", field="buckets")
    if len({b.name for b in buckets}) != len(buckets):
        raise InvalidProduct("bucket names are distinct", field="buckets")
    previous_last = 0
    for index, bucket in enumerate(buckets):
        open_ended = bucket.last_day is None
        if bucket.first_day <= previous_last or (open_ended and index != len(buckets) - 1) \
                or (bucket.last_day is not None and bucket.last_day < bucket.first_day):
            raise InvalidProduct("buckets ascend from day 1 without overlap; only the last is open-ended",
                                 field="buckets")
        previous_last = bucket.first_day if bucket.last_day is None else bucket.last_day


class ProductCatalogue:
    """A fixed set of products, checked when built (a LoanProducts port)."""

    def __init__(self, products: Iterable[LoanProduct]) -> None:
        found: dict[str, LoanProduct] = {}
        for product in products:
            if product.product_id in found:
                raise InvalidProduct(f"product {product.product_id} is listed twice", field="product_id")
            found[product.product_id] = product
        self._products: Mapping[str, LoanProduct] = MappingProxyType(found)

    def get(self, product_id: str) -> LoanProduct | None:
        return self._products.get(product_id)


@dataclass(frozen=True)
class ProductPage:
    """Products in id order; last_key is where the next page starts (None: no more)."""

    products: tuple[LoanProduct, ...]
    last_key: str | None


@dataclass(frozen=True)
class QuoteRequest:
    """What a quote is asked for: a product, an amount (minor units or a decimal string), a term."""

    product_id: str
    principal: int | str
    term_months: int
    disbursement_date: date | None = None  # the business date when absent


@dataclass(frozen=True)
class Quote:
    """A repayment schedule as it would be fixed at disbursement; nothing is stored."""

    product: LoanProduct
    disbursed_on: date
    term_months: int
    schedule: Schedule


class LoanStatus(StrEnum):
    REVIEW = "review"  # an operator decides (the rules or a missing bureau said so)
    APPROVED = "approved"  # to be disbursed
    DECLINED = "declined"  # final
    DISBURSING = "disbursing"  # held from the funding account while the rail pays the bank account
    DISBURSEMENT_FAILED = "disbursement_failed"  # the rail did not pay: the hold released, nothing owed
    ACTIVE = "active"  # disbursed: the schedule is fixed
    CLOSED = "closed"  # everything owed is paid
    WRITTEN_OFF = "written_off"  # by ops: no more repayments or accruals

    @property
    def decided(self) -> bool:
        return self is not LoanStatus.REVIEW


@dataclass(frozen=True)
class LoanApplication:
    """What a customer asks for: a product, a principal and a term, paid into (and repaid from) a wallet
    account of theirs, with their declared monthly income and existing monthly debt."""

    product_id: str
    principal: int | str
    term_months: int
    account_id: str
    monthly_income: int | str
    monthly_debt: int | str
    auto_debit: bool = False  # repaid from the wallet by the nightly job on each due date
    # Where the principal goes: None, the wallet account; else a bank account through the rail.
    bank_account: Creditor | None = None


_STATUS_OF_ACCOUNT = {AccountStatus.ACTIVE: LoanStatus.ACTIVE, AccountStatus.CLOSED: LoanStatus.CLOSED,
                      AccountStatus.WRITTEN_OFF: LoanStatus.WRITTEN_OFF}


@dataclass(frozen=True)
class LoanFigures:
    """What the loan account's fold made of a disbursed loan, stored with it (checked against replay)."""

    closed_through: date
    dues: tuple[Dues, ...]  # still owed per installment, penalties included
    written_off: Dues = Dues()
    days_past_due: int = 0
    bucket: str | None = None


@dataclass(frozen=True)
class Loan:
    """A loan from its application on: the terms asked, the decision and who took it; once disbursed,
    the schedule fixed on the disbursement date and the dated transactions (reprocessable later)."""

    loan_id: str
    owner_id: str
    product_id: str
    account_id: str
    currency: str
    principal_minor: int
    term_months: int
    monthly_income_minor: int
    monthly_debt_minor: int
    status: LoanStatus
    decision: Decision  # the rules' decision, every finding listed
    created_at: datetime
    decided_by: str | None = None  # "rules", or the operator who decided a review
    review_note: str = ""
    updated_at: datetime | None = None
    version: int = 1
    # The disbursement saga's task token while its AwaitReview waits for an operator (never shown).
    review_token: str | None = None
    disbursed_on: date | None = None
    installments: tuple[Installment, ...] = ()  # the schedule now (a partial prepayment recomputes it)
    paid: tuple[Dues, ...] = ()  # per installment, what was paid of each component (empty: nothing)
    # The loan account's dated transactions (ids are the ledger transfers), the last closed business
    # date's marker included: the fold of these is the loan; the figures below are what it made.
    transactions: tuple[LoanTransaction, ...] = ()
    disbursed_installments: tuple[Installment, ...] = ()  # fixed at disbursement: replay starts here
    figures: LoanFigures | None = None
    auto_debit: bool = False  # the customer opted in: the nightly job repays each due date from the wallet
    # A disbursement to a bank account through the rail: the account sealed under the loan id (the rail's
    # payment id, so only the rail opens it); None pays the principal into the wallet account.
    bank_account: SealedCreditor | None = None
    disbursement_failure: str = ""  # why the rail did not pay (status disbursement_failed)
    # Set by the saga when the rail's answer is unknown (or a money step failed after the rail may have
    # paid): the loan stays disbursing, the principal held, until an operator decides (post or void).
    payout_attention: str = ""

    def schedule(self) -> Schedule:
        """The schedule now (fixed at disbursement, recomputed by a partial prepayment)."""
        return Schedule(sum(i.principal_minor for i in self.installments), self.installments)

    def paid_of(self, index: int) -> Dues:
        return self.paid[index] if self.paid else Dues()

    def owed(self) -> tuple[Dues, ...]:
        """What is still owed on each installment, as the fold left it."""
        return self.figures.dues if self.figures is not None else tuple(
            Dues(0, i.fee_minor, i.interest_minor, i.principal_minor) for i in self.installments)

    def account(self, product: LoanProduct) -> LoanAccount:
        """The loan account its transactions make under the product (replayed from the disbursement)."""
        assert self.disbursed_on is not None, f"loan {self.loan_id} is not disbursed"
        terms = product.terms(self.principal_minor, self.term_months, self.disbursed_on)
        disbursed = Schedule(self.principal_minor, self.disbursed_installments)
        return replay(terms, disbursed, self.transactions, product.account_rules())

    def with_account(self, account: LoanAccount) -> Loan:
        """The loan storing what the account is: its transactions, schedule, figures and status."""
        figures = LoanFigures(account.closed_through, account.dues, account.written_off,
                              account.days_past_due, account.bucket)
        return replace(self, installments=account.schedule.installments, paid=account.paid,
                       transactions=account.transactions(),
                       disbursed_installments=account.disbursed_schedule.installments, figures=figures,
                       status=_STATUS_OF_ACCOUNT[account.status])

    def stored_like(self, account: LoanAccount) -> bool:
        """True when the stored schedule, figures and status are what the account makes of them."""
        again = self.with_account(account)
        return (again.installments, again.paid, again.figures, again.status, again.transactions) == (
            self.installments, self.paid, self.figures, self.status, self.transactions)

    @property
    def disbursement_transfer_id(self) -> str:
        """The ledger transfer that pays the principal out: one per loan, so a retry moves it once."""
        return f"{self.loan_id}-disbursement"

    @property
    def disbursement_hold_id(self) -> str:
        """The hold on the funding account while the rail pays a bank account; posted as the disbursement
        transfer when the rail settles, voided (`disbursement_void_id`) when it does not."""
        return f"{self.loan_id}-disbursement-hold"

    @property
    def disbursement_void_id(self) -> str:
        return f"{self.loan_id}-disbursement-void"

    def same_request(self, other: Loan) -> bool:
        """True when other asks for the same loan (a repeated application under the same key)."""
        fields = ("owner_id", "product_id", "account_id", "principal_minor", "term_months",
                  "monthly_income_minor", "monthly_debt_minor")
        return all(getattr(self, name) == getattr(other, name) for name in fields) \
            and _destination(self.bank_account) == _destination(other.bank_account)


def _destination(bank_account: SealedCreditor | None) -> tuple[str, str, str] | None:
    """What a repeated application must repeat of the destination (the envelope differs each sealing)."""
    return None if bank_account is None else bank_account.identity()


@dataclass(frozen=True)
class LoanStanding:
    """A loan as of the business date: days past due of its oldest unpaid installment, and its bucket."""

    on: date
    days_past_due: int
    bucket: str | None


@dataclass(frozen=True)
class LoanEvent:
    """An outbox event written with a loan's change: its type and data."""

    type: str
    data: Mapping[str, object]


def loan_id_for(caller_id: str, idempotency_key: str) -> str:
    """The loan's id, derived from the caller and its Idempotency-Key: a repeat finds the same loan."""
    digest = hashlib.sha256(f"{caller_id}\x00{idempotency_key}".encode()).hexdigest()
    return LOAN_ID_PREFIX + digest[:loan_id_hex_chars]


@dataclass(frozen=True)
class LoanClose:
    """A loan's last closed business date as the nightly job recorded it, with what that day left:
    days past due, bucket, penalty charged so far and everything still owed (services/loans/nightly.py)."""

    loan_id: str
    closed_through: date
    days_past_due: int
    bucket: str | None
    penalty_charged_minor: int
    outstanding_minor: int


@dataclass(frozen=True)
class CloseWrite:
    """One loan's night as written: the loan as read, its close record, events, and the loan as closed."""

    loan: Loan
    close: LoanClose
    events: tuple[LoanEvent, ...]
    closed_loan: Loan
