"""The risk table (HASH pk, RANGE sk): assessments, velocity buckets, payees seen, block lists.

Items:
- `assessment#<id>` / `-`: the recorded assessment (JSON), written once;
- `velocity#<customer>` / `<hour window>`: the transfers counted in that hour and their amount, and for
  each counted transfer its place: `n#<assessment id>` (the count with it) and `m#<assessment id>`
  (the amount with it);
- `payees#<customer>` / `<destination>`: a payee the customer has sent to;
- `blocklist` / `<kind>:<value>`: a block-list entry and why.

A screening is two calls: one BatchGetItem (the recorded assessment, the payee, the block entries, the
customer's bucket for the hour: its count and this transfer's place), and one TransactWriteItems that
records the assessment (attribute_not_exists) with the payee and counts the transfer in the bucket on
condition that its count is still the one read and the transfer has no place there. When another
transfer of the customer was counted in between, nothing is written and the screening takes the old
way: one UpdateItem that counts the transfer and answers its place (UPDATED_NEW), conditional on the
transfer not being counted there yet, so concurrent transfers get distinct places and a repeat counts
nothing, then the TransactWriteItems recording the assessment. A transfer counted whose assessment was
never recorded (the function died between the two) is counted once: its repeat finds its place in the
bucket and is judged on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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
    AssessmentToRecord,
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
from finfaas.store.dynamo import (
    condition_failed,
    condition_failures,
    conditional_write,
    consistent_get,
    transient,
)
from finfaas.store.models import format_time, parse_time

RISK_TABLE_LOGICAL_NAME = "risk"
NO_RANGE = "-"
BLOCKLIST_PARTITION = "blocklist"
BATCH_GET_ROUNDS_MAX = 4  # a 6-key BatchGetItem is far below its limits: unprocessed keys mean throttling
ZERO = {"N": "0"}


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


def lookup_keys(request: RiskRequest, window: str | None) -> list[tuple[str, str]]:
    """The keys a screening reads: the recorded assessment, the payee, the block entries and, given a
    window, the customer's bucket there (amount_minor plays no part: the saga knows them before the order)."""
    blocks = [(BLOCKLIST_PARTITION, entry) for entry in block_entries_for(request)]
    bucket = [] if window is None else [_bucket_key(request.customer_id, window)]
    return [_assessment_key(request.assessment_id), _payee_key(request.customer_id, request.destination),
            *blocks, *bucket]


def lookup_attributes(request: RiskRequest) -> list[str]:
    """One projection for every key: only the bucket has counts and places, only the assessment a body."""
    return ["pk", "sk", "body", "count", "amount_minor", *_place_names(request.assessment_id)]


def lookup_of(request: RiskRequest, window: str | None, items: Iterable[dict[str, Any]]) -> Lookup:
    """The Lookup of the raw items found under lookup_keys."""
    found = {(raw["pk"]["S"], raw["sk"]["S"]): raw for raw in items}
    recorded = found.get(_assessment_key(request.assessment_id))
    blocks = [(BLOCKLIST_PARTITION, entry) for entry in block_entries_for(request)]
    counts = {} if window is None else found.get(_bucket_key(request.customer_id, window), {})
    place, total = _place_names(request.assessment_id)
    return Lookup(
        recorded=None if recorded is None else assessment_from_json(recorded["body"]["S"]),
        destination_seen=_payee_key(request.customer_id, request.destination) in found,
        blocked=tuple(sk for pk, sk in blocks if (pk, sk) in found),
        window_before=HourCount(_number(counts.get("count", ZERO)),
                                _number(counts.get("amount_minor", ZERO))),
        place=HourCount(_number(counts[place]), _number(counts[total])) if place in counts else None,
    )


@dataclass(frozen=True)
class RecordWrites:
    """What a decided assessment's write is: two puts (the assessment, first, and its payee seen) and, unless
    the window is full, the bucket's update, each with its condition (count_and_record's items)."""

    puts: list[tuple[Any, Any]]
    bucket: tuple[Any, list[Any], Any] | None


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

    def look_up(self, request: RiskRequest, window: str | None = None) -> Lookup:
        keys = lookup_keys(request, window)
        return lookup_of(request, window, self._batch_get(keys, lookup_attributes(request)))

    def _batch_get(self, keys: list[tuple[str, str]], attributes: list[str]) -> list[dict[str, Any]]:
        """The raw items found under keys (consistent); keys DynamoDB leaves unprocessed are asked again, a
        bounded number of times."""
        pending = [dict(zip(("pk", "sk"), self._item._serialize_keys(pk, sk), strict=True))
                   for pk, sk in keys]
        found: list[dict[str, Any]] = []
        try:
            for _ in range(BATCH_GET_ROUNDS_MAX):
                items, pending = self._item._batch_get_page(pending, True, attributes)
                found.extend(items)
                if not pending:
                    return found
        except PynamoDBException as error:
            raise RiskStoreUnavailable(f"read context: {error}") from error
        raise RiskStoreUnavailable(f"read context: {len(pending)} keys left unprocessed")

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

    def count_and_record(self, request: RiskRequest, window: str, before: HourCount, transfers_max: int,
                         assessment: Assessment, now: datetime) -> Assessment | None:
        pending = AssessmentToRecord(request, window, before, transfers_max, assessment, now)
        writes = self.record_writes(pending)

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                for put, condition in writes.puts:
                    transaction.save(put, condition=condition)
                if writes.bucket is not None:
                    bucket, actions, condition = writes.bucket
                    transaction.update(bucket, actions=actions, condition=condition,
                                       add_version_condition=False)

        written = conditional_write(transact)
        if written.taken:
            return assessment
        # Puts come before updates in a transaction: the assessment is reason 0, the bucket reason 2.
        failed = condition_failures(written.error)
        if failed[:1] == [0]:
            existing = self.stored_assessment(assessment.assessment_id)
            if existing is not None:
                return existing
        if failed == [2] or transient(written.error):
            return None  # another transfer of the customer was counted since the read (or is being)
        raise RiskStoreUnavailable(f"count and record assessment: {written.error}") from written.error

    def record_writes(self, pending: AssessmentToRecord) -> RecordWrites:
        """The items and conditions that record `pending` and count it on the place it was judged on."""
        item, request, before = self._item, pending.request, pending.before
        recorded, payee = self._recorded_items(request, pending.assessment, pending.at)
        puts = [(recorded, item.pk.does_not_exist()), (payee, None)]
        # The count as read is the condition: equal counts mean equal totals (both move together), so the
        # place promised is the one an UpdateItem would have answered. A full window is never written (it
        # stays full for the hour), so it needs no condition.
        if before.transfers >= pending.transfers_max:
            return RecordWrites(puts, None)
        place, total = _place_names(request.assessment_id)
        transfers, amount = before.transfers + 1, before.amount_minor + request.amount_minor
        as_read = item.count.does_not_exist() if before.transfers == 0 else item.count == before.transfers
        actions = [item.count.set(transfers), item.amount_minor.set(amount),
                   Path([place]).set(transfers), Path([total]).set(amount)]
        bucket = item(*_bucket_key(request.customer_id, pending.window))
        return RecordWrites(puts, (bucket, actions, as_read & Path([place]).does_not_exist()))

    def _recorded_items(self, request: RiskRequest, assessment: Assessment, now: datetime) -> tuple[Any, Any]:
        """The assessment's item and its payee-seen item."""
        item = self._item
        recorded = item(*_assessment_key(assessment.assessment_id), body=assessment_to_json(assessment),
                        at=format_time(now))
        return recorded, item(*_payee_key(request.customer_id, request.destination), at=format_time(now))

    def record(self, request: RiskRequest, assessment: Assessment, now: datetime) -> Assessment:
        item = self._item
        recorded, payee = self._recorded_items(request, assessment, now)

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
