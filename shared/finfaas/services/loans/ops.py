"""Operators' corrections of a disbursed loan: a repayment reversed (a bounced payment) and a write-off.

Both are dated transactions of the loan account, folded by domain.loan_account like every payment, and
each commits in one ledger transaction with the loan's conditional put and its outbox event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime

from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.domain.loan_account import (
    LoanAccount,
    LoanTransaction,
    TransactionKind,
    apply,
    replay,
)
from finfaas.domain.loans import LoanRuleError
from finfaas.services.loans.errors import (
    InvalidLoanRequest,
    LoanBusy,
    LoanNotActive,
    LoanNotFound,
    RepaymentAlreadyReversed,
    RepaymentNotFound,
)
from finfaas.services.loans.model import Loan, LoanEvent, LoanProduct, LoanStatus
from finfaas.services.loans.ports import LoanLedger, LoanProducts, LoanRepository
from finfaas.services.loans.service import (
    Leg,
    LoanRepaymentService,
    LoanWrite,
    _LoanMoved,
    ledger_legs,
    loan_event,
    utc_now,
)

ops_attempts_max = 5  # a repayment racing the operator: read again and fold again
reason_chars_max = 500
reversal_hex_chars = 16
WRITE_OFF_LEG = "loss"
_PAYMENTS = (TransactionKind.REPAYMENT, TransactionKind.PREPAYMENT)


class LoanOpsService:
    """Reversal of a repayment and write-off, by operators, over the loans' own repayment rules."""

    def __init__(self, products: LoanProducts, loans: LoanRepository, ledger: LoanLedger,
                 business_date: Callable[[], date], repayments: LoanRepaymentService,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._products = products
        self._loans = loans
        self._ledger = ledger
        self._business_date = business_date
        self._repayments = repayments
        self._clock = clock or utc_now

    def reverse(self, loan_id: str, repayment_id: str, reason: str) -> Loan:
        """The loan reprocessed as if the repayment never happened; its ledger moves undone, and what
        the reprocessing reallocated of later payments moved between principal and income, in one
        transaction with the loan. A repayment already reversed is a RepaymentAlreadyReversed."""
        reversal_id = reversal_id_for(loan_id, repayment_id)
        for _ in range(ops_attempts_max):
            loan, product = self._loan(loan_id)
            target = next((t for t in loan.transactions if t.transaction_id == repayment_id
                           and t.kind in _PAYMENTS), None)
            if target is None:
                raise RepaymentNotFound(f"loan {loan_id} has no repayment {repayment_id[:128]}",
                                        errors=(("repayment_id", "not a repayment of this loan"),))
            if any(t.reverses == repayment_id for t in loan.transactions):
                raise RepaymentAlreadyReversed(f"repayment {repayment_id} is reversed",
                                               errors=(("repayment_id", "already reversed"),))
            before = self._repayments.open_account(loan, product)
            reversal = LoanTransaction(reversal_id, TransactionKind.REVERSAL,
                                       max(self._business_date(), target.value_date), reverses=repayment_id)
            after = _folded(before, reversal)
            wanted = replace(loan.with_account(after), updated_at=self._clock(), version=loan.version + 1)
            event = _with(loan_event(wanted, "loan.repayment_reversed"), reversed_transfer_id=repayment_id,
                          amount_minor=str(target.amount_minor), reason=reason[:reason_chars_max],
                          outstanding_minor=str(after.outstanding_minor))
            legs = ledger_legs(loan, reversal_id, before, after)
            # Reprocessed, a later write-off takes the principal the reversed payment had repaid.
            lost_minor = after.written_off.principal_minor - before.written_off.principal_minor
            assert lost_minor >= 0, "a reversal never repays principal"
            if lost_minor:
                legs.append(write_off_leg(loan, reversal_id, lost_minor))
            if self._committed(legs, wanted, event):
                return wanted
        raise LoanBusy(f"loan {loan_id} kept changing")

    def write_off(self, loan_id: str, reason: str) -> Loan:
        """The loan written off as of the last closed business date: its outstanding principal moved
        from the loans funding account to the loan-losses account, accruals stopped, status written_off;
        a loan not active is a LoanNotActive naming status."""
        for _ in range(ops_attempts_max):
            loan, product = self._loan(loan_id)
            if loan.status is not LoanStatus.ACTIVE:
                raise LoanNotActive(f"loan {loan_id} is {loan.status.value}",
                                    errors=(("status", f"the loan is {loan.status.value}"),))
            before = self._repayments.open_account(loan, product)
            if any(t.kind in _PAYMENTS and t.value_date > before.closed_through
                   and t.transaction_id not in before.reversed_ids for t in loan.transactions):
                # Dated at the last close, the write-off would sort before today's payment and turn it
                # into credit: written off after tonight's close instead.
                raise LoanBusy(f"loan {loan_id} was repaid today; write it off after the day's close",
                               errors=(("loan_id", "repaid today"),))
            written = LoanTransaction(f"{loan_id}-write-off", TransactionKind.WRITE_OFF,
                                      before.closed_through)
            after = _folded(before, written)
            principal_minor = after.written_off.principal_minor - before.written_off.principal_minor
            wanted = replace(loan.with_account(after), updated_at=self._clock(), version=loan.version + 1)
            event = _with(loan_event(wanted, "loan.written_off"), reason=reason[:reason_chars_max],
                          written_off_principal_minor=str(principal_minor),
                          written_off_minor=str(after.written_off.total_minor),
                          write_off_transfer_id=f"{written.transaction_id}-{WRITE_OFF_LEG}")
            legs = ledger_legs(loan, written.transaction_id, before, after)
            if principal_minor:
                legs.append(write_off_leg(loan, written.transaction_id, principal_minor))
            if self._committed(legs, wanted, event):
                return wanted
        raise LoanBusy(f"loan {loan_id} kept changing")

    def _loan(self, loan_id: str) -> tuple[Loan, LoanProduct]:
        loan = self._loans.get_loan(loan_id)
        if loan is None:
            raise LoanNotFound(f"loan {loan_id[:64]} not found", errors=(("loan_id", "not found"),))
        if loan.disbursed_on is None:
            raise LoanNotActive(f"loan {loan_id} is {loan.status.value}",
                                errors=(("status", f"the loan is {loan.status.value}"),))
        product = self._products.get(loan.product_id)
        assert product is not None, f"the product of loan {loan_id} is gone"
        return loan, product

    def _committed(self, legs: list[Leg], wanted: Loan, event: LoanEvent) -> bool:
        """True once the legs, the loan's put over the version read and its event commit together;
        False when the loan moved meanwhile (nothing written)."""
        if not legs:
            return self._loans.save_loan(wanted, event)
        try:
            self._ledger.transfer_linked(legs, LoanWrite(self._loans, wanted, event))
        except _LoanMoved:
            return False
        return True



def _folded(account: LoanAccount, transaction: LoanTransaction) -> LoanAccount:
    """The account with the operator's transaction folded in; the fold's refusals as the API's."""
    try:
        if transaction.kind is TransactionKind.REVERSAL:
            # Replay, not apply: the reversal is dated the business date, not closed yet, and a
            # reversal only names what the fold leaves out, so its date moves no money.
            return replay(account.terms, account.disbursed_schedule, account.transactions() + (transaction,),
                          account.rules, strict_id=transaction.transaction_id)
        return apply(account, transaction)
    except LoanRuleError as error:
        if error.field == "reverses":
            raise RepaymentAlreadyReversed(str(error), errors=(("repayment_id", str(error)),)) from None
        raise InvalidLoanRequest(str(error), errors=((error.field, str(error)),)) from None


def write_off_leg(loan: Loan, transfer_id: str, principal_minor: int) -> Leg:
    """The principal written off: from the loan-losses account into the loans funding account (whose
    balance is minus the principal lent and not yet back), so that account counts only live loans."""
    return (f"{transfer_id}-{WRITE_OFF_LEG}", system_account_id(AccountKind.LOAN_LOSSES, loan.currency),
            system_account_id(AccountKind.LOANS, loan.currency), principal_minor, loan.currency)


def reversal_id_for(loan_id: str, repayment_id: str) -> str:
    """The reversal's transaction id, also its ledger legs' prefix: ledger transfer ids are at most
    64 characters, so the repayment is named by a digest (one reversal per repayment)."""
    digest = hashlib.sha256(repayment_id.encode()).hexdigest()[:reversal_hex_chars]
    return f"{loan_id}-rev-{digest}"


def _with(event: LoanEvent, **more: object) -> LoanEvent:
    return LoanEvent(event.type, {**event.data, **more})
