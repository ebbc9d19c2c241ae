"""What the payments service needs from outside: its merchants table and the ledger's accounts."""

from __future__ import annotations

from typing import Protocol

from finfaas.services.payments.model import Merchant


class Merchants(Protocol):
    """Merchants (DynamoDB: store/payments_store.py; in memory: finfaas_dev/fakes/payments.py)."""

    def create(self, merchant: Merchant) -> Merchant:
        """Write a new merchant and return it; the stored one if the id is taken (nothing written)."""
        ...

    def get(self, merchant_id: str) -> Merchant | None: ...

    def save(self, merchant: Merchant) -> bool:
        """Write merchant if the stored version is merchant.version - 1; False otherwise."""
        ...


class MerchantLedger(Protocol):
    """The ledger function's accounts API (services/suite_clients.py LedgerClient)."""

    def open_merchant_account(self, account_id: str, owner_id: str, currency: str) -> None:
        """Open the account, or find it with the same fields; MerchantAccountsConflict otherwise."""
        ...
