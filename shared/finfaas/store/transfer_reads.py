"""ValidationReads on DynamoDB: a transfer's order, its accounts, its owner's tier, the day's total and,
when asked, what risk's screening looks up (store/risk_store.py lookup_keys) in one consistent BatchGetItem
across the ledger's accounts table, the transfer orders table and the risk table.

pynamodb batches one table per call, so the request is built here from each model's own table name
and read back through each model's own attributes (Model.from_raw_data)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from pynamodb.connection import Connection

from finfaas.domain.limits import TIER_DEFAULT, Tier
from finfaas.services.transfers.errors import TransferStoreUnavailable
from finfaas.services.transfers.model import AccountInfo, Screening, ValidationFacts
from finfaas.store.binding import RETRY_ATTEMPTS_MAX
from finfaas.store.dynamo import batch_get_tables, consistent_keys
from finfaas.store.models import account_from_record
from finfaas.store.risk_store import lookup_keys, lookup_of
from finfaas.store.transfers_store import (
    NO_RANGE,
    TransfersStore,
    order_from_json,
    order_key,
    tier_key,
    usage_partition,
)

accounts_per_read_max = 2  # a transfer's debit and credit accounts


class TransferValidationReads:
    """One call for what a validation reads (services/transfers/ports.ValidationReads)."""

    def __init__(self, orders: TransfersStore, account_model: Any, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._orders = orders.item_model
        self._risk_table = None if orders.risk is None else orders.risk.table_name
        self._accounts = account_model
        self._orders_table = orders.table_name
        self._accounts_table = account_model.Meta.table_name
        self._connection = Connection(region=account_model.Meta.region, max_retry_attempts=RETRY_ATTEMPTS_MAX)
        self._sleep = sleep

    def facts(
        self,
        owner_id: str,
        account_ids: Sequence[str],
        day: str | None,
        currency: str,
        transfer_id: str | None = None,
        screening: Screening | None = None,
    ) -> ValidationFacts:
        wanted = list(dict.fromkeys(account_ids))
        if len(wanted) > accounts_per_read_max:
            raise ValueError(f"account_ids: at most {accounts_per_read_max}")
        usage = None if day is None else (usage_partition(owner_id, day, currency), NO_RANGE)
        order_wanted = None if transfer_id is None else order_key(transfer_id)
        order_keys = [key for key in (tier_key(owner_id), usage, order_wanted) if key is not None]
        requests: dict[str, Any] = {
            self._orders_table: consistent_keys(order_keys),
        }
        if wanted:
            requests[self._accounts_table] = {
                "Keys": [{"account_id": {"S": account_id}} for account_id in wanted],
                "ConsistentRead": True,
            }
        risk_keys = self._risk_keys(screening)
        if risk_keys and self._risk_table is not None:
            requests[self._risk_table] = consistent_keys(risk_keys)
        found = self._batch_get(requests)
        accounts = (AccountInfo.of(account_from_record(self._accounts.from_raw_data(raw)))
                    for raw in found.get(self._accounts_table, []))
        tier, total_minor, order = TIER_DEFAULT, 0, None
        for raw in found.get(self._orders_table, []):
            item = self._orders.from_raw_data(raw)
            if (item.pk, item.sk) == order_wanted:
                order = order_from_json(item.doc)
            elif (item.pk, item.sk) == usage:
                total_minor = 0 if item.total_minor is None else int(item.total_minor)
            elif item.tier is not None:
                tier = Tier(item.tier)
        risk = None
        if screening is not None and risk_keys and self._risk_table is not None:
            risk = lookup_of(screening.request, screening.window, found.get(self._risk_table, []))
        return ValidationFacts({a.account_id: a for a in accounts}, tier, total_minor, order, risk)

    def _risk_keys(self, screening: Screening | None) -> list[tuple[str, str]]:
        """Risk's keys when a screening is asked for and the orders store writes risk's items."""
        if screening is None or self._risk_table is None:
            return []
        return lookup_keys(screening.request, screening.window)

    def _batch_get(self, requests: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        def unavailable(why: str, cause: Exception | None) -> Exception:
            return TransferStoreUnavailable(f"read the order, accounts and tier: {why}")

        return batch_get_tables(self._connection, requests, unavailable, self._sleep)
