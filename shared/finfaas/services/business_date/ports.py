"""What the business date needs from outside: where the manual date is kept."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

from finfaas.services.business_date.model import StoredDate


class BusinessDateRepository(Protocol):
    """One item per market (DynamoDB: store/business_date_store.py)."""

    def stored(self, market: str) -> StoredDate | None:
        """The market's stored date, read consistently; None before the first advance."""
        ...

    def replace(self, market: str, previous: date | None, new: date, at: datetime) -> bool:
        """Store new only if the stored date is still previous (None: no item yet); False if it is not."""
        ...
