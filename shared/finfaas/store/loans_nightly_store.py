"""The nightly job's items in the loans table (store/loans_store.py describes the table).

- `loan#<loan id>` / `close`: the loan's close record (`doc` JSON); `version` is the ordinal of its
  closed business date, so a write conditional on `version < date` records each date at most once.

A record's write, its events in the outbox and a check that the loan is still the version the job read
(or the loan's put as closed) are one transaction: a rerun or a resumed run finds the date recorded and
writes nothing, and a repayment committed meanwhile makes the job read the loan again.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time
from functools import partial
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.transactions import TransactWrite

from finfaas.domain.ledger import entry_key_prefix, micros
from finfaas.platform.config import resource_name, settings
from finfaas.services.loans.errors import InvalidLoanRequest, LoansStoreUnavailable
from finfaas.services.loans.model import CloseWrite, Loan, LoanClose, LoanEvent, LoanStatus
from finfaas.store.binding import RETRY_ATTEMPTS_MAX, bound
from finfaas.store.dynamo import condition_failures, conditional_write, consistent_get
from finfaas.store.loans_store import (
    EVENT_SOURCE,
    LOANS_TABLE_LOGICAL_NAME,
    NO_RANGE,
    OUTBOX_PRODUCER,
    OUTBOX_TABLE_LOGICAL_NAME,
    LoansStore,
    _LoansItem,  # the same table's item shape: one model of it
    _OutboxItem,
    loan_from_json,
)
from finfaas.store.models import format_time
from finfaas.store.outbox_store import outbox_partition

CLOSE_RANGE = "close"
LOAN_PREFIX = "loan#"
cursor_chars_max = 1024
# DynamoDB's TransactWriteItems limits: 100 items and 4 MB; a budget below the size keeps room for keys
# and attribute names beside the documents counted.
transaction_items_max = 100
transaction_bytes_max = 3_000_000
# A chunk is written again without the loans whose condition failed; past this, its loans are read again.
chunk_attempts_max = 3


def _size(items: Sequence[tuple[Any, Any]]) -> int:
    return sum(len(getattr(item, "doc", None) or getattr(item, "data", None) or "") for item, _ in items)


def _chunks(entries: Sequence[tuple[CloseWrite, list[tuple[Any, Any]]]]) \
        -> Iterator[list[tuple[CloseWrite, list[tuple[Any, Any]]]]]:
    """Consecutive loans' writes packed into transactions within DynamoDB's item and size limits."""
    chunk: list[tuple[CloseWrite, list[tuple[Any, Any]]]] = []
    items = size = 0
    for entry in entries:
        count, bytes_ = len(entry[1]), _size(entry[1])
        assert count <= transaction_items_max, "one loan's night fits a transaction"
        if chunk and (items + count > transaction_items_max or size + bytes_ > transaction_bytes_max):
            yield chunk
            chunk, items, size = [], 0, 0
        chunk.append(entry)
        items += count
        size += bytes_
    if chunk:
        yield chunk


def _item_owners(batch: Sequence[tuple[CloseWrite, list[tuple[Any, Any]]]]) -> list[str]:
    """The loan id of each item of the transaction, in the order the items were put."""
    return [write.loan.loan_id for write, items in batch for _ in items]


def close_to_json(close: LoanClose) -> str:
    return json.dumps({"loan_id": close.loan_id, "closed_through": close.closed_through.isoformat(),
                       "days_past_due": close.days_past_due, "bucket": close.bucket,
                       "penalty_charged_minor": close.penalty_charged_minor,
                       "outstanding_minor": close.outstanding_minor}, separators=(",", ":"), sort_keys=True)


def close_from_json(text: str) -> LoanClose:
    raw = json.loads(text)
    return LoanClose(str(raw["loan_id"]), date.fromisoformat(raw["closed_through"]),
                     int(raw["days_past_due"]), raw["bucket"], int(raw["penalty_charged_minor"]),
                     int(raw["outstanding_minor"]))


def encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([key["pk"]["S"], key["sk"]["S"]]).encode()).decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The scan's start key in cursor; a cursor this store did not make is refused naming `cursor`."""
    try:
        if len(cursor) > cursor_chars_max:
            raise ValueError("too long")
        pk, sk = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        # Any item's key: a Scan stops where its page's Limit ends, on a product or a close record as
        # readily as on a loan, and the next page starts there.
        if not (isinstance(pk, str) and isinstance(sk, str) and pk and sk):
            raise ValueError("not a key of the loans table")
    except (ValueError, TypeError, binascii.Error) as error:
        raise InvalidLoanRequest(f"bad cursor: {error}", errors=(("cursor", "not a cursor of this job"),)) \
            from None
    return {"pk": {"S": pk}, "sk": {"S": sk}}


class LoansNightlyStore:
    """A LoanNightlyRepository on DynamoDB (pynamodb). Thread-safe; share one per process."""

    def __init__(self, loans: LoansStore | None = None, table_name: str | None = None,
                 outbox_table_name: str | None = None, region: str | None = None) -> None:
        region = region or settings().region
        self._loans = loans or LoansStore(table_name, outbox_table_name, region)
        self._item: Any = bound(_LoansItem, table_name or resource_name(LOANS_TABLE_LOGICAL_NAME), region)
        self._outbox: Any = bound(_OutboxItem, outbox_table_name or resource_name(OUTBOX_TABLE_LOGICAL_NAME),
                                  region)
        self._connection = Connection(region=region, max_retry_attempts=RETRY_ATTEMPTS_MAX)

    def active_loan_ids(self, limit: int, cursor: str | None, segment: int = 0,
                        segments: int = 1) -> tuple[list[str], str | None]:
        # A Scan: the job visits every loan once a night, and a filtered Scan reads each item once;
        # consistent, so a loan disbursed before the job started is not missed. A parallel Scan's
        # segments split the table between the night's concurrent chunks, each paging its own.
        model = self._item
        start = None if cursor is None else decode_cursor(cursor)
        wanted = (model.status == LoanStatus.ACTIVE.value) & (model.sk == NO_RANGE) \
            & model.pk.startswith(LOAN_PREFIX)
        split = {} if segments == 1 else {"segment": segment, "total_segments": segments}
        try:
            found = model.scan(wanted, limit=limit, page_size=limit, last_evaluated_key=start,
                               consistent_read=True, attributes_to_get=["pk", "sk"], **split)
            ids = [item.pk[len(LOAN_PREFIX):] for item in found]
            last = found.last_evaluated_key
        except PynamoDBException as error:
            raise LoansStoreUnavailable(f"list active loans: {error}") from error
        return ids, None if last is None else encode_cursor(last)

    def get_close(self, loan_id: str) -> LoanClose | None:
        item = consistent_get(self._item, (f"{LOAN_PREFIX}{loan_id}", CLOSE_RANGE),
                              lambda error: LoansStoreUnavailable(f"read close of loan {loan_id}: {error}"))
        return None if item is None else close_from_json(item.doc)

    def read_loans(self, loan_ids: Sequence[str]) -> dict[str, tuple[Loan | None, LoanClose | None]]:
        # One BatchGetItem of up to 100 keys (a loan and its close record each), consistent like the
        # single reads it replaces: 50 loans a round trip instead of 2 round trips a loan.
        model = self._item
        keys = [(f"{LOAN_PREFIX}{loan_id}", sk) for loan_id in loan_ids for sk in (NO_RANGE, CLOSE_RANGE)]
        found: dict[str, tuple[Loan | None, LoanClose | None]] = dict.fromkeys(loan_ids, (None, None))
        try:
            for item in model.batch_get(keys, consistent_read=True):
                loan_id = item.pk[len(LOAN_PREFIX):]
                loan, close = found[loan_id]
                if item.sk == NO_RANGE:
                    found[loan_id] = (loan_from_json(item.doc), close)
                else:
                    found[loan_id] = (loan, close_from_json(item.doc))
        except PynamoDBException as error:
            raise LoansStoreUnavailable(f"read {len(loan_ids)} loans: {error}") from error
        return found

    def close_items(self, write: CloseWrite) -> list[tuple[Any, Any]]:
        """(item, condition) of a loan's night: its close record over an earlier date, the loan put over
        the version read, and the night's events; every one a put, so a cancellation's reasons index them."""
        model = self._item
        close = write.close
        item = model(f"{LOAN_PREFIX}{close.loan_id}", CLOSE_RANGE, doc=close_to_json(close),
                     version=close.closed_through.toordinal(), status="closed_through")
        later = model.pk.does_not_exist() | (model.version < close.closed_through.toordinal())
        outbox = [(self._event_item(close, number, event), None) for number, event in enumerate(write.events)]
        return [(item, later), self._loans.loan_put(write.closed_loan), *outbox]

    def record_close(self, loan: Loan, close: LoanClose, events: Sequence[LoanEvent],
                     closed_loan: Loan) -> bool:
        return not self.record_closes([CloseWrite(loan, close, tuple(events), closed_loan)])

    def record_closes(self, writes: Sequence[CloseWrite]) -> set[str]:
        # Many loans a TransactWriteItems (up to transaction_items_max items and transaction_bytes_max):
        # one round trip for a few dozen loans. A condition failing cancels the whole transaction and
        # names its item: that loan is left out (returned), the rest written again without it.
        refused: set[str] = set()
        for chunk in _chunks([(w, self.close_items(w)) for w in writes]):
            pending = chunk
            for _ in range(chunk_attempts_max):
                if not pending:
                    break
                written = conditional_write(partial(self._transact, pending))
                if written.taken:
                    pending = []
                    break
                failed = condition_failures(written.error)
                if not failed:
                    raise LoansStoreUnavailable(f"close {len(pending)} loans: {written.code}") \
                        from written.error
                owners = _item_owners(pending)
                losers = {owners[index] for index in failed}
                refused |= losers
                pending = [entry for entry in pending if entry[0].loan.loan_id not in losers]
            if pending:  # conditions kept failing on other loans each attempt: the caller reads them again
                refused |= {write.loan.loan_id for write, _ in pending}
        return refused

    def _transact(self, batch: Sequence[tuple[CloseWrite, list[tuple[Any, Any]]]]) -> None:
        with TransactWrite(connection=self._connection) as transaction:
            for _, items in batch:
                for item, condition in items:
                    transaction.save(item, condition=condition)

    def _event_item(self, close: LoanClose, number: int, event: LoanEvent) -> Any:
        """The outbox record; its id names the loan, the date and the change's place in the night."""
        # Business dates, not the wall clock, stamp the night's events: a rerun writes the same record.
        at = datetime.combine(close.closed_through, time(), UTC)
        event_id = f"{event.type}:{close.loan_id}:{close.closed_through.isoformat()}:{number}"
        return self._outbox(
            outbox_partition(OUTBOX_PRODUCER, close.loan_id), f"{entry_key_prefix(micros(at))}#{event_id}",
            event_id=event_id, type=event.type, source=EVENT_SOURCE, subject=close.loan_id,
            time=format_time(at), data=json.dumps(dict(event.data), separators=(",", ":"), sort_keys=True))
