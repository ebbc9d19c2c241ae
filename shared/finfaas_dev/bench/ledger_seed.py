"""Seeding the ledger for benches: the items the ledger's transfer use case would have written for a
list of operations (each a batch of new transfers committed together), batch-written by a few threads.

A seed, never a use case: no conditions, no funds checks, no outbox events, no idempotency guard, posted
transfers only (no hold index). The items come from the store's own builders (domain.ledger's
transfer_from_new, leg_for_new, entries_for, account_changes; store.models' batch_records, entry_record),
so `finfaas ledger check` sees what the use case would have left: each transfer (a linked batch's first
naming its legs), its two entries, and each account's counters, available balance, version and last
entry key summed once per account. Run it only on a stage no one else writes
to, over accounts already opened (their records are read, added to and written back last).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from finfaas.domain.ledger import (
    Actor,
    NewTransfer,
    TransferKind,
    account_changes,
    entries_for,
    entry_key_prefix,
    leg_for_new,
    micros,
    transfer_from_new,
)
from finfaas.store.ledger_store import DynamoLedgerStore
from finfaas.store.models import batch_records, entry_record

SEED_THREADS = 8  # each its own BatchWriteItem stream (pynamodb sends 25 items a call)
ACCOUNTS_PER_READ_MAX = 100  # DynamoDB's BatchGetItem limit
OPERATION_STEP = timedelta(microseconds=1)  # operations dated one after another: entry keys only grow
# An account record's counters, as the use case's update ADDs them (store/ledger_store.py).
_COUNTERS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending", "available_minor")


def _add_counters(target: Any, deltas: Any) -> None:
    """Adds each counter of `deltas` to `target`'s (each a _Sums or an account record)."""
    for name in _COUNTERS:
        setattr(target, name, getattr(target, name) + getattr(deltas, name))


@dataclass
class _Sums:
    """One account's deltas over the seeded operations, as the use case's updates would add them."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    available_minor: int = 0
    operations: int = 0  # each operation's update adds 1 to the account's version
    newest_key: str = ""

    def add(self, other: _Sums) -> None:
        _add_counters(self, other)
        self.operations += other.operations
        self.newest_key = max(self.newest_key, other.newest_key)


@dataclass
class SeedCounts:
    transfers: int = 0
    entries: int = 0
    accounts: int = 0
    sums: dict[str, _Sums] = field(default_factory=dict)


class SeedTooSlow(RuntimeError):
    """The seed passed its deadline; what was written is partial (accounts untouched)."""


def seed_ledger(store: DynamoLedgerStore, operations: Sequence[Sequence[NewTransfer]], start: datetime,
                deadline: float, threads: int = SEED_THREADS) -> SeedCounts:
    """Writes the transfers and entries of `operations` (the i-th dated start + i µs), then each touched
    account's record with the sums added; raises SeedTooSlow past `deadline` (time.monotonic())."""
    slices = [range(n, len(operations), threads) for n in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(lambda s: _write_slice(store, operations, s, start, deadline), slices))
    counts = SeedCounts()
    for part in parts:
        counts.transfers += part.transfers
        counts.entries += part.entries
        for account_id, sums in part.sums.items():
            counts.sums.setdefault(account_id, _Sums()).add(sums)
    counts.accounts = _write_accounts(store, counts.sums, deadline)
    return counts


def _write_slice(store: DynamoLedgerStore, operations: Sequence[Sequence[NewTransfer]], indexes: range,
                 start: datetime, deadline: float) -> SeedCounts:
    counts = SeedCounts()
    with store.models.transfer.batch_write() as transfers, store.models.entry.batch_write() as entries:
        for index in indexes:
            if time.monotonic() > deadline:
                raise SeedTooSlow(f"seeding {len(operations)} ledger operations passed its deadline")
            batch = operations[index]
            now = start + index * OPERATION_STEP
            wanted = [transfer_from_new(new, now, batch) for new in batch]
            assert all(t.kind is not TransferKind.PENDING for t in wanted), "no hold index: posted only"
            legs = [leg_for_new(t) for t in wanted]
            prefix = entry_key_prefix(micros(now))
            for record in batch_records(store.models, wanted):
                transfers.save(record)
            for position, leg in enumerate(legs):
                for entry in entries_for(leg, prefix, position, now):
                    entries.save(entry_record(store.models, entry))
                    counts.entries += 1
                    sums = counts.sums.setdefault(entry.account_id, _Sums())
                    sums.newest_key = max(sums.newest_key, entry.entry_key)
            for change in account_changes(legs, Actor.system()):
                counts.sums[change.account_id].add(_Sums(
                    change.debits_posted, change.credits_posted, change.debits_pending,
                    change.credits_pending, change.available_delta_minor, operations=1))
            counts.transfers += len(wanted)
    return counts


def _write_accounts(store: DynamoLedgerStore, sums: dict[str, _Sums], deadline: float) -> int:
    """Each account's stored record plus its sums, written back (the accounts must exist)."""
    model: Any = store.models.account
    ids = sorted(sums)
    records = []
    for first in range(0, len(ids), ACCOUNTS_PER_READ_MAX):
        records += list(model.batch_get(ids[first:first + ACCOUNTS_PER_READ_MAX], consistent_read=True))
    missing = set(ids) - {r.account_id for r in records}
    if missing:
        raise ValueError(f"seed: accounts not opened: {sorted(missing)[:5]}")
    with model.batch_write() as batch:
        for record in records:
            if time.monotonic() > deadline:
                raise SeedTooSlow("seeding the ledger's accounts passed its deadline")
            add = sums[record.account_id]
            _add_counters(record, add)
            record.version += add.operations
            record.last_entry_key = max(record.last_entry_key or "", add.newest_key)
            batch.save(record)
    return len(records)
