"""Merchants as the payments capability keeps them, and the ledger accounts each one owns."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from finfaas.domain.creditor import SealedCreditor
from finfaas.domain.ledger import Account
from finfaas.domain.payments import FeeSchedule, reserve_period_days_default
from finfaas.services.risk.model import Lookup

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
    # Business days the rolling reserve is held before a settlement releases it (merchants onboarded
    # before the setting existed read the default).
    reserve_period_days: int = reserve_period_days_default

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


class RefundStatus(StrEnum):
    PENDING = "pending"  # on its way through the rail: counted as refunded until the rail refuses it
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the rail refused it: reversed in the ledger, refunded no more


@dataclass(frozen=True, slots=True)
class Refund:
    """Money given back under the client's refund number (unique per payment): to the paying account at
    once, or to a bank account through the rail (`bank_account` set; pending until the rail settles)."""

    refund_number: str
    amount_minor: int
    fee_refunded_minor: int  # the application fee's share given back, by domain.payments' rule
    reason: RefundReason
    transfer_id: str
    created_at: datetime
    status: RefundStatus = RefundStatus.SUCCEEDED
    bank_account: SealedCreditor | None = None  # sealed under transfer_id, the rail's payment id
    reversal_id: str | None = None  # the ledger transfer that gave a failed refund back to the merchant
    failure: str = ""
    # An operator who ended a refund the rail left unknown, and why (what the rail said when asked).
    resolved_by: str = ""
    resolution_reason: str = ""

    @property
    def counted(self) -> bool:
        """Whether it counts as refunded (a failed one was given back)."""
        return self.status is not RefundStatus.FAILED


resolution_chars_max = 500  # an operator's reason for ending a rail outcome by hand


class RailOutcome(StrEnum):
    """What an operator learnt from the rail about a refund or payout whose outcome stayed unknown."""

    SETTLED = "settled"  # the rail paid it out
    FAILED = "failed"  # the rail did not pay it and will not: the money goes back


@dataclass(frozen=True, slots=True)
class Resolution:
    """An operator's end to a rail outcome: who (the token's subject) and why."""

    operator: str
    reason: str


class DisputeStatus(StrEnum):
    NEEDS_RESPONSE = "needs_response"  # opened by the rail: the money and the fee left the merchant
    UNDER_REVIEW = "under_review"  # the merchant sent evidence; the rail decides
    WON = "won"  # the amount came back to the merchant (the fee did not)
    LOST = "lost"  # by the rail's decision or the merchant's acceptance

    @property
    def closed(self) -> bool:
        return self in (DisputeStatus.WON, DisputeStatus.LOST)


dispute_id_chars_max = 64
disputes_per_payment_max = 10  # a payment is disputed once or twice in practice; the item stays small
evidence_chars_max = 4_000
dispute_reason_chars_max = 64


@dataclass(frozen=True, slots=True)
class Dispute:
    """A chargeback the rail opened on a payment: the amount and a fee taken from the merchant's account
    (`source_account_id`) in one ledger transaction with the dispute; won, the amount goes back there."""

    dispute_id: str
    amount_minor: int
    fee_minor: int
    reason: str
    status: DisputeStatus
    source_account_id: str
    transfer_ids: tuple[str, ...]  # the amount's and the fee's legs
    created_at: datetime
    evidence: str = ""
    accepted: bool = False  # lost because the merchant accepted it
    reinstated_transfer_id: str | None = None
    updated_at: datetime | None = None


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
    disputes: tuple[Dispute, ...] = ()
    expiry_warned_at: datetime | None = None  # when payment_intent.capture_expiring was written (once)
    last_payment_error: str | None = None  # why the latest confirmation was refused (payment_failed)
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

    def dispute(self, dispute_id: str) -> Dispute | None:
        return next((d for d in self.disputes if d.dispute_id == dispute_id), None)

    @property
    def amount_disputed_minor(self) -> int:
        """What disputes took from the merchant and did not give back (open or lost): never refundable."""
        return sum(d.amount_minor for d in self.disputes if d.status is not DisputeStatus.WON)

    @property
    def amount_lost_minor(self) -> int:
        return sum(d.amount_minor for d in self.disputes if d.status is DisputeStatus.LOST)

    def with_dispute(self, dispute: Dispute) -> tuple[Dispute, ...]:
        """The disputes with this one replacing its earlier state (or added)."""
        if self.dispute(dispute.dispute_id) is None:
            return (*self.disputes, dispute)
        return tuple(dispute if d.dispute_id == dispute.dispute_id else d for d in self.disputes)

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


def refund_event(intent: PaymentIntent, refund: Refund, event_type: str = "refund.created") -> IntentEvent:
    """refund.created|updated|failed: the refund after the change (a rail refund says where it goes)."""
    return IntentEvent(event_type, {
        "payment_intent": intent.payment_id, "refund_number": refund.refund_number,
        "merchant_id": intent.merchant_id, "amount_minor": str(refund.amount_minor),
        "currency": intent.currency,
        "application_fee_refunded_minor": str(refund.fee_refunded_minor), "reason": refund.reason.value,
        "transfer_id": refund.transfer_id, "status": refund.status.value,
        **({"destination": "bank_account"} if refund.bank_account is not None else {}),
        **({"reversal_transfer_id": refund.reversal_id} if refund.reversal_id else {}),
        **({"failure_reason": refund.failure} if refund.failure else {}),
        **({"resolved_by": refund.resolved_by, "resolution_reason": refund.resolution_reason}
           if refund.resolved_by else {}),
    })


def dispute_event(intent: PaymentIntent, dispute: Dispute, event_type: str) -> IntentEvent:
    """dispute.created|updated|closed: the dispute after the change and the payment's totals."""
    return IntentEvent(event_type, {
        "payment_intent": intent.payment_id, "dispute_id": dispute.dispute_id,
        "merchant_id": intent.merchant_id, "status": dispute.status.value,
        "amount_minor": str(dispute.amount_minor), "fee_minor": str(dispute.fee_minor),
        "currency": intent.currency, "reason": dispute.reason,
        "amount_received_minor": str(intent.amount_received_minor),
        "amount_refunded_minor": str(intent.amount_refunded_minor),
        "amount_disputed_minor": str(intent.amount_disputed_minor),
        **({"reinstated_transfer_id": dispute.reinstated_transfer_id}
           if dispute.reinstated_transfer_id else {}),
    })


@dataclass(frozen=True, slots=True)
class ExpiryRun:
    """What one run of the expiry job did: the intents it expired and warned (each by this run's own write;
    one a rival run settled first is in neither), those it could not settle now, and how many it read."""

    expired: tuple[str, ...]
    warned: tuple[str, ...]
    failed: tuple[str, ...]
    examined: int


# --- merchant settlement ---------------------------------------------------------------------------------

SETTLEMENT_TRANSFER_PREFIX = "stl"


class SettlementStatus(StrEnum):
    PLANNED = "planned"  # the cut and the legs are stored; the ledger moves may not all have committed
    PAID = "paid"  # every leg committed; payout.paid written with this status


@dataclass(frozen=True, slots=True)
class SettlementLeg:
    """One ledger transfer of a settlement: its id derives from the merchant, the date and its place."""

    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    purpose: str  # fees, reserve, payout


@dataclass(frozen=True, slots=True)
class Settlement:
    """One merchant's settlement of one business date: what the receivable shards took in since the
    previous cut, by kind, and where it went.
    captures - refunds - fees - dispute_losses - reserve + reserve_released = payout."""

    merchant_id: str
    business_date: date
    currency: str
    status: SettlementStatus
    cut_at: datetime  # entries committed up to here are in this settlement, later ones in the next
    cuts: tuple[tuple[str, str], ...]  # (shard, newest entry key settled) per shard
    captures_minor: int
    refunds_minor: int
    fees_minor: int  # application fees collected (net of fee refunds); negative: given back
    fees_carried_minor: int  # fees the net could not cover, left to a later settlement
    dispute_losses_minor: int  # disputed amounts and dispute fees less amounts won back
    reserve_minor: int
    payout_minor: int
    entries: int  # ledger entries settled
    legs: tuple[SettlementLeg, ...]
    created_at: datetime
    paid_at: datetime | None = None
    version: int = 1
    payout_status: str = ""  # the rail's answer about the payout: "" (none yet, or no payout), paid, failed
    payout_reversal_id: str | None = None  # a failed payout's way back to the merchant's reserve
    # An operator who ended a payout the rail left unknown, and why.
    payout_resolved_by: str = ""
    payout_resolution_reason: str = ""
    # The rolling reserve released to the merchant with this payout: what earlier settlements withheld on
    # the dates after `reserve_released_after` up to `reserve_released_through` (due: their reserves;
    # released: as much of it as the reserve account held, disputes having drawn on it).
    reserve_released_minor: int = 0
    reserve_due_minor: int = 0
    reserve_released_after: date | None = None
    reserve_released_through: date | None = None

    @property
    def payout_rail_id(self) -> str:
        """The payout's payment id on the rail (and its saga's execution name)."""
        return f"{SETTLEMENT_TRANSFER_PREFIX}-{self.merchant_id}-{self.business_date:%Y%m%d}-po"

    @property
    def payout_in_transit(self) -> bool:
        return self.status is SettlementStatus.PAID and self.payout_minor > 0 and not self.payout_status

    @property
    def reconciles(self) -> bool:
        return (self.captures_minor - self.refunds_minor - self.fees_minor - self.dispute_losses_minor
                - self.reserve_minor + self.reserve_released_minor) == self.payout_minor

    def paid(self, now: datetime) -> Settlement:
        return replace(self, status=SettlementStatus.PAID, paid_at=now, version=self.version + 1)


def settlement_transfer_id(merchant_id: str, business_date: date, n: int) -> str:
    return f"{SETTLEMENT_TRANSFER_PREFIX}-{merchant_id}-{business_date:%Y%m%d}-{n}"


def payout_event(settlement: Settlement, event_type: str) -> IntentEvent:
    """payout.paid|failed: the settlement's figures (strings of minor units)."""
    return IntentEvent(event_type, {
        "merchant_id": settlement.merchant_id, "business_date": settlement.business_date.isoformat(),
        "currency": settlement.currency, "status": settlement.status.value,
        "captures_minor": str(settlement.captures_minor), "refunds_minor": str(settlement.refunds_minor),
        "fees_minor": str(settlement.fees_minor),
        "dispute_losses_minor": str(settlement.dispute_losses_minor),
        "reserve_minor": str(settlement.reserve_minor), "payout_minor": str(settlement.payout_minor),
        "reserve_released_minor": str(settlement.reserve_released_minor),
        "cut_at": settlement.cut_at.isoformat(),
        **({"resolved_by": settlement.payout_resolved_by,
            "resolution_reason": settlement.payout_resolution_reason}
           if settlement.payout_resolved_by else {}),
    })


@dataclass(frozen=True, slots=True)
class RunProgress:
    """How far the daily settlement run of a business date got: merchants up to `after` are settled."""

    business_date: date
    after: str
    done: bool
    version: int


@dataclass(frozen=True, slots=True)
class SettlementRun:
    """What one tick of the daily settlement run did."""

    business_date: date
    settled: tuple[str, ...]
    failed: tuple[str, ...]
    done: bool


@dataclass(frozen=True)
class PaymentFacts:
    """What a payment created and confirmed at once decides on, read together: its merchant, its paying
    account and risk's lookup of it (None: not asked for, or the store reads no risk items)."""

    merchant: Merchant | None
    account: Account | None
    risk: Lookup | None = None
