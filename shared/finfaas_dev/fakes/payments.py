"""In-memory merchants and merchant ledger accounts for tests; never shipped in a function image."""

from __future__ import annotations

import threading

from finfaas.services.payments.errors import MerchantAccountsConflict
from finfaas.services.payments.model import Merchant
from finfaas.services.suite_clients import ServiceUnreachable


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
