"""Webhook subscriptions as they are stored, their ids, and the Standard Webhooks signature scheme."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from finfaas.services.webhooks.errors import InvalidSignature

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
SIGNATURE_VERSION_PREFIX = "v1,"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
ALL_EVENT_TYPES = "*"
webhook_secret_bytes = 32
signature_tolerance_seconds_default = 300
subscription_id_chars_max = 64  # "sub_" and 24 base32 characters; room for a longer scheme
subscriptions_total_max = 1000  # what one fan-out reads; the store refuses more


# --- signatures (stdlib only, and InvalidSignature: integrators may copy these two functions) --------


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: v1,<base64 HMAC-SHA256(key, id.timestamp.body)>."""
    key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return SIGNATURE_VERSION_PREFIX + base64.b64encode(digest).decode()


def verify_signature(secret: str, headers: Mapping[str, str], body: bytes,
                     tolerance_s: int = signature_tolerance_seconds_default,
                     now: float | None = None) -> None:
    """Returns when the webhook is authentic and its timestamp within `tolerance_s` of now; else raises
    InvalidSignature. Pass the raw body bytes, before any JSON parsing."""
    lowered = {name.lower(): value for name, value in headers.items()}
    webhook_id, stamp, signatures = (lowered.get(h) for h in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not webhook_id or not stamp or not signatures:
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isdigit():
        raise InvalidSignature("webhook-timestamp is not Unix seconds")
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance_s:
        raise InvalidSignature("webhook-timestamp is outside the tolerance")
    expected = sign(secret, webhook_id, int(stamp), body)
    # Several signatures may be sent (space-separated) while a secret is being rotated.
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split()):
        raise InvalidSignature("no signature matches")


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(webhook_secret_bytes)).decode()


class SubscriptionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    owner: str
    url: str
    event_types: tuple[str, ...]
    description: str
    created_at: datetime
    status: SubscriptionStatus
    fingerprint: str  # of the creating request, to tell a retry from a different request
    sealed_secret: str

    def matches(self, event_type: str) -> bool:
        return self.status is SubscriptionStatus.ACTIVE and (
            ALL_EVENT_TYPES in self.event_types or event_type in self.event_types)


def subscription_id_for(owner: str, idempotency_key: str) -> str:
    """Derived from who asked and their Idempotency-Key, so a retried create finds its subscription."""
    digest = hashlib.sha256(f"{owner}\n{idempotency_key}".encode()).digest()
    return "sub_" + base64.b32encode(digest[:15]).decode().lower()
