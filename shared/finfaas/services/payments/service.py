"""Payments use cases: onboard a merchant (its ledger accounts first, then its record), read it,
deactivate it.

Onboarding is idempotent on the caller's merchant_id: the ledger opens an account again with the same
fields as a find, and the record is a conditional create, so a retry after a crash between the two
finishes the job; the same id with other terms is refused and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from finfaas.domain.money import parse_currency
from finfaas.domain.payments import FeeSchedule
from finfaas.platform.retry import Change, Unchanged, read_change_save
from finfaas.services.payments.api import OnboardBody
from finfaas.services.payments.errors import (
    MerchantAccountsConflict,
    MerchantBusy,
    MerchantExists,
    MerchantNotFound,
)
from finfaas.services.payments.model import Merchant, MerchantStatus, SettlementAccount
from finfaas.services.payments.ports import MerchantLedger, Merchants
from finfaas.services.suite_clients import LedgerAccountConflict, LedgerClient

MERCHANT_ACCOUNT_KIND = "MERCHANT"


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


class PaymentsService:
    """The payments capability's use cases over its ports."""

    def __init__(self, merchants: Merchants, ledger: MerchantLedger,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self._merchants = merchants
        self._ledger = ledger
        self._clock = clock

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

    # --- internals ---

    def _merchant_from(self, body: OnboardBody) -> Merchant:
        schedule = body.fee_schedule
        settlement = body.settlement_account
        return Merchant(
            merchant_id=body.merchant_id, name=body.name, currency=parse_currency(body.currency),
            settlement=SettlementAccount(settlement.bank_code, settlement.account_number, settlement.name),
            fees=FeeSchedule(schedule.bps, schedule.fixed_minor, schedule.rounding),
            reserve_bps=body.reserve_bps, capture_window_seconds=body.capture_window_seconds,
            receivable_shards=body.receivable_shards, status=MerchantStatus.ACTIVE, created_at=self._clock(),
        )

    @staticmethod
    def _same(stored: Merchant, wanted: Merchant) -> Merchant:
        if not stored.same_terms(wanted):
            raise MerchantExists(f"merchant {wanted.merchant_id} was onboarded with other terms",
                                 field="merchant_id")
        return stored
