"""Idempotency records in DynamoDB (table idempotency: HASH idempotency_key, TTL expires_at)."""

from __future__ import annotations

import json
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.expressions.condition import Condition
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from finfaas.platform import jsonio
from finfaas.platform.config import resource_name
from finfaas.platform.idempotency import (
    IdempotencyRecord,
    IdempotencyStoreError,
    PutOutcome,
    RecordStatus,
    StoredResponse,
)
from finfaas.store.binding import (
    StoreMeta,
    bound,
)
from finfaas.store.dynamo import conditional_write, consistent_get

TABLE_LOGICAL_NAME = "idempotency"


class _IdempotencyItem(Model):
    """Attribute layout shared by the per-table model classes."""

    Meta = StoreMeta

    idempotency_key = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute()
    fingerprint = UnicodeAttribute()
    expires_at = NumberAttribute()  # epoch seconds: DynamoDB's TTL attribute
    lease_token = UnicodeAttribute(null=True)
    lease_expires_at_ms = NumberAttribute(default=0)
    response_status = NumberAttribute(null=True)
    response_headers = UnicodeAttribute(null=True)  # JSON object
    response_body = UnicodeAttribute(null=True)
    written_at_ms = NumberAttribute(default=0)


def item_model(table_name: str) -> type[_IdempotencyItem]:
    """The model bound to one physical table (the name depends on the stage, known at run time)."""
    return bound(_IdempotencyItem, table_name)


class IdempotencyStore:
    """IdempotencyRepository on DynamoDB: conditional puts, consistent reads, token-guarded updates."""

    def __init__(self, table_name: str | None = None) -> None:
        self.model = item_model(table_name or resource_name(TABLE_LOGICAL_NAME))

    def put_if_free(self, record: IdempotencyRecord, now_ms: int) -> PutOutcome:
        written = conditional_write(
            lambda: self._to_item(record).save(condition=self._free_condition(record, now_ms)))
        if written.or_raise(lambda w: IdempotencyStoreError(f"idempotency put failed: {w.code}")):
            return PutOutcome(True)
        # One consistent read names what is in the way (pynamodb 6.1's save() cannot ask for ALL_OLD).
        return PutOutcome(False, self.get(record.key))

    def get(self, key: str) -> IdempotencyRecord | None:
        item = consistent_get(self.model, (key,), lambda _: IdempotencyStoreError("idempotency read failed"))
        return None if item is None else self._to_record(item)

    def complete(self, record: IdempotencyRecord) -> bool:
        if record.lease_token is None:
            raise ValueError("complete() needs the claim's lease token")
        lease_token = record.lease_token
        return conditional_write(
            lambda: self._to_item(record).save(condition=self._held_condition(lease_token)),
        ).or_raise(lambda _: IdempotencyStoreError("idempotency completion failed"))

    def release(self, key: str, lease_token: str) -> bool:
        return conditional_write(
            lambda: self.model(key).delete(condition=self._held_condition(lease_token)),
        ).or_raise(lambda _: IdempotencyStoreError("idempotency release failed"))

    def renew(self, key: str, lease_token: str, lease_expires_at_ms: int) -> bool:
        model = self.model
        return conditional_write(
            lambda: model(key).update(
                actions=[model.lease_expires_at_ms.set(lease_expires_at_ms)],
                condition=self._held_condition(lease_token),
            ),
        ).or_raise(lambda _: IdempotencyStoreError("idempotency renewal failed"))

    def add_completion_to(
        self, transaction: TransactWrite, record: IdempotencyRecord, *, now_ms: int | None = None
    ) -> None:
        """Put the COMPLETED record inside the caller's pynamodb TransactWrite (see completion_put)."""
        item, condition = self.completion_put(record, now_ms=now_ms)
        transaction.save(item, condition=condition)

    def completion_put(
        self, record: IdempotencyRecord, *, now_ms: int | None = None
    ) -> tuple[_IdempotencyItem, Condition]:
        """The item and condition to put in a caller's own transaction: if the record carries a
        claim's token the claim must still be held, else the key must be free for this fingerprint."""
        if record.status is not RecordStatus.COMPLETED or record.response is None:
            raise ValueError("only a COMPLETED record with its response belongs in a transaction")
        if record.lease_token is not None:
            return self._to_item(record), self._held_condition(record.lease_token)
        # The guard's clock decides expiry, not this process's: they differ in tests and may in life.
        checked_at_ms = now_ms if now_ms is not None else record.written_at_ms
        if checked_at_ms <= 0:
            raise ValueError("record.written_at_ms is unset: use IdempotencyGuard.completion_record")
        return self._to_item(record), self._free_condition(record, checked_at_ms)

    def record_from_raw(self, raw_item: dict[str, Any]) -> IdempotencyRecord:
        """Decode the item a cancellation reason returned (ReturnValuesOnConditionCheckFailure=ALL_OLD)."""
        return self._to_record(self.model.from_raw_data(raw_item))

    def _free_condition(self, record: IdempotencyRecord, now_ms: int) -> Condition:
        model = self.model
        lapsed_same_request = (
            (model.status == RecordStatus.IN_PROGRESS.value)
            & (model.lease_expires_at_ms <= now_ms)
            & (model.fingerprint == record.fingerprint)
        )
        expired = model.expires_at <= now_ms // 1000
        return model.idempotency_key.does_not_exist() | expired | lapsed_same_request

    def _held_condition(self, lease_token: str) -> Condition:
        model = self.model
        return (model.status == RecordStatus.IN_PROGRESS.value) & (model.lease_token == lease_token)

    def _to_item(self, record: IdempotencyRecord) -> _IdempotencyItem:
        response = record.response
        return self.model(
            record.key,
            status=record.status.value,
            fingerprint=record.fingerprint,
            expires_at=record.expires_at_s,
            lease_token=record.lease_token,
            lease_expires_at_ms=record.lease_expires_at_ms,
            response_status=response.status_code if response else None,
            response_headers=json.dumps(dict(response.headers)) if response else None,
            response_body=response.body if response else None,
            written_at_ms=record.written_at_ms,
        )

    @staticmethod
    def _to_record(item: Any) -> IdempotencyRecord:
        response = None
        if item.response_status is not None:
            response = StoredResponse(
                status_code=int(item.response_status),
                body=item.response_body or "",
                headers=jsonio.loads(item.response_headers or "{}"),
            )
        return IdempotencyRecord(
            key=item.idempotency_key,
            fingerprint=item.fingerprint,
            status=RecordStatus(item.status),
            expires_at_s=int(item.expires_at),
            lease_token=item.lease_token,
            lease_expires_at_ms=int(item.lease_expires_at_ms or 0),
            response=response,
            written_at_ms=int(item.written_at_ms or 0),
        )
