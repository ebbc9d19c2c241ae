"""The payments capability's refusals, each with a stable problem code."""

from __future__ import annotations


class PaymentsError(Exception):
    """Any refusal of the payments capability."""

    code = "payments_error"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class MerchantNotFound(PaymentsError):
    """No such merchant."""

    code = "merchant_not_found"


class MerchantExists(PaymentsError):
    """The merchant id was onboarded with different fields."""

    code = "merchant_exists_with_different_fields"


class MerchantAccountsConflict(PaymentsError):
    """A ledger account the merchant needs exists with other fields (another owner or currency)."""

    code = "merchant_accounts_conflict"


class PaymentsStoreUnavailable(PaymentsError):
    """The payments table did not answer."""

    code = "payments_store_unavailable"


class MerchantBusy(PaymentsError):
    """The merchant kept changing under this request; try again."""

    code = "merchant_busy"


class MerchantInactive(PaymentsError):
    """The merchant was deactivated: it takes no new payments."""

    code = "merchant_inactive"


class IntentNotFound(PaymentsError):
    """No such payment intent, or not the caller's to see."""

    code = "payment_intent_not_found"


class IntentExists(PaymentsError):
    """The Idempotency-Key made a payment intent with other fields."""

    code = "payment_intent_exists_with_different_fields"


class CustomerAccountNotFound(PaymentsError):
    """The paying account is missing, or not the caller's: both answer alike (no existence oracle)."""

    code = "account_not_found"


class CurrencyMismatch(PaymentsError):
    """The currency differs from the merchant's, the paying account's or the intent's."""

    code = "currency_mismatch"


class FeeExceedsAmount(PaymentsError):
    """The application fee is above the amount it is taken from."""

    code = "application_fee_exceeds_amount"


class UnexpectedState(PaymentsError):
    """The intent's status does not allow this step (e.g. capture of a canceled intent)."""

    code = "payment_intent_unexpected_state"


class AuthorizationExpired(PaymentsError):
    """The authorization's hold expired: nothing is left to capture."""

    code = "authorization_expired"


class PaymentDeclined(PaymentsError):
    """The risk check declined the payment; nothing was held."""

    code = "payment_declined"


class RiskUnavailable(PaymentsError):
    """The risk function is failing and the amount is above what the degraded rule lets through."""

    code = "risk_unavailable"


class IntentBusy(PaymentsError):
    """The intent kept changing under this request; try again with the same key."""

    code = "payment_intent_busy"


class IntentListUnbounded(PaymentsError):
    """An app's list names neither a merchant nor a customer."""

    code = "merchant_or_customer_required"


class RefundExists(PaymentsError):
    """The refund number was used on this payment for a different refund."""

    code = "refund_exists_with_different_fields"


class DisputeNotFound(PaymentsError):
    """No such dispute on the payment (or not the caller's to see)."""

    code = "dispute_not_found"


class DisputeClosed(PaymentsError):
    """The dispute is won or lost: evidence and acceptance no longer change it."""

    code = "dispute_closed"


class DisputeExists(PaymentsError):
    """The rail's dispute id was opened on this payment with another amount."""

    code = "dispute_exists_with_different_fields"


class InvalidRailNotice(PaymentsError):
    """A dispute notice not signed by the rail, too old, or unreadable."""

    code = "invalid_notice"


class SettlementNotFound(PaymentsError):
    """No settlement of the merchant for that business date (yet)."""

    code = "settlement_not_found"


class SettlementDateInFuture(PaymentsError):
    """A settlement for a business date that has not come."""

    code = "settlement_date_in_future"


class SettlementOutOfOrder(PaymentsError):
    """The merchant is settled for a later business date: an earlier one has nothing left to pay."""

    code = "settlement_out_of_order"


class SettlementWindowTooLarge(PaymentsError):
    """More ledger entries to settle than one run reads: settle more often."""

    code = "settlement_window_too_large"


class AppliedEarlier(Exception):
    """The intent already holds what this write would put: an earlier attempt committed it."""


class RefundNotFound(PaymentsError):
    """No refund with this number on the payment."""

    code = "refund_not_found"


class RefundSagaNotStarted(PaymentsError):
    """The rail refund is recorded but its saga did not start; the same request again starts it."""

    code = "orchestrator_unavailable"
