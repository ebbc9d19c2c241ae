"""The webhooks function's shapes: subscription bodies and views, the queued delivery, the error table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from finfaas.platform.cursors import cursor_chars_max
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.events import (
    EVENT_TYPES,
    TYPE_ATTRIBUTE,
    EventMac,
    EventRejected,
    QueueMessage,
    QueueUnavailable,
)
from finfaas.platform.http import StrictModel
from finfaas.platform.pii import PiiDecryptionFailed, PiiKeyUnavailable
from finfaas.services.webhooks.errors import (
    IdempotencyKeyReused,
    InvalidEventTypes,
    InvalidTarget,
    SubscriptionDeleted,
    SubscriptionLimitReached,
    SubscriptionNotFound,
    WebhookStoreUnavailable,
)
from finfaas.services.webhooks.model import Subscription

DELIVERY_TYPE = "dev.finfaas.webhook.delivery"
DELIVERY_FORMAT_VERSION = 1
url_chars_max = 2048
description_chars_max = 200
page_size_default = 20
page_size_max = 100


@dataclass(frozen=True)
class Delivery:
    """One event for one subscription, as it travels on the webhooks queue."""

    subscription_id: str
    event: Mapping[str, Any]  # the structured CloudEvent document, without our MAC
    attempt: int = 1
    not_before: int = 0  # Unix seconds; a delivery received earlier waits again

    def document(self) -> dict[str, Any]:
        return {"v": DELIVERY_FORMAT_VERSION, "subscription_id": self.subscription_id,
                "event": dict(self.event), "attempt": self.attempt, "not_before": self.not_before}

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Delivery:
        try:
            delivery = cls(str(document["subscription_id"]), dict(document["event"]),
                           int(document["attempt"]), int(document["not_before"]))
        except (KeyError, TypeError, ValueError):
            raise EventRejected("not a webhook delivery") from None
        if document.get("v") != DELIVERY_FORMAT_VERSION or delivery.attempt < 1:
            raise EventRejected("not a webhook delivery of this version")
        return delivery

    @property
    def event_id(self) -> str:
        return str(self.event.get("id", ""))

    def message(self, mac: EventMac, delay_seconds: int = 0) -> QueueMessage:
        key = f"{self.subscription_id}:{self.event_id}:{self.attempt}"
        return QueueMessage(key, mac.seal(self.document()), {TYPE_ATTRIBUTE: DELIVERY_TYPE}, delay_seconds)


class CreateSubscriptionBody(StrictModel):
    url: str = Field(min_length=1, max_length=url_chars_max,
                     description="Where deliveries are POSTed (https; loopback only in the local runtime)")
    event_types: list[str] = Field(min_length=1, max_length=len(EVENT_TYPES) + 1,
                                   description=f"Any of {', '.join(EVENT_TYPES)}, or '*' for all")
    description: str = Field(default="", max_length=description_chars_max)


class SubscriptionView(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str
    created_at: datetime

    @classmethod
    def of(cls, subscription: Subscription) -> SubscriptionView:
        return cls(id=subscription.subscription_id, url=subscription.url,
                   event_types=list(subscription.event_types), description=subscription.description,
                   created_at=subscription.created_at)


class CreatedSubscriptionView(SubscriptionView):
    secret: str = Field(description="whsec_<base64>: signs every delivery; shown only to the creating "
                                    "request (and its retries with the same Idempotency-Key)")


class SubscriptionList(BaseModel):
    data: list[SubscriptionView]
    has_more: bool
    next_cursor: str | None = Field(description="pass as starting_after for the next page")


class PageQuery(StrictModel):
    limit: int = Field(default=page_size_default, ge=1, le=page_size_max)
    starting_after: str | None = Field(default=None, min_length=1, max_length=cursor_chars_max)


ERRORS = {
    SubscriptionNotFound: ErrorSpec(404, SubscriptionNotFound.code, "Subscription not found"),
    SubscriptionDeleted: ErrorSpec(409, SubscriptionDeleted.code, "Subscription deleted"),
    IdempotencyKeyReused: ErrorSpec(422, IdempotencyKeyReused.code, "Idempotency-Key reused"),
    SubscriptionLimitReached: ErrorSpec(422, SubscriptionLimitReached.code, "Subscription limit reached"),
    InvalidTarget: ErrorSpec(422, InvalidTarget.code, "Invalid webhook URL"),
    InvalidEventTypes: ErrorSpec(422, InvalidEventTypes.code, "Invalid event types"),
    EventRejected: ErrorSpec(403, "event_rejected", "Not an authentic event"),
    QueueUnavailable: ErrorSpec(503, "queue_unavailable", "Queue unavailable"),
    WebhookStoreUnavailable: ErrorSpec(503, "subscriptions_unavailable", "Subscriptions unavailable"),
    PiiKeyUnavailable: ErrorSpec(503, "secret_key_unavailable", "Encryption key unavailable"),
    PiiDecryptionFailed: ErrorSpec(503, "secret_unreadable", "Webhook secret unreadable"),
}
