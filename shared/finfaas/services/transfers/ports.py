"""What the transfers service needs from outside: its order store, the ledger's accounts, risk."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from finfaas.domain.limits import Tier
from finfaas.services.risk.model import AssessmentToRecord
from finfaas.services.transfers.model import (
    AccountInfo,
    DailyUsage,
    ListPosition,
    OrderEvent,
    OrderFilter,
    OrderPage,
    Screening,
    StatusCount,
    TransferOrder,
    TransferStatus,
    UsageOutcome,
    ValidationFacts,
)


class TransferOrders(Protocol):
    """Orders, daily usage and tiers (DynamoDB: store/transfers_store.py; in memory: finfaas_dev/fakes)."""

    def create(self, order: TransferOrder, event: OrderEvent) -> TransferOrder:
        """Write a new order with its event and return it (the same object); the existing order if the
        id is taken (nothing written)."""
        ...

    def get(self, transfer_id: str) -> TransferOrder | None: ...

    def get_many(self, transfer_ids: Sequence[str]) -> dict[str, TransferOrder]:
        """The orders that exist among these ids, each read consistently, in as few calls as the store
        allows (DynamoDB: one BatchGetItem per 100 ids); what a process's status watcher reads per tick."""
        ...

    def save(self, order: TransferOrder, event: OrderEvent | None = None) -> bool:
        """Write order if the stored version is order.version - 1 (with event); False otherwise."""
        ...

    def reserve_usage(self, order: TransferOrder, usage: DailyUsage,
                      screening: AssessmentToRecord | None = None) -> UsageOutcome:
        """Save order (versioned) and add usage to the day's total if it stays within headroom; with a
        screening, record it in the same write (SCREENING_MOVED, nothing written, when it no longer holds)."""
        ...

    def release_usage(self, order: TransferOrder, usage: DailyUsage, event: OrderEvent | None) -> bool:
        """Save order (versioned) with event and give usage back (once); False on a version conflict."""
        ...

    def list_by_owner(
        self, owner_id: str, where: OrderFilter, limit: int, after: ListPosition | None
    ) -> OrderPage:
        """The owner's orders that match, newest first: at most `limit`, fewer when the store stopped at
        its bound of entries examined (resume_after then says where to go on)."""
        ...

    def list_open(
        self, status: TransferStatus, where: OrderFilter, limit: int, after: ListPosition | None
    ) -> OrderPage:
        """Orders in one of OPEN_STATUSES created within where's bounds, oldest first."""
        ...

    def count_open(self, status: TransferStatus, created_before: datetime | None = None) -> StatusCount:
        """How many orders are in one of OPEN_STATUSES (created before the moment, if given)."""
        ...

    def tier_of(self, owner_id: str) -> Tier: ...

    def day_total_minor(self, owner_id: str, day: str, currency: str) -> int:
        """The amounts counted against the owner's day in this currency so far (0 when none)."""
        ...

    def set_tier(self, owner_id: str, tier: Tier) -> None: ...


class AccountDirectory(Protocol):
    """Ledger accounts as validation reads them."""

    def accounts(self, account_ids: Sequence[str]) -> dict[str, AccountInfo]:
        """The accounts that exist among these ids, each read consistently, in one call."""
        ...


class RiskAssessor(Protocol):
    def assess(self, body: dict[str, Any]) -> dict[str, Any]: ...


class ValidationReads(Protocol):
    """Everything one validation reads, in one consistent call where the store allows it
    (DynamoDB: one BatchGetItem across the ledger's accounts and the orders table)."""

    def facts(
        self,
        owner_id: str,
        account_ids: Sequence[str],
        day: str | None,
        currency: str,
        transfer_id: str | None = None,
        screening: Screening | None = None,
    ) -> ValidationFacts:
        """The accounts that exist among these ids, the owner's tier, with a day its total, with a
        transfer id that order (None when there is none), and with a screening risk's lookup (None when
        this store does not read risk's items)."""
        ...
