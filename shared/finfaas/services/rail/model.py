"""Payments as the rail keeps them: their status and what the sandbox plans to do with them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from finfaas.domain.creditor import SealedCreditor


class PaymentStatus(StrEnum):
    ACCEPTED = "ACCEPTED"  # the bank has it and has not settled it yet
    SETTLED = "SETTLED"  # money left: final
    REJECTED = "REJECTED"  # final, nothing moved
    CANCELLED = "CANCELLED"  # recalled before settling (or never received): final, it never settles

    @property
    def final(self) -> bool:
        return self is not PaymentStatus.ACCEPTED


class Plan(StrEnum):
    """What the sandbox will do with a payment, decided when it arrives."""

    SETTLE = "settle"
    REJECT = "reject"
    LOSE_NOTICE = "lose_notice"  # settles, but the notice never arrives
    STUCK = "stuck"  # never settles on its own
    NONE = "none"  # a recall tombstone


@dataclass(frozen=True)
class RailPayment:
    payment_id: str
    amount_minor: int
    currency: str
    creditor: SealedCreditor | None  # opened only while the payment is submitted
    status: PaymentStatus
    plan: Plan
    received_at: datetime
    settle_at: datetime | None = None
    settled_at: datetime | None = None
    reason: str = ""
    task_token: str | None = None  # the adapter's: whom to tell when the bank says it settled
    version: int = 1

    def identity(self) -> tuple[Any, ...]:
        return (self.amount_minor, self.currency, self.creditor)

    def next(self, **changes: Any) -> RailPayment:
        return replace(self, version=self.version + 1, **changes)
