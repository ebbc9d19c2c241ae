"""Payments use cases: merchants (onboard, read, deactivate) and payment intents (create, confirm,
capture, cancel, read, and the scheduled expiry of authorizations past capture_before).

Onboarding is idempotent on the caller's merchant_id: the ledger opens an account again with the same
fields as a find, and the record is a conditional create, so a retry after a crash between the two
finishes the job; the same id with other terms is refused and changes nothing.

An intent step that moves money (the hold at confirmation, a capture, the release at cancellation) is
ONE ledger transaction that also carries the intent's new state, put over the version it was decided
from (IntentWrite, the ledger's TransactionExtra). Money and intent move together or not at all; a
rival change to the intent cancels the transaction and the step is decided again from what is stored.
Ledger ids derive from the intent and the request (`<id>-h<n>-<tag>` holds, `-c` captures, `-v`
releases): a retry of a request finds its own transfer (the ledger replays it, and its intent put was in
that same transaction), while a rival request deciding from the same version takes other ids and loses on
the intent's version or on the hold it wanted to resolve, then decides again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from finfaas.domain.creditor import SealedCreditor
from finfaas.domain.errors import (
    InsufficientFunds,
    LedgerError,
    PendingAlreadyPosted,
    PendingAlreadyVoided,
    PendingExpired,
    TransferNotFound,
)
from finfaas.domain.ledger import (
    Account,
    AccountKind,
    StatementPage,
    TransactionExtra,
    Transfer,
    expiry_transfer_id,
    system_account_id,
)
from finfaas.domain.money import currency_exponent, parse_amount, parse_currency
from finfaas.domain.payments import (
    DisputeRefused,
    FeeSchedule,
    RefundRefused,
    check_capture,
    check_dispute,
    check_refund,
    fee_minor,
    fee_refund_minor,
    receivable_shard,
)
from finfaas.domain.risk_rules import Assessment, Decision, RiskRequest
from finfaas.platform.cursors import CursorCodec, InvalidCursor, binding
from finfaas.platform.http.transactional import OutboxAudit
from finfaas.platform.logging import get_logger
from finfaas.platform.resilience import CircuitBreaker, CircuitOpen
from finfaas.platform.retry import Change, RetryPolicy, Unchanged, read_change_save
from finfaas.services.ledger.in_process import InProcessLedger
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.payments.api import (
    DISPUTE_OPENED,
    CaptureBody,
    DisputeNotice,
    IntentListQuery,
    NewIntentBody,
    OnboardBody,
    RefundBody,
)
from finfaas.services.payments.errors import (
    AppliedEarlier,
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
    PaymentsError,
    RefundExists,
    RiskUnavailable,
    UnexpectedState,
)
from finfaas.services.payments.model import (
    CancellationReason,
    CaptureMethod,
    Dispute,
    DisputeStatus,
    ExpiryRun,
    IntentEvent,
    IntentFilter,
    IntentPage,
    IntentStatus,
    LedgerStep,
    Merchant,
    MerchantBalance,
    MerchantStatus,
    PaymentIntent,
    Refund,
    RefundStatus,
    SettlementAccount,
    SettlementLeg,
    dispute_event,
    disputes_per_payment_max,
    expiring_event,
    intent_event,
    payment_id_for,
    refund_event,
    refunds_per_payment_max,
)
from finfaas.services.payments.payment_failures import record_payment_failure
from finfaas.services.payments.ports import (
    MerchantLedger,
    Merchants,
    PaymentIntents,
    PaymentReads,
    PaymentsLedger,
    RiskAssessor,
    StepKey,
)
from finfaas.services.risk.model import AssessmentToRecord, Lookup, hour_window
from finfaas.services.risk.ports import RiskDecider, record_refused
from finfaas.services.suite_clients import LedgerAccountConflict, LedgerClient

# The hold outlives capture_before, which payments enforces itself: each partial capture rounds the
# rest's timeout down by under a second, so after the most captures the hold still lasts past it; and
# the expiry job, ticking every minute, gets several runs to release it with the intent's new state.
hold_grace_seconds = 300
# One run of the expiry job reads at most this many due intents (each a read and one transaction, well
# within a tick's minute); a backlog drains over the following runs, the longest due first.
expiry_run_intents_max = 100
EXPIRY_CALLER_SUB = "payments-expiry"
# Steps on one intent race only when an app sends several at once (captures in parts): more tries than
# the platform's default before answering busy, each a read and one ledger transaction.
intent_step_attempts_max = 8
INTENT_STEP_POLICY = RetryPolicy(intent_step_attempts_max, wait_ms_base=5.0, wait_ms_max=100.0)
degraded_auto_approve_major_default = 100  # as for transfers: small payments pass while risk is down
# What a chargeback costs the merchant on top of the disputed amount (the rail's fee, passed on), in major
# units of the payment's currency; kept when the dispute is won, as card networks do.
dispute_fee_major_default = 15
RAIL_CALLER_SUB = "rail"
rail_notice_tolerance_seconds = 300  # as the rail's own settlement notices
CUSTOMER_KIND = "customer"
LIST_ROUTE = "GET /payment_intents"
_log = get_logger("payments")

MERCHANT_ACCOUNT_KIND = "MERCHANT"


def merchant_destination(merchant_id: str) -> str:
    """The payee risk sees for a payment to a merchant."""
    return f"merchant:{merchant_id}"


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


class LedgerFunctionAccounts:
    """MerchantLedger over the ledger function's POST /accounts."""

    def __init__(self, ledger: LedgerClient) -> None:
        self._ledger = ledger

    def open_merchant_account(self, account_id: str, owner_id: str, currency: str) -> None:
        try:
            self._ledger.open_account(account_id, owner_id, currency, MERCHANT_ACCOUNT_KIND)
        except LedgerAccountConflict as conflict:
            raise MerchantAccountsConflict(f"ledger account {account_id} exists with other fields",
                                           field="merchant_id") from conflict


class LedgerStoreAccounts(InProcessLedger):
    """PaymentsLedger over the ledger's own use cases in process: its TransactionExtra joins each
    operation's transaction."""

    def transfer_linked(self, legs: list[tuple[str, str, str, int]], currency: str,
                        extra: TransactionExtra) -> Transfer:
        requests = [TransferRequest(debit, credit, amount, currency, transfer_id)
                    for transfer_id, debit, credit, amount in legs]
        return self._linked(requests, extra)[0]

    def post(self, pending_id: str, transfer_id: str, amount_minor: int, currency: str,
             remainder_id: str | None, extra: TransactionExtra) -> Transfer:
        return self._posted(pending_id, transfer_id, amount_minor, currency, remainder_id, extra)

    def statement(self, account_id: str, limit: int, cursor: str | None) -> StatementPage:
        return self.ledger.statement(account_id, limit=limit, starting_after=cursor)

    def get_transfer(self, transfer_id: str) -> Transfer | None:
        try:
            return self.ledger.get_transfer(transfer_id)
        except TransferNotFound:
            return None

    def move(self, legs: list[SettlementLeg], currency: str) -> None:
        self.ledger.transfer_linked([TransferRequest(leg.debit_account_id, leg.credit_account_id,
                                                     leg.amount_minor, currency, leg.transfer_id)
                                     for leg in legs])


class _IntentMoved(Exception):
    """The stored intent is no longer the version a step was decided from."""


class _ScreeningMoved(Exception):
    """Risk's items a payment's write carried changed since they were read: another payment or transfer of
    the customer was counted in the hour (or the assessment was recorded alone meanwhile)."""


# Risk's puts (item, condition) and updates (item, actions, condition) riding in a payment's transaction.
ScreeningWrites = tuple[list[tuple[Any, Any]], list[tuple[Any, list[Any], Any]]]


class IntentWrite:
    """The ledger's TransactionExtra for one intent step: the intent's new state, put over the version
    it was decided from. A failed condition is either this request's own earlier attempt (its answer
    was lost: AppliedEarlier) or a rival's change (_IntentMoved: decide again). `earlier`: events of
    changes the same write makes first (an intent created and confirmed at once); `audit`: the
    request's audit facts, for the ledger's outbox item in the same transaction; `key`: the request's
    Idempotency-Key record, holding its answer, in the same transaction too; `screening`: risk's
    assessment and the customer's hour count (PaymentReads.screening_writes), judged last: a lost answer
    or a rival's intent is told by the intent first, and only then a moved count (_ScreeningMoved)."""

    def __init__(self, intents: PaymentIntents, wanted: PaymentIntent, event: IntentEvent, *,
                 earlier: tuple[tuple[PaymentIntent, IntentEvent], ...] = (),
                 audit: OutboxAudit | None = None, key: StepKey | None = None,
                 screening: ScreeningWrites | None = None) -> None:
        self._intents = intents
        self._wanted = wanted
        self._event = event
        self._earlier = earlier
        self._audit = audit
        self._key = key
        self._screening_puts, self._screening_updates = screening if screening is not None else ([], [])
        self._screening_failed = False

    def outbox_audit(self) -> str | None:
        return self._audit.facts() if self._audit is not None else None

    def put_for(self, result: Any) -> tuple[Any, Any]:
        return self._intents.intent_put(self._wanted)

    def more_puts_for(self, result: Any) -> list[tuple[Any, Any]]:
        """The change's events (and the key's record), in the same transaction as the money and the intent."""
        puts = [self._intents.event_put(intent, event) for intent, event in
                (*self._earlier, (self._wanted, self._event))]
        key = [self._key.put_for(self._wanted)] if self._key is not None else []
        return puts + key + self._screening_puts

    def more_updates_for(self, result: Any) -> list[tuple[Any, list[Any], Any]]:
        return self._screening_updates

    def more_conflicted(self, n: int, raw_item: dict[str, Any] | None) -> None:
        """Events are unconditional: the key's record fails when the key answered already; risk's assessment
        when it was recorded meanwhile (told only after the intent, in more_updates_conflicted)."""
        key_at = len(self._earlier) + 1
        if self._key is not None and n == key_at:
            self._key.conflicted(raw_item)
        elif n >= key_at + (self._key is not None):
            self._screening_failed = True

    def more_updates_conflicted(self, failed: list[int]) -> None:
        """Asked after the intent's own answer: risk's count (or assessment) moved since it was read."""
        if failed or self._screening_failed:
            raise _ScreeningMoved(self._wanted.payment_id)

    def conflicted(self, raw_item: dict[str, Any] | None) -> None:
        stored = self._intents.intent_from_raw(raw_item) if raw_item else None
        if stored is not None and (stored.version, stored.write_id) == (self._wanted.version,
                                                                         self._wanted.write_id):
            raise AppliedEarlier(self._wanted.payment_id)
        raise _IntentMoved(self._wanted.payment_id)

    def committed(self) -> None:
        if self._audit is not None:
            self._audit.mark_recorded()
        if self._key is not None:
            self._key.committed()


@dataclass(frozen=True)
class _Screened:
    """A payment's risk field, and risk's decision still to write with it (None: recorded, or degraded)."""

    risk: dict[str, Any]
    pending: AssessmentToRecord | None = None


# A step decided from the stored intent: the intent to store, its event and, when money moves, the
# ledger call that carries both (None: a plain versioned save with its event).
@dataclass(frozen=True)
class _Step:
    wanted: PaymentIntent
    event: IntentEvent
    move: Callable[[IntentWrite], object] | None = None


IntentStep = _Step


@dataclass(frozen=True)
class RailDestination:
    """Where a rail refund goes: a bank account, sealed under the refund's transfer id for the rail."""

    seal: Callable[[str], SealedCreditor]


@dataclass(frozen=True)
class PaymentsSettings:
    degraded_auto_approve_major: int = degraded_auto_approve_major_default
    dispute_fee_major: int = dispute_fee_major_default

    def degraded_auto_approve_minor(self, currency: str) -> int:
        return self.degraded_auto_approve_major * 10 ** currency_exponent(currency)

    def dispute_fee_minor(self, currency: str) -> int:
        return self.dispute_fee_major * 10 ** currency_exponent(currency)


@dataclass(frozen=True)
class Caller:
    """Who asks: a customer (only its own accounts and intents) or a client app (any)."""

    sub: str
    kind: str

    @property
    def is_customer(self) -> bool:
        return self.kind == CUSTOMER_KIND


class PaymentsService:
    """The payments capability's use cases over its ports."""

    def __init__(self, merchants: Merchants, ledger: MerchantLedger, clock: Callable[[], datetime] = utc_now,
                 *, intents: PaymentIntents | None = None, money: PaymentsLedger | None = None,
                 risk: RiskAssessor | None = None, breaker: CircuitBreaker | None = None,
                 settings: PaymentsSettings = PaymentsSettings(),
                 sleep: Callable[[float], None] | None = None, cursors: CursorCodec | None = None,
                 rail_notice_key: str | None = None, reads: PaymentReads | None = None,
                 risk_in_process: RiskDecider | None = None) -> None:
        self._merchants = merchants
        self._ledger = ledger
        self._clock = clock
        self._intents = intents
        self._money = money
        self._risk = risk
        self._breaker = breaker or CircuitBreaker("risk")
        self._settings = settings
        self._sleep = sleep
        self._cursors = cursors or CursorCodec.generate()
        self._rail_notice_key = rail_notice_key  # verifies the rail's dispute notices
        # Given both, a payment created and confirmed at once reads its merchant, its account and risk's
        # items in one call, and writes risk's decision in its ledger transaction (store/payment_reads.py).
        self._reads = reads
        self._risk_in_process = risk_in_process

    # --- merchants ---

    def onboard(self, body: OnboardBody) -> Merchant:
        """The merchant with its ledger accounts; the stored one when the same terms were onboarded."""
        wanted = self._merchant_from(body)
        existing = self._merchants.get(wanted.merchant_id)
        if existing is not None:
            return self._same(existing, wanted)
        for account_id in wanted.accounts.all():
            self._ledger.open_merchant_account(account_id, wanted.merchant_id, wanted.currency)
        return self._same(self._merchants.create(wanted), wanted)

    def merchant(self, merchant_id: str) -> Merchant:
        found = self._merchants.get(merchant_id)
        if found is None:
            raise MerchantNotFound(f"merchant {merchant_id} not found")
        return found

    def deactivate(self, merchant_id: str) -> Merchant:
        """INACTIVE from now on (new payments are refused); doing it again changes nothing."""

        def change(merchant: Merchant) -> Unchanged[Merchant] | Change[Merchant, Merchant]:
            if merchant.status is MerchantStatus.INACTIVE:
                return Unchanged(merchant)
            updated = merchant.deactivated(self._clock())
            return Change(updated, updated)

        return read_change_save(lambda: self.merchant(merchant_id), change, self._merchants.save,
                                exhausted=lambda: MerchantBusy(f"merchant {merchant_id} kept changing"))

    def merchant_balance(self, merchant_id: str) -> MerchantBalance:
        """The merchant's receivable summed over its shards (one read each), its reserve and fees payable."""
        merchant = self.merchant(merchant_id)
        _, ledger = self._intent_ports()
        accounts = merchant.accounts

        def read(account_id: str) -> Account:
            found = ledger.account(account_id)
            assert found is not None, f"merchant account {account_id} is missing"
            return found

        shards = [read(account_id) for account_id in accounts.receivables]
        return MerchantBalance(
            merchant, posted_minor=sum(a.balance_minor for a in shards),
            pending_minor=sum(a.credits_pending for a in shards),
            reserve_minor=read(accounts.reserve).balance_minor,
            fees_payable_minor=read(accounts.fees_payable).balance_minor,
            shards=tuple((a.account_id, a.balance_minor) for a in shards))

    # --- payment intents ---

    def create_intent(self, caller: Caller, key: str, body: NewIntentBody,
                      audit: OutboxAudit | None = None) -> tuple[PaymentIntent, bool]:
        """A new intent (requires_confirmation; with body.confirm, confirmed in the same request), or the
        one this caller's key made, with True. Nothing is written when the merchant, the account, the
        currency, the fee or the risk check refuses it. The intent's own write tells a repeat of the key
        (its id derives from the key), so nothing is read first; only a refusal looks for a stored intent,
        which a repeat answers with whatever changed since (a merchant gone inactive)."""
        intents, _ = self._intent_ports()
        payment_id = payment_id_for(caller.sub, key)
        screened: _Screened | None
        try:
            if body.confirm and self._joins_screening(caller):
                wanted, merchant, screened = self._new_screened(caller, payment_id, body)
            else:
                wanted, merchant = self._new_intent(caller, payment_id, body)
                screened = _Screened(self._screen(wanted)) if body.confirm else None
        except (PaymentsError, LedgerError):
            existing = intents.get(payment_id)
            if existing is None:
                raise
            return self._repeat_of(existing, body), True
        created = intent_event(wanted, "payment_intent.created")
        if screened is None:
            stored = intents.create(wanted, created)
            return self._same_intent(stored, wanted), stored is not wanted
        return self._create_confirmed(wanted, merchant, created, screened, body, audit)

    def _create_confirmed(self, wanted: PaymentIntent, merchant: Merchant, created: IntentEvent,
                          screened: _Screened, body: NewIntentBody,
                          audit: OutboxAudit | None) -> tuple[PaymentIntent, bool]:
        """Created and confirmed by one ledger transaction: the first stored version is already confirmed,
        with both changes' events (created, then requires_capture or succeeded) beside it and, when risk
        decided on the payment's own read, risk's assessment and the customer's hour count too."""
        intents, _ = self._intent_ports()
        step = self._confirmation(wanted, merchant, screened.risk, self._clock(), wanted.write_id)
        first = replace(step.wanted, version=wanted.version)
        assert step.move is not None
        pending = screened.pending
        writes = None if pending is None or self._reads is None else self._reads.screening_writes(pending)
        try:
            step.move(IntentWrite(intents, first, step.event, earlier=((wanted, created),), audit=audit,
                                  screening=writes))
        except AppliedEarlier:
            return first, False
        except _IntentMoved:  # the key made an intent first: a repeat, or the same request sent twice at once
            found = intents.get(wanted.payment_id)
            assert found is not None, "an intent in the way of a create stays stored"
            return self._repeat_of(found, body), True
        except _ScreeningMoved:
            # Another payment or transfer of the customer was counted since the read: the place risk judged
            # on is not this payment's. Nothing was written; screen the usual way, as risk counts it.
            return self._create_confirmed(wanted, merchant, created, _Screened(self._screen(wanted)), body,
                                          audit)
        except (PaymentsError, LedgerError):
            if pending is not None:
                # risk counts a payment the ledger refused, as it did alone
                record_refused(self._breaker, self._risk_in_process, pending, _log, "payment")
            raise
        return first, False

    def _joins_screening(self, caller: Caller) -> bool:
        """Risk's items are read with the payment's own when risk runs here and the customer is known before
        the read (a customer's token: its account is its own or refused)."""
        return caller.is_customer and self._reads is not None and self._risk_in_process is not None

    def _new_screened(self, caller: Caller, payment_id: str,
                      body: NewIntentBody) -> tuple[PaymentIntent, Merchant, _Screened]:
        """_new_intent and its risk decision on one read: the merchant, the paying account and risk's items
        together; the decision, when not recorded yet, is written with the payment (_Screened.pending)."""
        assert self._reads is not None
        currency = parse_currency(body.currency)
        amount = parse_amount(body.amount, currency)
        request = RiskRequest(payment_id, caller.sub, body.customer_account_id, merchant_destination(
            body.merchant_id), amount, currency)
        window = hour_window(self._clock())
        facts = self._reads.facts(body.merchant_id, body.customer_account_id, request, window)
        merchant = self._checked_merchant(body.merchant_id, facts.merchant)
        wanted = self._checked_intent(caller, payment_id, body, merchant, facts.account)
        assert facts.risk is not None, "the payment's read looks risk's items up"
        return wanted, merchant, self._screen_on(wanted, request, facts.risk, window)

    def _new_intent(self, caller: Caller, payment_id: str,
                    body: NewIntentBody) -> tuple[PaymentIntent, Merchant]:
        """The intent body asks for, checked against the merchant and the paying account (two reads)."""
        _, ledger = self._intent_ports()
        merchant = self._active_merchant(body.merchant_id)
        return self._checked_intent(caller, payment_id, body, merchant,
                                    ledger.account(body.customer_account_id)), merchant

    def _checked_intent(self, caller: Caller, payment_id: str, body: NewIntentBody, merchant: Merchant,
                        account: Account | None) -> PaymentIntent:
        """The intent body asks for, checked against its merchant and its paying account as read."""
        currency = parse_currency(body.currency)
        if currency != merchant.currency:
            raise CurrencyMismatch(f"currency: merchant {merchant.merchant_id} takes {merchant.currency}",
                                   field="currency")
        amount = parse_amount(body.amount, currency)
        if account is None or account.kind is not AccountKind.CUSTOMER or (
                caller.is_customer and account.owner_id != caller.sub):
            missing = body.customer_account_id
            raise CustomerAccountNotFound(f"customer_account_id: account {missing} not found",
                                          field="customer_account_id")
        if account.currency != currency:
            raise CurrencyMismatch(f"customer_account_id: the account holds {account.currency}",
                                   field="customer_account_id")
        fee = body.application_fee_amount
        fee = fee_minor(amount, merchant.fees) if fee is None else fee
        if fee > amount:
            raise FeeExceedsAmount(f"application_fee_amount: {fee} is above the amount {amount}",
                                   field="application_fee_amount")
        shard = receivable_shard(payment_id, merchant.receivable_shards)
        wanted = PaymentIntent(
            payment_id=payment_id, owner_id=account.owner_id, customer_account_id=account.account_id,
            merchant_id=merchant.merchant_id, receivable_account_id=merchant.accounts.receivables[shard],
            amount_minor=amount, currency=currency, capture_method=body.capture_method,
            application_fee_minor=fee, created_at=self._clock(), metadata=dict(body.metadata),
            statement_descriptor=body.statement_descriptor, confirm=body.confirm, write_id=uuid.uuid4().hex)
        return wanted

    def intent(self, caller: Caller, payment_id: str) -> PaymentIntent:
        """The intent; another customer's answers as a missing one."""
        intents, _ = self._intent_ports()
        found = intents.get(payment_id)
        if found is None or (caller.is_customer and found.owner_id != caller.sub):
            raise IntentNotFound(f"payment intent {payment_id} not found")
        return found

    def list_intents(self, caller: Caller, query: IntentListQuery) -> tuple[IntentPage, str | None]:
        """A page of intents newest first and the sealed cursor to the next (None: the last page)."""
        intents, _ = self._intent_ports()
        owner = query.customer
        if caller.is_customer:
            if owner not in (None, caller.sub):
                return IntentPage([], None), None  # their own intents of another customer: none
            owner = caller.sub
        if owner is None and query.merchant_id is None:
            raise IntentListUnbounded("merchant_id: give merchant_id or customer", field="merchant_id")
        wanted = IntentFilter(query.merchant_id, owner, query.status, query.created_gte, query.created_lt)
        bound = binding(LIST_ROUTE, caller.sub, merchant_id=query.merchant_id, customer=owner,
                        status=query.status.value if query.status else None,
                        created_gte=query.created_gte.isoformat() if query.created_gte else None,
                        created_lt=query.created_lt.isoformat() if query.created_lt else None)
        start = self._opened(query.starting_after, bound)
        page = intents.page(wanted, query.limit, start)
        return page, self._cursors.seal(page.last_key, bound) if page.last_key else None

    def _opened(self, cursor: str | None, bound: dict[str, str]) -> dict[str, str] | None:
        """The store's key inside a client's sealed cursor; InvalidCursor unless ours, for this query."""
        if cursor is None:
            return None
        key = self._cursors.open(cursor, bound)
        if not isinstance(key, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in key.items()):
            raise InvalidCursor("not a cursor of this list")
        return key

    def confirm(self, caller: Caller, payment_id: str, audit: OutboxAudit | None = None,
                key: StepKey | None = None) -> PaymentIntent:
        """Risk check, then a hold expiring at capture_before (manual capture) or the payment itself
        (automatic capture), with the intent's new state in the same ledger transaction."""
        write_id = uuid.uuid4().hex

        def decide(intent: PaymentIntent) -> _Step:
            if intent.status is not IntentStatus.REQUIRES_CONFIRMATION:
                raise UnexpectedState(f"status: {intent.status.value}; only requires_confirmation confirms",
                                      field="status")
            merchant = self._active_merchant(intent.merchant_id)
            risk = intent.risk if intent.risk is not None else self._screen(intent)
            return self._confirmation(intent, merchant, risk, self._clock(), write_id)

        try:
            return self._step(caller, payment_id, decide, audit, key)
        except (PaymentDeclined, InsufficientFunds) as refusal:
            record_payment_failure(self._intent_ports()[0], payment_id, refusal, self._clock,
                                   key.refusal_write_id() if key is not None else None)
            raise

    def _confirmation(self, intent: PaymentIntent, merchant: Merchant, risk: Mapping[str, object],
                      now: datetime, write_id: str) -> _Step:
        """The confirmed intent and its ledger call: the payment itself (automatic capture, one posted
        transfer) or a hold until capture_before (manual)."""
        if intent.capture_method is CaptureMethod.AUTOMATIC:
            paid = LedgerStep("payment", intent.ledger_id("c", 0, write_id), intent.amount_minor)
            wanted = intent.changed(now, status=IntentStatus.SUCCEEDED, risk=risk, captures=1,
                                    amount_received_minor=intent.amount_minor,
                                    ledger=(*intent.ledger, paid), write_id=write_id)
            return _Step(wanted, intent_event(wanted, "payment_intent.succeeded"),
                         lambda extra: self._ledger_ports().transfer(
                             paid.transfer_id, intent.customer_account_id, intent.receivable_account_id,
                             intent.amount_minor, intent.currency, extra))
        hold = LedgerStep("hold", intent.ledger_id("h", 0, write_id), intent.amount_minor)
        window = merchant.capture_window_seconds
        wanted = intent.changed(now, status=IntentStatus.REQUIRES_CAPTURE, risk=risk,
                                amount_capturable_minor=intent.amount_minor, hold_id=hold.transfer_id,
                                capture_before=now + timedelta(seconds=window),
                                ledger=(*intent.ledger, hold), write_id=write_id)
        return _Step(wanted, intent_event(wanted, "payment_intent.requires_capture"),
                     lambda extra: self._ledger_ports().hold(
            hold.transfer_id, intent.customer_account_id, intent.receivable_account_id,
            intent.amount_minor, intent.currency, window + hold_grace_seconds, extra))

    def capture(self, caller: Caller, payment_id: str, body: CaptureBody,
                audit: OutboxAudit | None = None, key: StepKey | None = None) -> PaymentIntent:
        """Posts amount_to_capture (default: all that is capturable) from the hold. A non-final capture
        keeps the rest held in the same ledger transaction; a final one releases it."""
        write_id = uuid.uuid4().hex

        def decide(intent: PaymentIntent) -> _Step:
            now = self._clock()
            if intent.capture_before is not None and (
                    (intent.capturable and now >= intent.capture_before)
                    or intent.cancellation_reason is CancellationReason.EXPIRED):
                # The same answer before and after the expiry job has canceled the intent.
                raise AuthorizationExpired(f"capture_before: the authorization of {payment_id} expired at "
                                           f"{intent.capture_before.isoformat()}", field="capture_before")
            if not intent.capturable:
                raise UnexpectedState(f"status: {intent.status.value}; nothing is capturable", field="status")
            assert intent.hold_id is not None and intent.capture_before is not None
            capturable = intent.amount_capturable_minor
            amount = capturable if body.amount_to_capture is None else body.amount_to_capture
            check_capture(amount_capturable_minor=capturable, amount_to_capture_minor=amount,
                          captures_done=intent.captures)
            captured = LedgerStep("capture", intent.ledger_id("c", intent.captures, write_id), amount)
            rest = capturable - amount
            received = intent.amount_received_minor + amount
            pending_id = intent.hold_id
            if body.final_capture or rest == 0:
                released = (LedgerStep("release", pending_id, rest),) if rest else ()
                wanted = intent.changed(now, status=IntentStatus.SUCCEEDED, amount_capturable_minor=0,
                                        amount_received_minor=received, captures=intent.captures + 1,
                                        hold_id=None, ledger=(*intent.ledger, captured, *released),
                                        write_id=write_id)
                remainder_id = None
            else:
                kept = LedgerStep("hold", intent.ledger_id("h", intent.captures + 1, write_id), rest)
                wanted = intent.changed(now, status=IntentStatus.PARTIALLY_CAPTURED,
                                        amount_capturable_minor=rest, amount_received_minor=received,
                                        captures=intent.captures + 1, hold_id=kept.transfer_id,
                                        ledger=(*intent.ledger, captured, kept), write_id=write_id)
                remainder_id = kept.transfer_id
            event = intent_event(wanted, f"payment_intent.{wanted.status.value}")
            return _Step(wanted, event, lambda extra: self._ledger_ports().post(
                pending_id, captured.transfer_id, amount, intent.currency, remainder_id, extra))

        return self._step(caller, payment_id, decide, audit, key)

    # --- the expiry job ---

    def expire_due(self, limit: int = expiry_run_intents_max) -> ExpiryRun:
        """One run of the scheduled job: each due intent (from the store's index, the longest due first)
        is read again and either canceled as expired, releasing its hold in the same ledger transaction
        as its new state, or warned once (payment_intent.capture_expiring). Safe to run twice at once:
        every change is a write over the version it was decided from, so each intent changes once."""
        intents, _ = self._intent_ports()
        due = intents.due_for_expiry(self._clock(), limit)
        expired: list[str] = []
        warned: list[str] = []
        failed: list[str] = []
        for payment_id in due:
            try:
                done = self._expiry_step(payment_id)
            except Exception as error:  # one intent that cannot be settled now must not stop the others
                _log.error("capture expiry failed", payment_intent=payment_id,
                           error_type=type(error).__name__)
                failed.append(payment_id)
                continue
            if done == "expired":
                expired.append(payment_id)
            elif done == "warned":
                warned.append(payment_id)
        return ExpiryRun(tuple(expired), tuple(warned), tuple(failed), len(due))

    def _expiry_step(self, payment_id: str) -> str | None:
        """"expired" or "warned" when this call's own write made the change; None when nothing was due
        (a stale index entry) or a rival run made it first."""
        caller = Caller(EXPIRY_CALLER_SUB, "system")
        write_id = uuid.uuid4().hex
        ledger_expired = False  # the hold outlived its grace: the ledger's own expiry releases it

        def decide(intent: PaymentIntent) -> _Step | Unchanged[PaymentIntent]:
            now = self._clock()
            if not intent.capturable or intent.capture_before is None:
                return Unchanged(intent)
            if now >= intent.capture_before:
                return self._expired(intent, now, write_id, ledger_expired)
            due = intent.expiry_due_at()
            if intent.expiry_warned_at is not None or due is None or now < due:
                return Unchanged(intent)
            wanted = intent.changed(now, expiry_warned_at=now, write_id=write_id)
            return _Step(wanted, expiring_event(wanted))

        try:
            stored = self._step(caller, payment_id, decide)
        except PendingExpired:
            ledger_expired = True
            stored = self._step(caller, payment_id, decide)
        if stored.write_id != write_id:
            return None
        return "expired" if stored.status is IntentStatus.CANCELED else "warned"

    def _expired(self, intent: PaymentIntent, now: datetime, write_id: str, ledger_expired: bool) -> _Step:
        """canceled (reason expired), its hold voided in the same ledger transaction as the intent, as a
        cancel does; or, once the hold is past its own timeout (the ledger refuses to void it and its
        expiry sweep releases it), the intent alone, naming the ledger's expiry transfer."""
        assert intent.hold_id is not None
        pending_id = intent.hold_id
        release_id = (expiry_transfer_id(pending_id) if ledger_expired
                      else intent.ledger_id("v", intent.captures, write_id))
        released = LedgerStep("release", release_id, intent.amount_capturable_minor)
        wanted = intent.changed(now, status=IntentStatus.CANCELED,
                                cancellation_reason=CancellationReason.EXPIRED, amount_capturable_minor=0,
                                hold_id=None, ledger=(*intent.ledger, released), write_id=write_id)
        event = intent_event(wanted, "payment_intent.canceled")
        if ledger_expired:
            return _Step(wanted, event)
        return _Step(wanted, event, lambda extra: self._ledger_ports().void(pending_id, release_id, extra))

    def cancel(self, caller: Caller, payment_id: str, reason: CancellationReason,
               audit: OutboxAudit | None = None, key: StepKey | None = None) -> PaymentIntent:
        """canceled, releasing what is still capturable; a canceled intent stays as it is."""
        write_id = uuid.uuid4().hex

        def decide(intent: PaymentIntent) -> _Step | Unchanged[PaymentIntent]:
            if intent.status is IntentStatus.CANCELED:
                return Unchanged(intent)
            if intent.status is IntentStatus.SUCCEEDED:
                raise UnexpectedState("status: succeeded; a captured payment is refunded, not canceled",
                                      field="status")
            now = self._clock()
            if intent.hold_id is None:
                canceled = intent.changed(now, status=IntentStatus.CANCELED, cancellation_reason=reason,
                                          write_id=write_id)
                return _Step(canceled, intent_event(canceled, "payment_intent.canceled"))
            pending_id = intent.hold_id
            released = LedgerStep("release", intent.ledger_id("v", intent.captures, write_id),
                                  intent.amount_capturable_minor)
            wanted = intent.changed(now, status=IntentStatus.CANCELED, cancellation_reason=reason,
                                    amount_capturable_minor=0, hold_id=None,
                                    ledger=(*intent.ledger, released), write_id=write_id)
            return _Step(wanted, intent_event(wanted, "payment_intent.canceled"),
                         lambda extra: self._ledger_ports().void(pending_id, released.transfer_id, extra))

        return self._step(caller, payment_id, decide, audit, key)

    def refund(self, caller: Caller, payment_id: str, body: RefundBody,
               audit: OutboxAudit | None = None, key: StepKey | None = None,
               to_rail: RailDestination | None = None) -> tuple[PaymentIntent, Refund]:
        """Gives `amount` (default: all refundable) back to the paying account from the merchant's
        receivable shard, with the fee's share by domain.payments' rule; the same refund number again
        refunds once. The refund and the intent's new total commit in one ledger transaction, written
        over the version the bound was checked on, so refunds racing each other never exceed what was
        captured. With `to_rail` the money goes to the rail's clearing account instead and the refund is
        pending until the rail settles it (services/payments/rail_refunds.py)."""
        write_id = uuid.uuid4().hex

        def decide(intent: PaymentIntent) -> _Step | Unchanged[PaymentIntent]:
            if body.currency is not None and body.currency != intent.currency:
                raise CurrencyMismatch(f"currency: the payment is in {intent.currency}", field="currency")
            refundable = (intent.amount_received_minor - intent.amount_refunded_minor
                          - intent.amount_disputed_minor)
            amount = refundable if body.amount is None else parse_amount(body.amount, intent.currency)
            earlier = intent.refund(body.refund_number)
            if earlier is not None:
                if body.amount is not None and earlier.amount_minor != amount:
                    raise RefundExists(f"refund_number: {body.refund_number} refunded {earlier.amount_minor}",
                                       field="refund_number")
                if (earlier.bank_account is None) != (to_rail is None):
                    raise RefundExists(f"refund_number: {body.refund_number} went to another destination",
                                       field="refund_number")
                return Unchanged(intent)
            if len(intent.refunds) >= refunds_per_payment_max:
                raise RefundRefused(f"refund_number: at most {refunds_per_payment_max} refunds per payment",
                                    field="refund_number")
            check_refund(amount_received_minor=intent.amount_received_minor,
                         amount_refunded_minor=intent.amount_refunded_minor, refund_minor=amount,
                         amount_disputed_minor=intent.amount_disputed_minor)
            fee_back = fee_refund_minor(
                fee_minor_total=intent.application_fee_minor,
                amount_received_minor=intent.amount_received_minor,
                amount_refunded_minor=intent.amount_refunded_minor,
                fee_refunded_minor=intent.fee_refunded_minor, refund_minor=amount)
            now = self._clock()
            transfer_id = intent.ledger_id("r", len(intent.refunds), write_id)
            refund = Refund(body.refund_number, amount, fee_back, body.reason, transfer_id, now)
            credited = intent.customer_account_id
            if to_rail is not None:  # the rail's payment id is the refund's transfer id
                refund = replace(refund, status=RefundStatus.PENDING, bank_account=to_rail.seal(transfer_id))
                credited = system_account_id(AccountKind.SETTLEMENT, intent.currency)
            wanted = intent.changed(now, amount_refunded_minor=intent.amount_refunded_minor + amount,
                                    fee_refunded_minor=intent.fee_refunded_minor + fee_back,
                                    refunds=(*intent.refunds, refund),
                                    ledger=(*intent.ledger, LedgerStep("refund", transfer_id, amount)),
                                    write_id=write_id)
            return _Step(wanted, refund_event(wanted, refund), lambda extra: self._ledger_ports().transfer(
                transfer_id, intent.receivable_account_id, credited, amount, intent.currency, extra))

        stored = self._step(caller, payment_id, decide, audit, key)
        refund = stored.refund(body.refund_number)
        assert refund is not None
        return stored, refund

    # --- disputes ---

    def dispute_notice(self, headers: Mapping[str, str], body: bytes,
                       now: float | None = None) -> tuple[PaymentIntent, Dispute]:
        """The rail's signed dispute notice: opens a dispute or closes it with the rail's decision."""
        notice = self._verified_notice(headers, body, now)
        if notice.kind == DISPUTE_OPENED:
            return self.open_dispute(notice)
        return self.close_dispute(notice)

    def open_dispute(self, notice: DisputeNotice) -> tuple[PaymentIntent, Dispute]:
        """Takes the disputed amount and the dispute fee from the merchant in ONE ledger transaction with
        the dispute (the payment's receivable shard, or the merchant's reserve when the shard is short);
        written over the version the bound was checked on, so refunds and disputes racing each other
        never take more than was captured. The same dispute id again opens it once."""
        write_id = uuid.uuid4().hex
        caller = Caller(RAIL_CALLER_SUB, "system")

        def decide(intent: PaymentIntent) -> _Step | Unchanged[PaymentIntent]:
            earlier = intent.dispute(notice.dispute_id)
            if earlier is not None:
                if earlier.amount_minor != notice.amount_minor:
                    raise DisputeExists(f"dispute_id: {notice.dispute_id} disputed {earlier.amount_minor}",
                                        field="dispute_id")
                return Unchanged(intent)
            if notice.currency != intent.currency:
                raise CurrencyMismatch(f"currency: the payment is in {intent.currency}", field="currency")
            if len(intent.disputes) >= disputes_per_payment_max:
                raise DisputeRefused(f"dispute_id: at most {disputes_per_payment_max} disputes per payment",
                                     field="dispute_id")
            check_dispute(amount_received_minor=intent.amount_received_minor,
                          amount_refunded_minor=intent.amount_refunded_minor,
                          amount_disputed_minor=intent.amount_disputed_minor,
                          dispute_minor=notice.amount_minor)
            fee = self._settings.dispute_fee_minor(intent.currency)
            source = self._dispute_source(intent, notice.amount_minor + fee)
            n = len(intent.disputes)
            amount_id, fee_id = intent.ledger_id("d", n, write_id), intent.ledger_id("df", n, write_id)
            now = self._clock()
            dispute = Dispute(notice.dispute_id, notice.amount_minor, fee, notice.reason,
                              DisputeStatus.NEEDS_RESPONSE, source, (amount_id, fee_id), now, updated_at=now)
            taken = (LedgerStep("dispute", amount_id, notice.amount_minor),
                     LedgerStep("dispute_fee", fee_id, fee))
            wanted = intent.changed(now, disputes=intent.with_dispute(dispute), write_id=write_id,
                                    ledger=(*intent.ledger, *taken))
            legs = [(amount_id, source, system_account_id(AccountKind.SETTLEMENT, intent.currency),
                     notice.amount_minor),
                    (fee_id, source, system_account_id(AccountKind.FEES, intent.currency), fee)]
            return _Step(wanted, dispute_event(wanted, dispute, "dispute.created"),
                         lambda extra: self._ledger_ports().transfer_linked(legs, intent.currency, extra))

        return self._dispute_step(caller, notice.payment_intent, notice.dispute_id, decide)

    def close_dispute(self, notice: DisputeNotice) -> tuple[PaymentIntent, Dispute]:
        """The rail's decision: won gives the amount back to the account it came from (in one ledger
        transaction with the dispute), lost keeps it gone. A closed dispute stays as it is (a repeated
        notice, or one after the merchant accepted, changes nothing)."""
        write_id = uuid.uuid4().hex
        caller = Caller(RAIL_CALLER_SUB, "system")

        def decide(intent: PaymentIntent) -> _Step | Unchanged[PaymentIntent]:
            dispute = self._open_dispute_of(intent, notice.dispute_id, closed_ok=True)
            if dispute.status.closed:
                return Unchanged(intent)
            now = self._clock()
            if notice.outcome != DisputeStatus.WON.value:
                lost = replace(dispute, status=DisputeStatus.LOST, updated_at=now)
                wanted = intent.changed(now, disputes=intent.with_dispute(lost), write_id=write_id)
                return _Step(wanted, dispute_event(wanted, lost, "dispute.closed"))
            back_id = intent.ledger_id("dw", intent.disputes.index(dispute), write_id)
            won = replace(dispute, status=DisputeStatus.WON, reinstated_transfer_id=back_id, updated_at=now)
            back = LedgerStep("dispute_won", back_id, won.amount_minor)
            wanted = intent.changed(now, disputes=intent.with_dispute(won), write_id=write_id,
                                    ledger=(*intent.ledger, back))
            settlement = system_account_id(AccountKind.SETTLEMENT, intent.currency)
            return _Step(wanted, dispute_event(wanted, won, "dispute.closed"),
                         lambda extra: self._ledger_ports().transfer(
                             back_id, settlement, dispute.source_account_id, dispute.amount_minor,
                             intent.currency, extra))

        return self._dispute_step(caller, notice.payment_intent, notice.dispute_id, decide)

    def submit_evidence(self, caller: Caller, payment_id: str, dispute_id: str,
                        evidence: str) -> tuple[PaymentIntent, Dispute]:
        """The merchant's answer: under_review until the rail decides; a closed dispute is a 409."""
        write_id = uuid.uuid4().hex

        def decide(intent: PaymentIntent) -> _Step | Unchanged[PaymentIntent]:
            dispute = self._open_dispute_of(intent, dispute_id)
            if dispute.status is DisputeStatus.UNDER_REVIEW and dispute.evidence == evidence:
                return Unchanged(intent)
            now = self._clock()
            answered = replace(dispute, status=DisputeStatus.UNDER_REVIEW, evidence=evidence, updated_at=now)
            wanted = intent.changed(now, disputes=intent.with_dispute(answered), write_id=write_id)
            return _Step(wanted, dispute_event(wanted, answered, "dispute.updated"))

        return self._dispute_step(self._merchant_side(caller, payment_id), payment_id, dispute_id, decide)

    def accept_dispute(self, caller: Caller, payment_id: str,
                       dispute_id: str) -> tuple[PaymentIntent, Dispute]:
        """The merchant gives up: lost (the money already left); accepting again changes nothing."""
        write_id = uuid.uuid4().hex

        def decide(intent: PaymentIntent) -> _Step | Unchanged[PaymentIntent]:
            found = intent.dispute(dispute_id)
            if found is not None and found.accepted:
                return Unchanged(intent)
            dispute = self._open_dispute_of(intent, dispute_id)
            now = self._clock()
            lost = replace(dispute, status=DisputeStatus.LOST, accepted=True, updated_at=now)
            wanted = intent.changed(now, disputes=intent.with_dispute(lost), write_id=write_id)
            return _Step(wanted, dispute_event(wanted, lost, "dispute.closed"))

        return self._dispute_step(self._merchant_side(caller, payment_id), payment_id, dispute_id, decide)

    def _dispute_step(self, caller: Caller, payment_id: str, dispute_id: str,
                      decide: Callable[[PaymentIntent], _Step | Unchanged[PaymentIntent]],
                      ) -> tuple[PaymentIntent, Dispute]:
        stored = self._step(caller, payment_id, decide)
        dispute = stored.dispute(dispute_id)
        assert dispute is not None
        return stored, dispute

    def _merchant_side(self, caller: Caller, payment_id: str) -> Caller:
        """Disputes are answered by the merchant's app: a customer's token finds no such payment."""
        if caller.is_customer:
            raise IntentNotFound(f"payment intent {payment_id} not found")
        return caller

    @staticmethod
    def _open_dispute_of(intent: PaymentIntent, dispute_id: str, *, closed_ok: bool = False) -> Dispute:
        dispute = intent.dispute(dispute_id)
        if dispute is None:
            raise DisputeNotFound(f"dispute {dispute_id} not found on {intent.payment_id}")
        if dispute.status.closed and not closed_ok:
            raise DisputeClosed(f"status: the dispute is {dispute.status.value}", field="status")
        return dispute

    def _dispute_source(self, intent: PaymentIntent, total_minor: int) -> str:
        """The payment's receivable shard, or the merchant's reserve when the shard cannot cover the
        dispute (paid out already): the ledger's funds condition still judges the one chosen."""
        shard = self._ledger_ports().account(intent.receivable_account_id)
        if shard is not None and shard.available_minor >= total_minor:
            return intent.receivable_account_id
        merchant = self._merchants.get(intent.merchant_id)
        return intent.receivable_account_id if merchant is None else merchant.accounts.reserve

    def _verified_notice(self, headers: Mapping[str, str], body: bytes, now: float | None) -> DisputeNotice:
        from pydantic import ValidationError

        from finfaas.services.webhooks.errors import InvalidSignature
        from finfaas.services.webhooks.model import verify_signature

        if not self._rail_notice_key:
            raise InvalidRailNotice("no rail notice key is configured: every notice is refused")
        try:
            moment = self._clock().timestamp() if now is None else now
            verify_signature(self._rail_notice_key, headers, body, rail_notice_tolerance_seconds, moment)
            return DisputeNotice.model_validate_json(body)
        except (InvalidSignature, ValidationError, ValueError) as error:
            raise InvalidRailNotice(f"notice refused: {type(error).__name__}") from None

    # --- internals ---

    def _intent_ports(self) -> tuple[PaymentIntents, PaymentsLedger]:
        assert self._intents is not None and self._money is not None, "payments built without intents"
        return self._intents, self._money

    def _ledger_ports(self) -> PaymentsLedger:
        return self._intent_ports()[1]

    def _active_merchant(self, merchant_id: str) -> Merchant:
        return self._checked_merchant(merchant_id, self._merchants.get(merchant_id))

    @staticmethod
    def _checked_merchant(merchant_id: str, merchant: Merchant | None) -> Merchant:
        if merchant is None:
            raise MerchantNotFound(f"merchant_id: merchant {merchant_id} not found", field="merchant_id")
        if merchant.status is not MerchantStatus.ACTIVE:
            raise MerchantInactive(f"merchant_id: merchant {merchant_id} takes no new payments",
                                   field="merchant_id")
        return merchant

    @staticmethod
    def _repeat_of(stored: PaymentIntent, body: NewIntentBody) -> PaymentIntent:
        """The stored intent when body asks for it again; IntentExists when the key made another."""
        currency = parse_currency(body.currency)
        asked = (body.customer_account_id, body.merchant_id, parse_amount(body.amount, currency), currency,
                 body.capture_method, dict(body.metadata), body.statement_descriptor, body.confirm)
        made = (stored.customer_account_id, stored.merchant_id, stored.amount_minor, stored.currency,
                stored.capture_method, dict(stored.metadata), stored.statement_descriptor, stored.confirm)
        fee = body.application_fee_amount
        if asked != made or (fee is not None and fee != stored.application_fee_minor):
            raise IntentExists(f"the Idempotency-Key made payment intent {stored.payment_id} "
                               "with other fields")
        return stored

    @staticmethod
    def _same_intent(stored: PaymentIntent, wanted: PaymentIntent) -> PaymentIntent:
        if stored.request_fields() != wanted.request_fields():
            raise IntentExists(f"the Idempotency-Key made payment intent {stored.payment_id} "
                               "with other fields")
        return stored

    def now(self) -> datetime:
        """This service's clock, for steps decided by another module of the capability."""
        return self._clock()

    def step(self, caller: Caller, payment_id: str,
             decide: Callable[[PaymentIntent], IntentStep | Unchanged[PaymentIntent]]) -> PaymentIntent:
        """One intent step decided by another module of the capability (rail refunds, payouts)."""
        return self._step(caller, payment_id, decide)

    def _step(self, caller: Caller, payment_id: str,
              decide: Callable[[PaymentIntent], _Step | Unchanged[PaymentIntent]],
              audit: OutboxAudit | None = None, key: StepKey | None = None) -> PaymentIntent:
        """Read, decide, write (money, intent, event, the request's audit facts and its Idempotency-Key
        record in one ledger transaction); decide again on a rival's change, at most as often as the
        save-race policy allows. A step that moves no money leaves the key to the platform."""
        intents, _ = self._intent_ports()

        def change(intent: PaymentIntent) -> Unchanged[PaymentIntent] | Change[_Step, PaymentIntent]:
            step = decide(intent)
            return step if isinstance(step, Unchanged) else Change(step, step.wanted)

        def save(step: _Step) -> bool:
            if step.move is None:
                return intents.save(step.wanted, step.event)
            try:
                step.move(IntentWrite(intents, step.wanted, step.event, audit=audit, key=key))
            except AppliedEarlier:
                return True
            except (_IntentMoved, PendingAlreadyPosted, PendingAlreadyVoided):
                return False  # a rival step resolved the hold first: decide again from what it stored
            return True

        options: dict[str, Any] = {} if self._sleep is None else {"sleep": self._sleep}
        return read_change_save(lambda: self.intent(caller, payment_id), change, save,
                                exhausted=lambda: IntentBusy(f"payment intent {payment_id} kept changing"),
                                policy=INTENT_STEP_POLICY, **options)

    def _screen(self, intent: PaymentIntent) -> dict[str, Any]:
        """The risk decision for the payment; when risk is failing, the degraded rule: small payments
        pass (flagged), larger ones are refused for now. A decline refuses the payment."""
        assert self._risk is not None, "payments built without a risk assessor"
        risk = self._risk
        request = {"assessment_id": intent.payment_id, "customer_id": intent.owner_id,
                   "debit_account_id": intent.customer_account_id,
                   "destination": merchant_destination(intent.merchant_id),
                   "amount_minor": intent.amount_minor, "currency": intent.currency}
        try:
            answer = self._breaker.call(lambda: risk.assess(request))
        except CircuitOpen:
            return self._degraded(intent, "risk circuit open")
        except Exception as error:  # any failure of the dependency degrades; the breaker counts it
            return self._degraded(intent, f"risk unavailable: {type(error).__name__}")
        return self._risk_of(intent, answer)

    def _screen_on(self, intent: PaymentIntent, request: RiskRequest, known: Lookup,
                   window: str) -> _Screened:
        """_screen with risk's use case in this process on what the payment's read found: an approval still
        to write rides in the payment's transaction; any other decision is written alone first, as risk
        would (its answer is the one recorded), and refuses the payment."""
        decider = self._risk_in_process
        assert decider is not None

        try:
            made = self._breaker.call(lambda: decider.decide(request, known, window))
        except CircuitOpen:
            return _Screened(self._degraded(intent, "risk circuit open"))
        except Exception as error:  # any failure of the dependency degrades; the breaker counts it
            return _Screened(self._degraded(intent, f"risk unavailable: {type(error).__name__}"))
        pending: AssessmentToRecord | None = None
        if not isinstance(made, AssessmentToRecord):
            assessment = made
        elif made.assessment.decision is Decision.APPROVE:
            assessment, pending = made.assessment, made
        else:
            assessment = self._recorded_refusal(decider, made)
        answer = {"decision": assessment.decision.value, "score": assessment.score}
        return _Screened(self._risk_of(intent, answer), pending)

    def _recorded_refusal(self, decider: RiskDecider, made: AssessmentToRecord) -> Assessment:
        """A decline or review risk decided, as risk records it (its first answer, if recorded already); when
        the record cannot be written the decision still stands (the breaker counts the failure): a decision
        in hand never turns into a degraded approval."""
        try:
            return self._breaker.call(lambda: decider.record(made))
        except Exception as error:
            _log.warning("risk did not record a refused payment", error=type(error).__name__,
                         payment_id=made.request.assessment_id)
            return made.assessment

    def _risk_of(self, intent: PaymentIntent, answer: Mapping[str, Any]) -> dict[str, Any]:
        """The intent's risk field of risk's answer; a decline (or a review) refuses the payment."""
        decision = answer.get("decision")
        if decision not in ("approve", "review", "decline"):
            return self._degraded(intent, "risk answered without a decision")
        if decision != "approve":  # a payment cannot wait for a person: review declines it too
            raise PaymentDeclined(f"the risk check answered {decision}", field="payment_id")
        return {"decision": decision, "score": int(answer.get("score", 0)), "degraded": False}

    def _degraded(self, intent: PaymentIntent, why: str) -> dict[str, Any]:
        if intent.amount_minor > self._settings.degraded_auto_approve_minor(intent.currency):
            raise RiskUnavailable(f"{why}: above the amount the degraded rule lets through", field="amount")
        return {"decision": "approve", "score": 0, "degraded": True, "detail": why}

    def _merchant_from(self, body: OnboardBody) -> Merchant:
        schedule = body.fee_schedule
        settlement = body.settlement_account
        return Merchant(
            merchant_id=body.merchant_id, name=body.name, currency=parse_currency(body.currency),
            settlement=SettlementAccount(settlement.bank_code, settlement.account_number, settlement.name),
            fees=FeeSchedule(schedule.bps, schedule.fixed_minor, schedule.rounding),
            reserve_bps=body.reserve_bps, capture_window_seconds=body.capture_window_seconds,
            receivable_shards=body.receivable_shards, status=MerchantStatus.ACTIVE, created_at=self._clock(),
            reserve_period_days=body.reserve_period_days,
        )

    @staticmethod
    def _same(stored: Merchant, wanted: Merchant) -> Merchant:
        if not stored.same_terms(wanted):
            raise MerchantExists(f"merchant {wanted.merchant_id} was onboarded with other terms",
                                 field="merchant_id")
        return stored
