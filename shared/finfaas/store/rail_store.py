"""The sandbox rail's payments table (HASH payment_id): one item per payment, versioned."""

from __future__ import annotations

import json
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from finfaas.domain.creditor import SealedCreditor
from finfaas.platform import jsonio
from finfaas.platform.config import resource_name, settings
from finfaas.services.rail.errors import RailStoreUnavailable
from finfaas.services.rail.model import PaymentStatus, Plan, RailPayment
from finfaas.store.binding import (
    StoreMeta,
    bound,
)
from finfaas.store.dynamo import WriteOutcome, conditional_write, consistent_get
from finfaas.store.models import format_time, parse_time

RAIL_TABLE_LOGICAL_NAME = "rail"


class _PaymentItem(Model):
    Meta = StoreMeta

    payment_id = UnicodeAttribute(hash_key=True)
    doc = UnicodeAttribute()
    version = NumberAttribute()
    status = UnicodeAttribute()


def _model(table_name: str, region: str) -> Any:
    return bound(_PaymentItem, table_name, region)


def payment_to_json(payment: RailPayment) -> str:
    creditor = payment.creditor.to_json() if payment.creditor is not None else None
    return json.dumps(
        {
            "payment_id": payment.payment_id,
            "amount_minor": str(payment.amount_minor),
            "currency": payment.currency,
            "creditor": creditor,
            "status": payment.status.value,
            "plan": payment.plan.value,
            "received_at": format_time(payment.received_at),
            "settle_at": format_time(payment.settle_at) if payment.settle_at else None,
            "settled_at": format_time(payment.settled_at) if payment.settled_at else None,
            "reason": payment.reason,
            "task_token": payment.task_token,
            "version": payment.version,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def payment_from_json(text: str) -> RailPayment:
    raw = jsonio.loads(text)
    creditor = raw.get("creditor")
    return RailPayment(
        payment_id=raw["payment_id"],
        amount_minor=int(raw["amount_minor"]),
        currency=raw["currency"],
        creditor=SealedCreditor.from_json(creditor) if creditor else None,
        status=PaymentStatus(raw["status"]),
        plan=Plan(raw["plan"]),
        received_at=parse_time(raw["received_at"]),
        settle_at=parse_time(raw["settle_at"]) if raw.get("settle_at") else None,
        settled_at=parse_time(raw["settled_at"]) if raw.get("settled_at") else None,
        reason=raw.get("reason", ""),
        task_token=raw.get("task_token"),
        version=int(raw["version"]),
    )


class RailStore:
    """RailRepository on DynamoDB (pynamodb)."""

    def __init__(self, table_name: str | None = None, region: str | None = None) -> None:
        self.table_name = table_name or resource_name(RAIL_TABLE_LOGICAL_NAME)
        self._item = _model(self.table_name, region or settings().region)

    def create(self, payment: RailPayment) -> RailPayment:
        written = conditional_write(
            lambda: self._item_for(payment).save(condition=self._item.payment_id.does_not_exist()))
        if written.outcome is WriteOutcome.CONDITION_FAILED:
            existing = self.get(payment.payment_id)
            if existing is not None:
                return existing
        if not written.taken:
            raise RailStoreUnavailable(f"create {payment.payment_id}: {written.error}") from written.error
        return payment

    def get(self, payment_id: str) -> RailPayment | None:
        item = consistent_get(self._item, (payment_id,),
                              lambda error: RailStoreUnavailable(f"read {payment_id}: {error}"))
        return None if item is None else payment_from_json(item.doc)

    def save(self, payment: RailPayment) -> bool:
        written = conditional_write(
            lambda: self._item_for(payment).save(condition=self._item.version == payment.version - 1))
        return written.or_raise(lambda w: RailStoreUnavailable(f"save {payment.payment_id}: {w.error}"))

    def _item_for(self, payment: RailPayment) -> Any:
        return self._item(
            payment.payment_id,
            doc=payment_to_json(payment),
            version=payment.version,
            status=payment.status.value,
        )
