"""PynamoDB models of the ledger tables, bound to physical table names at run time.

Every number is an integer. NumberAttribute serialises ints through json (exact at any size) but
non-integers through float, so nothing here ever stores a non-integer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from pynamodb.attributes import BooleanAttribute, ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from finfaas.domain.ledger import (
    Account,
    AccountKind,
    AccountStatus,
    Entry,
    PendingState,
    Transfer,
    TransferKind,
    micros,
)

if TYPE_CHECKING:  # an annotation only: reaching the models names no ledger table
    from finfaas.store.tables import LedgerTables

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, so text order is time order


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


class ByOwnerIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "by-owner"
        projection = AllProjection()

    owner_id = UnicodeAttribute(hash_key=True)
    opened_at = UnicodeAttribute(range_key=True)


class AccountRecord(Model):
    """One account; `available_minor` is derived and kept by the same ADD actions as the balances,
    because condition expressions cannot do arithmetic."""

    account_id = UnicodeAttribute(hash_key=True)
    owner_id = UnicodeAttribute()
    opened_at = UnicodeAttribute()
    currency = UnicodeAttribute()
    kind = UnicodeAttribute()
    status = UnicodeAttribute()
    limited = BooleanAttribute()  # debits_must_not_exceed_credits
    overdraft_limit_minor = NumberAttribute()
    debits_pending = NumberAttribute()
    debits_posted = NumberAttribute()
    credits_pending = NumberAttribute()
    credits_posted = NumberAttribute()
    available_minor = NumberAttribute()
    version = NumberAttribute()
    last_entry_key = UnicodeAttribute(null=True)  # newest entry included in the balances above
    by_owner = ByOwnerIndex()


OPEN_HOLDS_INDEX = "open-holds-by-account"


class OpenHoldsIndex(GlobalSecondaryIndex):
    """Sparse: only open holds carry `held_account_id`; keys only, so a page is read again consistently."""

    class Meta:
        index_name = OPEN_HOLDS_INDEX
        projection = KeysOnlyProjection()

    held_account_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class TransferRecord(Model):
    transfer_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute()
    debit_account_id = UnicodeAttribute()
    credit_account_id = UnicodeAttribute()
    amount_minor = NumberAttribute()
    currency = UnicodeAttribute()
    created_at = UnicodeAttribute()
    pending_id = UnicodeAttribute(null=True)
    timeout_seconds = NumberAttribute()
    expires_at_us = NumberAttribute()  # 0: never; holds only
    reversal_of = UnicodeAttribute(null=True)
    batch_id = UnicodeAttribute(null=True)
    batch_size = NumberAttribute()
    # A linked batch's first leg names every leg in order, so the batch is read by key, with no index.
    batch_legs = ListAttribute(of=UnicodeAttribute, null=True)
    metadata = UnicodeAttribute(null=True)
    state = UnicodeAttribute(null=True)  # holds: PENDING -> POSTED | VOIDED | EXPIRED, once
    resolved_by = UnicodeAttribute(null=True)
    reversed_by = UnicodeAttribute(null=True)
    # A hold's debit account while it is PENDING; removed by the update that resolves it.
    held_account_id = UnicodeAttribute(null=True)
    open_holds = OpenHoldsIndex()


class EntryRecord(Model):
    """A statement entry, or (under a `~holds#` partition) the expiry index of open holds."""

    account_id = UnicodeAttribute(hash_key=True)
    entry_key = UnicodeAttribute(range_key=True)
    transfer_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    counterparty_id = UnicodeAttribute(null=True)
    currency = UnicodeAttribute()
    amount_minor = NumberAttribute()
    created_at = UnicodeAttribute()
    debits_posted = NumberAttribute(default=0)
    credits_posted = NumberAttribute(default=0)
    debits_pending = NumberAttribute(default=0)
    credits_pending = NumberAttribute(default=0)


class OutboxRecord(Model):
    """An event written with the change it describes; the outbox relay publishes and deletes it."""

    partition = UnicodeAttribute(hash_key=True)
    event_key = UnicodeAttribute(range_key=True)
    event_id = UnicodeAttribute()
    type = UnicodeAttribute()
    source = UnicodeAttribute()
    subject = UnicodeAttribute()
    time = UnicodeAttribute()
    data = UnicodeAttribute()  # JSON text
    # The change's audit facts (JSON text) for the relay to seal into the audit chain; never published.
    audit = UnicodeAttribute(null=True)


@dataclass(frozen=True)
class LedgerModels:
    account: type[AccountRecord]
    transfer: type[TransferRecord]
    entry: type[EntryRecord]
    outbox: type[OutboxRecord]


@lru_cache(maxsize=16)
def bind_models(tables: LedgerTables, region: str) -> LedgerModels:
    """Subclasses of the records pointing at these physical tables (one set per stage)."""

    def bound(base: type[Model], table_name: str) -> type:
        meta = type("Meta", (), {"table_name": table_name, "region": region, "max_retry_attempts": 2})
        return type(base.__name__, (base,), {"Meta": meta, "__module__": __name__})

    return LedgerModels(bound(AccountRecord, tables.accounts), bound(TransferRecord, tables.transfers),
                        bound(EntryRecord, tables.entries), bound(OutboxRecord, tables.outbox))


# --- records <-> domain ----------------------------------------------------------------------------


def account_from_record(record: AccountRecord) -> Account:
    return Account(
        account_id=record.account_id, owner_id=record.owner_id, currency=record.currency,
        kind=AccountKind(record.kind), status=AccountStatus(record.status),
        opened_at=parse_time(record.opened_at), debits_must_not_exceed_credits=record.limited,
        overdraft_limit_minor=_integer(record.overdraft_limit_minor),
        debits_pending=_integer(record.debits_pending), debits_posted=_integer(record.debits_posted),
        credits_pending=_integer(record.credits_pending), credits_posted=_integer(record.credits_posted),
        version=_integer(record.version),
    )


def account_from_raw(models: LedgerModels, raw: dict) -> Account:
    """An account from the wire format (e.g. a cancellation reason's ALL_OLD item)."""
    return account_from_record(models.account.from_raw_data(raw))


def transfer_from_record(record: TransferRecord) -> Transfer:
    return Transfer(
        transfer_id=record.transfer_id, kind=TransferKind(record.kind),
        debit_account_id=record.debit_account_id, credit_account_id=record.credit_account_id,
        amount_minor=_integer(record.amount_minor), currency=record.currency,
        created_at=parse_time(record.created_at), pending_id=record.pending_id,
        timeout_seconds=_integer(record.timeout_seconds), reversal_of=record.reversal_of,
        batch_id=record.batch_id, batch_size=_integer(record.batch_size), metadata=record.metadata or "",
        state=PendingState(record.state) if record.state else None,
        resolved_by=record.resolved_by, reversed_by=record.reversed_by,
    )


def transfer_record(models: LedgerModels, transfer: Transfer,
                    batch_legs: list[str] | None = None) -> TransferRecord:
    expires_at = transfer.expires_at
    return models.transfer(
        transfer.transfer_id, kind=transfer.kind.value, debit_account_id=transfer.debit_account_id,
        credit_account_id=transfer.credit_account_id, amount_minor=transfer.amount_minor,
        currency=transfer.currency, created_at=format_time(transfer.created_at),
        pending_id=transfer.pending_id, timeout_seconds=transfer.timeout_seconds,
        expires_at_us=micros(expires_at) if expires_at else 0, reversal_of=transfer.reversal_of,
        batch_id=transfer.batch_id, batch_size=transfer.batch_size, batch_legs=batch_legs,
        metadata=transfer.metadata or None, state=transfer.state.value if transfer.state else None,
        held_account_id=transfer.debit_account_id if transfer.state is PendingState.PENDING else None,
    )


def batch_records(models: LedgerModels, batch: Sequence[Transfer]) -> list[TransferRecord]:
    """Each transfer's record; a linked batch's first leg names every leg, in order (batch_legs)."""
    names = [t.transfer_id for t in batch] if len(batch) > 1 else None
    return [transfer_record(models, t, names if t.transfer_id == t.batch_id else None) for t in batch]


def entry_record(models: LedgerModels, entry: Entry) -> EntryRecord:
    return models.entry(
        entry.account_id, entry.entry_key, transfer_id=entry.transfer_id, kind=entry.kind.value,
        counterparty_id=entry.counterparty_id, currency=entry.currency, amount_minor=entry.amount_minor,
        created_at=format_time(entry.created_at), debits_posted=entry.debits_posted,
        credits_posted=entry.credits_posted, debits_pending=entry.debits_pending,
        credits_pending=entry.credits_pending,
    )


def entry_from_record(record: EntryRecord) -> Entry:
    return Entry(
        account_id=record.account_id, entry_key=record.entry_key, transfer_id=record.transfer_id,
        kind=TransferKind(record.kind), counterparty_id=record.counterparty_id or "",
        currency=record.currency, amount_minor=_integer(record.amount_minor),
        created_at=parse_time(record.created_at), debits_posted=_integer(record.debits_posted),
        credits_posted=_integer(record.credits_posted), debits_pending=_integer(record.debits_pending),
        credits_pending=_integer(record.credits_pending),
    )


def _integer(value: object) -> int:
    """Asserts the stored number came back as an exact integer (never a float)."""
    assert type(value) is int, f"ledger numbers are integers, got {value!r}"
    return value

