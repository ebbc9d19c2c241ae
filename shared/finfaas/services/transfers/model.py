"""Transfer orders as the transfers function keeps them: status, steps, events, daily usage; and the
mapping of an order to its saga's input and to transfer.* event data (the store and service share it)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from finfaas.domain.creditor import SealedCreditor
from finfaas.domain.ledger import Account
from finfaas.domain.limits import Tier
from finfaas.domain.risk_rules import RiskRequest
from finfaas.services.risk.model import Lookup

STATE_MACHINE = "transfer"
TRANSFER_ID_PREFIX = "tr_"
transfer_id_hex_chars = 32
steps_max = 40  # a saga records at most a dozen; a loop of operator decisions is bounded too
wait_seconds_max = 30.0  # GET ?wait=: a request parks a function thread at most this long
list_page_size_default = 20
list_page_size_max = 100
# A filtered list page stops after the store has examined this many index entries, full or not
# (has_more then says to go on): a filter matching little never turns one request into a long scan.
list_entries_examined_max = 1000


class TransferStatus(StrEnum):
    ACCEPTED = "ACCEPTED"  # recorded; the saga has not validated it yet
    PROCESSING = "PROCESSING"  # validated and screened; money is being reserved and moved
    AWAITING_REVIEW = "AWAITING_REVIEW"  # an operator must approve or reject it
    NEEDS_ATTENTION = "NEEDS_ATTENTION"  # an operator must say whether to post or void the hold
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"  # nothing moved
    COMPENSATED = "COMPENSATED"  # funds were reserved and released again

    @property
    def terminal(self) -> bool:
        return self in (TransferStatus.COMPLETED, TransferStatus.FAILED, TransferStatus.COMPENSATED)


# Statuses an operator lists and counts (the status index holds only these: a finished transfer
# leaves it); in flight: the saga is working on it, no person is asked.
OPEN_STATUSES = (
    TransferStatus.ACCEPTED,
    TransferStatus.PROCESSING,
    TransferStatus.AWAITING_REVIEW,
    TransferStatus.NEEDS_ATTENTION,
)
IN_FLIGHT_STATUSES = (TransferStatus.ACCEPTED, TransferStatus.PROCESSING)


class TaskKind(StrEnum):
    REVIEW = "review"  # approve | reject, before any money is reserved
    ATTENTION = "attention"  # post | void, with funds on hold


DECISION_REPORTING = "reporting"
DECISION_RECORDED = "recorded"
# Decisions that let money leave the sender's account: above the second-approval amount, two operators.
MONEY_MOVING_DECISIONS = frozenset({"approve", "post"})
DECISIONS: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.REVIEW: ("approve", "reject"),
    TaskKind.ATTENTION: ("post", "void"),
}


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    outcome: str
    at: datetime
    detail: str = ""


@dataclass(frozen=True)
class TransferOrder:
    """A customer's transfer as the transfers function keeps it; `version` guards every change."""

    transfer_id: str
    owner_id: str
    debit_account_id: str
    credit_account_id: str  # the ledger side: the payee's account, or the settlement account
    amount_minor: int
    currency: str
    created_at: datetime
    status: TransferStatus = TransferStatus.ACCEPTED
    updated_at: datetime | None = None
    reference: str = ""
    creditor: SealedCreditor | None = None  # never in the clear: see domain/creditor.py
    version: int = 1
    tier: str | None = None
    usage_day: str | None = None  # set when the day's total was reserved (validated)
    screening: Mapping[str, Any] | None = None
    flags: tuple[str, ...] = ()
    failure: Mapping[str, str] | None = None
    task_token: str | None = None  # the operator decision the saga waits for
    task_kind: TaskKind | None = None
    # The operator's decision for a task: written before it is reported to the saga (DECISION_REPORTING)
    # so a retry after a lost reply reports exactly the same, then marked DECISION_RECORDED.
    decision: Mapping[str, str] | None = None
    # A first operator's money-moving decision above the second-approval amount, waiting for a second,
    # different operator: {token, decision, operator, note, at}; bound to the task token it answers.
    pending_approval: Mapping[str, str] | None = None
    steps: tuple[Step, ...] = ()

    @property
    def external(self) -> bool:
        return self.creditor is not None

    @property
    def destination(self) -> str:
        """What risk knows the payee by: the payee's keyed fingerprint, or the account id here."""
        return self.creditor.fingerprint if self.creditor else self.credit_account_id

    def identity(self) -> dict[str, Any]:
        """What a repeated request must repeat exactly."""
        return {
            "owner_id": self.owner_id,
            "debit_account_id": self.debit_account_id,
            "credit_account_id": self.credit_account_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "reference": self.reference,
            "creditor": self.creditor.identity() if self.creditor else None,
        }

    def changed(self, now: datetime, step: Step | None = None, **changes: Any) -> TransferOrder:
        """The next version, with a step appended to the history."""
        steps = self.steps if step is None else (*self.steps, step)[-steps_max:]
        return replace(self, version=self.version + 1, updated_at=now, steps=steps, **changes)


@dataclass(frozen=True)
class OrderFilter:
    """Which orders a list keeps: any of `statuses` (none: every status), touching `account_id` (the
    debit account or the payee's account here), created strictly between the two moments."""

    statuses: frozenset[TransferStatus] = frozenset()
    account_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def matches(self, order: TransferOrder) -> bool:
        if self.statuses and order.status not in self.statuses:
            return False
        if self.account_id is not None and self.account_id not in payee_and_debit(order):
            return False
        if self.created_after is not None and order.created_at <= self.created_after:
            return False
        return self.created_before is None or order.created_at < self.created_before


def payee_and_debit(order: TransferOrder) -> tuple[str, ...]:
    """The accounts here a transfer touches that its owner may filter on (never the settlement account)."""
    return (order.debit_account_id,) if order.external else (order.debit_account_id, order.credit_account_id)


@dataclass(frozen=True)
class ListPosition:
    """Where a list resumes: after the order created at `created_at` with id `transfer_id`."""

    created_at: datetime
    transfer_id: str


@dataclass(frozen=True)
class OrderPage:
    """A page of orders and where the next one starts (None: the list ends here)."""

    orders: tuple[TransferOrder, ...]
    resume_after: ListPosition | None


@dataclass(frozen=True)
class StatusCount:
    """Orders counted under a status; `complete` is False when counting stopped at its bound."""

    count: int
    complete: bool = True


@dataclass(frozen=True)
class OrderEvent:
    """An outbox event written with an order change (transfer.*)."""

    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class DailyUsage:
    """The amount counted against the owner's UTC day in one currency."""

    owner_id: str
    day: str
    currency: str
    amount_minor: int
    headroom_minor: int  # the most the day's total may be before this amount is added


class UsageOutcome(StrEnum):
    RESERVED = "RESERVED"
    EXCEEDED = "EXCEEDED"
    CONFLICT = "CONFLICT"  # the order's version moved: read again
    # The risk decision carried in the write no longer holds (its customer's hour was counted into since
    # it was read, or it was recorded alone meanwhile): nothing written; screen the usual way, then save.
    SCREENING_MOVED = "SCREENING_MOVED"


@dataclass(frozen=True)
class AccountInfo:
    account_id: str
    owner_id: str
    currency: str
    kind: str
    status: str

    @classmethod
    def of(cls, account: Account) -> AccountInfo:
        """What validation needs of a ledger account."""
        return cls(account.account_id, account.owner_id, account.currency, account.kind.value,
                   account.status.value)


@dataclass(frozen=True)
class ValidationFacts:
    """What validation decides on, read together: the accounts found, the owner's tier and, when asked
    for, the day's total so far in the order's currency."""

    accounts: Mapping[str, AccountInfo]
    tier: Tier
    day_total_minor: int = 0
    order: TransferOrder | None = None  # when asked for by id
    risk: Lookup | None = None  # risk's lookup, when a screening was asked for and the store reads it


@dataclass(frozen=True)
class Screening:
    """What risk looks up for a transfer (its amount plays no part), and the hour window it counts in."""

    request: RiskRequest
    window: str


@dataclass(frozen=True)
class ValidationHint:
    """What the saga's input says of a transfer: whose it is, its accounts and currency."""

    owner_id: str
    account_ids: tuple[str, ...]
    currency: str

    def matches(self, order: TransferOrder) -> bool:
        accounts = (order.debit_account_id, order.credit_account_id)
        return (order.owner_id, order.currency) == (self.owner_id, self.currency) and all(
            account_id in self.account_ids for account_id in accounts)


@dataclass(frozen=True)
class Acceptance:
    """A POST /transfers answered: the order as accepted, and whether an earlier request made it."""

    order: TransferOrder
    repeated: bool


@dataclass(frozen=True)
class StatusAnswer:
    """A GET /transfers/{id} answered: the order, and whether it was asked to wait but every waiting
    slot of the process was taken (so it answered at once and the client should come back later)."""

    order: TransferOrder
    busy: bool = False


def transfer_id_for(owner_id: str, idempotency_key: str) -> str:
    """Derived from (owner, Idempotency-Key): a retry after any crash lands on the same transfer."""
    digest = hashlib.sha256(f"{owner_id}\x00{idempotency_key}".encode()).hexdigest()
    return TRANSFER_ID_PREFIX + digest[:transfer_id_hex_chars]


def saga_input(order: TransferOrder) -> dict[str, Any]:
    """The execution's input: everything the ledger and rail steps need, nothing they may not see.
    The payee travels sealed (only the rail opens it) with its masked display form."""
    creditor = order.creditor.in_flight() if order.creditor is not None else None
    return {
        "transfer_id": order.transfer_id,
        "owner_id": order.owner_id,
        "debit_account_id": order.debit_account_id,
        "credit_account_id": order.credit_account_id,
        "amount_minor": order.amount_minor,
        "currency": order.currency,
        "external": order.external,
        "creditor": creditor,
    }


def event_data(order: TransferOrder, failure: Mapping[str, str] | None = None) -> dict[str, Any]:
    """transfer.* event data (events/schemas): amounts as decimal strings so no reader rounds them."""
    data: dict[str, Any] = {
        "transfer_id": order.transfer_id,
        "debit_account_id": order.debit_account_id,
        "credit_account_id": order.credit_account_id,
        "amount_minor": str(order.amount_minor),
        "currency": order.currency,
    }
    if order.creditor is not None:
        data["creditor"] = order.creditor.masked()
    if failure is not None:
        data["failure"] = dict(failure)
    return data
