"""The payments table (HASH pk, RANGE sk): merchants, and (to come) payment intents and refunds.

Items:
- `merchant#<merchant id>` / `-`: the merchant as JSON text (`doc`), its `version` and `status`.

A merchant is created with `attribute_not_exists` (the caller's merchant_id is the guard) and changed
by a put conditional on the stored version, so two operators never overwrite each other's change.
"""

from __future__ import annotations

import json
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model

from finfaas.domain.payments import FeeSchedule, Rounding
from finfaas.platform import jsonio
from finfaas.platform.config import resource_name, settings
from finfaas.services.payments.errors import PaymentsStoreUnavailable
from finfaas.services.payments.model import Merchant, MerchantStatus, SettlementAccount
from finfaas.store.binding import StoreMeta, bound
from finfaas.store.dynamo import any_condition_failed, conditional_write
from finfaas.store.models import format_time, parse_time

PAYMENTS_TABLE_LOGICAL_NAME = "payments"
NO_RANGE = "-"


class _PaymentsItem(Model):
    """Every item of the table; which attributes are set depends on the item's kind."""

    Meta = StoreMeta

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = UnicodeAttribute()
    version = NumberAttribute()
    status = UnicodeAttribute()


def _merchant_key(merchant_id: str) -> tuple[str, str]:
    return f"merchant#{merchant_id}", NO_RANGE


def merchant_to_json(merchant: Merchant) -> str:
    document = {
        "merchant_id": merchant.merchant_id,
        "name": merchant.name,
        "currency": merchant.currency,
        "settlement": {"bank_code": merchant.settlement.bank_code,
                       "account_number": merchant.settlement.account_number,
                       "name": merchant.settlement.name},
        "fees": {"bps": merchant.fees.bps, "fixed_minor": str(merchant.fees.fixed_minor),
                 "rounding": merchant.fees.rounding.value},
        "reserve_bps": merchant.reserve_bps,
        "capture_window_seconds": merchant.capture_window_seconds,
        "receivable_shards": merchant.receivable_shards,
        "status": merchant.status.value,
        "created_at": format_time(merchant.created_at),
        "updated_at": format_time(merchant.updated_at) if merchant.updated_at else None,
        "version": merchant.version,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def merchant_from_json(text: str) -> Merchant:
    raw: dict[str, Any] = jsonio.loads(text)
    settlement, fees = raw["settlement"], raw["fees"]
    return Merchant(
        merchant_id=raw["merchant_id"],
        name=raw["name"],
        currency=raw["currency"],
        settlement=SettlementAccount(settlement["bank_code"], settlement["account_number"],
                                     settlement["name"]),
        fees=FeeSchedule(int(fees["bps"]), int(fees["fixed_minor"]), Rounding(fees["rounding"])),
        reserve_bps=int(raw["reserve_bps"]),
        capture_window_seconds=int(raw["capture_window_seconds"]),
        receivable_shards=int(raw["receivable_shards"]),
        status=MerchantStatus(raw["status"]),
        created_at=parse_time(raw["created_at"]),
        updated_at=parse_time(raw["updated_at"]) if raw.get("updated_at") else None,
        version=int(raw["version"]),
    )


class PaymentsStore:
    """Merchants on DynamoDB (pynamodb). Thread-safe; share one per process."""

    def __init__(self, table_name: str | None = None, region: str | None = None) -> None:
        self.table_name = table_name or resource_name(PAYMENTS_TABLE_LOGICAL_NAME)
        self._item = bound(_PaymentsItem, self.table_name, region or settings().region)

    # -- merchants --------------------------------------------------------------------------------

    def create(self, merchant: Merchant) -> Merchant:
        item = self._merchant_item(merchant)
        written = conditional_write(lambda: item.save(condition=self._item.pk.does_not_exist()))
        if written.taken:
            return merchant
        if any_condition_failed(written.error):
            existing = self.get(merchant.merchant_id)
            if existing is not None:
                return existing
        cause = written.error
        raise PaymentsStoreUnavailable(f"create merchant {merchant.merchant_id}: {written.code}") from cause

    def get(self, merchant_id: str) -> Merchant | None:
        try:
            item = self._item.get(*_merchant_key(merchant_id), consistent_read=True)
        except self._item.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise PaymentsStoreUnavailable(f"read merchant {merchant_id}: {error}") from error
        return merchant_from_json(item.doc)

    def save(self, merchant: Merchant) -> bool:
        item = self._merchant_item(merchant)
        written = conditional_write(lambda: item.save(condition=self._item.version == merchant.version - 1))
        if written.taken:
            return True
        if any_condition_failed(written.error):
            return False
        cause = written.error
        raise PaymentsStoreUnavailable(f"save merchant {merchant.merchant_id}: {written.code}") from cause

    # -- items ------------------------------------------------------------------------------------

    def _merchant_item(self, merchant: Merchant) -> Any:
        return self._item(*_merchant_key(merchant.merchant_id), doc=merchant_to_json(merchant),
                          version=merchant.version, status=merchant.status.value)
