"""The transfers capability's refusals, each with a stable problem code."""

from __future__ import annotations


class TransferError(Exception):
    """Any refusal of the transfers capability."""

    code = "transfer_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TransferNotFound(TransferError):
    """No such transfer, or not the caller's to see."""

    code = "transfer_not_found"


class TransferExists(TransferError):
    """The transfer id (derived from the Idempotency-Key) was used for a different transfer."""

    code = "transfer_exists_with_different_fields"


class InvalidTransfer(TransferError):
    """The request cannot become a transfer."""

    code = "invalid_transfer"


class ValidationRefused(TransferError):
    """A validation rule refuses the transfer: at acceptance nothing is recorded; in the saga's validate
    step the saga fails. `field` names the request field the refusal concerns, when there is one."""

    def __init__(self, code: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.field = field


class UnknownAccount(ValidationRefused):
    """Missing, not the caller's to debit, or a payee's account the caller may learn nothing about."""

    code = "account_not_found"

    def __init__(self, account_id: str, field: str) -> None:
        super().__init__(self.code, f"account {account_id} not found", field)


class InactiveAccount(ValidationRefused):
    """One of the caller's own accounts is frozen or closed."""

    code = "account_not_active"

    def __init__(self, detail: str, field: str) -> None:
        super().__init__(self.code, detail, field)


class WrongCurrency(ValidationRefused):
    """One of the caller's own accounts holds another currency than the transfer's."""

    code = "currency_mismatch"

    def __init__(self, detail: str, field: str) -> None:
        super().__init__(self.code, detail, field)


class OverTransferLimit(ValidationRefused):
    """The amount is above the per-transfer limit of the caller's tier."""

    code = "per_transfer_limit_exceeded"

    def __init__(self, detail: str) -> None:
        super().__init__(self.code, detail, "amount")


class NoDecisionPending(TransferError):
    """The transfer waits for no operator decision."""

    code = "no_decision_pending"


class DecisionAlreadyRecorded(TransferError):
    """Another decision was already recorded for this transfer's pending task; it stands."""

    code = "decision_already_recorded"


class SecondApproverRequired(TransferError):
    """The four-eyes rule: the operator who proposed this decision cannot also confirm it."""

    code = "second_approver_must_differ"


class InvalidDecision(TransferError):
    """The decision does not answer the pending task (e.g. post on a review)."""

    code = "invalid_decision"


class OrchestratorUnavailable(TransferError):
    """The orchestrator could not be reached to start or answer the saga."""

    code = "orchestrator_unavailable"


class TransferStoreUnavailable(TransferError):
    """The order store did not answer."""

    code = "transfer_store_unavailable"


class ConcurrentUpdate(TransferError):
    """The order kept changing under this step; the saga retries it."""

    code = "transfer_busy"
