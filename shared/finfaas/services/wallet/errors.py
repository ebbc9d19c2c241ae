"""The wallet capability's refusals, each with a stable problem code."""

from __future__ import annotations


class WalletError(Exception):
    """Any refusal of the wallet capability."""

    code = "wallet_error"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class MoveNotFound(WalletError):
    """No such top-up or withdrawal, or not the caller's to see."""

    code = "wallet_move_not_found"


class MoveExists(WalletError):
    """The Idempotency-Key made a top-up or withdrawal with other fields."""

    code = "wallet_move_exists_with_different_fields"


class WalletAccountNotFound(WalletError):
    """The wallet account is missing, not a customer's, or not the caller's."""

    code = "account_not_found"


class WalletCurrencyMismatch(WalletError):
    """The amount's currency is not the wallet account's."""

    code = "currency_mismatch"


class CurrencyNotOnRail(WalletError):
    """The rail has no clearing account in this currency: nothing could be collected or paid out."""

    code = "currency_not_supported"


class WithdrawalRefused(WalletError):
    """The wallet's available balance does not cover the withdrawal."""

    code = "insufficient_funds"


class MoveStateConflict(WalletError):
    """A saga step asked for a move in a state that cannot take it (e.g. a credit of a failed top-up)."""

    code = "wallet_move_state_conflict"


class MoveBusy(WalletError):
    """The move kept changing under this request; try again."""

    code = "wallet_move_busy"


class SagaNotStarted(WalletError):
    """The move is recorded but its saga did not start; the same request again starts it."""

    code = "orchestrator_unavailable"


class WalletStoreUnavailable(WalletError):
    """The wallet table did not answer."""

    code = "wallet_store_unavailable"


class AppliedEarlier(WalletError):
    """This request's own earlier attempt already wrote the change (its answer was lost)."""

    code = "applied_earlier"
