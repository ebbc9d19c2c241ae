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
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.transactions import TransactWrite

from finfaas.domain.ledger import entry_key_prefix, micros
from finfaas.platform.config import resource_name, settings
from finfaas.services.loans.errors import InvalidLoanRequest, LoansStoreUnavailable
from finfaas.services.loans.model import Loan, LoanClose, LoanEvent, LoanStatus
from finfaas.store.binding import RETRY_ATTEMPTS_MAX, bound
from finfaas.store.dynamo import any_condition_failed, conditional_write, consistent_get
from finfaas.store.loans_store import (
    EVENT_SOURCE,
    LOANS_TABLE_LOGICAL_NAME,
    NO_RANGE,
    OUTBOX_PRODUCER,
    OUTBOX_TABLE_LOGICAL_NAME,
    LoansStore,
    _LoansItem,  # the same table's item shape: one model of it
    _OutboxItem,
)
from finfaas.store.models import format_time
from finfaas.store.outbox_store import outbox_partition

CLOSE_RANGE = "close"
LOAN_PREFIX = "loan#"
cursor_chars_max = 1024


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
        if not (isinstance(pk, str) and isinstance(sk, str) and pk.startswith(LOAN_PREFIX)):
            raise ValueError("not a loans cursor")
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

    def active_loan_ids(self, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
        # A Scan: the job visits every loan once a night, and a filtered Scan reads each item once;
        # consistent, so a loan disbursed before the job started is not missed.
        model = self._item
        start = None if cursor is None else decode_cursor(cursor)
        wanted = (model.status == LoanStatus.ACTIVE.value) & (model.sk == NO_RANGE) \
            & model.pk.startswith(LOAN_PREFIX)
        try:
            found = model.scan(wanted, limit=limit, page_size=limit, last_evaluated_key=start,
                               consistent_read=True, attributes_to_get=["pk", "sk"])
            ids = [item.pk[len(LOAN_PREFIX):] for item in found]
            last = found.last_evaluated_key
        except PynamoDBException as error:
            raise LoansStoreUnavailable(f"list active loans: {error}") from error
        return ids, None if last is None else encode_cursor(last)

    def get_close(self, loan_id: str) -> LoanClose | None:
        item = consistent_get(self._item, (f"{LOAN_PREFIX}{loan_id}", CLOSE_RANGE),
                              lambda error: LoansStoreUnavailable(f"read close of loan {loan_id}: {error}"))
        return None if item is None else close_from_json(item.doc)

    def record_close(self, loan: Loan, close: LoanClose, events: Sequence[LoanEvent],
                     closed_loan: Loan | None) -> bool:
        model = self._item
        item = model(f"{LOAN_PREFIX}{loan.loan_id}", CLOSE_RANGE, doc=close_to_json(close),
                     version=close.closed_through.toordinal(), status="closed_through")
        later = model.pk.does_not_exist() | (model.version < close.closed_through.toordinal())
        outbox = [self._event_item(close, number, event) for number, event in enumerate(events)]

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(item, condition=later)
                if closed_loan is None:
                    transaction.condition_check(model, f"{LOAN_PREFIX}{loan.loan_id}", NO_RANGE,
                                                condition=model.version == loan.version)
                else:
                    loan_item, condition = self._loans.loan_put(closed_loan)
                    transaction.save(loan_item, condition=condition)
                for record in outbox:
                    transaction.save(record)

        written = conditional_write(transact)
        if written.taken:
            return True
        if any_condition_failed(written.error):
            return False
        raise LoansStoreUnavailable(f"close loan {loan.loan_id}: {written.code}") from written.error

    def _event_item(self, close: LoanClose, number: int, event: LoanEvent) -> Any:
        """The outbox record; its id names the loan, the date and the change's place in the night."""
        # Business dates, not the wall clock, stamp the night's events: a rerun writes the same record.
        at = datetime.combine(close.closed_through, time(), UTC)
        event_id = f"{event.type}:{close.loan_id}:{close.closed_through.isoformat()}:{number}"
        return self._outbox(
            outbox_partition(OUTBOX_PRODUCER, close.loan_id), f"{entry_key_prefix(micros(at))}#{event_id}",
            event_id=event_id, type=event.type, source=EVENT_SOURCE, subject=close.loan_id,
            time=format_time(at), data=json.dumps(dict(event.data), separators=(",", ":"), sort_keys=True))
