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
