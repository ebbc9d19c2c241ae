"""The risk table (HASH pk, RANGE sk): assessments, velocity buckets, payees seen, block lists.

Items:
- `assessment#<id>` / `-`: the recorded assessment (JSON), written once;
- `velocity#<customer>` / `<hour window>`: the transfers counted in that hour and their amount, and for
  each counted transfer its place: `n#<assessment id>` (the count with it) and `m#<assessment id>`
  (the amount with it);
- `payees#<customer>` / `<destination>`: a payee the customer has sent to;
- `blocklist` / `<kind>:<value>`: a block-list entry and why.

A screening is three calls: one BatchGetItem (the recorded assessment, the payee, the block entries);
one UpdateItem that counts the transfer in its hour and answers its place (UPDATED_NEW), conditional on
the transfer not being counted there yet, so concurrent transfers get distinct places and a repeat
counts nothing; one TransactWriteItems recording the assessment (attribute_not_exists) with the payee.
A transfer counted whose assessment was never recorded (the function died between the two) is counted
once: its repeat finds its place in the bucket and is judged on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.constants import UPDATED_NEW
from pynamodb.exceptions import PynamoDBException
from pynamodb.expressions.operand import Path
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from finfaas.domain.risk_rules import Assessment, HourCount, RiskRequest
from finfaas.platform.config import resource_name, settings
from finfaas.services.risk.errors import RiskStoreUnavailable
from finfaas.services.risk.model import (
    BlockEntry,
    Lookup,
    assessment_from_json,
    assessment_to_json,
    block_entries_for,
)
from finfaas.store.binding import (
    RETRY_ATTEMPTS_MAX,
    StoreMeta,
    bound,
)
from finfaas.store.dynamo import condition_failed, condition_failures, conditional_write, consistent_get
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


def _place_names(assessment_id: str) -> tuple[str, str]:
    """The bucket's attributes holding a counted transfer's place: its count and its amount with it."""
    return f"n#{assessment_id}", f"m#{assessment_id}"


def _number(value: dict[str, str]) -> int:
    """A number as DynamoDB sends it ({"N": "12"}), read without pynamodb's detour through float."""
    return int(value["N"])


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

    def look_up(self, request: RiskRequest) -> Lookup:
        recorded = _assessment_key(request.assessment_id)
        payee = _payee_key(request.customer_id, request.destination)
        blocks = [(BLOCKLIST_PARTITION, entry) for entry in block_entries_for(request)]
        try:
            items = self._item.batch_get([recorded, payee, *blocks], consistent_read=True)
            found = {(i.pk, i.sk): i for i in items}
        except PynamoDBException as error:
            raise RiskStoreUnavailable(f"read context: {error}") from error
        assessment = found.get(recorded)
        return Lookup(
            recorded=None if assessment is None else assessment_from_json(assessment.body),
            destination_seen=payee in found,
            blocked=tuple(sk for pk, sk in blocks if (pk, sk) in found),
        )

    def count(self, request: RiskRequest, window: str, transfers_max: int) -> HourCount:
        item = self._item
        pk, sk = _bucket_key(request.customer_id, window)
        place, total = _place_names(request.assessment_id)
        # Every operand reads the item as it was before this update: the new count is the old one plus 1.
        transfers = (item.count | 0) + 1
        amount = (item.amount_minor | 0) + request.amount_minor
        actions = [item.count.set(transfers), item.amount_minor.set(amount),
                   Path([place]).set(transfers), Path([total]).set(amount)]
        not_full = item.count.does_not_exist() | (item.count < transfers_max)
        answer: dict[str, Any] = {}

        def update() -> None:
            answer.update(item._get_connection().update_item(
                pk, sk, actions=actions, condition=Path([place]).does_not_exist() & not_full,
                return_values=UPDATED_NEW))

        written = conditional_write(update)
        if written.taken:
            counted = answer["Attributes"]
            return HourCount(_number(counted[place]), _number(counted[total]))
        if not condition_failed(written.error):
            raise RiskStoreUnavailable(f"count transfer: {written.error}") from written.error
        return self._counted_before(request, window)

    def _counted_before(self, request: RiskRequest, window: str) -> HourCount:
        """The place this transfer took in its window, or the one it would take when the window is full."""
        pk, sk = _bucket_key(request.customer_id, window)
        place, total = _place_names(request.assessment_id)
        try:
            found = self._item._get_connection().get_item(
                pk, sk, consistent_read=True, attributes_to_get=["count", "amount_minor", place, total]
            ).get("Item", {})
        except PynamoDBException as error:
            raise RiskStoreUnavailable(f"read count: {error}") from error
        if place in found:
            return HourCount(_number(found[place]), _number(found[total]))
        return HourCount(_number(found["count"]) + 1, _number(found["amount_minor"]) + request.amount_minor)

    def record(self, request: RiskRequest, assessment: Assessment, now: datetime) -> Assessment:
        item = self._item
        recorded = item(*_assessment_key(assessment.assessment_id), body=assessment_to_json(assessment),
                        at=format_time(now))
        payee = item(*_payee_key(request.customer_id, request.destination), at=format_time(now))

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(recorded, condition=item.pk.does_not_exist())
                transaction.save(payee)

        written = conditional_write(transact)
        if written.taken:
            return assessment
        # The assessment's own attribute_not_exists is the only condition; puts go in the order given,
        # so it is the first reason.
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
