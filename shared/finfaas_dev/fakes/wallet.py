"""In-memory top-ups and withdrawals, for tests; never shipped. The same contract as store/wallet_store.py.

With finfaas_dev/fakes/payments.py's InMemoryPaymentsLedger over it, a ledger operation and its move put
apply together, as the DynamoDB store's one transaction does."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from finfaas.services.wallet.model import MoveEvent, MoveKind, MovePage, WalletMove

_T = TypeVar("_T")


class InMemoryWalletMoves:
    """Moves in a dict. A raw item (what a failed condition returns) is {"intent": the stored move}, the
    shape InMemoryPaymentsLedger hands back."""

    def __init__(self) -> None:
        self._moves: dict[str, WalletMove] = {}
        self.events: list[tuple[str, int, MoveEvent]] = []  # (move id, version, event) as written
        self.lock = threading.RLock()

    def create(self, move: WalletMove, event: MoveEvent) -> WalletMove:
        with self.lock:
            stored = self._moves.setdefault(move.move_id, move)
            if stored is move:
                self.events.append((move.move_id, move.version, event))
            return stored

    def get(self, move_id: str) -> WalletMove | None:
        with self.lock:
            return self._moves.get(move_id)

    def save(self, move: WalletMove, event: MoveEvent) -> bool:
        with self.lock:
            stored = self._moves.get(move.move_id)
            if stored is None or stored.version != move.version - 1:
                return False
            self._moves[move.move_id] = move
            self.events.append((move.move_id, move.version, event))
            return True

    def move_put(self, move: WalletMove) -> tuple[Any, Any]:
        return move, move.version - 1  # 0: the move must not exist yet

    def event_put(self, move: WalletMove, event: MoveEvent) -> tuple[Any, Any]:
        return (move.move_id, move.version, event), None

    def move_from_raw(self, raw_item: dict[str, Any]) -> WalletMove:
        move: WalletMove = raw_item["intent"]
        return move

    def page(self, owner_id: str, kind: MoveKind, limit: int, start: dict[str, str] | None) -> MovePage:
        with self.lock:
            chosen = sorted((m for m in self._moves.values() if m.owner_id == owner_id and m.kind is kind),
                            key=lambda m: (m.created_at, m.move_id), reverse=True)
        if start is not None:
            chosen = [m for m in chosen if (m.created_at.isoformat(), m.move_id) <
                      (start["created_at"], start["move_id"])]
        page = chosen[:limit]
        if len(chosen) <= limit:
            return MovePage(page, None)
        last = page[-1]
        return MovePage(page, {"created_at": last.created_at.isoformat(), "move_id": last.move_id})

    def apply(self, item: WalletMove, condition: int, operation: Callable[[], _T],
              conflicted: Callable[[dict[str, Any] | None], None], events: list[Any]) -> _T:
        """Runs operation and puts item and events, all or nothing, if the stored version is `condition`
        (0: no move stored yet)."""
        with self.lock:
            stored = self._moves.get(item.move_id)
            if (stored.version if stored is not None else 0) != condition:
                conflicted({"intent": stored} if stored is not None else None)
                raise AssertionError("an extra's conflicted() must raise")
            result = operation()
            self._moves[item.move_id] = item
            self.events.extend(events)
            return result
