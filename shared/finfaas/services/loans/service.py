"""Loan products (kept by ops) and quotes: the full schedule for a product, an amount and a term,
computed and never stored.

A quote is pure enough to run on every move of an app's slider: one product read and the domain's schedule.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from finfaas.domain.calendar import MarketCalendar
from finfaas.domain.creditor import CreditorVault, SealedCreditor
from finfaas.domain.errors import (
    InsufficientFunds,
    LedgerError,
    PendingAlreadyPosted,
    PendingAlreadyVoided,
    PendingExpired,
)
from finfaas.domain.ledger import (
    AccountKind,
    AccountStatus,
    TransactionExtra,
    Transfer,
    system_account_id,
)
from finfaas.domain.loan_account import (
    ONE_DAY,
    LoanAccount,
    LoanTransaction,
    OverpaymentRule,
    PrepaymentMode,
    TransactionKind,
    amount_due,
    apply,
    close_of_business,
    disburse,
)
from finfaas.domain.loan_account import LoanStatus as FoldStatus
from finfaas.domain.loan_underwriting import (
    Application,
    BureauReport,
    Finding,
    Outcome,
    UnderwritingPolicy,
    Verdict,
    bureau_findings,
    bureau_score_max,
    bureau_score_min,
    decide,
    internal_findings,
    risk_findings,
)
from finfaas.domain.loans import (
    LoanRuleError,
    Payoff,
    Schedule,
    build_schedule,
    days_past_due,
    delinquency_bucket,
    payoff_quote,
)
from finfaas.domain.money import parse_amount
from finfaas.platform.cursors import CursorCodec, InvalidCursor, binding
from finfaas.platform.resilience import CircuitBreaker
from finfaas.platform.retry import Change, Unchanged, read_change_save
from finfaas.services.ledger.in_process import InProcessLedger
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.loans.errors import (
    CurrencyMismatch,
    InvalidApplication,
    InvalidDisbursementDate,
    InvalidLoanRequest,
    InvalidPrincipal,
    InvalidProduct,
    InvalidRepaymentAmount,
    LoanBusy,
    LoanExists,
    LoanNotApproved,
    LoanNotFound,
    LoanNotInReview,
    LoanNotRepayable,
    LoanReviewNotWaiting,
    PayoutNotFlagged,
    PrincipalOutsideProduct,
    ProductBusy,
    ProductExists,
    ProductInactive,
    ProductNotFound,
    ProductRefused,
    RepaymentExceedsDue,
    TermOutsideProduct,
    UnknownProduct,
    WalletAccountNotFound,
)
from finfaas.services.loans.model import (
    Loan,
    LoanApplication,
    LoanEvent,
    LoanProduct,
    LoanStanding,
    LoanStatus,
    ProductPage,
    ProductStatus,
    Quote,
    QuoteRequest,
    loan_id_for,
    product_id_chars_max,
)
from finfaas.services.loans.ports import (
    CreditBureau,
    LoanLedger,
    LoanProductRepository,
    LoanProducts,
    LoanRepository,
    Orchestrator,
    PaymentRecord,
    ReviewOrchestrator,
    RiskAssessor,
    WalletAccounts,
)

_T = TypeVar("_T")

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


disbursement_attempts_max = 3  # a rival change of the loan between our read and our write
DISBURSEMENT_STATE_MACHINE = "loan-disbursement"
# A disbursement's hold never expires (0): once the rail has the payout it may have paid, so only the rail's
# answer or an operator may release the money; an expiry would hand it back to the funding account while
# the customer keeps the payout. Holds written with the earlier 7 days are still met expired by the void.
disbursement_hold_seconds = 0
failure_chars_max = 500


class _LoanMoved(Exception):
    """The stored loan is no longer the version the change was decided from."""


class LoanWrite:
    """The ledger's TransactionExtra for one loan change: the loan put over the version it was decided
    from, and its outbox event, in the transfer's own transaction; for a payment request also its
    Idempotency-Key record (holding `answer` rendered) and its audit facts (in the ledger's outbox item),
    so none of them costs a round trip of its own."""

    def __init__(self, loans: LoanRepository, wanted: Loan, event: LoanEvent,
                 record: PaymentRecord | None = None, answer: Any = None) -> None:
        self._loans = loans
        self._wanted = wanted
        self._event = event
        self._record = record
        self._answer = answer

    def outbox_audit(self) -> str | None:
        return self._record.outbox_audit() if self._record is not None else None

    def put_for(self, result: Any) -> tuple[Any, Any]:
        return self._loans.loan_put(self._wanted)

    def more_puts_for(self, result: Any) -> list[tuple[Any, Any]]:
        puts = [self._loans.event_put(self._wanted, self._event)]
        return puts + ([self._record.put_for(self._answer)] if self._record is not None else [])

    def more_conflicted(self, n: int, raw_item: dict[str, Any] | None) -> None:
        """The event is unconditional: only the key's record fails, when the key answered already (this
        request's own commit whose answer was lost, or an equal request's)."""
        if self._record is not None and n == 1:
            self._record.conflicted(raw_item)

    def conflicted(self, raw_item: dict[str, Any] | None) -> None:
        raise _LoanMoved(self._wanted.loan_id)

    def committed(self) -> None:
        if self._record is not None:
            self._record.committed()


class LoanDisbursementService:
    """The disbursement saga's step: the principal from the loans funding account to the customer's
    wallet and the loan's schedule fixed on the business date, in one ledger transaction."""

    def __init__(self, products: LoanProducts, loans: LoanRepository, ledger: LoanLedger,
                 business_date: Callable[[], date], orchestrator: Orchestrator,
                 business_calendar: MarketCalendar | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._products = products
        self._loans = loans
        self._ledger = ledger
        self._business_date = business_date
        self._orchestrator = orchestrator
        self._calendar = business_calendar
        self._clock = clock or utc_now

    def start(self, caller: Caller, loan_id: str) -> tuple[Loan, bool]:
        """The loan and True once its disbursement saga is started (named by the loan, so a repeat finds
        the same execution); an active loan answers with False, nothing started."""
        loan = self._loans.get_loan(loan_id)
        if loan is None or (caller.is_customer and loan.owner_id != caller.sub):
            raise LoanNotFound(f"loan {loan_id[:64]} not found", errors=(("loan_id", "not found"),))
        if loan.status in (LoanStatus.ACTIVE, LoanStatus.DISBURSING):  # paid out, or on its way
            return loan, False
        if loan.status is not LoanStatus.APPROVED:
            raise LoanNotApproved(f"loan {loan_id} is {loan.status.value}",
                                  errors=(("loan_id", f"the loan is {loan.status.value}"),))
        # A reviewed loan's saga was started at its application (same name and input: found again).
        self._orchestrator.start(DISBURSEMENT_STATE_MACHINE, loan.loan_id,
                                 saga_input(loan.loan_id, loan.decided_by not in (None, RULES)),
                                 reference=loan.loan_id)
        return loan, True

    def disburse(self, loan_id: str) -> Loan:
        """The active loan (paid into the wallet), or the loan disbursing (the principal held from the
        funding account to the rail's clearing account, for the saga to pay the bank account); again:
        the loan as it is, nothing moved (a retried saga step)."""

        def step(loan: Loan) -> Loan | Callable[[], Loan]:
            if loan.status in (LoanStatus.ACTIVE, LoanStatus.DISBURSING):
                return loan
            if loan.status is not LoanStatus.APPROVED:
                raise LoanNotApproved(f"loan {loan_id} is {loan.status.value}",
                                      errors=(("loan_id", f"the loan is {loan.status.value}"),))
            if loan.bank_account is not None:
                return lambda: self._hold(loan)
            wanted = self._disbursed(loan)
            funding = system_account_id(AccountKind.LOANS, loan.currency)
            return lambda: self._moved(wanted, lambda extra: self._ledger.transfer(
                wanted.disbursement_transfer_id, funding, loan.account_id, loan.principal_minor,
                loan.currency, extra))

        return self._step(loan_id, step)

    def settle_payout(self, loan_id: str) -> Loan:
        """The rail paid the bank account: the hold posted as the disbursement transfer and the loan active
        with its schedule fixed on the business date, in one ledger transaction; again: the active loan."""

        def step(loan: Loan) -> Loan | Callable[[], Loan]:
            if loan.status is LoanStatus.ACTIVE:
                return loan
            if loan.status is not LoanStatus.DISBURSING:
                raise LoanNotApproved(f"loan {loan_id} is {loan.status.value}: the payout is not settled",
                                      errors=(("loan_id", f"the loan is {loan.status.value}"),))
            wanted = self._disbursed(loan)
            return lambda: self._moved(wanted, lambda extra: self._ledger.post(
                loan.disbursement_hold_id, wanted.disbursement_transfer_id, loan.principal_minor,
                loan.currency, extra))

        return self._step(loan_id, step)

    def fail_payout(self, loan_id: str, reason: str) -> Loan:
        """The rail did not pay the bank account (rejected, or recalled unpaid): the hold voided back to
        the funding account and the loan disbursement_failed (no schedule, nothing owed), in one ledger
        transaction; again: the failed loan. A loan already paid out is never voided back (409)."""

        def step(loan: Loan) -> Loan | Callable[[], Loan]:
            if loan.status is LoanStatus.DISBURSEMENT_FAILED:
                return loan
            if loan.status is not LoanStatus.DISBURSING:
                raise LoanNotApproved(f"loan {loan_id} is {loan.status.value}: its payout is not undone",
                                      errors=(("loan_id", f"the loan is {loan.status.value}"),))
            wanted = replace(loan, status=LoanStatus.DISBURSEMENT_FAILED, payout_attention="",
                             disbursement_failure=reason[:failure_chars_max], updated_at=self._clock(),
                             version=loan.version + 1)
            return lambda: self._voided(wanted)

        return self._step(loan_id, step)

    def flag_payout(self, loan_id: str, reason: str) -> Loan:
        """The saga cannot tell whether the rail paid: the loan stays disbursing with the principal held and
        is marked for an operator (no money moves, no event); again: the loan as marked."""

        def change(loan: Loan) -> Unchanged[Loan] | Change[Loan, Loan]:
            if loan.status is not LoanStatus.DISBURSING or loan.payout_attention:
                return Unchanged(loan)  # resolved meanwhile, or marked already
            marked = replace(loan, payout_attention=reason[:failure_chars_max] or "unknown",
                             updated_at=self._clock(), version=loan.version + 1)
            return Change(marked, marked)

        def save(loan: Loan) -> bool:
            return self._loans.save_loan(loan, None)  # a mark for operators, no business event

        return read_change_save(lambda: self._read(loan_id), change, save,
                                exhausted=lambda: LoanBusy(f"loan {loan_id} kept changing"))

    def decide_payout(self, operator: str, loan_id: str, settled: bool, note: str) -> Loan:
        """An operator's decision on a payout the saga marked, after asking the rail: posted (the rail paid)
        or voided (it never will); the same decision again answers the loan, the other is a 409."""
        loan = self._read(loan_id)
        if loan.status is LoanStatus.DISBURSING and not loan.payout_attention:
            raise PayoutNotFlagged(f"the saga of loan {loan_id} has not asked for a decision",
                                   errors=(("decision", "the payout is not waiting for an operator"),))
        if settled:
            return self.settle_payout(loan_id)
        return self.fail_payout(loan_id, f"operator {operator}: {note}")

    def _read(self, loan_id: str) -> Loan:
        loan = self._loans.get_loan(loan_id)
        if loan is None:
            raise LoanNotFound(f"loan {loan_id[:64]} not found", errors=(("loan_id", "not found"),))
        return loan

    def _step(self, loan_id: str, decide: Callable[[Loan], Loan | Callable[[], Loan]]) -> Loan:
        """Read the loan, decide (the loan as it is, or the write to make), write; read again after a
        rival's change (or this step's own earlier write, found on the next read)."""
        for _ in range(disbursement_attempts_max):
            decided = decide(self._read(loan_id))
            if isinstance(decided, Loan):
                return decided
            try:
                return decided()
            except (_LoanMoved, PendingAlreadyPosted, PendingAlreadyVoided):
                continue  # our own earlier attempt or a rival's step resolved it: decide again
        raise LoanBusy(f"loan {loan_id} kept changing")

    def _moved(self, wanted: Loan, money: Callable[[LoanWrite], object]) -> Loan:
        money(LoanWrite(self._loans, wanted, loan_event(wanted)))
        return wanted

    def _hold(self, loan: Loan) -> Loan:
        """The principal held from the funding account to the rail's clearing account with the loan
        disbursing: money in transit, still the funding account's (its posted balance is unchanged)."""
        wanted = replace(loan, status=LoanStatus.DISBURSING, updated_at=self._clock(),
                         version=loan.version + 1)
        funding = system_account_id(AccountKind.LOANS, loan.currency)
        clearing = system_account_id(AccountKind.SETTLEMENT, loan.currency)
        return self._moved(wanted, lambda extra: self._ledger.hold(
            loan.disbursement_hold_id, funding, clearing, loan.principal_minor, loan.currency,
            disbursement_hold_seconds, extra))

    def _voided(self, wanted: Loan) -> Loan:
        try:
            return self._moved(wanted, lambda extra: self._ledger.void(
                wanted.disbursement_hold_id, wanted.disbursement_void_id, extra))
        except PendingExpired:
            # The ledger's sweep released the hold already (its own expiry transfer): only the loan changes.
            if not self._loans.save_loan(wanted, loan_event(wanted)):
                raise _LoanMoved(wanted.loan_id) from None
            return wanted

    def _disbursed(self, loan: Loan) -> Loan:
        """The loan paid out today: the product's schedule from the business date, fixed from now on."""
        product = self._products.get(loan.product_id)
        assert product is not None, f"the product of loan {loan.loan_id} is gone"
        today = self._business_date()
        terms = product.terms(loan.principal_minor, loan.term_months, today)
        schedule = build_schedule(terms, self._calendar)
        assert schedule.principal_minor == loan.principal_minor, "the schedule repays the principal lent"
        account = disburse(terms, schedule, loan.disbursement_transfer_id, product.account_rules())
        return replace(loan.with_account(account), disbursed_on=today, payout_attention="",
                       updated_at=self._clock(), version=loan.version + 1)


CUSTOMER_KIND = "customer"
review_note_chars_max = 500
RULES = "rules"  # decided_by of a loan the rules decided
# decided_by of a loan its saga declined when no operator decided within the review's time (its ASL's
# ReviewExpired state reports this operator).
REVIEW_EXPIRED = "review-expired"


def saga_input(loan_id: str, review: bool) -> dict[str, Any]:
    """The disbursement saga's input: with `review`, it waits for an operator's decision first."""
    return {"loan_id": loan_id, "review": True} if review else {"loan_id": loan_id}


def token_execution(task_token: str) -> str | None:
    """The execution id a task token names, or None for a malformed token."""
    from finfaas.workflow.interpreter import parse_task_token

    parsed = parse_task_token(task_token)
    return parsed[0] if parsed else None


def utc_now() -> datetime:
    return datetime.now(UTC)


class LedgerAccounts(InProcessLedger):
    """WalletAccounts and LoanLedger over the ledger's own use cases in process: a loan's change joins the
    transfer's transaction as its extra."""

    def transfer_linked(self, legs: Sequence[tuple[str, str, str, int, str]],
                        extra: TransactionExtra) -> list[Transfer]:
        requests = [TransferRequest(debit, credit, amount, currency, transfer_id)
                    for transfer_id, debit, credit, amount, currency in legs]
        return self._linked(requests, extra)

    def post(self, pending_id: str, transfer_id: str, amount_minor: int, currency: str,
             extra: TransactionExtra) -> Transfer:
        return self._posted(pending_id, transfer_id, amount_minor, currency, None, extra)


@dataclass(frozen=True)
class Caller:
    """Who asks: a customer (only its own accounts and loans) or a client app (any)."""

    sub: str
    kind: str

    @property
    def is_customer(self) -> bool:
        return self.kind == CUSTOMER_KIND


AUTO_DEBIT_CHANGED = "loan.auto_debit_changed"
PAYOUT_STATUSES = (LoanStatus.DISBURSING, LoanStatus.DISBURSEMENT_FAILED)  # a bank payout's, after approval
# A setting for the loan's repayments: meaningful until nothing more is owed.
AUTO_DEBIT_SETTABLE = frozenset({LoanStatus.REVIEW, LoanStatus.APPROVED, LoanStatus.DISBURSING,
                                 LoanStatus.ACTIVE})
_STATUS_OF = {Outcome.APPROVE: LoanStatus.APPROVED, Outcome.DECLINE: LoanStatus.DECLINED,
              Outcome.REVIEW: LoanStatus.REVIEW}
_EVENT_OF = {LoanStatus.APPROVED: "loan.approved", LoanStatus.DECLINED: "loan.declined",
             LoanStatus.REVIEW: "loan.review_required", LoanStatus.ACTIVE: "loan.disbursed",
             LoanStatus.DISBURSING: "loan.disbursement_started",
             LoanStatus.DISBURSEMENT_FAILED: "loan.disbursement_failed"}


def loan_event(loan: Loan, event_type: str | None = None,
               transaction: LoanTransaction | None = None) -> LoanEvent:
    """The event a loan's change publishes (by default, its new status's); amounts as text."""
    data: dict[str, object] = {
        "loan": loan.loan_id, "status": loan.status.value, "product_id": loan.product_id,
        "principal_minor": str(loan.principal_minor), "currency": loan.currency,
        "term_months": loan.term_months, "rules_fired": list(loan.decision.fired),
        "bureau_unavailable": loan.decision.bureau_unavailable}
    if loan.bank_account is not None:  # the masked form only: the envelope is for the rail
        data.update(account_id=loan.account_id, disburse_to="bank_account",
                    bank_account=loan.bank_account.masked())
    if loan.disbursement_failure:
        data.update(failure_reason=loan.disbursement_failure)
    if loan.disbursed_on is not None:
        data.update(account_id=loan.account_id, disbursed_on=loan.disbursed_on.isoformat(),
                    transfer_id=loan.disbursement_transfer_id,
                    installments=len(loan.installments))
    if transaction is not None:
        data.update(amount_minor=str(transaction.amount_minor), outstanding_minor=str(
            sum(d.total_minor for d in loan.owed())))
        key = "reversed_transfer_id" if transaction.reverses else "repayment_transfer_id"
        data[key] = transaction.reverses or transaction.transaction_id
    return LoanEvent(event_type or _EVENT_OF[loan.status], data)


class LoanApplicationService:
    """Apply, underwrite and decide: the internal rules, the risk screen and the bureau (each behind its
    circuit breaker), recorded once per application with every finding; operators decide reviews."""

    def __init__(self, products: LoanProducts, loans: LoanRepository, accounts: WalletAccounts,
                 quotes: LoanQuoteService, risk: RiskAssessor, bureau: CreditBureau, *,
                 orchestrator: ReviewOrchestrator,
                 risk_breaker: CircuitBreaker | None = None, bureau_breaker: CircuitBreaker | None = None,
                 policy: UnderwritingPolicy = UnderwritingPolicy(),
                 clock: Callable[[], datetime] = utc_now, vault: CreditorVault | None = None) -> None:
        self._orchestrator = orchestrator
        self._vault = vault  # seals a bank account to disburse to, for the rail; None refuses those
        self._products = products
        self._loans = loans
        self._accounts = accounts
        self._quotes = quotes
        self._risk = risk
        self._bureau = bureau
        self._risk_breaker = risk_breaker or CircuitBreaker("risk")
        self._bureau_breaker = bureau_breaker or CircuitBreaker("bureau")
        self._policy = policy
        self._clock = clock

    def apply(self, caller: Caller, key: str, application: LoanApplication) -> tuple[Loan, bool]:
        """The decided loan, or the one this caller's key made, with True. Nothing is written when the
        product, the amounts or the account refuse it."""
        loan_id = loan_id_for(caller.sub, key)
        existing = self._loans.get_loan(loan_id)
        if existing is not None:  # answered from what was stored, whatever changed since (the product)
            repeated = self._repeat_of(existing, application)
            self._await_review(repeated)  # a start lost with the first answer is made now
            return repeated, True
        quote = self._quotes.quote(QuoteRequest(application.product_id, application.principal,
                                                application.term_months))
        product = quote.product
        income = _declared(application.monthly_income, product.currency, "monthly_income")
        debt = _declared(application.monthly_debt, product.currency, "monthly_debt")
        account = self._accounts.account(application.account_id)
        if account is None or account.kind is not AccountKind.CUSTOMER \
                or account.status is not AccountStatus.OPEN \
                or (caller.is_customer and account.owner_id != caller.sub):
            raise WalletAccountNotFound(f"account {application.account_id} not found",
                                        errors=(("account_id", "not found"),))
        if account.currency != product.currency:
            raise CurrencyMismatch(f"the account holds {account.currency}; {product.product_id} lends "
                                   f"{product.currency}", errors=(("account_id", "another currency"),))
        principal = quote.schedule.principal_minor
        installment = max(i.total_minor for i in quote.schedule.installments)
        findings = internal_findings(Application(principal, installment, income, debt), self._policy)
        findings += self._screen(loan_id, account.owner_id, account.account_id, principal, product)
        findings += bureau_findings(self._report(loan_id, account.owner_id), principal,
                                    product.bureau_waiver_principal_minor_max, self._policy)
        decision = decide(findings)
        status = _STATUS_OF[decision.outcome]
        wanted = Loan(
            loan_id=loan_id, owner_id=account.owner_id, product_id=product.product_id,
            account_id=account.account_id, currency=product.currency, principal_minor=principal,
            term_months=application.term_months, monthly_income_minor=income, monthly_debt_minor=debt,
            status=status, decision=decision, created_at=self._clock(),
            decided_by=RULES if status.decided else None, auto_debit=application.auto_debit,
            bank_account=self._sealed(loan_id, application))
        stored = self._loans.create_loan(wanted, loan_event(wanted))
        if stored is not wanted and not stored.same_request(wanted):
            raise LoanExists("the Idempotency-Key was used for another application",
                             errors=(("Idempotency-Key", "used for another application"),))
        self._await_review(stored)
        return stored, stored is not wanted

    def _sealed(self, loan_id: str, application: LoanApplication) -> SealedCreditor | None:
        """The bank account to disburse to, sealed under the loan id (the rail's payment id, the one
        context it opens for); None disburses into the wallet."""
        if application.bank_account is None:
            return None
        if self._vault is None:
            from finfaas.platform.pii import PiiKeyUnavailable

            raise PiiKeyUnavailable("no key to seal a bank account with: bank disbursements are unavailable")
        return self._vault.seal(loan_id, application.bank_account)

    def _destination(self, application: LoanApplication) -> tuple[str, str] | None:
        """(bank code, fingerprint) of the bank account asked for, as a stored loan's is compared."""
        bank = application.bank_account
        if bank is None:
            return None
        fingerprint = self._vault.fingerprint(bank.bank_code, bank.account_number) if self._vault else ""
        return bank.bank_code, fingerprint

    def _await_review(self, loan: Loan) -> None:
        """A loan in review gets its disbursement saga, which waits at AwaitReview for an operator (named
        by the loan: starting it again finds the same execution)."""
        if loan.status is LoanStatus.REVIEW and loan.review_token is None:
            self._orchestrator.start(DISBURSEMENT_STATE_MACHINE, loan.loan_id, saga_input(loan.loan_id, True),
                                     reference=loan.loan_id)

    def take_review_task(self, loan_id: str, task_token: str) -> str:
        """Keep the token the saga's AwaitReview waits with on the loan ("kept", once: a redelivery finds
        it there); a token of another execution, or one the orchestrator does not wait for, is "ignored"."""
        if token_execution(task_token) != f"{DISBURSEMENT_STATE_MACHINE}:{loan_id}" \
                or not self._orchestrator.heartbeat(task_token):
            return "ignored"

        def waiting(loan: Loan | None) -> Unchanged[str] | Change[Loan, str]:
            if loan is None or loan.status is not LoanStatus.REVIEW:
                return Unchanged("ignored")
            if loan.review_token == task_token:
                return Unchanged("kept")
            return Change(replace(loan, review_token=task_token, updated_at=self._clock(),
                                  version=loan.version + 1), "kept")

        def save(loan: Loan) -> bool:
            return self._loans.save_loan(loan, None)  # a token is no business event

        return read_change_save(lambda: self._loans.get_loan(loan_id), waiting, save,
                                exhausted=lambda: LoanBusy(f"loan {loan_id} kept changing"))

    def loan(self, caller: Caller, loan_id: str) -> Loan:
        """The loan; another customer's answers as a missing one."""
        found = self._loans.get_loan(loan_id)
        if found is None or (caller.is_customer and found.owner_id != caller.sub):
            raise LoanNotFound(f"loan {loan_id[:64]} not found", errors=(("loan_id", "not found"),))
        return found

    def set_auto_debit(self, caller: Caller, loan_id: str, enabled: bool) -> Loan:
        """The customer's auto-debit setting, from the next due date the nightly job closes; the same
        setting again answers the loan. A closed, written-off or declined loan refuses it (409 status)."""

        def change(loan: Loan) -> Unchanged[Loan] | Change[Loan, Loan]:
            if loan.auto_debit is enabled:
                return Unchanged(loan)
            if loan.status not in AUTO_DEBIT_SETTABLE:
                raise LoanNotRepayable(f"loan {loan_id} is {loan.status.value}",
                                       errors=(("status", f"the loan is {loan.status.value}"),))
            updated = replace(loan, auto_debit=enabled, updated_at=self._clock(), version=loan.version + 1)
            return Change(updated, updated)

        def save(loan: Loan) -> bool:
            return self._loans.save_loan(loan, loan_event(loan, AUTO_DEBIT_CHANGED))

        return read_change_save(lambda: self.loan(caller, loan_id), change, save,
                                exhausted=lambda: LoanBusy(f"loan {loan_id} kept changing"))

    def review(self, operator: str, loan_id: str, approve: bool, note: str) -> Loan:
        """An operator's decision on a loan in review, sent to its saga through the task token (the saga
        records it); the same decision again answers the loan, another is a 409."""
        from finfaas.services.suite_clients import TaskNotWaiting

        wanted = LoanStatus.APPROVED if approve else LoanStatus.DECLINED
        loan = self.loan(Caller(operator, "client"), loan_id)
        if loan.status is wanted and loan.decided_by not in (None, RULES):
            return loan
        if loan.status is not LoanStatus.REVIEW:
            raise LoanNotInReview(f"loan {loan_id} is {loan.status.value}",
                                  errors=(("decision", f"the loan is {loan.status.value}"),))
        if loan.review_token is None:
            raise LoanReviewNotWaiting(f"the saga of loan {loan_id} does not wait for a decision yet",
                                       errors=(("decision", "not waited for yet: try again shortly"),))
        # The same output on a retry: the orchestrator answers an equal report again, refuses another.
        output = {"decision": "approve" if approve else "decline", "note": note[:review_note_chars_max],
                  "operator": operator}
        try:
            self._orchestrator.succeed(loan.review_token, output)
        except TaskNotWaiting:
            raise LoanReviewNotWaiting(f"the saga of loan {loan_id} no longer waits for a decision",
                                       errors=(("decision", "another decision was taken"),)) from None
        return loan

    def record_review(self, operator: str, loan_id: str, approve: bool, note: str) -> Loan:
        """The saga's step after AwaitReview: the operator's decision written on the loan with its event
        (the rules that fired stay in its decision); a retried step finds it written."""
        wanted = LoanStatus.APPROVED if approve else LoanStatus.DECLINED

        def change(loan: Loan) -> Unchanged[Loan] | Change[Loan, Loan]:
            # A retried step: the decision written (an approved loan perhaps paid out, or on its way, since).
            paid_since = loan.disbursed_on or loan.status in PAYOUT_STATUSES
            if loan.decided_by == operator and (loan.status is wanted or (approve and paid_since)):
                return Unchanged(loan)
            if loan.status is not LoanStatus.REVIEW:
                raise LoanNotInReview(f"loan {loan_id} is {loan.status.value}",
                                      errors=(("decision", f"the loan is {loan.status.value}"),))
            decided = replace(loan, status=wanted, decided_by=operator,
                              review_note=note[:review_note_chars_max], review_token=None,
                              updated_at=self._clock(), version=loan.version + 1)
            return Change(decided, decided)

        def save(loan: Loan) -> bool:
            return self._loans.save_loan(loan, loan_event(loan))

        return read_change_save(lambda: self.loan(Caller(operator, "client"), loan_id), change, save,
                                exhausted=lambda: LoanBusy(f"loan {loan_id} kept changing"))

    def _repeat_of(self, existing: Loan, application: LoanApplication) -> Loan:
        """The stored loan when the application asks for it again; LoanExists when it asks for another."""
        try:
            principal = parse_amount(application.principal, existing.currency, field="principal")
        except LedgerError:
            principal = -1
        asked = (application.product_id, application.account_id, principal, application.term_months,
                 _declared(application.monthly_income, existing.currency, "monthly_income"),
                 _declared(application.monthly_debt, existing.currency, "monthly_debt"),
                 self._destination(application))
        bank = existing.bank_account
        stored = (existing.product_id, existing.account_id, existing.principal_minor, existing.term_months,
                  existing.monthly_income_minor, existing.monthly_debt_minor,
                  None if bank is None else (bank.bank_code, bank.fingerprint))
        if asked != stored:
            raise LoanExists("the Idempotency-Key was used for another application",
                             errors=(("Idempotency-Key", "used for another application"),))
        return existing

    def _screen(self, loan_id: str, owner_id: str, account_id: str, principal: int,
                product: LoanProduct) -> tuple[Finding, ...]:
        """The risk function's block-list and velocity findings; an operator decides when it is failing."""
        request = {"assessment_id": loan_id, "customer_id": owner_id, "debit_account_id": account_id,
                   "destination": f"loan:{product.product_id}", "amount_minor": principal,
                   "currency": product.currency}
        try:
            answer = self._risk_breaker.call(lambda: self._risk.assess(request))
            findings = answer.get("findings")
            if not isinstance(findings, list) or not all(isinstance(f, dict) for f in findings):
                raise ValueError("risk answered without findings")
        except Exception as error:  # any failure of the dependency: an operator decides (breaker counts it)
            return (Finding("risk_unavailable", Verdict.REVIEW,
                            f"risk screen unavailable: {type(error).__name__}"),)
        return risk_findings(findings)

    def _report(self, loan_id: str, owner_id: str) -> BureauReport | None:
        """The bureau's report, or None when it is failing (the breaker counts it, and opens)."""
        try:
            answer = self._bureau_breaker.call(lambda: self._bureau.report(owner_id, loan_id))
            score, late = answer.get("score"), answer.get("delinquencies")
            if not isinstance(score, int) or not isinstance(late, int) \
                    or not bureau_score_min <= score <= bureau_score_max or late < 0:
                raise ValueError("bureau answered without a score")
        except Exception:  # any failure of the dependency decides without it (the product's waiver)
            return None
        return BureauReport(score, late)


def _declared(value: int | str, currency: str, field: str) -> int:
    """A declared monthly figure in minor units of the product's currency (0 allowed)."""
    if value in (0, "0"):
        return 0
    try:
        return parse_amount(value, currency, field=field)
    except LedgerError as error:
        raise InvalidApplication(str(error), errors=((field, str(error)),)) from None


@dataclass(frozen=True)
class Paid:
    """A payment's answer: the loan after it, whether this key's payment was applied before, and the
    loan's standing on the business date the payment was made on."""

    loan: Loan
    repeated: bool
    standing: LoanStanding | None


repayment_attempts_max = 5  # concurrent repayments of one loan each re-read and re-allocate after a loss
repayment_hex_chars = 16


def repayment_hex(caller_id: str, key: str) -> str:
    """A repayment's part of its transfer id, derived from the caller and its Idempotency-Key."""
    return hashlib.sha256(f"{caller_id}\x00{key}".encode()).hexdigest()[:repayment_hex_chars]
REPAYABLE = (LoanStatus.ACTIVE,)
# A product's terms never change in place (only its status, which loans already made ignore), so a warm
# instance reads each product once; the bound keeps a stage with many products from growing the process.
product_cache_entries_max = 256


class LoanRepaymentService:
    """Repayments from the wallet, allocated by the product's order oldest installment first; what is
    left over prepays (a smaller installment) or is refused, per product. The ledger legs (principal back
    to sys-loans-<CUR>, interest and fees to sys-fees-<CUR>) and the loan's new state commit together."""

    def __init__(self, products: LoanProducts, loans: LoanRepository, ledger: LoanLedger,
                 business_date: Callable[[], date], clock: Callable[[], datetime] | None = None) -> None:
        self._products = products
        self._loans = loans
        self._ledger = ledger
        self._business_date = business_date
        self._clock = clock or utc_now
        self._terms: dict[str, LoanProduct] = {}
        self._terms_lock = threading.Lock()

    def repay(self, caller: Caller, loan_id: str, key: str, amount: int | str,
              currency: str, record: PaymentRecord | None = None) -> Paid:
        """The loan after the repayment, and True when this key's repayment was applied before; `record`
        (the request's key and audit) commits in the repayment's transaction."""
        transfer_id = f"{loan_id}-repay-{repayment_hex(caller.sub, key)}"
        return self._pay(caller, loan_id, transfer_id, record, lambda loan, product, today: self._repaid(
            loan, product, today, transfer_id, amount, currency))

    def prepay(self, caller: Caller, loan_id: str, key: str, amount: int | str, currency: str,
               mode: PrepaymentMode, record: PaymentRecord | None = None) -> Paid:
        """Partial prepayment on the business date: what is due is paid first, the rest prepays principal
        and the schedule is recomputed from the fold for a shorter term or a smaller installment. A
        product that refuses overpayments refuses it (RepaymentExceedsDue naming amount)."""
        transfer_id = f"{loan_id}-prepay-{repayment_hex(caller.sub, key)}"

        def prepaid(loan: Loan, product: LoanProduct, today: date) -> Payment:
            amount_minor = self._checked_amount(loan, amount, currency)
            account = self.open_account(loan, product, today)
            due = amount_due(account, today)
            if product.overpayment is OverpaymentRule.REFUSE:
                raise RepaymentExceedsDue(
                    f"{product.product_id} takes no partial prepayment; repay what is due or pay off",
                    errors=(("amount", "the product refuses prepayments"),))
            if amount_minor <= due:
                raise InvalidRepaymentAmount(
                    f"{due} minor units are due: a prepayment pays more (else it is a repayment)",
                    errors=(("amount", f"more than the {due} due"),))
            paid = LoanTransaction(transfer_id, TransactionKind.PREPAYMENT, today, amount_minor, mode)
            return *self._folded(loan, account, paid), paid

        return self._pay(caller, loan_id, transfer_id, record, prepaid)

    def pay_off(self, caller: Caller, loan_id: str, key: str, amount: int | str,
                currency: str, record: PaymentRecord | None = None) -> Paid:
        """Full prepayment on the business date: exactly the payoff quote's total closes the loan; later
        periods' interest and fees are not charged, the current period's only to the date."""
        transfer_id = f"{loan_id}-payoff-{repayment_hex(caller.sub, key)}"

        def paid_off(loan: Loan, product: LoanProduct, today: date) -> Payment:
            amount_minor = self._checked_amount(loan, amount, currency)
            account = self.open_account(loan, product, today)
            quote = _payoff_quote(account, product, today)
            if amount_minor != quote.total_minor:
                raise InvalidRepaymentAmount(
                    f"the payoff on {today.isoformat()} is {quote.total_minor} minor units",
                    errors=(("amount", f"the payoff today is {quote.total_minor}"),))
            paid = LoanTransaction(transfer_id, TransactionKind.PREPAYMENT, today, amount_minor)
            return *self._folded(loan, account, paid), paid

        return self._pay(caller, loan_id, transfer_id, record, paid_off)

    def _pay(self, caller: Caller, loan_id: str, transfer_id: str, record: PaymentRecord | None,
             decide: Callable[[Loan, LoanProduct, date], Payment]) -> Paid:
        """The payment `decide` makes of the loan as read (the loan after it, its legs, the transaction),
        moved with the loan's new state, its event and the request's record in one transaction; the loan
        as it is when `transfer_id` is on it already. A rival change of the loan first: decided again
        over what it left. The business date and the product's terms are read once per request."""
        today, product = self._business_date(), None
        for _ in range(repayment_attempts_max):
            loan = self._own(caller, loan_id)
            product = product or self._product(loan)
            if any(t.transaction_id == transfer_id for t in loan.transactions):
                return Paid(loan, True, self.standing(loan, today, product))
            wanted, legs, paid = decide(loan, product, today)
            answer = Paid(wanted, False, self.standing(wanted, today, product))
            try:
                event = loan_event(wanted, "loan.repaid", paid)
                self._ledger.transfer_linked(legs, LoanWrite(self._loans, wanted, event, record, answer))
            except _LoanMoved:
                continue  # another payment won: decide again over what it left
            except InsufficientFunds:
                raise InvalidRepaymentAmount(f"account {loan.account_id} holds less than the amount",
                                             errors=(("amount", "more than the account holds"),)) from None
            return answer
        raise LoanBusy(f"loan {loan_id} kept changing")

    def payoff(self, caller: Caller, loan_id: str, on: date | None) -> tuple[Payoff, date]:
        """What closes the loan on `on` (the business date by default): principal, interest to the date,
        unpaid fees and penalties, and the product's prepayment penalty."""
        loan = self._own(caller, loan_id)
        if loan.status not in REPAYABLE:
            raise LoanNotRepayable(f"loan {loan_id} is {loan.status.value}",
                                   errors=(("status", f"the loan is {loan.status.value}"),))
        product, today = self._product(loan), self._business_date()
        day = on or today
        return _payoff_quote(self.open_account(loan, product, today), product, day), day

    def standing(self, loan: Loan, today: date | None = None,
                 product: LoanProduct | None = None) -> LoanStanding | None:
        """Days past due and bucket as of the business date (or `today`, read by the caller); None before
        disbursement."""
        if not loan.installments:
            return None
        today = today or self._business_date()
        days = days_past_due(loan.schedule(), loan.owed(), today)
        return LoanStanding(today, days, delinquency_bucket(days, (product or self._product(loan)).buckets))

    def _own(self, caller: Caller, loan_id: str) -> Loan:
        loan = self._loans.get_loan(loan_id)
        if loan is None or (caller.is_customer and loan.owner_id != caller.sub):
            raise LoanNotFound(f"loan {loan_id[:64]} not found", errors=(("loan_id", "not found"),))
        return loan

    def _product(self, loan: Loan) -> LoanProduct:
        """The loan's product, read once per instance (its terms never change in place)."""
        with self._terms_lock:
            kept = self._terms.get(loan.product_id)
        if kept is not None:
            return kept
        product = self._products.get(loan.product_id)
        assert product is not None, f"the product of loan {loan.loan_id} is gone"
        with self._terms_lock:
            if len(self._terms) >= product_cache_entries_max:
                self._terms.clear()
            self._terms[loan.product_id] = product
        return product

    def _repaid(self, loan: Loan, product: LoanProduct, today: date, transfer_id: str, amount: int | str,
                currency: str) -> Payment:
        """The loan once `amount` is folded into its account as a repayment, and the ledger legs."""
        amount_minor = self._checked_amount(loan, amount, currency)
        paid = LoanTransaction(transfer_id, TransactionKind.REPAYMENT, today, amount_minor)
        account = self.open_account(loan, product, today)
        try:
            wanted, legs = self._folded(loan, account, paid)
        except RepaymentExceedsDue:
            if product.overpayment is not OverpaymentRule.REFUSE:
                raise
            due = amount_due(account, paid.value_date)
            raise RepaymentExceedsDue(
                f"{due} minor units are due; the product refuses overpayments",
                errors=(("amount", f"at most {due} is due"),)) from None
        return wanted, legs, paid

    def open_account(self, loan: Loan, product: LoanProduct, today: date | None = None) -> LoanAccount:
        """The loan's account with every business date before today closed: a payment today folds after
        them, as reprocessing would order it (the nightly job finds those dates already closed)."""
        account = loan.account(product)
        yesterday = (today or self._business_date()) - ONE_DAY
        if account.status is FoldStatus.ACTIVE and account.closed_through < yesterday:
            account, _ = close_of_business(account, yesterday)
        return account

    def _folded(self, loan: Loan, account: LoanAccount,
                transaction: LoanTransaction) -> tuple[Loan, list[Leg]]:
        """The loan once its account (opened on the payment's date) folds the payment, and the legs moving
        where the fold put it: principal (scheduled or prepaid) back to the funding account, the rest
        to income."""
        try:
            after = apply(account, transaction)
        except LoanRuleError as error:
            if error.field == "amount":
                raise RepaymentExceedsDue(str(error), errors=(("amount", str(error)),)) from None
            raise InvalidLoanRequest(str(error), errors=((error.field, str(error)),)) from None
        assert after.credit_minor == account.credit_minor, "a payment the fold accepts is spent whole"
        wanted = replace(loan.with_account(after), updated_at=self._clock(), version=loan.version + 1)
        return wanted, ledger_legs(loan, transaction.transaction_id, account, after)

    def _checked_amount(self, loan: Loan, amount: int | str, currency: str) -> int:
        """The amount in the loan's minor units, for a loan that takes repayments."""
        if loan.status not in REPAYABLE:
            raise LoanNotRepayable(f"loan {loan.loan_id} is {loan.status.value}",
                                   errors=(("status", f"the loan is {loan.status.value}"),))
        if currency != loan.currency:
            raise CurrencyMismatch(f"the loan is repaid in {loan.currency}",
                                   errors=(("currency", f"the loan's currency is {loan.currency}"),))
        try:
            return parse_amount(amount, loan.currency, field="amount")
        except LedgerError as error:
            raise InvalidRepaymentAmount(str(error), errors=(("amount", str(error)),)) from None



def _payoff_quote(account: LoanAccount, product: LoanProduct, day: date) -> Payoff:
    """What closes the opened account on `day`, the product's prepayment penalty included."""
    try:
        return payoff_quote(account.terms, account.schedule, account.dues, day,
                            product.prepayment_penalty_rate)
    except LoanRuleError as error:
        raise InvalidLoanRequest(str(error), errors=((error.field, str(error)),)) from None


Leg = tuple[str, str, str, int, str]  # transfer id, debit account, credit account, minor units, currency
Payment = tuple[Loan, list[Leg], LoanTransaction]  # the loan after a payment, its legs, the transaction
_PAYMENT_KINDS = (TransactionKind.REPAYMENT, TransactionKind.PREPAYMENT)


def collected(account: LoanAccount) -> tuple[int, int]:
    """What the account's payments brought in, as (principal, income): principal paid or prepaid, and
    the rest of every payment not reversed (interest, fees, penalties) less credit held back."""
    reversed_ids = account.reversed_ids
    paid_minor = sum(a.transaction.amount_minor for a in account.history if a.transaction.kind
                     in _PAYMENT_KINDS and a.transaction.transaction_id not in reversed_ids)
    principal_minor = sum(p.principal_minor for p in account.paid) + account.prepaid_principal_minor
    return principal_minor, paid_minor - principal_minor - account.credit_minor


def ledger_legs(loan: Loan, transfer_id: str, before: LoanAccount, after: LoanAccount) -> list[Leg]:
    """The linked legs that take the ledger from what `before` says payments brought in to what `after`
    says: principal with the loans funding account, the rest with income (sys-fees), the wallet on the
    other side. A payment folded last moves its own parts; a reprocessing (a reversal, or a same-day
    payment sorting earlier) also moves what it reallocated between principal and income."""
    legs: list[Leg] = []
    for suffix, kind, was, now in zip(("principal", "income"), (AccountKind.LOANS, AccountKind.FEES),
                                      collected(before), collected(after), strict=True):
        system, delta = system_account_id(kind, loan.currency), now - was
        if delta > 0:
            legs.append((f"{transfer_id}-{suffix}", loan.account_id, system, delta, loan.currency))
        elif delta < 0:
            legs.append((f"{transfer_id}-{suffix}", system, loan.account_id, -delta, loan.currency))
    return legs
