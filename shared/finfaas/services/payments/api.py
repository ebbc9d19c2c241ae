"""The payments function's HTTP shapes: request bodies, views and the error table."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)

from finfaas.domain.ledger import page_size_default, page_size_max
from finfaas.domain.money import currency_exponent, transfer_amount_minor_max
from finfaas.domain.payments import (
    Rounding,
    fee_bps_max,
    fee_fixed_minor_max,
    receivable_shards_default,
    receivable_shards_max,
    reserve_bps_max,
    reserve_period_days_default,
    reserve_period_days_max,
)
from finfaas.platform.cursors import cursor_chars_max
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.platform.http.transactional import KeyInTransaction as PlatformKeyInTransaction
from finfaas.platform.idempotency import IdempotencyKeyReused
from finfaas.platform.pii import PiiKeyUnavailable
from finfaas.services.ledger.api import BoundedAmount, ledger_error_table
from finfaas.services.payments.errors import (
    AuthorizationExpired,
    CurrencyMismatch,
    CustomerAccountNotFound,
    DisputeClosed,
    DisputeExists,
    DisputeNotFound,
    FeeExceedsAmount,
    IntentBusy,
    IntentExists,
    IntentListUnbounded,
    IntentNotFound,
    InvalidRailNotice,
    MerchantAccountsConflict,
    MerchantBusy,
    MerchantExists,
    MerchantInactive,
    MerchantNotFound,
    PaymentDeclined,
    PaymentsStoreUnavailable,
    RefundExists,
    RefundNotFound,
    RefundSagaNotStarted,
    RiskUnavailable,
    SettlementDateInFuture,
    SettlementNotFound,
    SettlementOutOfOrder,
    SettlementWindowTooLarge,
    UnexpectedState,
)
from finfaas.services.payments.model import (
    CancellationReason,
    CaptureMethod,
    Dispute,
    DisputeStatus,
    ExpiryRun,
    IntentStatus,
    Merchant,
    MerchantBalance,
    MerchantStatus,
    PaymentIntent,
    RailOutcome,
    Refund,
    RefundReason,
    Settlement,
    SettlementStatus,
    capture_window_seconds_default,
    capture_window_seconds_max,
    dispute_id_chars_max,
    dispute_reason_chars_max,
    evidence_chars_max,
    merchant_id_chars_max,
    metadata_entries_max,
    metadata_key_chars_max,
    metadata_value_chars_max,
    refund_number_chars_max,
    resolution_chars_max,
    statement_descriptor_chars_max,
)
from finfaas.services.suite_clients import ServiceUnreachable
from finfaas.services.transfers.api import CreditorBody, SagaError

merchant_name_chars_max = 140
BANK_CODE_PATTERN = r"^[A-Z0-9]{4,11}$"
BANK_ACCOUNT_PATTERN = r"^[A-Za-z0-9]{4,34}$"

IDENTIFIER_PATTERN = r"^[A-Za-z0-9_-]+$"
MerchantId = Annotated[str, Field(min_length=1, max_length=merchant_id_chars_max, pattern=IDENTIFIER_PATTERN)]
Currency = Annotated[StrictStr, Field(min_length=3, max_length=3, description="ISO 4217 code, e.g. USD")]
identifier_chars_max = 64
Identifier = Annotated[str, Field(min_length=1, max_length=identifier_chars_max, pattern=IDENTIFIER_PATTERN)]
Amount = BoundedAmount
MinorUnits = Annotated[StrictInt, Field(ge=0, le=transfer_amount_minor_max)]
PositiveMinorUnits = Annotated[StrictInt, Field(ge=1, le=transfer_amount_minor_max)]


class SettlementAccountBody(StrictModel):
    """The merchant's bank account on the rail, where payouts go."""

    bank_code: Annotated[str, Field(pattern=BANK_CODE_PATTERN)]
    account_number: Annotated[str, Field(pattern=BANK_ACCOUNT_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=merchant_name_chars_max)]


class FeeScheduleBody(StrictModel):
    """bps of each captured amount, rounded by `rounding` to a minor unit, plus fixed_minor."""

    bps: Annotated[StrictInt, Field(ge=0, le=fee_bps_max)]
    fixed_minor: Annotated[StrictInt, Field(ge=0, le=fee_fixed_minor_max)] = 0
    rounding: Rounding = Rounding.HALF_EVEN


class OnboardBody(StrictModel):
    """A merchant to onboard; merchant_id is the caller's, so onboarding again finds it."""

    merchant_id: MerchantId
    name: Annotated[str, Field(min_length=1, max_length=merchant_name_chars_max)]
    currency: Currency
    settlement_account: SettlementAccountBody
    fee_schedule: FeeScheduleBody
    reserve_bps: Annotated[StrictInt, Field(ge=0, le=reserve_bps_max,
                                            description="rolling reserve, basis points of each capture")] = 0
    reserve_period_days: Annotated[StrictInt, Field(
        ge=0, le=reserve_period_days_max,
        description="business days a settlement's reserve is held before a later settlement pays it out")
    ] = reserve_period_days_default
    capture_window_seconds: Annotated[StrictInt, Field(
        ge=60, le=capture_window_seconds_max,
        description="how long an authorization may wait for its capture")] = capture_window_seconds_default
    receivable_shards: Annotated[StrictInt, Field(
        ge=1, le=receivable_shards_max,
        description="receivable sub-accounts captures spread over")] = receivable_shards_default


class NewIntentBody(StrictModel):
    """A payment from a customer's account to a merchant. Without application_fee_amount the merchant's
    fee schedule prices it."""

    amount: Amount
    currency: Currency
    customer_account_id: Identifier
    merchant_id: MerchantId
    capture_method: CaptureMethod = CaptureMethod.AUTOMATIC
    application_fee_amount: MinorUnits | None = None
    metadata: Annotated[dict[Annotated[str, Field(min_length=1, max_length=metadata_key_chars_max)],
                             Annotated[str, Field(max_length=metadata_value_chars_max)]],
                        Field(max_length=metadata_entries_max)] = Field(default_factory=dict)
    statement_descriptor: Annotated[str, Field(max_length=statement_descriptor_chars_max,
                                               pattern=r"^[A-Za-z0-9 .,*_-]*$")] = ""
    confirm: StrictBool = Field(default=False, description=(
        "confirm in the same request: risk check, then the hold (manual capture) or the payment "
        "(automatic capture), in one ledger transaction with the new intent"))


class CaptureBody(StrictModel):
    """Capture all that is capturable, or amount_to_capture of it; a non-final capture keeps the rest
    capturable, a final one releases it."""

    amount_to_capture: PositiveMinorUnits | None = None
    final_capture: StrictBool = True


class RefundBody(StrictModel):
    """A refund to the paying account: all that is refundable, or `amount`. refund_number is the
    client's, unique per payment: sending it again refunds once."""

    refund_number: Annotated[str, Field(min_length=1, max_length=refund_number_chars_max,
                                        pattern=IDENTIFIER_PATTERN)]
    amount: Amount | None = None
    currency: Currency | None = Field(default=None, description="when given, the intent's currency")
    reason: RefundReason = RefundReason.REQUESTED_BY_CUSTOMER
    bank_account: CreditorBody | None = Field(
        default=None, description="when given, the refund goes to this bank account through the rail "
                                  "(pending until it settles) instead of the paying account")


class RefundStepBody(StrictModel):
    """The rail refund saga's step: which refund of which payment."""

    payment_intent: Identifier
    refund_number: Annotated[str, Field(min_length=1, max_length=refund_number_chars_max,
                                        pattern=IDENTIFIER_PATTERN)]


class RefundFailBody(RefundStepBody):
    error: SagaError


class PayoutStepBody(StrictModel):
    """The payout saga's step: which merchant's settlement of which business date (its error, if any,
    is the saga's and not needed: the step's answer is the same)."""

    merchant_id: Identifier
    business_date: date
    error: SagaError | None = None


class RailOutcomeBody(StrictModel):
    """An operator's end to a rail refund or payout whose outcome stayed unknown, after asking the rail."""

    outcome: RailOutcome = Field(description="settled: the rail paid it out; failed: it did not and will "
                                             "not (the money goes back to the merchant)")
    reason: Annotated[str, Field(min_length=1, max_length=resolution_chars_max,
                                 description="what the rail said, for the record")]


DISPUTE_OPENED, DISPUTE_CLOSED = "dispute.opened", "dispute.closed"


class DisputeNotice(BaseModel):
    """The rail's signed notice about a chargeback on a payment: opened (with its amount), or closed
    with the rail's decision (`outcome` won or lost)."""

    kind: Literal["dispute.opened", "dispute.closed"]
    dispute_id: Annotated[str, Field(min_length=1, max_length=dispute_id_chars_max,
                                     pattern=IDENTIFIER_PATTERN)]
    payment_intent: Identifier
    amount_minor: Annotated[StrictInt, Field(ge=1, le=transfer_amount_minor_max)]
    currency: Currency
    reason: Annotated[str, Field(max_length=dispute_reason_chars_max)] = "general"
    outcome: Literal["won", "lost"] | None = None


class EvidenceBody(StrictModel):
    """The merchant's answer to a dispute (text the rail forwards to the card issuer)."""

    evidence: Annotated[str, Field(min_length=1, max_length=evidence_chars_max)]


class CancelBody(StrictModel):
    cancellation_reason: CancellationReason = CancellationReason.REQUESTED_BY_CUSTOMER


class IntentListQuery(StrictModel):
    """Newest first. An app names a merchant_id or a customer (a customer sees only its own intents)."""

    merchant_id: MerchantId | None = None
    customer: Identifier | None = Field(default=None, description="the paying customer's id")
    status: IntentStatus | None = None
    created_gte: AwareDatetime | None = None
    created_lt: AwareDatetime | None = None
    limit: int = Field(default=page_size_default, ge=1, le=page_size_max)
    starting_after: str | None = Field(default=None, min_length=1, max_length=cursor_chars_max)


class LedgerStepView(BaseModel):
    kind: str = Field(description="hold, capture, release or payment (automatic capture)")
    transfer_id: str
    amount_minor: int


class RefundView(BaseModel):
    refund_number: str
    amount: int
    application_fee_refunded: int = Field(description="the fee's share given back (see the README)")
    reason: RefundReason
    status: str = Field(default="succeeded", description="a wallet refund succeeds at once; a rail refund "
                                                         "is pending until the rail settles or fails it")
    transfer_id: str
    created_at: datetime
    bank_account: dict[str, str] | None = Field(default=None,
                                                description="a rail refund's bank account, masked")
    reversal_transfer_id: str | None = Field(default=None, description="a failed rail refund's reversal")
    failure_reason: str | None = None
    resolved_by: str | None = Field(default=None, description="the operator who ended it after asking the "
                                                              "rail, when the rail never answered")
    resolution_reason: str | None = None


class DisputeView(BaseModel):
    """A chargeback on the payment, in minor units of the payment's currency."""

    dispute_id: str
    payment_intent: str
    status: DisputeStatus
    amount: int
    fee: int = Field(description="the dispute fee taken from the merchant with the amount; kept when won")
    reason: str
    source_account_id: str = Field(description="the merchant account the amount and the fee left")
    transfer_ids: list[str]
    evidence: str
    accepted: bool
    reinstated_transfer_id: str | None = None
    created_at: datetime
    updated_at: datetime | None = None


def dispute_view(intent: PaymentIntent, dispute: Dispute) -> DisputeView:
    return DisputeView(
        dispute_id=dispute.dispute_id, payment_intent=intent.payment_id, status=dispute.status,
        amount=dispute.amount_minor, fee=dispute.fee_minor, reason=dispute.reason,
        source_account_id=dispute.source_account_id, transfer_ids=list(dispute.transfer_ids),
        evidence=dispute.evidence, accepted=dispute.accepted,
        reinstated_transfer_id=dispute.reinstated_transfer_id, created_at=dispute.created_at,
        updated_at=dispute.updated_at)


class IntentView(BaseModel):
    """Amounts in minor units of `currency`."""

    id: str
    status: IntentStatus
    amount: int
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    currency: str
    exponent: int
    customer_account_id: str
    merchant_id: str
    capture_method: CaptureMethod
    application_fee_amount: int
    capture_before: datetime | None = None
    cancellation_reason: CancellationReason | None = None
    metadata: dict[str, str]
    statement_descriptor: str
    refunds: list[RefundView]
    application_fee_refunded: int
    amount_disputed: int = Field(default=0, description="taken by disputes open or lost (not refundable)")
    disputes: list[DisputeView] = Field(default_factory=list)
    ledger_transfers: list[LedgerStepView]
    created_at: datetime
    updated_at: datetime | None = None
    last_payment_error: str | None = Field(default=None, description="the code of the latest refused "
                                                                     "confirmation (payment_failed)")


class OpsIntentView(IntentView):
    """What operators see of any payment intent: the customer's view and the paying customer."""

    owner_id: str


class ExpiryRunView(BaseModel):
    """One run of the capture-expiry job."""

    expired: list[str] = Field(description="intents this run canceled as expired (their holds released)")
    warned: list[str] = Field(description="intents this run sent payment_intent.capture_expiring for")
    failed: list[str] = Field(description="intents it could not settle now; the next run tries again")
    examined: int = Field(description="due intents read from the index")
    settlement_date: date | None = Field(default=None, description="the business date the daily run settles")
    settled: list[str] = Field(default_factory=list, description="merchants this tick settled (or found so)")
    settlement_failed: list[str] = Field(default_factory=list,
                                         description="merchants passed over; their next settlement pays it")


def expiry_run_view(run: ExpiryRun) -> ExpiryRunView:
    return ExpiryRunView(expired=list(run.expired), warned=list(run.warned), failed=list(run.failed),
                         examined=run.examined)


class IntentList(BaseModel):
    data: list[IntentView]
    has_more: bool
    next_cursor: str | None = Field(description="pass as starting_after for the next page")


def refund_view(refund: Refund) -> RefundView:
    return RefundView(refund_number=refund.refund_number, amount=refund.amount_minor,
                      application_fee_refunded=refund.fee_refunded_minor, reason=refund.reason,
                      transfer_id=refund.transfer_id, created_at=refund.created_at,
                      status=refund.status.value,
                      bank_account=refund.bank_account.masked() if refund.bank_account else None,
                      reversal_transfer_id=refund.reversal_id, failure_reason=refund.failure or None,
                      resolved_by=refund.resolved_by or None,
                      resolution_reason=refund.resolution_reason or None)


def intent_view(intent: PaymentIntent) -> IntentView:
    return IntentView(
        id=intent.payment_id, status=intent.status, amount=intent.amount_minor,
        amount_capturable=intent.amount_capturable_minor, amount_received=intent.amount_received_minor,
        amount_refunded=intent.amount_refunded_minor, currency=intent.currency,
        exponent=currency_exponent(intent.currency), customer_account_id=intent.customer_account_id,
        merchant_id=intent.merchant_id, capture_method=intent.capture_method,
        application_fee_amount=intent.application_fee_minor, capture_before=intent.capture_before,
        cancellation_reason=intent.cancellation_reason, metadata=dict(intent.metadata),
        statement_descriptor=intent.statement_descriptor,
        refunds=[refund_view(r) for r in intent.refunds], application_fee_refunded=intent.fee_refunded_minor,
        amount_disputed=intent.amount_disputed_minor,
        disputes=[dispute_view(intent, d) for d in intent.disputes],
        ledger_transfers=[LedgerStepView(kind=s.kind, transfer_id=s.transfer_id, amount_minor=s.amount_minor)
                          for s in intent.ledger],
        created_at=intent.created_at, updated_at=intent.updated_at,
        last_payment_error=intent.last_payment_error,
    )


class SettlementLegView(BaseModel):
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    purpose: str = Field(description="fees, reserve or payout")


class SettlementView(BaseModel):
    """A merchant's settlement of a business date, in minor units of `currency`:
    captures - refunds - fees - dispute_losses - reserve + reserve_released = payout."""

    merchant_id: str
    business_date: date
    currency: str
    exponent: int
    status: SettlementStatus
    cut_at: datetime = Field(description="ledger entries up to this moment are settled here")
    captures: int
    refunds: int
    fees: int = Field(description="application fees collected, net of fees given back with refunds")
    fees_carried: int = Field(description="fees the day's net could not cover, collected by a later one")
    dispute_losses: int = Field(description="disputed amounts and dispute fees, less amounts won back")
    reserve: int
    payout: int
    reconciles: bool
    entries: int = Field(description="ledger entries of the receivable shards settled")
    legs: list[SettlementLegView]
    created_at: datetime
    paid_at: datetime | None = None
    payout_status: str | None = Field(default=None, description="the payout on the rail: in_transit, paid, "
                                                                "or failed (back in the merchant's reserve)")
    payout_reversal_transfer_id: str | None = None
    reserve_released: int = Field(default=0, description="reserve withheld by earlier settlements (those "
                                                         "after reserve_released_after up to "
                                                         "reserve_released_through), paid out with this one")
    reserve_released_after: date | None = None
    reserve_released_through: date | None = None
    payout_resolved_by: str | None = Field(default=None, description="the operator who ended the payout "
                                                                     "after asking the rail")
    payout_resolution_reason: str | None = None


def settlement_view(settlement: Settlement) -> SettlementView:
    return SettlementView(
        merchant_id=settlement.merchant_id, business_date=settlement.business_date,
        currency=settlement.currency, exponent=currency_exponent(settlement.currency),
        status=settlement.status, cut_at=settlement.cut_at, captures=settlement.captures_minor,
        refunds=settlement.refunds_minor, fees=settlement.fees_minor,
        fees_carried=settlement.fees_carried_minor, dispute_losses=settlement.dispute_losses_minor,
        reserve=settlement.reserve_minor, payout=settlement.payout_minor, reconciles=settlement.reconciles,
        entries=settlement.entries,
        legs=[SettlementLegView(transfer_id=leg.transfer_id, debit_account_id=leg.debit_account_id,
                                credit_account_id=leg.credit_account_id, amount_minor=leg.amount_minor,
                                purpose=leg.purpose) for leg in settlement.legs],
        created_at=settlement.created_at, paid_at=settlement.paid_at,
        payout_status=("in_transit" if settlement.payout_in_transit else settlement.payout_status) or None,
        payout_reversal_transfer_id=settlement.payout_reversal_id,
        reserve_released=settlement.reserve_released_minor,
        reserve_released_after=settlement.reserve_released_after,
        reserve_released_through=settlement.reserve_released_through,
        payout_resolved_by=settlement.payout_resolved_by or None,
        payout_resolution_reason=settlement.payout_resolution_reason or None)


class FeeScheduleView(BaseModel):
    bps: int
    fixed_minor: int
    rounding: Rounding


class MerchantAccountsView(BaseModel):
    receivables: list[str]
    reserve: str
    fees_payable: str


class MerchantView(BaseModel):
    merchant_id: str
    name: str
    currency: str
    exponent: int
    status: MerchantStatus
    settlement_account: dict[str, str] = Field(description="masked: bank code and the last four characters")
    fee_schedule: FeeScheduleView
    reserve_bps: int
    reserve_period_days: int = Field(description="business days the rolling reserve is held")
    capture_window_seconds: int
    ledger_accounts: MerchantAccountsView
    created_at: datetime
    updated_at: datetime | None = None


class MerchantBalanceView(BaseModel):
    """Minor units of `currency`; the receivable is the sum of the merchant's shards."""

    merchant_id: str
    currency: str
    exponent: int
    receivable_posted_minor: int
    receivable_pending_minor: int = Field(description="authorized, not yet captured")
    reserve_minor: int
    fees_payable_minor: int
    receivable_shards: dict[str, int] = Field(description="posted balance of each receivable shard")


def merchant_balance_view(balance: MerchantBalance) -> MerchantBalanceView:
    merchant = balance.merchant
    return MerchantBalanceView(
        merchant_id=merchant.merchant_id, currency=merchant.currency,
        exponent=currency_exponent(merchant.currency), receivable_posted_minor=balance.posted_minor,
        receivable_pending_minor=balance.pending_minor, reserve_minor=balance.reserve_minor,
        fees_payable_minor=balance.fees_payable_minor, receivable_shards=dict(balance.shards))


def merchant_view(merchant: Merchant) -> MerchantView:
    accounts = merchant.accounts
    return MerchantView(
        merchant_id=merchant.merchant_id, name=merchant.name, currency=merchant.currency,
        exponent=currency_exponent(merchant.currency), status=merchant.status,
        settlement_account=merchant.settlement.masked(),
        fee_schedule=FeeScheduleView(bps=merchant.fees.bps, fixed_minor=merchant.fees.fixed_minor,
                                     rounding=merchant.fees.rounding),
        reserve_bps=merchant.reserve_bps, reserve_period_days=merchant.reserve_period_days,
        capture_window_seconds=merchant.capture_window_seconds,
        ledger_accounts=MerchantAccountsView(receivables=list(accounts.receivables), reserve=accounts.reserve,
                                             fees_payable=accounts.fees_payable),
        created_at=merchant.created_at, updated_at=merchant.updated_at,
    )


# --- the Idempotency-Key's record in a step's ledger transaction -------------------------------------


class KeyInTransaction(PlatformKeyInTransaction[PaymentIntent]):
    """StepKey for an in_transaction route: the platform's key-in-transaction (the key's completion record,
    holding the answer rendered from the intent the step stores, put in that step's ledger transaction),
    and the id a refused step's payment_failed is written under, derived from the same key."""

    def refusal_write_id(self) -> str:
        scope = self._key.scope
        return "key-" + hashlib.sha256(f"{scope.storage_key}|{scope.fingerprint}".encode()).hexdigest()[:32]


# --- errors ------------------------------------------------------------------------------------------


def _ledger_errors() -> dict[type[BaseException], ErrorSpec]:
    """The ledger's refusals as the ledger function answers them (input, funds, account state), each
    with its own code; the payment rules' refusals (capture and refund bounds) are input refusals."""
    return dict(ledger_error_table())


ERRORS: dict[type[BaseException], ErrorSpec] = {
    **_ledger_errors(),
    IntentNotFound: ErrorSpec(404, IntentNotFound.code, "Payment intent not found"),
    # The platform's answer to a key reused for a different request, as on every other keyed route.
    IntentExists: ErrorSpec(422, IdempotencyKeyReused.code, IdempotencyKeyReused.title),
    CustomerAccountNotFound: ErrorSpec(404, CustomerAccountNotFound.code, "Account not found"),
    CurrencyMismatch: ErrorSpec(422, CurrencyMismatch.code, "Currency mismatch"),
    FeeExceedsAmount: ErrorSpec(422, FeeExceedsAmount.code, "Application fee exceeds amount"),
    MerchantInactive: ErrorSpec(422, MerchantInactive.code, "Merchant inactive"),
    UnexpectedState: ErrorSpec(409, UnexpectedState.code, "Unexpected payment intent state"),
    AuthorizationExpired: ErrorSpec(409, AuthorizationExpired.code, "Authorization expired"),
    PaymentDeclined: ErrorSpec(422, PaymentDeclined.code, "Payment declined"),
    RiskUnavailable: ErrorSpec(503, RiskUnavailable.code, "Risk check unavailable"),
    IntentBusy: ErrorSpec(503, IntentBusy.code, "Payment intent busy"),
    RefundExists: ErrorSpec(409, RefundExists.code, "Refund exists with different fields"),
    DisputeNotFound: ErrorSpec(404, DisputeNotFound.code, "Dispute not found"),
    DisputeClosed: ErrorSpec(409, DisputeClosed.code, "Dispute closed"),
    DisputeExists: ErrorSpec(409, DisputeExists.code, "Dispute exists with different fields"),
    InvalidRailNotice: ErrorSpec(401, InvalidRailNotice.code, "Invalid notice"),
    SettlementNotFound: ErrorSpec(404, SettlementNotFound.code, "Settlement not found"),
    SettlementDateInFuture: ErrorSpec(422, SettlementDateInFuture.code, "Settlement date in the future"),
    SettlementOutOfOrder: ErrorSpec(409, SettlementOutOfOrder.code, "Settlement out of order"),
    SettlementWindowTooLarge: ErrorSpec(409, SettlementWindowTooLarge.code, "Settlement window too large"),
    IntentListUnbounded: ErrorSpec(422, IntentListUnbounded.code, "List needs a merchant or a customer"),
    RefundNotFound: ErrorSpec(404, RefundNotFound.code, "Refund not found"),
    RefundSagaNotStarted: ErrorSpec(503, RefundSagaNotStarted.code, "Orchestrator unavailable"),
    PiiKeyUnavailable: ErrorSpec(503, "pii_key_unavailable", "Encryption key unavailable"),
    MerchantNotFound: ErrorSpec(404, MerchantNotFound.code, "Merchant not found"),
    MerchantExists: ErrorSpec(409, MerchantExists.code, "Merchant exists with different fields"),
    MerchantAccountsConflict: ErrorSpec(409, MerchantAccountsConflict.code, "Merchant accounts conflict"),
    MerchantBusy: ErrorSpec(503, MerchantBusy.code, "Merchant busy"),
    PaymentsStoreUnavailable: ErrorSpec(503, PaymentsStoreUnavailable.code, "Payments store unavailable"),
    ServiceUnreachable: ErrorSpec(503, "dependency_unreachable", "Dependency unreachable"),
}
