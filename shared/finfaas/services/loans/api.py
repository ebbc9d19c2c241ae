"""Loans over HTTP: quotes (`POST /loans/quotes`), operators' products, their views and the error table."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr

from finfaas.domain.creditor import Creditor
from finfaas.domain.ledger import page_size_default, page_size_max
from finfaas.domain.loan_account import TransactionKind
from finfaas.domain.loans import (
    DEFAULT_ALLOCATION_ORDER,
    DEFAULT_BUCKETS,
    Amortization,
    Bucket,
    Component,
    DayCount,
    Installment,
    InterestMethod,
    Payoff,
    PrepaymentMode,
    grace_months_max,
    term_months_max,
)
from finfaas.domain.money import transfer_amount_minor_max
from finfaas.platform.cursors import cursor_chars_max
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.platform.pii import PiiKeyUnavailable
from finfaas.services.ledger.api import Amount, Identifier
from finfaas.services.loans.errors import (
    CurrencyMismatch,
    InvalidApplication,
    InvalidDisbursementDate,
    InvalidLoanRequest,
    InvalidPrincipal,
    InvalidRepaymentAmount,
    LoanBusy,
    LoanExists,
    LoanNotActive,
    LoanNotApproved,
    LoanNotFound,
    LoanNotInReview,
    LoanNotRepayable,
    LoanReviewNotWaiting,
    LoansStoreUnavailable,
    PayoutNotFlagged,
    PrincipalOutsideProduct,
    ProductBusy,
    ProductExists,
    ProductInactive,
    ProductNotFound,
    ProductRefused,
    RepaymentAlreadyReversed,
    RepaymentExceedsDue,
    RepaymentNotFound,
    TermOutsideProduct,
    UnknownProduct,
    WalletAccountNotFound,
)
from finfaas.services.loans.model import (
    Loan,
    LoanApplication,
    LoanProduct,
    LoanStanding,
    LoanStatus,
    OverpaymentRule,
    ProductPage,
    ProductStatus,
    Quote,
    QuoteRequest,
    buckets_max,
    product_id_chars_max,
    product_name_chars_max,
)
from finfaas.services.loans.nightly import page_loans_max, segments_max
from finfaas.services.suite_clients import ServiceUnreachable
from finfaas.services.transfers.api import CreditorBody, SagaError

# Rates as decimal strings ("0.12"), never JSON numbers: a float cannot hold 0.1 exactly.
RATE_PATTERN = r"^(0|[1-9][0-9]{0,2})(\.[0-9]{1,12})?$"
Rate = Annotated[StrictStr, Field(pattern=RATE_PATTERN, max_length=16,
                                  description="a decimal string: '0.12' is 12 %")]
ProductId = Annotated[str, Field(min_length=1, max_length=product_id_chars_max, pattern=r"^[A-Za-z0-9_-]+$")]
MinorUnits = Annotated[StrictInt, Field(ge=0, le=transfer_amount_minor_max)]
PositiveMinorUnits = Annotated[StrictInt, Field(ge=1, le=transfer_amount_minor_max)]
Months = Annotated[StrictInt, Field(ge=1, le=term_months_max)]
GraceMonths = Annotated[StrictInt, Field(ge=0, le=grace_months_max)]
bucket_days_max = 36_600  # a century past due: beyond is a typing error


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


def _installment_view(i: Installment) -> InstallmentView:
    return InstallmentView(
        number=i.number, period_start=i.period_start, period_end=i.period_end, due_date=i.due_on,
        principal_minor=i.principal_minor, interest_minor=i.interest_minor, fee_minor=i.fee_minor,
        total_minor=i.total_minor, balance_minor=i.balance_minor)


def quote_view(quote: Quote) -> QuoteView:
    schedule, product = quote.schedule, quote.product
    return QuoteView(
        product_id=product.product_id, currency=product.currency, principal_minor=schedule.principal_minor,
        term_months=quote.term_months, annual_rate=str(product.annual_rate),
        amortization=product.amortization.value, interest_method=product.interest_method.value,
        day_count=product.day_count.value, disbursement_date=quote.disbursed_on,
        installments=[_installment_view(i) for i in schedule.installments],
        interest_minor=schedule.interest_minor, fee_minor=schedule.fee_minor,
        total_minor=schedule.total_minor)


class BucketBody(StrictModel):
    """Days past due from first_day to last_day (absent: no upper end, the last bucket only)."""

    name: Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9+_-]+$")]
    first_day: Annotated[StrictInt, Field(ge=1, le=bucket_days_max)]
    last_day: Annotated[StrictInt, Field(ge=1, le=bucket_days_max)] | None = None


class ProductBody(StrictModel):
    """A loan product (Fineract's loan product, in short). Its terms never change once created:
    creating the same product_id with the same terms again answers the stored product."""

    product_id: ProductId
    name: Annotated[str, Field(min_length=1, max_length=product_name_chars_max)]
    currency: Annotated[StrictStr, Field(min_length=3, max_length=3, description="ISO 4217 code")]
    principal_minor_min: PositiveMinorUnits
    principal_minor_max: PositiveMinorUnits
    term_months_min: Months
    term_months_max: Months
    annual_rate: Rate
    amortization: Amortization = Amortization.EQUAL_INSTALLMENTS
    interest_method: InterestMethod = InterestMethod.DECLINING_BALANCE
    day_count: DayCount = DayCount.THIRTY_360
    principal_grace_months: GraceMonths = 0
    interest_grace_months: GraceMonths = 0
    installment_fee_minor: MinorUnits = 0
    daily_penalty_rate: Rate = "0"
    prepayment_penalty_rate: Rate = "0"
    allocation_order: Annotated[list[Component], Field(min_length=4, max_length=4)] = Field(
        default_factory=lambda: list(DEFAULT_ALLOCATION_ORDER))
    overpayment: OverpaymentRule = OverpaymentRule.REFUSE
    buckets: Annotated[list[BucketBody], Field(min_length=1, max_length=buckets_max)] = Field(
        default_factory=lambda: [BucketBody(name=b.name, first_day=b.first_day, last_day=b.last_day)
                                 for b in DEFAULT_BUCKETS])
    bureau_waiver_principal_minor_max: Annotated[MinorUnits, Field(
        description="up to this principal, an application the bureau cannot answer for is decided by "
                    "the internal rules alone (flagged); above it an operator decides")] = 0

    def to_product(self) -> LoanProduct:
        """The product these terms make; InvalidProduct (naming the field) when they break a rule."""
        return LoanProduct(
            self.product_id, self.name, self.currency, self.principal_minor_min, self.principal_minor_max,
            self.term_months_min, self.term_months_max, Decimal(self.annual_rate), self.amortization,
            self.interest_method, self.day_count, self.principal_grace_months, self.interest_grace_months,
            self.installment_fee_minor, Decimal(self.daily_penalty_rate),
            Decimal(self.prepayment_penalty_rate),
            tuple(self.allocation_order), self.overpayment,
            tuple(Bucket(b.name, b.first_day, b.last_day) for b in self.buckets),
            self.bureau_waiver_principal_minor_max)


class BucketView(BaseModel):
    name: str
    first_day: int
    last_day: int | None


class ProductView(BaseModel):
    product_id: str
    name: str
    currency: str
    principal_minor_min: int
    principal_minor_max: int
    term_months_min: int
    term_months_max: int
    annual_rate: str
    amortization: str
    interest_method: str
    day_count: str
    principal_grace_months: int
    interest_grace_months: int
    installment_fee_minor: int
    daily_penalty_rate: str
    prepayment_penalty_rate: str
    allocation_order: list[str]
    overpayment: str
    buckets: list[BucketView]
    bureau_waiver_principal_minor_max: int
    status: ProductStatus
    version: int


def product_view(product: LoanProduct) -> ProductView:
    return ProductView(
        product_id=product.product_id, name=product.name, currency=product.currency,
        principal_minor_min=product.principal_minor_min, principal_minor_max=product.principal_minor_max,
        term_months_min=product.term_months_min, term_months_max=product.term_months_max,
        annual_rate=str(product.annual_rate), amortization=product.amortization.value,
        interest_method=product.interest_method.value, day_count=product.day_count.value,
        principal_grace_months=product.principal_grace_months,
        interest_grace_months=product.interest_grace_months,
        installment_fee_minor=product.installment_fee_minor,
        daily_penalty_rate=str(product.daily_penalty_rate),
        prepayment_penalty_rate=str(product.prepayment_penalty_rate),
        allocation_order=[c.value for c in product.allocation_order], overpayment=product.overpayment.value,
        buckets=[BucketView(name=b.name, first_day=b.first_day, last_day=b.last_day)
                 for b in product.buckets],
        bureau_waiver_principal_minor_max=product.bureau_waiver_principal_minor_max,
        status=product.status, version=product.version)


class ProductListQuery(StrictModel):
    limit: int = Field(default=page_size_default, ge=1, le=page_size_max)
    starting_after: str | None = Field(default=None, min_length=1, max_length=cursor_chars_max)


class ProductList(BaseModel):
    data: list[ProductView]
    has_more: bool
    next_cursor: str | None = Field(description="pass as starting_after for the next page")


def product_list(page: ProductPage, next_cursor: str | None) -> ProductList:
    return ProductList(data=[product_view(p) for p in page.products], has_more=next_cursor is not None,
                       next_cursor=next_cursor)


class DisbursementDestination(StrEnum):
    WALLET = "wallet"
    BANK_ACCOUNT = "bank_account"


class ApplicationBody(StrictModel):
    """A loan application: the product, principal and term (as a quote), the wallet account the loan is
    paid into and repaid from, and the applicant's monthly income and existing monthly debt repayments
    (minor units or decimal strings of the product's currency)."""

    product_id: Identifier
    principal: Amount
    term_months: Annotated[StrictInt, Field(ge=1, le=term_months_max)]
    account_id: Identifier
    monthly_income: Amount
    monthly_debt: Amount | None = None
    auto_debit: StrictBool = Field(False, description="repaid from the wallet on each due date by the "
                                   "nightly job (the amount due, or what the wallet holds if less)")
    disburse_to: DisbursementDestination = Field(
        DisbursementDestination.WALLET, description="where the principal is paid: the wallet account, or "
        "the bank account given, through the rail")
    bank_account: CreditorBody | None = Field(None, description="the customer's account at a bank on the "
                                              "rail; with disburse_to bank_account only")

    def to_application(self) -> LoanApplication:
        return LoanApplication(self.product_id, self.principal, self.term_months, self.account_id,
                               self.monthly_income, 0 if self.monthly_debt is None else self.monthly_debt,
                               self.auto_debit, self._bank_account())

    def _bank_account(self) -> Creditor | None:
        """The bank account to disburse to; a destination without its account (or the reverse) is a 422
        naming bank_account."""
        to_bank = self.disburse_to is DisbursementDestination.BANK_ACCOUNT
        if to_bank != (self.bank_account is not None):
            detail = ("required with disburse_to bank_account" if to_bank
                      else "only with disburse_to bank_account")
            raise InvalidApplication(f"bank_account: {detail}", errors=(("bank_account", detail),))
        bank = self.bank_account
        return None if bank is None else Creditor(bank.bank_code, bank.account_number, bank.name)


class AutoDebitBody(StrictModel):
    """The customer's auto-debit setting: on, the nightly job repays each due date from the wallet."""

    enabled: StrictBool


class ReviewDecision(StrEnum):
    APPROVE = "approve"
    DECLINE = "decline"


class ReviewBody(StrictModel):
    """An operator's decision on a loan in review, with its reason for the record."""

    decision: ReviewDecision
    note: Annotated[str, Field(min_length=1, max_length=500)]


class ReversalBody(StrictModel):
    """Why an operator reverses a repayment (a bounced payment, a chargeback), for the record."""

    reason: Annotated[str, Field(min_length=1, max_length=500)]


class WriteOffBody(StrictModel):
    """Why an operator writes a loan off, for the record."""

    reason: Annotated[str, Field(min_length=1, max_length=500)]


class FindingView(BaseModel):
    rule: str
    verdict: str = Field(description="pass, flag (decided without it, marked), review or decline")
    detail: str


class DecisionView(BaseModel):
    outcome: str
    rules_fired: list[str] = Field(description="the rules whose verdict was not pass")
    bureau_unavailable: bool = Field(description="decided without a credit report (flagged)")
    findings: list[FindingView]
    decided_by: str | None = Field(description="`rules`, or the operator who decided the review")
    note: str


class TransactionView(BaseModel):
    kind: str
    transfer_id: str
    on: date = Field(description="the business date it counts from")
    amount_minor: int
    reverses: str | None = Field(default=None, description="on a reversal: the reversed transfer")
    mode: str | None = Field(default=None, description="on a partial prepayment: shorter_term or "
                                                        "smaller_installment")


class LoanInstallmentView(InstallmentView):
    paid_principal_minor: int
    paid_interest_minor: int
    paid_fee_minor: int
    paid_penalty_minor: int
    owed_minor: int = Field(description="what is still owed on it")


class BankAccountView(BaseModel):
    bank_code: str
    account_number_masked: str


class LoanView(BaseModel):
    loan_id: str
    owner_id: str
    product_id: str
    account_id: str
    currency: str
    principal_minor: int
    term_months: int
    monthly_income_minor: int
    monthly_debt_minor: int
    status: str = Field(description="review, approved, declined; disbursing while the rail pays a bank "
                        "account, disbursement_failed when it did not; active once disbursed")
    decision: DecisionView
    created_at: datetime
    updated_at: datetime | None
    disbursed_on: date | None = Field(description="the business date of the disbursement")
    schedule: list[LoanInstallmentView] = Field(description="fixed at disbursement (a prepayment "
                                                "recomputes the rest), with what was paid of each")
    transactions: list[TransactionView]
    outstanding_minor: int = Field(description="everything still owed")
    days_past_due: int | None = Field(description="as of the business date; null before disbursement")
    bucket: str | None = Field(description="the delinquency bucket, null when not past due")
    auto_debit: bool = Field(description="repaid from the wallet by the nightly job on each due date")
    disburse_to: DisbursementDestination
    bank_account: BankAccountView | None = Field(description="the bank account disbursed to, masked")
    disbursement_failure: str | None = Field(description="why the rail did not pay (disbursement_failed)")
    payout_attention: str | None = Field(description="disbursing, the rail's answer unknown: why an operator "
                                         "must decide (post or void)")


def _loan_installment_view(loan: Loan, index: int) -> LoanInstallmentView:
    installment, paid = loan.installments[index], loan.paid_of(index)
    base = _installment_view(installment).model_dump()
    return LoanInstallmentView(
        **base, paid_principal_minor=paid.principal_minor, paid_interest_minor=paid.interest_minor,
        paid_fee_minor=paid.fee_minor, paid_penalty_minor=paid.penalty_minor,
        owed_minor=loan.owed()[index].total_minor)


def loan_view(loan: Loan, standing: LoanStanding | None = None) -> LoanView:
    decision = loan.decision
    return LoanView(
        loan_id=loan.loan_id, owner_id=loan.owner_id, product_id=loan.product_id, account_id=loan.account_id,
        currency=loan.currency, principal_minor=loan.principal_minor, term_months=loan.term_months,
        monthly_income_minor=loan.monthly_income_minor, monthly_debt_minor=loan.monthly_debt_minor,
        status=loan.status.value,
        decision=DecisionView(
            outcome=decision.outcome.value, rules_fired=list(decision.fired),
            bureau_unavailable=decision.bureau_unavailable,
            findings=[FindingView(rule=f.rule, verdict=f.verdict.value, detail=f.detail)
                      for f in decision.findings],
            decided_by=loan.decided_by, note=loan.review_note),
        created_at=loan.created_at, updated_at=loan.updated_at, disbursed_on=loan.disbursed_on,
        schedule=[_loan_installment_view(loan, n) for n in range(len(loan.installments))],
        transactions=[TransactionView(kind=t.kind.value, transfer_id=t.transaction_id, on=t.value_date,
                                      amount_minor=t.amount_minor, reverses=t.reverses,
                                      mode=t.mode.value if t.mode else None)
                      for t in loan.transactions if t.kind is not TransactionKind.PENALTY_ACCRUAL],
        outstanding_minor=sum(d.total_minor for d in loan.owed()),
        days_past_due=standing.days_past_due if standing else None,
        bucket=standing.bucket if standing else None, auto_debit=loan.auto_debit,
        disburse_to=DisbursementDestination.WALLET if loan.bank_account is None
        else DisbursementDestination.BANK_ACCOUNT,
        bank_account=None if loan.bank_account is None else BankAccountView(**loan.bank_account.masked()),
        disbursement_failure=loan.disbursement_failure or None,
        payout_attention=loan.payout_attention or None)


class RepaymentBody(StrictModel):
    """A repayment from the loan's wallet account: minor units or a decimal string, in the loan's currency."""

    amount: Amount
    currency: Annotated[StrictStr, Field(min_length=3, max_length=3, description="ISO 4217 code")]


class PrepaymentBody(RepaymentBody):
    """A partial prepayment: what is due is paid first, the rest prepays principal; `mode` chooses what
    the recomputed schedule keeps (the installment, for a shorter term; or the term, for a smaller one)."""

    mode: PrepaymentMode


class PayoffQuery(StrictModel):
    on: date | None = Field(default=None, description="the payoff date; the business date when absent")


class PayoffView(BaseModel):
    loan_id: str
    on: date
    principal_minor: int
    interest_minor: int = Field(description="unpaid interest of past periods and the current one to the date")
    fee_minor: int
    penalty_minor: int
    prepayment_penalty_minor: int
    total_minor: int


def payoff_view(loan_id: str, payoff: Payoff, on: date) -> PayoffView:
    return PayoffView(loan_id=loan_id, on=on, principal_minor=payoff.principal_minor,
                      interest_minor=payoff.interest_minor, fee_minor=payoff.fee_minor,
                      penalty_minor=payoff.penalty_minor,
                      prepayment_penalty_minor=payoff.prepayment_penalty_minor,
                      total_minor=payoff.total_minor)


class DisburseStepBody(StrictModel):
    """The disbursement saga's step: the loan to pay out."""

    loan_id: Identifier


class ReviewTaskMessage(StrictModel):
    """A message of the `loan-reviews` queue: the disbursement saga's AwaitReview waits for its token."""

    task_token: Annotated[str, Field(min_length=1, max_length=1024)]
    loan_id: Identifier
    kind: Literal["review"]


class ReviewStepBody(StrictModel):
    """The saga's RecordReview step: the operator's decision the AwaitReview task returned."""

    loan_id: Identifier
    decision: ReviewDecision
    note: Annotated[str, Field(max_length=500)] = ""
    operator: Annotated[str, Field(min_length=1, max_length=200)]


class ReviewStepView(BaseModel):
    loan_id: str
    status: str


class PayoutView(BaseModel):
    """What the saga hands the rail for a disbursement to a bank account (the account sealed for it)."""

    payment_id: str
    amount_minor: int
    currency: str
    bank_account: dict[str, str] = Field(description="the envelope and the masked form, never the number")


class DisburseStepView(BaseModel):
    loan_id: str
    status: str
    transfer_id: str
    payout: PayoutView | None = Field(description="while disbursing to a bank account: the rail's payment")


def disburse_step_view(loan: Loan) -> DisburseStepView:
    payout = None
    if loan.status is LoanStatus.DISBURSING and loan.bank_account is not None:
        # The loan id is the rail's payment id: the bank account is sealed under it.
        payout = PayoutView(payment_id=loan.loan_id, amount_minor=loan.principal_minor,
                            currency=loan.currency, bank_account=loan.bank_account.in_flight())
    return DisburseStepView(loan_id=loan.loan_id, status=loan.status.value,
                            transfer_id=loan.disbursement_transfer_id, payout=payout)


class PayoutDecisionBody(StrictModel):
    """An operator's decision on a payout the saga could not settle, after asking the rail: `post` (the
    bank account was paid) or `void` (it never will be)."""

    decision: Literal["post", "void"]
    note: Annotated[str, Field(min_length=1, max_length=500)]


class PayoutFailedBody(StrictModel):
    """The saga's compensation after the rail did not pay: the loan and the Catch's error."""

    loan_id: Identifier
    error: SagaError


ERRORS: dict[type[BaseException], ErrorSpec] = {
    UnknownProduct: ErrorSpec(422, UnknownProduct.code, "Unknown loan product"),
    InvalidPrincipal: ErrorSpec(422, InvalidPrincipal.code, "Invalid principal"),
    PrincipalOutsideProduct: ErrorSpec(422, PrincipalOutsideProduct.code, "Principal outside the product"),
    TermOutsideProduct: ErrorSpec(422, TermOutsideProduct.code, "Term outside the product"),
    InvalidDisbursementDate: ErrorSpec(422, InvalidDisbursementDate.code, "Invalid disbursement date"),
    InvalidLoanRequest: ErrorSpec(422, InvalidLoanRequest.code, "Invalid loan terms"),
    ProductInactive: ErrorSpec(422, ProductInactive.code, "Loan product inactive"),
    ProductNotFound: ErrorSpec(404, ProductNotFound.code, "Loan product not found"),
    ProductExists: ErrorSpec(409, ProductExists.code, "Loan product exists with different fields"),
    ProductRefused: ErrorSpec(422, ProductRefused.code, "Invalid loan product"),
    ProductBusy: ErrorSpec(409, ProductBusy.code, "Loan product busy"),
    LoansStoreUnavailable: ErrorSpec(503, LoansStoreUnavailable.code, "Loans store unavailable"),
    InvalidApplication: ErrorSpec(422, InvalidApplication.code, "Invalid loan application"),
    WalletAccountNotFound: ErrorSpec(404, WalletAccountNotFound.code, "Account not found"),
    CurrencyMismatch: ErrorSpec(422, CurrencyMismatch.code, "Currency mismatch"),
    LoanNotFound: ErrorSpec(404, LoanNotFound.code, "Loan not found"),
    LoanExists: ErrorSpec(422, LoanExists.code, "Idempotency-Key reused with another body"),
    LoanNotInReview: ErrorSpec(409, LoanNotInReview.code, "Loan not in review"),
    LoanReviewNotWaiting: ErrorSpec(409, LoanReviewNotWaiting.code, "Loan review not waiting"),
    LoanBusy: ErrorSpec(409, LoanBusy.code, "Loan busy"),
    PayoutNotFlagged: ErrorSpec(409, PayoutNotFlagged.code, "Payout not waiting for an operator"),
    LoanNotApproved: ErrorSpec(409, LoanNotApproved.code, "Loan not approved"),
    LoanNotRepayable: ErrorSpec(409, LoanNotRepayable.code, "Loan takes no repayment"),
    InvalidRepaymentAmount: ErrorSpec(422, InvalidRepaymentAmount.code, "Invalid repayment amount"),
    RepaymentExceedsDue: ErrorSpec(422, RepaymentExceedsDue.code, "Repayment exceeds what is due"),
    RepaymentNotFound: ErrorSpec(404, RepaymentNotFound.code, "Repayment not found"),
    RepaymentAlreadyReversed: ErrorSpec(409, RepaymentAlreadyReversed.code, "Repayment already reversed"),
    LoanNotActive: ErrorSpec(409, LoanNotActive.code, "Loan not active"),
    # The orchestrator (a start), risk or the bureau beyond their breakers: retry later.
    ServiceUnreachable: ErrorSpec(503, "dependency_unreachable", "Dependency unreachable"),
    PiiKeyUnavailable: ErrorSpec(503, "pii_key_unavailable", "Encryption key unavailable"),
}


# --- the nightly job (services/loans/nightly.py) --------------------------------------------------


class NightlyStartBody(StrictModel):
    """An operator's start of the nightly job for a business date (the current one if absent)."""

    business_date: date | None = None


class NightlyStartView(BaseModel):
    business_date: date
    execution: str  # one per date: starting it again answers the same


class NightlyPageBody(StrictModel):
    """The state machine's page request: the date it closes and the cursor of the previous page."""

    business_date: date
    cursor: Annotated[str, Field(max_length=cursor_chars_max)] | None = None
    # The state machine's Map closes the segments of a parallel Scan at once; one segment by default.
    segment: Annotated[StrictInt, Field(ge=0, lt=segments_max)] = 0
    segments: Annotated[StrictInt, Field(ge=1, le=segments_max)] = 1


class NightlyPageView(BaseModel):
    loan_ids: list[str]
    next: str | None


class NightlyCloseBody(StrictModel):
    """A page of loans to close the business date on."""

    business_date: date
    loan_ids: Annotated[list[Identifier], Field(max_length=page_loans_max)]


class NightlyCloseView(BaseModel):
    closed: int
    unchanged: int
    auto_debits_due_minor: int
    unprocessable: list[str]

