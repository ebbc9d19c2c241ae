"""The risk table (HASH pk, RANGE sk): assessments, velocity buckets, payees seen, block lists.

Items:
- `assessment#<id>` / `-`: the recorded assessment (JSON), written once;
- `velocity#<customer>` / `<hour window>`: transfers and amount in that hour (ADD);
- `payees#<customer>` / `<destination>`: a payee the customer has sent to;
- `blocklist` / `<kind>:<value>`: a block-list entry and why.

Reading the context of an assessment is one BatchGetItem; recording it is one TransactWriteItems
(the assessment with attribute_not_exists, the bucket's ADD, the payee), so counters move exactly
once per transfer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from finfaas.domain.risk_rules import Assessment, RiskContext, RiskRequest
from finfaas.platform.config import resource_name, settings
from finfaas.services.risk.errors import RiskStoreUnavailable
from finfaas.services.risk.model import (
    BlockEntry,
    assessment_from_json,
    assessment_to_json,
    block_entries_for,
)
from finfaas.store.binding import (
    RETRY_ATTEMPTS_MAX,
    StoreMeta,
    bound,
)
from finfaas.store.dynamo import condition_failures, conditional_write, consistent_get
from finfaas.store.models import format_time, parse_time

RISK_TABLE_LOGICAL_NAME = "risk"
NO_RANGE = "-"
BLOCKLIST_PARTITION = "blocklist"


class _RiskItem(Model):
    """Every item of the table: the attributes used depend on the item's kind (see the module doc)."""

    Meta = StoreMeta

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    body = UnicodeAttribute(null=True)  # assessment JSON
    count = NumberAttribute(null=True)
    amount_minor = NumberAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    at = UnicodeAttribute(null=True)


def _model(table_name: str, region: str) -> Any:
    return bound(_RiskItem, table_name, region)


def _assessment_key(assessment_id: str) -> tuple[str, str]:
    return f"assessment#{assessment_id}", NO_RANGE


def _bucket_key(customer_id: str, window: str) -> tuple[str, str]:
    return f"velocity#{customer_id}", window


def _payee_key(customer_id: str, destination: str) -> tuple[str, str]:
    return f"payees#{customer_id}", destination


class RiskStore:
    """RiskRepository on DynamoDB (pynamodb)."""

    def __init__(self, table_name: str | None = None, region: str | None = None) -> None:
        self.table_name = table_name or resource_name(RISK_TABLE_LOGICAL_NAME)
        region = region or settings().region
        self._item = _model(self.table_name, region)
        self._connection = Connection(region=region, max_retry_attempts=RETRY_ATTEMPTS_MAX)

    def stored_assessment(self, assessment_id: str) -> Assessment | None:
        item = consistent_get(self._item, _assessment_key(assessment_id),
                              lambda error: RiskStoreUnavailable(f"read assessment: {error}"))
        return None if item is None else assessment_from_json(item.body)

    def context_for(self, request: RiskRequest, window: str) -> RiskContext:
        bucket = _bucket_key(request.customer_id, window)
        payee = _payee_key(request.customer_id, request.destination)
        blocks = [(BLOCKLIST_PARTITION, entry) for entry in block_entries_for(request)]
        try:
            items = self._item.batch_get([bucket, payee, *blocks], consistent_read=True)
            found = {(i.pk, i.sk): i for i in items}
        except PynamoDBException as error:
            raise RiskStoreUnavailable(f"read context: {error}") from error
        counters = found.get(bucket)
        return RiskContext(
            hourly_transfers=int(counters.count or 0) if counters else 0,
            hourly_amount_minor=int(counters.amount_minor or 0) if counters else 0,
            destination_seen=payee in found,
            blocked=tuple(sk for pk, sk in blocks if (pk, sk) in found),
        )

    def record(self, request: RiskRequest, assessment: Assessment, window: str, now: datetime) -> Assessment:
        item = self._item
        recorded = item(*_assessment_key(assessment.assessment_id), body=assessment_to_json(assessment),
                        at=format_time(now))
        bucket = item(*_bucket_key(request.customer_id, window))
        payee = item(*_payee_key(request.customer_id, request.destination), at=format_time(now))

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(recorded, condition=item.pk.does_not_exist())
                transaction.save(payee)
                counted = [item.count.add(1), item.amount_minor.add(request.amount_minor)]
                transaction.update(bucket, actions=counted)

        written = conditional_write(transact)
        if written.taken:
            return assessment
        # The assessment's own attribute_not_exists is the only condition; puts come before updates in
        # the request pynamodb sends, so it is the first reason.
        if condition_failures(written.error)[:1] == [0]:
            existing = self.stored_assessment(assessment.assessment_id)
            if existing is not None:
                return existing
        raise RiskStoreUnavailable(f"record assessment: {written.error}") from written.error

    def block(self, entry: BlockEntry) -> None:
        try:
            at = format_time(entry.blocked_at)
            self._item(BLOCKLIST_PARTITION, entry.entry, reason=entry.reason, at=at).save()
        except PynamoDBException as error:
            raise RiskStoreUnavailable(f"block: {error}") from error

    def unblock(self, entry: str) -> bool:
        item = self._item
        return conditional_write(lambda: item(BLOCKLIST_PARTITION, entry).delete(condition=item.pk.exists())
                                 ).or_raise(lambda w: RiskStoreUnavailable(f"unblock: {w.error}"))

    def blocked(self, limit: int) -> list[BlockEntry]:
        try:
            items = self._item.query(BLOCKLIST_PARTITION, consistent_read=True, limit=limit, page_size=limit)
            return [BlockEntry(i.sk, i.reason or "", parse_time(i.at)) for i in items]
        except PynamoDBException as error:
            raise RiskStoreUnavailable(f"list block entries: {error}") from error
