"""The loans capability's refusals: each names the request field at fault."""

from __future__ import annotations

from finfaas.platform.errors import Refusal


class UnknownProduct(Refusal):
    """No loan product has this id."""

    code = "unknown_product"


class InvalidPrincipal(Refusal):
    """The principal is not a positive amount in the product's currency (sign, decimals, bounds)."""

    code = "invalid_principal"


class PrincipalOutsideProduct(Refusal):
    """The principal is below the product's minimum or above its maximum."""

    code = "principal_outside_product"


class TermOutsideProduct(Refusal):
    """The term is shorter or longer than the product allows."""

    code = "term_outside_product"


class InvalidDisbursementDate(Refusal):
    """The disbursement date is before the business date or too far after it."""

    code = "invalid_disbursement_date"


class InvalidLoanRequest(Refusal):
    """The loan rules refuse the request (the domain's LoanRuleError, with its field)."""

    code = "invalid_loan_terms"


class ProductInactive(Refusal):
    """The product was deactivated: it takes no new quotes or loans."""

    code = "product_inactive"


class ProductNotFound(Refusal):
    """No loan product has this id (an operator's read or change)."""

    code = "loan_product_not_found"


class ProductExists(Refusal):
    """The product id was created with other terms; a product's terms never change in place."""

    code = "loan_product_exists_with_different_fields"


class ProductRefused(Refusal):
    """An operator's product breaks a rule of the catalogue (the field is named)."""

    code = "invalid_loan_product"


class ProductBusy(Refusal):
    """The product kept changing under this request; try again."""

    code = "loan_product_busy"


class LoansStoreUnavailable(Refusal):
    """The loans table did not answer."""

    code = "loans_store_unavailable"


class InvalidApplication(Refusal):
    """An application's declared figure is not an amount in the product's currency (the field is named)."""

    code = "invalid_application"


class WalletAccountNotFound(Refusal):
    """No open customer account of the caller has this id (another customer's answers the same)."""

    code = "account_not_found"


class CurrencyMismatch(Refusal):
    """The account holds another currency than the product lends."""

    code = "currency_mismatch"


class LoanNotFound(Refusal):
    """No such loan, or not the caller's to see."""

    code = "loan_not_found"


class LoanExists(Refusal):
    """The Idempotency-Key made a loan application with other fields."""

    code = "idempotency_key_reused"


class LoanNotInReview(Refusal):
    """The loan was decided already: an operator's decision is for loans in review."""

    code = "loan_not_in_review"


class LoanReviewNotWaiting(Refusal):
    """The loan is in review but its saga does not wait for a decision (not yet, or no longer)."""

    code = "loan_review_not_waiting"


class LoanNotApproved(Refusal):
    """Only an approved loan is disbursed (one in review, declined or already paid out is not)."""

    code = "loan_not_approved"


class LoanNotRepayable(Refusal):
    """The loan takes no repayment: not disbursed yet, closed or written off."""

    code = "loan_not_repayable"


class InvalidRepaymentAmount(Refusal):
    """The amount is not a positive amount in the loan's currency, or more than it can take."""

    code = "invalid_repayment_amount"


class RepaymentExceedsDue(Refusal):
    """More than is due, on a product that refuses overpayments: pay what is due, or quote a payoff."""

    code = "repayment_exceeds_due"


class PayoutNotFlagged(Refusal):
    """An operator decides a bank payout only once its saga asked for it (the rail's answer unknown)."""

    code = "loan_payout_not_flagged"


class LoanBusy(Refusal):
    """The loan kept changing under this request; try again."""

    code = "loan_busy"


class InvalidProduct(ValueError):
    """A product in the catalogue is misconfigured; raised when the catalogue is built, never to a client."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class RepaymentNotFound(Refusal):
    """The loan has no repayment or prepayment of this id."""

    code = "repayment_not_found"


class RepaymentAlreadyReversed(Refusal):
    """The repayment was reversed before; a payment is reversed once."""

    code = "repayment_already_reversed"


class LoanNotActive(Refusal):
    """Only an active loan is written off."""

    code = "loan_not_active"
