"""Ledger domain errors: one small class per condition, each with a stable `code` for error tables."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every ledger rule violation; `code` is stable and safe to show to a client."""

    code = "ledger_error"
    retryable = False

    def __init__(self, message: str, *, field: str | None = None, subject: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.subject = subject

    def __eq__(self, other: object) -> bool:
        # Errors compare by meaning so the reference model and the store can be checked step by step.
        return type(self) is type(other) and (self.field, self.subject) == (other.field, other.subject)

    def __hash__(self) -> int:
        return hash((type(self), self.field, self.subject))


# --- input validation (4xx, before anything is written) -------------------------------------------


class InvalidInput(LedgerError):
    """A request field is malformed."""

    code = "invalid_input"


class InvalidAmount(InvalidInput):
    """An amount is not a positive integer of minor units or a plain decimal string."""

    code = "invalid_amount"


class AmountTooLarge(InvalidInput):
    """An amount exceeds transfer_amount_minor_max."""

    code = "amount_too_large"


class TooManyDecimals(InvalidInput):
    """A decimal amount has more fraction digits than its currency allows."""

    code = "too_many_decimals"


class UnknownCurrency(InvalidInput):
    """The currency is not an ISO 4217 code this ledger knows."""

    code = "unknown_currency"


class InvalidIdentifier(InvalidInput):
    """An id is empty, too long or uses characters outside [A-Za-z0-9_-]."""

    code = "invalid_identifier"


class SameAccount(InvalidInput):
    """Debit and credit account are the same."""

    code = "same_account"


class TooManyLegs(InvalidInput):
    """A linked batch has more legs than linked_legs_max."""

    code = "too_many_legs"


class DuplicateTransferId(InvalidInput):
    """The same transfer id appears twice in one linked batch."""

    code = "duplicate_transfer_id"


class InvalidTimeout(InvalidInput):
    """A hold timeout is negative, above hold_timeout_seconds_max, or given for a posted transfer."""

    code = "invalid_timeout"


class PostAmountExceedsPending(InvalidInput):
    """A post asks for more than the pending transfer reserved."""

    code = "post_amount_exceeds_pending"


# --- account state (409/422 at the edge) -----------------------------------------------------------


class AccountNotFound(LedgerError):
    """The account does not exist, or the caller does not own it (never say which)."""

    code = "account_not_found"


class AccountFrozen(LedgerError):
    """The account is frozen: it cannot be debited."""

    code = "account_frozen"


class AccountClosed(LedgerError):
    """The account is closed: nothing moves in or out."""

    code = "account_closed"


class CurrencyMismatch(LedgerError):
    """The account's currency differs from the transfer's."""

    code = "currency_mismatch"


class InsufficientFunds(LedgerError):
    """The debit would take a limited account below its overdraft limit."""

    code = "insufficient_funds"


class AccountNotEmpty(LedgerError):
    """An account with a balance or open holds cannot be closed."""

    code = "account_not_empty"


class AccountExistsWithDifferentFields(LedgerError):
    """An account id is taken by an account with other fields."""

    code = "account_exists_with_different_fields"


class InvalidStatusChange(LedgerError):
    """The requested status change is not allowed from the account's current status."""

    code = "invalid_status_change"


# --- transfers -------------------------------------------------------------------------------------


class TransferNotFound(LedgerError):
    """The referenced transfer (pending or original) does not exist."""

    code = "transfer_not_found"


class NotPending(LedgerError):
    """The referenced transfer is not a pending transfer (hold)."""

    code = "not_pending"


class PendingAlreadyPosted(LedgerError):
    """The hold was already posted."""

    code = "pending_already_posted"


class PendingAlreadyVoided(LedgerError):
    """The hold was already voided."""

    code = "pending_already_voided"


class PendingExpired(LedgerError):
    """The hold's timeout has passed: it can no longer be posted or voided, only expired."""

    code = "pending_expired"


class NotReversible(LedgerError):
    """Only transfers that moved posted balances can be reversed."""

    code = "not_reversible"


class AlreadyReversed(LedgerError):
    """The transfer was already reversed (a transfer is reversed at most once)."""

    code = "already_reversed"


class ExistsWithDifferentFields(LedgerError):
    """The transfer id is taken by a transfer whose `field` differs."""

    code = "exists_with_different_fields"


class ExistsWithDifferentAmount(ExistsWithDifferentFields):
    """The transfer id exists with a different amount."""

    code = "exists_with_different_amount"


class ExistsWithDifferentDebitAccount(ExistsWithDifferentFields):
    """The transfer id exists with a different debit account."""

    code = "exists_with_different_debit_account"


class ExistsWithDifferentCreditAccount(ExistsWithDifferentFields):
    """The transfer id exists with a different credit account."""

    code = "exists_with_different_credit_account"


class ExistsWithDifferentCurrency(ExistsWithDifferentFields):
    """The transfer id exists with a different currency."""

    code = "exists_with_different_currency"


class ExistsWithDifferentKind(ExistsWithDifferentFields):
    """The transfer id exists as another kind (posted, pending, post, void, reversal)."""

    code = "exists_with_different_kind"


class ExistsWithDifferentPendingId(ExistsWithDifferentFields):
    """The transfer id exists resolving a different pending transfer."""

    code = "exists_with_different_pending_id"


class ExistsWithDifferentTimeout(ExistsWithDifferentFields):
    """The transfer id exists with a different hold timeout."""

    code = "exists_with_different_timeout"


class ExistsWithDifferentReversalOf(ExistsWithDifferentFields):
    """The transfer id exists reversing a different transfer."""

    code = "exists_with_different_reversal_of"


class ExistsWithDifferentLinked(ExistsWithDifferentFields):
    """The transfer id exists in a different linked batch (or outside one)."""

    code = "exists_with_different_linked"


class ExistsWithDifferentMetadata(ExistsWithDifferentFields):
    """The transfer id exists with a different description or reference."""

    code = "exists_with_different_metadata"


EXISTS_WITH_DIFFERENT_BY_FIELD: dict[str, type[ExistsWithDifferentFields]] = {
    "amount_minor": ExistsWithDifferentAmount,
    "debit_account_id": ExistsWithDifferentDebitAccount,
    "credit_account_id": ExistsWithDifferentCreditAccount,
    "currency": ExistsWithDifferentCurrency,
    "kind": ExistsWithDifferentKind,
    "pending_id": ExistsWithDifferentPendingId,
    "timeout_seconds": ExistsWithDifferentTimeout,
    "reversal_of": ExistsWithDifferentReversalOf,
    "batch_id": ExistsWithDifferentLinked,
    "batch_size": ExistsWithDifferentLinked,
    "metadata": ExistsWithDifferentMetadata,
}


# --- infrastructure the caller may retry -----------------------------------------------------------


class LedgerBusy(LedgerError):
    """Contention or an unreachable store outlasted the bounded retries; safe to retry the same request."""

    code = "ledger_busy"
    retryable = True
