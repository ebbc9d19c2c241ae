"""Merchants as the payments capability keeps them, and the ledger accounts each one owns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
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
