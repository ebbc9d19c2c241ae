"""The rail function's shapes: the saga's hand-off, the settlement timer message, notices, views, errors."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictInt

from finfaas.domain.creditor import SealedCreditor
from finfaas.domain.money import transfer_amount_minor_max
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.platform.pii import PiiKeyUnavailable, sealed_chars_max
from finfaas.services.rail.errors import InvalidNotice, PaymentConflict, PaymentNotFound, RailStoreUnavailable
from finfaas.services.rail.model import PaymentStatus, RailPayment
from finfaas.services.suite_clients import ServiceUnreachable

SETTLE_EVENT_TYPE = "dev.finfaas.rail.settle"


# What a hand-off's payment id may be (the saga passes its transfer id); nothing else can ever arrive.
payment_id_chars_max = 64
PAYMENT_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
PaymentId = Annotated[str, Field(min_length=1, max_length=payment_id_chars_max, pattern=PAYMENT_ID_PATTERN)]
_PAYMENT_ID = re.compile(PAYMENT_ID_PATTERN)


class SealedCreditorBody(StrictModel):
    """The payee as the saga carries it: sealed under the payment (transfer) id, and its display form."""

    sealed: Annotated[str, Field(min_length=1, max_length=sealed_chars_max)]
    bank_code: Annotated[str, Field(pattern=r"^[A-Z0-9]{4,11}$")]
    account_number_masked: Annotated[str, Field(pattern=r"^\*{4}[A-Za-z0-9]{0,4}$")]

    def creditor(self) -> SealedCreditor:
        return SealedCreditor(self.sealed, self.bank_code, self.account_number_masked)


class HandOff(StrictModel):
    """The saga's callback task message: pay this, then report with the token."""

    task_token: Annotated[str, Field(min_length=1, max_length=1024)]
    payment_id: PaymentId
    amount_minor: Annotated[StrictInt, Field(ge=1, le=transfer_amount_minor_max)]
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    creditor: SealedCreditorBody


class SettleMessage(StrictModel):
    payment_id: PaymentId


def well_formed_payment_id(payment_id: str) -> bool:
    """Whether a hand-off could carry this payment id (the HandOff field's own rule)."""
    return len(payment_id) <= payment_id_chars_max and _PAYMENT_ID.fullmatch(payment_id) is not None


class Notice(BaseModel):
    """The bank's signed notice of a final status."""

    payment_id: str
    status: PaymentStatus
    reason: str = ""
    settled_at: datetime | None = None


dispute_id_chars_max = 64
dispute_reason_chars_max = 64


class DisputeTrigger(StrictModel):
    """SANDBOX: what an operator asks the bank to tell payments about a card payment's chargeback:
    `dispute.opened` (with the amount) or `dispute.closed` (with the issuer's decision, won or lost)."""

    kind: Literal["dispute.opened", "dispute.closed"]
    dispute_id: Annotated[str, Field(min_length=1, max_length=dispute_id_chars_max,
                                     pattern=PAYMENT_ID_PATTERN)]
    payment_intent: PaymentId
    amount_minor: Annotated[StrictInt, Field(ge=1, le=transfer_amount_minor_max)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    reason: Annotated[str, Field(max_length=dispute_reason_chars_max)] = "general"
    outcome: Literal["won", "lost"] | None = None


class DisputeDelivery(BaseModel):
    """What payments answered to the signed notice (its HTTP status and body)."""

    notice_id: str
    status_code: int
    answer: dict[str, Any]


class PaymentView(BaseModel):
    payment_id: str
    status: PaymentStatus
    amount_minor: int
    currency: str
    received_at: datetime
    settled_at: datetime | None = None
    reason: str = ""


def payment_view(payment: RailPayment) -> PaymentView:
    return PaymentView(
        payment_id=payment.payment_id,
        status=payment.status,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        received_at=payment.received_at,
        settled_at=payment.settled_at,
        reason=payment.reason,
    )


ERRORS = {
    PaymentConflict: ErrorSpec(409, PaymentConflict.code, "Payment exists with different fields"),
    PaymentNotFound: ErrorSpec(404, PaymentNotFound.code, "Payment not found"),
    InvalidNotice: ErrorSpec(401, InvalidNotice.code, "Invalid notice"),
    RailStoreUnavailable: ErrorSpec(503, RailStoreUnavailable.code, "Rail store unavailable"),
    ServiceUnreachable: ErrorSpec(503, "dependency_unreachable", "Dependency unreachable"),
    # The queue redelivers the hand-off; the payee stays sealed until KMS answers again.
    PiiKeyUnavailable: ErrorSpec(503, "pii_key_unavailable", "Encryption key unavailable"),
}
