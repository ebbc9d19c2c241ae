"""PaymentReads on DynamoDB: a payment's merchant, its paying account and what risk's screening looks up
(store/risk_store.py lookup_keys) in one consistent BatchGetItem across the payments table, the ledger's
accounts table and the risk table; and risk's items for the payment's ledger transaction to carry.

pynamodb batches one table per call, so the request is built here from each table's name and read back
through each store's own decoding (Model.from_raw_data, the merchant's stored document)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pynamodb.connection import Connection

from finfaas.domain.risk_rules import RiskRequest
from finfaas.services.payments.errors import PaymentsStoreUnavailable
from finfaas.services.payments.model import PaymentFacts
from finfaas.services.risk.model import AssessmentToRecord
from finfaas.store.binding import RETRY_ATTEMPTS_MAX
from finfaas.store.dynamo import batch_get_tables, consistent_keys
from finfaas.store.models import account_from_record
from finfaas.store.payments_store import PaymentsStore, merchant_from_json, merchant_key
from finfaas.store.risk_store import RiskStore, lookup_keys, lookup_of


class PaymentCreateReads:
    """One call for what a payment created and confirmed at once reads (payments' ports.PaymentReads)."""

    def __init__(self, merchants: PaymentsStore, account_model: Any, risk: RiskStore, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._payments_table = merchants.table_name
        self._accounts = account_model
        self._accounts_table = account_model.Meta.table_name
        self._risk = risk
        self._connection = Connection(region=account_model.Meta.region, max_retry_attempts=RETRY_ATTEMPTS_MAX)
        self._sleep = sleep

    def facts(self, merchant_id: str, account_id: str, screening: RiskRequest | None,
              window: str | None) -> PaymentFacts:
        wanted_merchant = merchant_key(merchant_id)
        requests: dict[str, Any] = {
            self._payments_table: consistent_keys([wanted_merchant]),
            self._accounts_table: {"Keys": [{"account_id": {"S": account_id}}], "ConsistentRead": True},
        }
        if screening is not None:
            requests[self._risk.table_name] = consistent_keys(lookup_keys(screening, window))
        found = batch_get_tables(self._connection, requests, self._unavailable, self._sleep)
        merchants = [merchant_from_json(raw["doc"]["S"]) for raw in found.get(self._payments_table, [])]
        accounts = [account_from_record(self._accounts.from_raw_data(raw))
                    for raw in found.get(self._accounts_table, [])]
        risk = None
        if screening is not None:
            risk = lookup_of(screening, window, found.get(self._risk.table_name, []))
        return PaymentFacts(merchants[0] if merchants else None, accounts[0] if accounts else None, risk)

    def screening_writes(self, pending: AssessmentToRecord) -> tuple[list[tuple[Any, Any]],
                                                                     list[tuple[Any, list[Any], Any]]]:
        writes = self._risk.record_writes(pending)
        return writes.puts, [] if writes.bucket is None else [writes.bucket]

    @staticmethod
    def _unavailable(why: str, cause: Exception | None) -> Exception:
        return PaymentsStoreUnavailable(f"read the merchant, the paying account and risk's items: {why}")
