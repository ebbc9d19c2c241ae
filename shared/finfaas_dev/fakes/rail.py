"""An in-memory rail payment store for tests; never shipped in a function image."""

from __future__ import annotations

import threading

from finfaas.services.rail.model import RailPayment


class InMemoryRailStore:
    """RailRepository in a dict, for unit tests; same contract."""

    def __init__(self) -> None:
        self._payments: dict[str, RailPayment] = {}
        self._lock = threading.Lock()

    def create(self, payment: RailPayment) -> RailPayment:
        with self._lock:
            return self._payments.setdefault(payment.payment_id, payment)

    def get(self, payment_id: str) -> RailPayment | None:
        with self._lock:
            return self._payments.get(payment_id)

    def save(self, payment: RailPayment) -> bool:
        with self._lock:
            stored = self._payments.get(payment.payment_id)
            if stored is None or stored.version != payment.version - 1:
                return False
            self._payments[payment.payment_id] = payment
            return True
