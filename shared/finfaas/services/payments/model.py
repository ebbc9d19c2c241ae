"""Merchants as the payments capability keeps them, and the ledger accounts each one owns."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from finfaas.domain.payments import FeeSchedule

merchant_id_chars_max = 40  # leaves room in a 64-character ledger account id for prefix and purpose
capture_window_seconds_default = 7 * 24 * 3600
capture_window_seconds_max = 30 * 24 * 3600  # within the ledger's longest hold
account_number_visible_chars = 4
MERCHANT_ACCOUNT_PREFIX = "mrc"


class MerchantStatus(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


@dataclass(frozen=True, slots=True)
class SettlementAccount:
    """Where the merchant is paid out, on the rail: a bank code, an account number and a name."""

    bank_code: str
    account_number: str
    name: str

    def masked(self) -> dict[str, str]:
        """The bank code, `****` and at most the account number's last four characters."""
        tail = self.account_number[-account_number_visible_chars:]
        return {"bank_code": self.bank_code, "account_number": f"****{tail}", "name": self.name}


@dataclass(frozen=True, slots=True)
class MerchantAccounts:
    """The merchant's ledger accounts: N receivable shards, the rolling reserve, the fees payable."""

    receivables: tuple[str, ...]
    reserve: str
    fees_payable: str

    @classmethod
    def of(cls, merchant_id: str, receivable_shards: int) -> MerchantAccounts:
        base = f"{MERCHANT_ACCOUNT_PREFIX}-{merchant_id}"
        return cls(tuple(f"{base}-recv-{k}" for k in range(receivable_shards)), f"{base}-reserve",
                   f"{base}-fees")

    def all(self) -> tuple[str, ...]:
        return (*self.receivables, self.reserve, self.fees_payable)


@dataclass(frozen=True, slots=True)
class Merchant:
    merchant_id: str
    name: str
    currency: str
    settlement: SettlementAccount
    fees: FeeSchedule
    reserve_bps: int
    capture_window_seconds: int
    receivable_shards: int
    status: MerchantStatus
    created_at: datetime
    updated_at: datetime | None = None
    version: int = 1

    @property
    def accounts(self) -> MerchantAccounts:
        return MerchantAccounts.of(self.merchant_id, self.receivable_shards)

    def same_terms(self, other: Merchant) -> bool:
        """Whether other asks for this merchant as onboarded (status, times and version aside)."""
        return replace(other, status=self.status, created_at=self.created_at, updated_at=self.updated_at,
                       version=self.version) == self

    def deactivated(self, now: datetime) -> Merchant:
        return replace(self, status=MerchantStatus.INACTIVE, updated_at=now, version=self.version + 1)


@dataclass(frozen=True)
class MerchantBalance:
    """What the merchant's accounts hold: posted and held receivables summed over the shards."""

    merchant: Merchant
    posted_minor: int
    pending_minor: int
    reserve_minor: int
    fees_payable_minor: int
    shards: tuple[tuple[str, int], ...]


# --- payment intents ---------------------------------------------------------------------------------

PAYMENT_ID_PREFIX = "pi_"
payment_id_hex_chars = 24
metadata_entries_max = 20
metadata_key_chars_max = 40
metadata_value_chars_max = 500
statement_descriptor_chars_max = 22
refunds_per_payment_max = 50  # the intent's item stays far below DynamoDB's 400 KB
refund_number_chars_max = 40
ledger_id_tag_chars = 8  # of the request's write id, in each ledger transfer id (at most 42 characters)
# payment_intent.capture_expiring goes out this long before capture_before (at the first expiry run after
# confirmation when the capture window is shorter).
capture_expiry_warning_seconds = 24 * 3600


def payment_id_for(owner_id: str, idempotency_key: str) -> str:
    """The intent's id, derived from the caller and its Idempotency-Key: a repeat finds the same intent."""
    digest = hashlib.sha256(f"{owner_id}\x00{idempotency_key}".encode()).hexdigest()
    return PAYMENT_ID_PREFIX + digest[:payment_id_hex_chars]


class CaptureMethod(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class IntentStatus(StrEnum):
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_CAPTURE = "requires_capture"
    PARTIALLY_CAPTURED = "partially_captured"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (IntentStatus.SUCCEEDED, IntentStatus.CANCELED)


class CancellationReason(StrEnum):
    REQUESTED_BY_CUSTOMER = "requested_by_customer"
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    ABANDONED = "abandoned"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class LedgerStep:
    """One ledger transfer behind an intent: its kind (hold, capture, release) and id."""

    kind: str
    transfer_id: str
    amount_minor: int


class RefundReason(StrEnum):
    REQUESTED_BY_CUSTOMER = "requested_by_customer"
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"


@dataclass(frozen=True, slots=True)
class Refund:
    """Money given back to the paying account, under the client's refund number (unique per payment)."""

    refund_number: str
    amount_minor: int
    fee_refunded_minor: int  # the application fee's share given back, by domain.payments' rule
    reason: RefundReason
    transfer_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    payment_id: str
    owner_id: str  # the customer whose account pays
    customer_account_id: str
    merchant_id: str
    receivable_account_id: str  # the merchant's shard this payment credits
    amount_minor: int
    currency: str
    capture_method: CaptureMethod
    application_fee_minor: int
    created_at: datetime
    status: IntentStatus = IntentStatus.REQUIRES_CONFIRMATION
    metadata: Mapping[str, str] = field(default_factory=dict)
    statement_descriptor: str = ""
    confirm: bool = False  # confirmed by the creating request itself (Stripe's confirm=true)
    amount_capturable_minor: int = 0
    amount_received_minor: int = 0
    amount_refunded_minor: int = 0
    captures: int = 0
    hold_id: str | None = None  # the hold now carrying what is capturable
    capture_before: datetime | None = None
    cancellation_reason: CancellationReason | None = None
    risk: Mapping[str, object] | None = None
    ledger: tuple[LedgerStep, ...] = ()
    refunds: tuple[Refund, ...] = ()
    fee_refunded_minor: int = 0
    expiry_warned_at: datetime | None = None  # when payment_intent.capture_expiring was written (once)
    updated_at: datetime | None = None
    version: int = 1
    write_id: str = ""  # which request wrote this version: its own lost answer is told from a rival's

    @property
    def capturable(self) -> bool:
        return self.status in (IntentStatus.REQUIRES_CAPTURE, IntentStatus.PARTIALLY_CAPTURED)

    def expiry_due_at(self) -> datetime | None:
        """When the expiry job next has something to do with this intent: warn (capture_before less the
        warning's lead, until warned), then expire (capture_before); None once nothing is capturable."""
        if not self.capturable or self.capture_before is None:
            return None
        if self.expiry_warned_at is None:
            return self.capture_before - timedelta(seconds=capture_expiry_warning_seconds)
        return self.capture_before

    def request_fields(self) -> tuple[object, ...]:
        """What the creating request fixed: a repeat of its key must ask for exactly this."""
        return (self.owner_id, self.customer_account_id, self.merchant_id, self.amount_minor, self.currency,
                self.capture_method, self.application_fee_minor, dict(self.metadata),
                self.statement_descriptor, self.confirm)

    def changed(self, now: datetime, **changes: object) -> PaymentIntent:
        return replace(self, updated_at=now, version=self.version + 1, **changes)  # type: ignore[arg-type]

    def refund(self, refund_number: str) -> Refund | None:
        return next((r for r in self.refunds if r.refund_number == refund_number), None)

    def ledger_id(self, kind: str, n: int, write_id: str) -> str:
        """A ledger transfer id of this intent's n-th step of a kind (h hold, c capture, v release), made
        by the request write_id: a retry of that request finds its own transfer, and a rival request,
        deciding from the same version, never takes the same id."""
        return f"{self.payment_id}-{kind}{n}-{write_id[:ledger_id_tag_chars]}"


@dataclass(frozen=True, slots=True)
class IntentFilter:
    """Which intents a list shows: one merchant's or one owner's (or both), optionally by status and by
    creation time (created_gte inclusive, created_lt exclusive)."""

    merchant_id: str | None = None
    owner_id: str | None = None
    status: IntentStatus | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None


@dataclass(frozen=True, slots=True)
class IntentPage:
    """A page, newest first, and the store's key to resume after it (None: the last page)."""

    intents: list[PaymentIntent]
    last_key: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class IntentEvent:
    """An event for integrators, written with the change it reports (payment_intent.*, refund.*)."""

    type: str
    data: Mapping[str, object]


def intent_event(intent: PaymentIntent, event_type: str) -> IntentEvent:
    """payment_intent.<status>: the intent's amounts (strings of minor units) after the change."""
    return IntentEvent(event_type, {
        "payment_intent": intent.payment_id, "status": intent.status.value, "merchant_id": intent.merchant_id,
        "amount_minor": str(intent.amount_minor), "currency": intent.currency,
        "amount_capturable_minor": str(intent.amount_capturable_minor),
        "amount_received_minor": str(intent.amount_received_minor),
        "amount_refunded_minor": str(intent.amount_refunded_minor),
        "application_fee_minor": str(intent.application_fee_minor),
        **({"cancellation_reason": intent.cancellation_reason.value} if intent.cancellation_reason else {}),
    })


def expiring_event(intent: PaymentIntent) -> IntentEvent:
    """payment_intent.capture_expiring: the intent's amounts and the capture_before its hold ends at."""
    assert intent.capture_before is not None
    warning = intent_event(intent, "payment_intent.capture_expiring")
    return IntentEvent(warning.type, {**warning.data, "capture_before": intent.capture_before.isoformat()})


def refund_event(intent: PaymentIntent, refund: Refund) -> IntentEvent:
    return IntentEvent("refund.created", {
        "payment_intent": intent.payment_id, "refund_number": refund.refund_number,
        "merchant_id": intent.merchant_id, "amount_minor": str(refund.amount_minor),
        "currency": intent.currency,
        "application_fee_refunded_minor": str(refund.fee_refunded_minor), "reason": refund.reason.value,
        "transfer_id": refund.transfer_id, "status": "succeeded",
    })


@dataclass(frozen=True, slots=True)
class ExpiryRun:
    """What one run of the expiry job did: the intents it expired and warned (each by this run's own write;
    one a rival run settled first is in neither), those it could not settle now, and how many it read."""

    expired: tuple[str, ...]
    warned: tuple[str, ...]
    failed: tuple[str, ...]
    examined: int
