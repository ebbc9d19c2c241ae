"""Rate-limit counters in DynamoDB (table ratelimits: HASH bucket, TTL expires_at)."""

from __future__ import annotations

from functools import lru_cache

from botocore.exceptions import BotoCoreError
from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model

from finfaas.platform.config import resource_name
from finfaas.platform.ratelimit import RateLimitStoreError
from finfaas.store.dynamo import conditional_write, consistent_get

TABLE_LOGICAL_NAME = "ratelimits"
# The limiter sits in front of every request: a slow table must not hold requests for long.
CONNECT_TIMEOUT_SECONDS = 1
READ_TIMEOUT_SECONDS = 2
RETRY_ATTEMPTS_MAX = 1


class _BucketItem(Model):
    """Attribute layout shared by the per-table model classes."""

    class Meta:
        table_name = "unbound"
        connect_timeout_seconds = CONNECT_TIMEOUT_SECONDS
        read_timeout_seconds = READ_TIMEOUT_SECONDS
        max_retry_attempts = RETRY_ATTEMPTS_MAX

    bucket = UnicodeAttribute(hash_key=True)
    hits = NumberAttribute()
    expires_at = NumberAttribute()  # epoch seconds: DynamoDB's TTL attribute


@lru_cache(maxsize=8)
def bucket_model(table_name: str) -> type[_BucketItem]:
    """The model bound to one physical table (the name depends on the stage, known at run time)."""
    meta = type("Meta", (_BucketItem.Meta,), {"table_name": table_name})
    return type("BucketItem", (_BucketItem,), {"Meta": meta, "__module__": __name__})


class RateLimitStore:
    """RateLimitRepository on DynamoDB: one conditional ADD per take, exact across instances."""

    def __init__(self, table_name: str | None = None) -> None:
        self.model = bucket_model(table_name or resource_name(TABLE_LOGICAL_NAME))

    def take(self, bucket: str, tokens: int, capacity: int, expires_at_s: int) -> bool:
        if tokens > capacity:
            return False
        model = self.model
        return conditional_write(lambda: model(bucket).update(
            actions=[model.hits.add(tokens), model.expires_at.set(expires_at_s)],
            condition=model.hits.does_not_exist() | (model.hits <= capacity - tokens),
        )).or_raise(lambda w: RateLimitStoreError(f"rate limit update failed: {w.code}"))

    def count(self, bucket: str) -> int:
        # Both kinds of failure fail closed (429), never a 500.
        item = consistent_get(self.model, (bucket,), lambda _: RateLimitStoreError("rate limit read failed"),
                              attributes_to_get=["hits"], failures=(PynamoDBException, BotoCoreError))
        return 0 if item is None else int(item.hits)
