"""Webhook subscriptions on DynamoDB, in the outbox table under their own partition.

Keys (table outbox): `webhook-subscriptions` / `<subscription id>`. They share the events' table
because they are small and few (subscriptions_total_max) and belong to the same pipeline; no event
partition is named so (producers use `<producer>-<n>`). A dedicated table would only need another
`table_name` here. Deleting marks the item DELETED, so a retried create cannot bring it back.
"""

from __future__ import annotations

import json
from typing import Any

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model

from finfaas.platform import jsonio
from finfaas.platform.config import resource_name, settings
from finfaas.platform.logging import get_logger
from finfaas.services.webhooks.errors import WebhookStoreUnavailable
from finfaas.services.webhooks.model import Subscription, SubscriptionStatus, subscriptions_total_max
from finfaas.store.binding import StoreMeta, bound
from finfaas.store.dynamo import conditional_write, consistent_get
from finfaas.store.models import format_time, parse_time
from finfaas.store.outbox_store import OUTBOX_TABLE_LOGICAL_NAME

SUBSCRIPTIONS_PARTITION = "webhook-subscriptions"
query_page_items = 100

_log = get_logger("subscriptions_store")


class _SubscriptionItem(Model):
    Meta = StoreMeta

    partition = UnicodeAttribute(hash_key=True)
    event_key = UnicodeAttribute(range_key=True)  # the subscription id
    owner = UnicodeAttribute()
    url = UnicodeAttribute()
    event_types = UnicodeAttribute()  # JSON list
    description = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    status = UnicodeAttribute()
    fingerprint = UnicodeAttribute()
    sealed_secret = UnicodeAttribute()


def _model(table_name: str, region: str) -> Any:
    return bound(_SubscriptionItem, table_name, region)


class SubscriptionsStore:
    """SubscriptionRepository on DynamoDB (pynamodb)."""

    def __init__(self, table_name: str | None = None, region: str | None = None) -> None:
        table_name = table_name or resource_name(OUTBOX_TABLE_LOGICAL_NAME)
        self._item = _model(table_name, region or settings().region)

    def create(self, subscription: Subscription) -> Subscription:
        item = self._to_item(subscription)
        written = conditional_write(lambda: item.save(condition=self._item.event_key.does_not_exist()))
        if written.or_raise(lambda w: WebhookStoreUnavailable(f"create: {w.error}")):
            return subscription
        stored = self.get(subscription.subscription_id)
        if stored is None:
            raise WebhookStoreUnavailable("the subscription vanished between two reads")
        return stored

    def get(self, subscription_id: str) -> Subscription | None:
        item = consistent_get(self._item, (SUBSCRIPTIONS_PARTITION, subscription_id),
                              lambda error: WebhookStoreUnavailable(f"get: {error}"))
        return None if item is None else _subscription(item)

    def list_owner(self, owner: str) -> list[Subscription]:
        return self._query(self._item.owner == owner)

    def list_active(self) -> list[Subscription]:
        return self._query(self._item.status == SubscriptionStatus.ACTIVE.value)

    def mark_deleted(self, subscription_id: str, owner: str) -> bool:
        item = self._item
        active = (item.owner == owner) & (item.status == SubscriptionStatus.ACTIVE.value)
        return conditional_write(lambda: item(SUBSCRIPTIONS_PARTITION, subscription_id).update(
            actions=[item.status.set(SubscriptionStatus.DELETED.value)], condition=active,
        )).or_raise(lambda w: WebhookStoreUnavailable(f"delete: {w.error}"))

    def _query(self, condition) -> list[Subscription]:
        try:
            results = self._item.query(SUBSCRIPTIONS_PARTITION, filter_condition=condition,
                                       consistent_read=True, page_size=query_page_items)
            found: list[Subscription] = []
            for item in results:
                if len(found) == subscriptions_total_max:
                    _log.warning("more subscriptions than one read takes", limit=subscriptions_total_max)
                    break
                found.append(_subscription(item))
            return found
        except PynamoDBException as error:
            raise WebhookStoreUnavailable(f"query: {error}") from error

    def _to_item(self, subscription: Subscription) -> Any:
        return self._item(
            SUBSCRIPTIONS_PARTITION, subscription.subscription_id, owner=subscription.owner,
            url=subscription.url, event_types=json.dumps(list(subscription.event_types)),
            description=subscription.description or None,
            created_at=format_time(subscription.created_at), status=subscription.status.value,
            fingerprint=subscription.fingerprint, sealed_secret=subscription.sealed_secret)


def _subscription(item: Any) -> Subscription:
    return Subscription(
        subscription_id=item.event_key, owner=item.owner, url=item.url,
        event_types=tuple(jsonio.loads(item.event_types)), description=item.description or "",
        created_at=parse_time(item.created_at), status=SubscriptionStatus(item.status),
        fingerprint=item.fingerprint, sealed_secret=item.sealed_secret)
