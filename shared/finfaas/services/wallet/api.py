"""The wallet function's HTTP shapes: top-up and withdrawal bodies, views, saga step bodies, errors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from finfaas.domain.ledger import page_size_default, page_size_max
from finfaas.domain.money import currency_exponent
from finfaas.platform.cursors import cursor_chars_max
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.platform.idempotency import IdempotencyKeyReused
from finfaas.platform.pii import PiiKeyUnavailable
from finfaas.services.ledger.api import BoundedAmount, Currency, Identifier, ledger_error_table
from finfaas.services.suite_clients import ServiceUnreachable
from finfaas.services.transfers.api import CreditorBody, SagaError
from finfaas.services.wallet.errors import (
    CurrencyNotOnRail,
    MoveBusy,
    MoveExists,
    MoveNotFound,
    MoveStateConflict,
    SagaNotStarted,
    WalletAccountNotFound,
    WalletCurrencyMismatch,
    WalletStoreUnavailable,
    WithdrawalRefused,
)
from finfaas.services.wallet.model import MoveStatus, WalletMove, move_id_chars_max

MoveId = Annotated[str, Field(min_length=1, max_length=move_id_chars_max, pattern=r"^[A-Za-z0-9_-]+$")]


class NewMoveBody(StrictModel):
    """A top-up into, or a withdrawal out of, one of the caller's accounts, from or to a bank account."""

    account_id: Identifier = Field(description="the wallet: one of the customer's accounts")
    amount: BoundedAmount
    currency: Currency
    bank_account: CreditorBody = Field(description="the customer's account at a bank on the rail")


class MoveListQuery(StrictModel):
    """Newest first: a customer's own; an app names the customer."""

    customer: Identifier | None = Field(default=None, description="the customer's id (apps only)")
    limit: int = Field(default=page_size_default, ge=1, le=page_size_max)
    starting_after: str | None = Field(default=None, min_length=1, max_length=cursor_chars_max)


class MoveStepBody(StrictModel):
    """A saga step on one move."""

    move_id: MoveId


class MoveFailBody(StrictModel):
    move_id: MoveId
    error: SagaError


class DecisionBody(StrictModel):
    """An operator's decision on a move that needs attention, after checking the rail's side: a top-up is
    credited or failed, a withdrawal's hold posted or voided."""

    decision: Literal["credit", "fail", "post", "void"]
    note: Annotated[str, Field(max_length=500)] = ""


class BankAccountView(BaseModel):
    bank_code: str
    account_number_masked: str


class MoveView(BaseModel):
    id: str
    object: str = Field(description="topup or withdrawal")
    status: MoveStatus
    account_id: str
    amount: int = Field(description="minor units")
    currency: str
    exponent: int
    bank_account: BankAccountView
    failure_reason: str | None = None
    ledger_transfer_ids: list[str]
    created_at: datetime
    updated_at: datetime | None = None


class MoveList(BaseModel):
    data: list[MoveView]
    has_more: bool
    next_cursor: str | None = Field(description="pass as starting_after for the next page")


def move_view(move: WalletMove) -> MoveView:
    return MoveView(
        id=move.move_id, object=move.kind.value, status=move.status, account_id=move.account_id,
        amount=move.amount_minor, currency=move.currency, exponent=currency_exponent(move.currency),
        bank_account=BankAccountView(**move.bank_account.masked()), failure_reason=move.failure or None,
        ledger_transfer_ids=[step.transfer_id for step in move.ledger], created_at=move.created_at,
        updated_at=move.updated_at,
    )


ERRORS: dict[type[BaseException], ErrorSpec] = {
    **ledger_error_table(),
    MoveNotFound: ErrorSpec(404, MoveNotFound.code, "Top-up or withdrawal not found"),
    # The platform's answer to a key reused for a different request, as on every other keyed route.
    MoveExists: ErrorSpec(422, IdempotencyKeyReused.code, IdempotencyKeyReused.title),
    WalletAccountNotFound: ErrorSpec(404, WalletAccountNotFound.code, "Account not found"),
    WalletCurrencyMismatch: ErrorSpec(422, WalletCurrencyMismatch.code, "Currency mismatch"),
    WithdrawalRefused: ErrorSpec(422, WithdrawalRefused.code, "Insufficient funds"),
    CurrencyNotOnRail: ErrorSpec(422, CurrencyNotOnRail.code, "Currency not supported"),
    MoveStateConflict: ErrorSpec(409, MoveStateConflict.code, "Unexpected state"),
    MoveBusy: ErrorSpec(503, MoveBusy.code, "Busy"),
    SagaNotStarted: ErrorSpec(503, SagaNotStarted.code, "Orchestrator unavailable"),
    WalletStoreUnavailable: ErrorSpec(503, WalletStoreUnavailable.code, "Wallet store unavailable"),
    ServiceUnreachable: ErrorSpec(503, "dependency_unreachable", "Dependency unreachable"),
    PiiKeyUnavailable: ErrorSpec(503, "pii_key_unavailable", "Encryption key unavailable"),
}
