"""In-memory merchants, payment intents and the ledger as payments uses it, for tests; never shipped."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from finfaas.domain.ledger import TransactionExtra, Transfer
from finfaas.platform.idempotency import IdempotencyRecord
from finfaas.services.ledger.service import LedgerService
from finfaas.services.payments.errors import MerchantAccountsConflict, SettlementOutOfOrder
from finfaas.services.payments.model import (
    IntentEvent,
    IntentFilter,
    IntentPage,
    Merchant,
    PaymentIntent,
    RunProgress,
    Settlement,
)
from finfaas.services.payments.service import LedgerStoreAccounts
from finfaas.services.suite_clients import ServiceUnreachable

from finfaas_dev.fakes.platform import InMemoryIdempotencyStore

_T = TypeVar("_T")


class InMemoryMerchants:
    """Merchants in a dict; the same contract as store/payments_store.py."""

    def __init__(self) -> None:
        self._merchants: dict[str, Merchant] = {}
        self._lock = threading.Lock()

    def create(self, merchant: Merchant) -> Merchant:
        with self._lock:
            return self._merchants.setdefault(merchant.merchant_id, merchant)

    def get(self, merchant_id: str) -> Merchant | None:
        with self._lock:
            return self._merchants.get(merchant_id)

    def save(self, merchant: Merchant) -> bool:
        with self._lock:
            stored = self._merchants.get(merchant.merchant_id)
            if stored is None or stored.version != merchant.version - 1:
                return False
            self._merchants[merchant.merchant_id] = merchant
            return True

    def merchant_ids(self, after: str | None, limit: int) -> list[str]:
        with self._lock:
            return sorted(m for m in self._merchants if after is None or m > after)[:limit]


class InMemoryMerchantLedger:
    """MerchantLedger keeping (owner, currency) per account id, as the ledger function would."""

    def __init__(self) -> None:
        self.accounts: dict[str, tuple[str, str]] = {}
        self.calls = 0
        self.fail_after_calls: int | None = None  # to stop onboarding part-way, as a crash would

    def open_merchant_account(self, account_id: str, owner_id: str, currency: str) -> None:
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise ServiceUnreachable("POST /function/ledger/accounts: ConnectionError")
        self.calls += 1
        existing = self.accounts.setdefault(account_id, (owner_id, currency))
        if existing != (owner_id, currency):
            raise MerchantAccountsConflict(f"ledger account {account_id} exists with other fields",
                                           field="merchant_id")


class InMemoryPaymentIntents:
    """PaymentIntents in a dict; the same contract as store/payments_store.py. A raw item (what a failed
    condition returns) is {"intent": the stored intent}."""

    def __init__(self) -> None:
        self._intents: dict[str, PaymentIntent] = {}
        self.events: list[tuple[str, int, IntentEvent]] = []  # (payment id, version, event) as written
        self.lock = threading.RLock()

    def create(self, intent: PaymentIntent, event: IntentEvent) -> PaymentIntent:
        with self.lock:
            stored = self._intents.setdefault(intent.payment_id, intent)
            if stored is intent:
                self.events.append((intent.payment_id, intent.version, event))
            return stored

    def get(self, payment_id: str) -> PaymentIntent | None:
        with self.lock:
            return self._intents.get(payment_id)

    def save(self, intent: PaymentIntent, event: IntentEvent) -> bool:
        with self.lock:
            stored = self._intents.get(intent.payment_id)
            if stored is None or stored.version != intent.version - 1:
                return False
            self._intents[intent.payment_id] = intent
            self.events.append((intent.payment_id, intent.version, event))
            return True

    def event_put(self, intent: PaymentIntent, event: IntentEvent) -> tuple[Any, Any]:
        return (intent.payment_id, intent.version, event), None

    def intent_put(self, intent: PaymentIntent) -> tuple[Any, Any]:
        return intent, intent.version - 1

    def intent_from_raw(self, raw_item: dict[str, Any]) -> PaymentIntent:
        return raw_item["intent"]

    def page(self, wanted: IntentFilter, limit: int, start: dict[str, str] | None) -> IntentPage:
        with self.lock:
            chosen = sorted((i for i in self._intents.values() if _matches(i, wanted)),
                            key=lambda i: (i.created_at, i.payment_id), reverse=True)
        if start is not None:
            chosen = [i for i in chosen if (i.created_at.isoformat(), i.payment_id) <
                      (start["created_at"], start["payment_id"])]
        page = chosen[:limit]
        if len(chosen) <= limit:
            return IntentPage(page, None)
        last = page[-1]
        return IntentPage(page, {"created_at": last.created_at.isoformat(), "payment_id": last.payment_id})

    def due_for_expiry(self, now: datetime, limit: int) -> list[str]:
        with self.lock:
            due = sorted((at, i.payment_id) for i in self._intents.values()
                         if (at := i.expiry_due_at()) is not None and at <= now)
        return [payment_id for _, payment_id in due[:limit]]

    def apply(self, item: PaymentIntent, condition: int, operation: Callable[[], _T],
              conflicted: Callable[[dict[str, Any] | None], None], events: list[Any]) -> _T:
        """Runs operation and puts item and events, all or nothing, if the stored version is `condition`."""
        with self.lock:
            stored = self._intents.get(item.payment_id)
            # Version 0: the intent is created by this operation (no intent may be stored yet).
            if (stored.version if stored is not None else 0) != condition:
                conflicted({"intent": stored} if stored is not None else None)
                raise AssertionError("an extra's conflicted() must raise")
            result = operation()
            self._intents[item.payment_id] = item
            self.events.extend(events)
            return result


def _matches(intent: PaymentIntent, wanted: IntentFilter) -> bool:
    return ((wanted.merchant_id is None or intent.merchant_id == wanted.merchant_id)
            and (wanted.owner_id is None or intent.owner_id == wanted.owner_id)
            and (wanted.status is None or intent.status is wanted.status)
            and (wanted.created_gte is None or intent.created_at >= wanted.created_gte)
            and (wanted.created_lt is None or intent.created_at < wanted.created_lt))


class InMemoryPaymentsLedger(LedgerStoreAccounts):
    """PaymentsLedger over a LedgerService on the reference ledger: each operation and its extra's intent
    put apply together, as the DynamoDB store's one transaction does."""

    def __init__(self, ledger: LedgerService, intents: InMemoryPaymentIntents,
                 keys: InMemoryIdempotencyStore | None = None) -> None:
        super().__init__(ledger)
        self._intents = intents
        self._keys = keys  # where an Idempotency-Key record riding in a transaction lands
        self.audits: list[str] = []  # audit facts committed with the money, in order

    def _in_transaction(self, extra: TransactionExtra,
                        operation: Callable[[TransactionExtra | None], Transfer]) -> Transfer:
        item, condition = extra.put_for(())
        facts = getattr(extra, "outbox_audit", None)
        audit = facts() if callable(facts) else None
        more = getattr(extra, "more_puts_for", None)
        puts = more(()) if more is not None else []
        events = [put for put, _ in puts if not isinstance(put, IdempotencyRecord)]
        records = [(n, put, free_at) for n, (put, free_at) in enumerate(puts)
                   if isinstance(put, IdempotencyRecord)]
        with self._intents.lock:  # the key's records, the intent and the money, all or nothing
            for n, record, free_at in records:
                assert self._keys is not None, "a key's record needs the fake's idempotency store"
                existing = self._keys.get(record.key)
                if existing is not None and not existing.is_free_for(record.fingerprint, free_at):
                    extra.more_conflicted(n, {"record": existing})  # type: ignore[attr-defined]
                    raise AssertionError("a key in the way answers by raising")
            result = self._intents.apply(item, condition, lambda: operation(None), extra.conflicted, events)
            for _, record, free_at in records:
                assert self._keys is not None
                assert self._keys.put_if_free(record, free_at).written
        if audit is not None:
            self.audits.append(audit)  # the facts the DynamoDB store's outbox item would carry
        extra.committed()
        return result


class InMemorySettlements:
    """Settlements in a dict; the same contract as store/payments_store.py PaymentSettlementsStore."""

    def __init__(self) -> None:
        self._settlements: dict[tuple[str, date], Settlement] = {}
        self._runs: dict[date, RunProgress] = {}
        self._followed: set[tuple[str, date | None]] = set()  # (merchant, a date another settlement followed)
        self.events: list[tuple[str, date, IntentEvent]] = []
        self._lock = threading.Lock()

    def get(self, merchant_id: str, business_date: date) -> Settlement | None:
        with self._lock:
            return self._settlements.get((merchant_id, business_date))

    def latest(self, merchant_id: str) -> Settlement | None:
        with self._lock:
            mine = [s for (m, _), s in self._settlements.items() if m == merchant_id]
        return max(mine, key=lambda s: s.business_date) if mine else None

    def create(self, settlement: Settlement, previous: date | None) -> Settlement:
        with self._lock:
            key = (settlement.merchant_id, settlement.business_date)
            if key in self._settlements:
                return self._settlements[key]
            if (settlement.merchant_id, previous) in self._followed:
                raise SettlementOutOfOrder(f"date: {settlement.merchant_id} was settled after {previous} for "
                                           "another date meanwhile", field="date")
            self._followed.add((settlement.merchant_id, previous))
            self._settlements[key] = settlement
            return settlement

    def save(self, settlement: Settlement, event: IntentEvent) -> bool:
        key = (settlement.merchant_id, settlement.business_date)
        with self._lock:
            stored = self._settlements.get(key)
            if stored is None or stored.version != settlement.version - 1:
                return False
            self._settlements[key] = settlement
            self.events.append((*key, event))
            return True

    def of_merchant(self, merchant_id: str, limit: int, after: date | None = None) -> list[Settlement]:
        with self._lock:
            mine = [s for (m, d), s in self._settlements.items()
                    if m == merchant_id and (after is None or d > after)]
        return sorted(mine, key=lambda s: s.business_date)[:limit]

    def run_progress(self, business_date: date) -> RunProgress | None:
        with self._lock:
            return self._runs.get(business_date)

    def save_run_progress(self, progress: RunProgress) -> bool:
        with self._lock:
            stored = self._runs.get(progress.business_date)
            if (stored.version if stored else 0) != progress.version - 1:
                return False
            self._runs[progress.business_date] = progress
            return True
