"""The business dates table (HASH market): one item per market, the date an operator last set.

A table of its own rather than an item in a capability's table: wealth and loans read it, the ledger
function serves it, and none of them should need IAM on another's data to reach it. An advance is one
PutItem conditional on the date it read (or on there being no item yet), so concurrent advances
cannot both win.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from finfaas.platform.config import resource_name, settings
from finfaas.services.business_date.errors import BusinessDateStoreUnavailable
from finfaas.services.business_date.model import StoredDate
from finfaas.store.binding import StoreMeta, bound
from finfaas.store.dynamo import conditional_write, consistent_get
from finfaas.store.models import format_time, parse_time

BUSINESS_DATES_TABLE_LOGICAL_NAME = "businessdates"


class _BusinessDateItem(Model):
    Meta = StoreMeta

    market = UnicodeAttribute(hash_key=True)
    business_date = UnicodeAttribute()  # ISO 8601 date
    updated_at = UnicodeAttribute()


class BusinessDateStore:
    """BusinessDateRepository on DynamoDB (pynamodb)."""

    def __init__(self, table_name: str | None = None, region: str | None = None) -> None:
        self.table_name = table_name or resource_name(BUSINESS_DATES_TABLE_LOGICAL_NAME)
        self._item: Any = bound(_BusinessDateItem, self.table_name, region or settings().region)

    def stored(self, market: str) -> StoredDate | None:
        item = consistent_get(self._item, (market,),
                              lambda error: BusinessDateStoreUnavailable(f"read business date: {error}"))
        if item is None:
            return None
        return StoredDate(market, date.fromisoformat(item.business_date), parse_time(item.updated_at))

    def replace(self, market: str, previous: date | None, new: date, at: datetime) -> bool:
        item = self._item
        condition = (item.market.does_not_exist() if previous is None
                     else item.business_date == previous.isoformat())
        fresh = item(market, business_date=new.isoformat(), updated_at=format_time(at))
        return conditional_write(lambda: fresh.save(condition=condition)).or_raise(
            lambda written: BusinessDateStoreUnavailable(f"advance business date: {written.code}"))
