"""What the webhooks services need from outside: the subscriptions table, a cipher, an HTTP poster."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from finfaas.services.webhooks.model import Subscription


class SubscriptionRepository(Protocol):
    """Subscriptions by id and owner (DynamoDB: store/subscriptions_store.py)."""

    def create(self, subscription: Subscription) -> Subscription:
        """Stores it unless the id exists; returns what is stored under the id either way."""
        ...

    def get(self, subscription_id: str) -> Subscription | None: ...

    def list_owner(self, owner: str) -> list[Subscription]:
        """The owner's subscriptions, deleted ones included, by id."""
        ...

    def list_active(self) -> list[Subscription]:
        """Every active subscription (at most subscriptions_total_max)."""
        ...

    def mark_deleted(self, subscription_id: str, owner: str) -> bool:
        """False when the owner has no such active subscription."""
        ...


class SecretCipher(Protocol):
    """Envelope encryption bound to a context (platform/pii.py's EnvelopeCipher)."""

    def seal(self, plaintext: bytes, context: Mapping[str, str]) -> str: ...

    def open(self, sealed: str, context: Mapping[str, str]) -> bytes: ...


class HttpPoster(Protocol):
    """One POST to a checked address (service.PinnedPoster)."""

    def post(self, url: str, address: str, headers: Mapping[str, str], body: bytes) -> int:
        """POSTs to `url` over a connection to `address` (already checked); the response status, or
        DeliveryFailed when there is none. Redirects are answers, never followed."""
        ...
