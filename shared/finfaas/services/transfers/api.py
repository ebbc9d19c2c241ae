"""The transfers function's HTTP shapes: request bodies, queries, views, and the error table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from finfaas.domain import errors as ledger_errors
from finfaas.domain.limits import Tier
from finfaas.domain.money import currency_exponent
from finfaas.platform.cursors import cursor_chars_max
from finfaas.platform.errors import ErrorSpec, HttpError
from finfaas.platform.http import StrictModel
from finfaas.platform.idempotency import IdempotencyKeyReused
from finfaas.platform.pii import PiiKeyUnavailable
from finfaas.services.ledger.api import BoundedAmount
from finfaas.services.suite_clients import ServiceUnreachable
from finfaas.services.transfers.errors import (
    ConcurrentUpdate,
    DecisionAlreadyRecorded,
    InactiveAccount,
    InvalidDecision,
    InvalidTransfer,
    NoDecisionPending,
    OrchestratorUnavailable,
    OverTransferLimit,
    SecondApproverRequired,
    TransferExists,
    TransferNotFound,
    TransferStoreUnavailable,
    UnknownAccount,
    ValidationRefused,
    WrongCurrency,
)
from finfaas.services.transfers.model import (
    TaskKind,
    TransferOrder,
    TransferStatus,
    ValidationHint,
    list_page_size_default,
    list_page_size_max,
    wait_seconds_max,
)

identifier_chars_max = 64
owner_chars_max = 256
reference_chars_max = 140
BANK_CODE_PATTERN = r"^[A-Z0-9]{4,11}$"
BANK_ACCOUNT_PATTERN = r"^[A-Za-z0-9]{4,34}$"
Identifier = Annotated[str, Field(min_length=1, max_length=identifier_chars_max, pattern=r"^[A-Za-z0-9_-]+$")]
Amount = BoundedAmount


class CreditorBody(StrictModel):
    """A payee at another bank: its bank code (BIC-like), account number and name."""

    bank_code: Annotated[str, Field(pattern=BANK_CODE_PATTERN)]
    account_number: Annotated[str, Field(pattern=BANK_ACCOUNT_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=140)]


class NewTransferBody(StrictModel):
    """From one of the caller's accounts to another account here (credit_account_id) or at another
    bank (creditor); exactly one of the two."""

    debit_account_id: Identifier
    credit_account_id: Identifier | None = None
    creditor: CreditorBody | None = None
    amount: Amount
    currency: Annotated[StrictStr, Field(min_length=3, max_length=3)]
    reference: Annotated[str, Field(max_length=reference_chars_max)] = ""

    @model_validator(mode="after")
    def _one_destination(self) -> NewTransferBody:
        if (self.credit_account_id is None) == (self.creditor is None):
            raise ValueError("give exactly one of credit_account_id and creditor")
        if self.credit_account_id == self.debit_account_id:
            raise ValueError("credit_account_id must differ from debit_account_id")
        return self


class StepBody(StrictModel):
    transfer_id: Identifier


class ValidateBody(StepBody):
    """The validate step: the transfer, and what its execution's input says of it, so the order is read
    together with its accounts, tier and day's total (an order that says otherwise is read again alone)."""

    # Whatever the token's subject was; it is only compared with the order's.
    owner_id: Annotated[StrictStr, Field(min_length=1, max_length=owner_chars_max)] | None = None
    debit_account_id: Identifier | None = None
    credit_account_id: Identifier | None = None
    currency: Annotated[StrictStr, Field(min_length=3, max_length=3)] | None = None

    def hint(self) -> ValidationHint | None:
        """What the input says, when it says all of it (an execution started before it did says less)."""
        if self.owner_id is None or self.debit_account_id is None or self.currency is None:
            return None
        accounts = (self.debit_account_id, *((self.credit_account_id,) if self.credit_account_id else ()))
        return ValidationHint(self.owner_id, accounts, self.currency)


class SagaError(StrictModel):
    """What a Catch put in the state: ASL's {"Error", "Cause"}."""

    Error: Annotated[str, Field(min_length=1, max_length=256)]
    Cause: Annotated[str, Field(max_length=64 * 1024)] | None = None


class FailBody(StrictModel):
    transfer_id: Identifier
    outcome: Literal["failed", "compensated"]
    error: SagaError


class AttentionBody(StrictModel):
    transfer_id: Identifier
    error: SagaError


class TaskMessage(StrictModel):
    """A callback task's queue message (the orchestrator's sqs:sendMessage.waitForTaskToken)."""

    task_token: Annotated[str, Field(min_length=1, max_length=1024)]
    transfer_id: Identifier
    kind: TaskKind


class DecisionBody(StrictModel):
    decision: Literal["approve", "reject", "post", "void"]
    note: Annotated[str, Field(max_length=500)] = ""


class TierBody(StrictModel):
    tier: Tier


class WaitQuery(StrictModel):
    wait: Annotated[
        float,
        Field(
            ge=0,
            le=wait_seconds_max,
            description=(
                "seconds to wait for a final status; when the function already holds its most "
                "waiting requests, the current status comes back at once with Retry-After"
            ),
        ),
    ] = 0


in_flight_older_than_s_default = 60
in_flight_older_than_s_max = 30 * 24 * 3600  # a month: older than that, every open transfer counts
# The statuses the operators' list takes (the status index holds only transfers not yet final).
OpenStatus = Literal["ACCEPTED", "PROCESSING", "AWAITING_REVIEW", "NEEDS_ATTENTION"]


class CreatedWindow(StrictModel):
    """Strict bounds on the creation time, each RFC 3339 with an offset; after must come before before."""

    created_after: AwareDatetime | None = Field(default=None,
                                                description="RFC 3339, e.g. 2026-01-31T00:00:00Z")
    created_before: AwareDatetime | None = Field(default=None, description="RFC 3339, after created_after")
    limit: int = Field(default=list_page_size_default, ge=1, le=list_page_size_max)
    starting_after: str | None = Field(
        default=None, min_length=1, max_length=cursor_chars_max,
        description="the next_cursor of the previous page, unchanged (same caller and filters)",
    )

    @field_validator("created_before")
    @classmethod
    def _after_created_after(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        after = info.data.get("created_after")
        if value is not None and after is not None and value <= after:
            raise ValueError("created_before must be later than created_after")
        return value


class TransferListQuery(CreatedWindow):
    """Filters of the caller's own transfers; every filter given must hold."""

    status: list[TransferStatus] = Field(
        default_factory=list, max_length=len(TransferStatus),
        description="repeatable (status=A&status=B): any of these; none: every status",
    )
    account: Identifier | None = Field(
        default=None, description="the debit account, or the payee's account here"
    )


class OpsTransferListQuery(CreatedWindow):
    status: OpenStatus = Field(description="transfers not yet final in this status, oldest first")


class SummaryQuery(StrictModel):
    in_flight_older_than_s: int = Field(
        default=in_flight_older_than_s_default, ge=0, le=in_flight_older_than_s_max,
        description="count ACCEPTED and PROCESSING transfers created longer ago than this",
    )


class StepView(BaseModel):
    name: str
    outcome: str
    at: datetime
    detail: str = ""


class TransferView(BaseModel):
    transfer_id: str
    status: TransferStatus
    debit_account_id: str
    credit_account_id: str | None = None
    creditor: dict[str, str] | None = None
    amount_minor: int
    currency: str
    exponent: int
    reference: str
    created_at: datetime
    updated_at: datetime | None = None
    flags: list[str] = Field(default_factory=list)
    screening: dict[str, Any] | None = None
    failure: dict[str, str] | None = None
    decision_pending: TaskKind | None = None
    steps: list[StepView] = Field(default_factory=list)


class PendingApprovalView(BaseModel):
    """A first operator's approve (or post) above the second-approval amount, awaiting a second operator."""

    decision: str
    operator: str
    note: str
    at: datetime


class OpsTransferView(TransferView):
    """What operators see: the customer's view plus the owner and any approval awaiting a second operator."""

    owner_id: str
    pending_approval: PendingApprovalView | None = None


class TransferList(BaseModel):
    data: list[TransferView] = Field(description="newest first")
    has_more: bool
    next_cursor: str | None = Field(description="pass as starting_after for the next page")


class OpsTransferList(BaseModel):
    data: list[OpsTransferView] = Field(description="oldest first: the longest waiting comes first")
    has_more: bool
    next_cursor: str | None = Field(description="pass as starting_after for the next page")


class TransferSummary(BaseModel):
    """Transfers not yet final, counted per status, and those in flight for longer than asked."""

    as_of: datetime
    counts: dict[OpenStatus, int]
    in_flight_older_than_s: int
    in_flight_older: int = Field(description="ACCEPTED or PROCESSING, created before as_of less the age")
    complete: bool = Field(description="false when a count stopped at its bound: the figures are minimums")


class Accepted(BaseModel):
    transfer_id: str
    status: TransferStatus
    status_url: str


def ops_transfer_view(order: TransferOrder) -> OpsTransferView:
    proposal = order.pending_approval
    pending = None
    if proposal is not None and proposal["token"] == order.task_token:
        pending = PendingApprovalView(decision=proposal["decision"], operator=proposal["operator"],
                                      note=proposal["note"], at=datetime.fromisoformat(proposal["at"]))
    return OpsTransferView(owner_id=order.owner_id, pending_approval=pending,
                           **transfer_view(order).model_dump())


def transfer_view(order: TransferOrder) -> TransferView:
    creditor = order.creditor.masked() if order.creditor is not None else None
    return TransferView(
        transfer_id=order.transfer_id,
        status=order.status,
        debit_account_id=order.debit_account_id,
        credit_account_id=None if order.external else order.credit_account_id,
        creditor=creditor,
        amount_minor=order.amount_minor,
        currency=order.currency,
        exponent=currency_exponent(order.currency),
        reference=order.reference,
        created_at=order.created_at,
        updated_at=order.updated_at,
        flags=list(order.flags),
        screening=dict(order.screening) if order.screening else None,
        failure=dict(order.failure) if order.failure else None,
        decision_pending=order.task_kind if order.task_token else None,
        steps=[StepView(name=s.name, outcome=s.outcome, at=s.at, detail=s.detail) for s in order.steps],
    )


# --- errors ------------------------------------------------------------------------------------------


class StepRefused(HttpError):
    """A saga step refuses the transfer for good; the problem code says why."""

    status, code, title = 422, "step_refused", "Step refused"

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def _ledger_input_errors() -> dict[type[BaseException], ErrorSpec]:
    """Amount and currency parsing refusals, each with its own code."""
    found: list[type[ledger_errors.InvalidInput]] = [ledger_errors.InvalidInput]
    for cls in found:
        found.extend(sub for sub in cls.__subclasses__() if sub not in found)
    return {cls: ErrorSpec(422, cls.code, cls.code.replace("_", " ").capitalize()) for cls in found}


ERRORS = {
    **_ledger_input_errors(),
    TransferNotFound: ErrorSpec(404, TransferNotFound.code, "Transfer not found"),
    # Refusals at acceptance (nothing recorded); the saga's own step answers them as StepRefused.
    # Another customer's account answers exactly as a missing one (no existence oracle).
    UnknownAccount: ErrorSpec(404, UnknownAccount.code, "Account not found"),
    InactiveAccount: ErrorSpec(422, InactiveAccount.code, "Account not active"),
    WrongCurrency: ErrorSpec(422, WrongCurrency.code, "Currency mismatch"),
    OverTransferLimit: ErrorSpec(422, OverTransferLimit.code, "Per-transfer limit exceeded"),
    ledger_errors.LedgerBusy: ErrorSpec(503, ledger_errors.LedgerBusy.code, "Ledger busy"),
    # The platform's answer to a key reused for a different request, as on every other keyed route.
    TransferExists: ErrorSpec(422, IdempotencyKeyReused.code, IdempotencyKeyReused.title),
    InvalidTransfer: ErrorSpec(422, InvalidTransfer.code, "Invalid transfer"),
    NoDecisionPending: ErrorSpec(409, NoDecisionPending.code, "No decision pending"),
    InvalidDecision: ErrorSpec(422, InvalidDecision.code, "Invalid decision"),
    SecondApproverRequired: ErrorSpec(409, SecondApproverRequired.code,
                                      "A second, different operator must confirm"),
    DecisionAlreadyRecorded: ErrorSpec(409, DecisionAlreadyRecorded.code, "Another decision was recorded"),
    OrchestratorUnavailable: ErrorSpec(503, OrchestratorUnavailable.code, "Orchestrator unavailable"),
    TransferStoreUnavailable: ErrorSpec(503, TransferStoreUnavailable.code, "Transfer store unavailable"),
    ConcurrentUpdate: ErrorSpec(503, ConcurrentUpdate.code, "Transfer busy"),
    ServiceUnreachable: ErrorSpec(503, "dependency_unreachable", "Dependency unreachable"),
    PiiKeyUnavailable: ErrorSpec(503, "pii_key_unavailable", "Encryption key unavailable"),
}


def refusing_step(step: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A saga step's answer; a validation refusal becomes StepRefused with the refusal's own code."""
    try:
        return step()
    except ValidationRefused as refusal:
        raise StepRefused(refusal.code, refusal.detail) from None
