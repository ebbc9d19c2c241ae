"""In-memory transfer orders for tests; never shipped in a function image."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from finfaas.domain.limits import (
    TIER_DEFAULT,
    Tier,
)
from finfaas.services.risk.model import AssessmentToRecord
from finfaas.services.transfers.model import (
    OPEN_STATUSES,
    DailyUsage,
    ListPosition,
    OrderEvent,
    OrderFilter,
    OrderPage,
    StatusCount,
    TransferOrder,
    TransferStatus,
    UsageOutcome,
)


class InMemoryTransferOrders:
    """TransferOrders in dicts for unit tests; same contract as the DynamoDB store."""

    def __init__(self, risk: Any = None) -> None:
        self.risk = risk  # a RiskRepository: a validation's screening is recorded with its usage
        self._orders: dict[str, TransferOrder] = {}
        self._totals: dict[tuple[str, str, str], int] = {}
        self._markers: set[tuple[str, str, str, str]] = set()
        self._tiers: dict[str, Tier] = {}
        self.events: list[OrderEvent] = []
        self._lock = threading.Lock()

    def create(self, order: TransferOrder, event: OrderEvent) -> TransferOrder:
        with self._lock:
            existing = self._orders.get(order.transfer_id)
            if existing is not None:
                return existing
            self._orders[order.transfer_id] = order
            self.events.append(event)
            return order

    def get(self, transfer_id: str) -> TransferOrder | None:
        with self._lock:
            return self._orders.get(transfer_id)

    def save(self, order: TransferOrder, event: OrderEvent | None = None) -> bool:
        with self._lock:
            return self._save(order, event)

    def get_many(self, transfer_ids: Sequence[str]) -> dict[str, TransferOrder]:
        with self._lock:
            return {i: self._orders[i] for i in transfer_ids if i in self._orders}

    def _save(self, order: TransferOrder, event: OrderEvent | None) -> bool:
        stored = self._orders.get(order.transfer_id)
        if stored is None or stored.version != order.version - 1:
            return False
        self._orders[order.transfer_id] = order
        if event is not None:
            self.events.append(event)
        return True

    def reserve_usage(self, order: TransferOrder, usage: DailyUsage,
                      screening: AssessmentToRecord | None = None) -> UsageOutcome:
        with self._lock:
            stored = self._orders.get(order.transfer_id)
            if stored is None or stored.version != order.version - 1:
                return UsageOutcome.CONFLICT
            day = (usage.owner_id, usage.day, usage.currency)
            if self._totals.get(day, 0) > usage.headroom_minor:
                return UsageOutcome.EXCEEDED
            if screening is not None and not self._screening_recorded(screening):
                return UsageOutcome.SCREENING_MOVED
            self._totals[day] = self._totals.get(day, 0) + usage.amount_minor
            self._markers.add((*day, order.transfer_id))
            self._orders[order.transfer_id] = order
            return UsageOutcome.RESERVED

    def _screening_recorded(self, screening: AssessmentToRecord) -> bool:
        """Records the screening on the place it was judged on; False when it no longer holds (nothing
        counted then, as the DynamoDB store's one transaction writes nothing)."""
        if self.risk is None:
            raise ValueError("a screening is recorded only by orders given the risk store")
        recorded = self.risk.count_and_record(screening.request, screening.window, screening.before,
                                              screening.transfers_max, screening.assessment, screening.at)
        return recorded == screening.assessment

    def release_usage(self, order: TransferOrder, usage: DailyUsage, event: OrderEvent | None) -> bool:
        with self._lock:
            marker = (usage.owner_id, usage.day, usage.currency, order.transfer_id)
            if not self._save(order, event):
                return False
            if marker in self._markers:
                self._markers.discard(marker)
                day = marker[:3]
                self._totals[day] = self._totals.get(day, 0) - usage.amount_minor
            return True

    def list_by_owner(
        self, owner_id: str, where: OrderFilter, limit: int, after: ListPosition | None
    ) -> OrderPage:
        with self._lock:
            found = [o for o in self._orders.values() if o.owner_id == owner_id and where.matches(o)]
        return _page(sorted(found, key=_position_key, reverse=True), limit, after, newest_first=True)

    def list_open(
        self, status: TransferStatus, where: OrderFilter, limit: int, after: ListPosition | None
    ) -> OrderPage:
        assert status in OPEN_STATUSES, "the status index holds open orders only"
        with self._lock:
            found = [o for o in self._orders.values() if o.status is status and where.matches(o)]
        return _page(sorted(found, key=_position_key), limit, after, newest_first=False)

    def count_open(self, status: TransferStatus, created_before: datetime | None = None) -> StatusCount:
        assert status in OPEN_STATUSES, "the status index holds open orders only"
        with self._lock:
            return StatusCount(sum(1 for o in self._orders.values() if o.status is status
                                   and (created_before is None or o.created_at < created_before)))

    def tier_of(self, owner_id: str) -> Tier:
        with self._lock:
            return self._tiers.get(owner_id, TIER_DEFAULT)

    def set_tier(self, owner_id: str, tier: Tier) -> None:
        with self._lock:
            self._tiers[owner_id] = tier

    def day_total_minor(self, owner_id: str, day: str, currency: str) -> int:
        with self._lock:
            return self._totals.get((owner_id, day, currency), 0)


def _position_key(order: TransferOrder) -> tuple[datetime, str]:
    return order.created_at, order.transfer_id


def _page(ordered: list[TransferOrder], limit: int, after: ListPosition | None,
          newest_first: bool) -> OrderPage:
    if after is not None:
        mark = (after.created_at, after.transfer_id)
        ordered = [o for o in ordered
                   if (_position_key(o) < mark if newest_first else _position_key(o) > mark)]
    page = ordered[:limit]
    more = len(ordered) > limit
    return OrderPage(tuple(page), ListPosition(page[-1].created_at, page[-1].transfer_id) if more else None)
