"""What the rail needs from outside: its payment store, a settlement timer, a notice channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from finfaas.services.rail.model import RailPayment


class RailRepository(Protocol):
    """Payments by id, versioned (DynamoDB: store/rail_store.py)."""

    def create(self, payment: RailPayment) -> RailPayment:
        """Write a new payment; the existing one if the id is taken."""
        ...

    def get(self, payment_id: str) -> RailPayment | None: ...

    def save(self, payment: RailPayment) -> bool:
        """Write if the stored version is payment.version - 1."""
        ...


class Scheduler(Protocol):
    """Calls the bank back to settle a payment after a delay (the rail's own queue)."""

    def settle_later(self, payment_id: str, delay_seconds: int) -> None: ...


class NoticeSender(Protocol):
    """Carries the bank's signed notices to the adapter's route."""

    def send(self, body: bytes, headers: Mapping[str, str]) -> None: ...


class DisputeNotifier(Protocol):
    """Carries the bank's signed dispute notices to the payments function; its status and answer back."""

    def deliver(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, object]]: ...
