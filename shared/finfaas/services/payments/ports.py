"""What the payments service needs from outside: its merchants table and the ledger's accounts."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Protocol

from finfaas.domain.ledger import Account, StatementPage, TransactionExtra, Transfer
from finfaas.domain.risk_rules import RiskRequest
from finfaas.services.payments.model import (
    IntentEvent,
    IntentFilter,
    IntentPage,
    Merchant,
    PaymentFacts,
    PaymentIntent,
    RunProgress,
    Settlement,
    SettlementLeg,
)
from finfaas.services.risk.model import AssessmentToRecord


class Merchants(Protocol):
    """Merchants (DynamoDB: store/payments_store.py; in memory: finfaas_dev/fakes/payments.py)."""

    def create(self, merchant: Merchant) -> Merchant:
        """Write a new merchant and return it; the stored one if the id is taken (nothing written)."""
        ...

    def get(self, merchant_id: str) -> Merchant | None: ...

    def save(self, merchant: Merchant) -> bool:
        """Write merchant if the stored version is merchant.version - 1; False otherwise."""
        ...

    def merchant_ids(self, after: str | None, limit: int) -> list[str]:
        """Up to limit merchant ids above `after` (None: from the first), in order."""
        ...


class MerchantLedger(Protocol):
    """The ledger function's accounts API (services/suite_clients.py LedgerClient)."""

    def open_merchant_account(self, account_id: str, owner_id: str, currency: str) -> None:
        """Open the account, or find it with the same fields; MerchantAccountsConflict otherwise."""
        ...


class PaymentIntents(Protocol):
    """Payment intents (same table as merchants). A change that moves money is not saved here: its
    put rides in the ledger's transaction (intent_put), so the intent and the money move together."""

    def create(self, intent: PaymentIntent, event: IntentEvent) -> PaymentIntent:
        """Write a new intent with its event; the stored one when the id is taken (nothing written)."""
        ...

    def get(self, payment_id: str) -> PaymentIntent | None: ...

    def save(self, intent: PaymentIntent, event: IntentEvent) -> bool:
        """Write intent and its event if the stored version is intent.version - 1; False otherwise."""
        ...

    def event_put(self, intent: PaymentIntent, event: IntentEvent) -> tuple[Any, Any]:
        """(item, None): the event's outbox item, for the ledger transaction carrying the change."""
        ...

    def intent_put(self, intent: PaymentIntent) -> tuple[Any, Any]:
        """(item, condition) putting intent over version intent.version - 1 (version 1: none stored yet),
        for a ledger transaction."""
        ...

    def intent_from_raw(self, raw_item: dict[str, Any]) -> PaymentIntent: ...

    def page(self, wanted: IntentFilter, limit: int, start: dict[str, str] | None) -> IntentPage:
        """Up to limit intents newest first, resuming after the key a previous page returned."""
        ...

    def due_for_expiry(self, now: datetime, limit: int) -> list[str]:
        """Ids of up to limit capturable intents whose expiry_due_at() is at or before now, longest due
        first (from an index: possibly a moment stale, so each is read again before anything is done)."""
        ...


class PaymentsLedger(Protocol):
    """The ledger in process (its store), so an intent's put joins the ledger's own transaction."""

    def account(self, account_id: str) -> Account | None: ...

    def hold(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
             currency: str, timeout_seconds: int, extra: TransactionExtra) -> Transfer: ...

    def transfer(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
                 currency: str, extra: TransactionExtra) -> Transfer: ...

    def transfer_linked(self, legs: list[tuple[str, str, str, int]], currency: str,
                        extra: TransactionExtra) -> Transfer:
        """Legs (transfer id, debit account, credit account, amount) all or none; the first leg back."""
        ...

    def post(self, pending_id: str, transfer_id: str, amount_minor: int, currency: str,
             remainder_id: str | None, extra: TransactionExtra) -> Transfer: ...

    def void(self, pending_id: str, transfer_id: str, extra: TransactionExtra) -> Transfer: ...

    def statement(self, account_id: str, limit: int, cursor: str | None) -> StatementPage:
        """An account's entries newest first (the ledger's statement), resuming after a cursor."""
        ...

    def get_transfer(self, transfer_id: str) -> Transfer | None: ...

    def move(self, legs: list[SettlementLeg], currency: str) -> None:
        """The legs as one linked ledger batch (all or none); the same legs again are a replay."""
        ...


class RiskAssessor(Protocol):
    """Answers as the risk function's POST /assessments: services/risk/in_process.py InProcessRisk
    (risk's rules in this process), or services/suite_clients.py RiskClient (through the gateway)."""

    def assess(self, body: dict[str, Any]) -> dict[str, Any]: ...


class PaymentReads(Protocol):
    """What a payment created and confirmed at once reads, in one consistent call (store/payment_reads.py),
    and risk's items its one write carries."""

    def facts(self, merchant_id: str, account_id: str, screening: RiskRequest | None,
              window: str | None) -> PaymentFacts:
        """The merchant, the paying account and, given a screening, risk's lookup of it in `window`."""
        ...

    def screening_writes(self, pending: AssessmentToRecord) -> tuple[list[tuple[Any, Any]],
                                                                     list[tuple[Any, list[Any], Any]]]:
        """The puts (item, condition) and updates (item, actions, condition) that record `pending` and
        count it on the place it was judged on, for the payment's ledger transaction to carry."""
        ...


class Settlements(Protocol):
    """Merchant settlements, one per merchant and business date (same table as merchants)."""

    def get(self, merchant_id: str, business_date: date) -> Settlement | None: ...

    def latest(self, merchant_id: str) -> Settlement | None:
        """The merchant's settlement of the latest business date, if any."""
        ...

    def create(self, settlement: Settlement, previous: date | None) -> Settlement:
        """Write a new settlement as the one following the merchant's settlement of `previous` (None: its
        first), in one write with that claim; the stored one when the merchant and date are taken, and
        SettlementOutOfOrder when another date already followed `previous` (nothing written either way)."""
        ...

    def save(self, settlement: Settlement, event: IntentEvent) -> bool:
        """Write settlement and its event if the stored version is settlement.version - 1."""
        ...

    def of_merchant(self, merchant_id: str, limit: int, after: date | None = None) -> list[Settlement]:
        """Up to limit of the merchant's settlements, oldest business date first (after: of later dates)."""
        ...

    def run_progress(self, business_date: date) -> RunProgress | None: ...

    def save_run_progress(self, progress: RunProgress) -> bool:
        """Write progress if new (version 1) or over version - 1; False otherwise."""
        ...
class StepKey(Protocol):
    """A request's Idempotency-Key record, put in the ledger transaction of the step it answers, so the
    key is recorded if and only if the step commits (api.py KeyInTransaction)."""

    def put_for(self, stored: PaymentIntent) -> tuple[Any, Any]:
        """(item, condition): the key's completion record holding the answer rendered from `stored`."""
        ...

    def conflicted(self, raw_item: dict[str, Any] | None) -> None:
        """The record's condition failed: raise the replay (or 409/422); return when the key is free."""
        ...

    def committed(self) -> None: ...

    def refusal_write_id(self) -> str:
        """A stable id of this request and key: a refusal it records (payment_failed) is recorded once
        however often the same request is sent again."""
        ...
