"""The ledger check: reconcile the ledger's tables and name every inconsistency.

Checks that each account's counters equal the sum of its entries, the derived available balance and
last entry key agree, the trial balance is zero per currency, every transfer was applied exactly once
(two entries with the deltas its kind implies), every hold is resolved at most once and open holds add
up to the pending counters, and reversals point at each other. `finfaas ledger check` runs it over the
whole tables; the ledger function's `GET /_/ops/ledger-check` runs it within a budget of records and time.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from finfaas.domain.ledger import (
    Account,
    Entry,
    PendingState,
    Transfer,
    TransferKind,
    leg_for_new,
    leg_for_resolution,
)
from finfaas.platform.audit import AuditRecord, AuditRepository, ChainReport, verify_log

# An online check reads every record of the ledger's tables in one request: past these it stops and says
# the ledger is larger than an online check covers (`finfaas ledger check` has no such bound).
online_check_records_max = 20_000
online_check_seconds_max = 10.0

T = TypeVar("T")
OnMalformed = Callable[[str, str, Exception], None]

_STATE_OF_RESOLUTION = {TransferKind.POST: PendingState.POSTED, TransferKind.VOID: PendingState.VOIDED,
                        TransferKind.EXPIRY: PendingState.EXPIRED}


@dataclass(frozen=True)
class AccountSnapshot:
    account: Account
    available_minor: int
    last_entry_key: str | None


@dataclass
class Report:
    accounts: int = 0
    transfers: int = 0
    entries: int = 0
    balances_by_currency: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        totals = ", ".join(f"{c} {v}" for c, v in sorted(self.balances_by_currency.items())) or "none"
        verdict = "OK" if self.clean else f"{len(self.problems)} problem(s)"
        counts = f"{self.accounts} accounts, {self.transfers} transfers, {self.entries} entries"
        return f"ledger check: {counts}; trial balance per currency: {totals}; {verdict}"


def reconcile(accounts: Iterable[AccountSnapshot], transfers: Iterable[Transfer], entries: Iterable[Entry],
              hold_index: Iterable[tuple[str, int]] = ()) -> Report:
    """Every check over one snapshot of the tables (take it while no transfer is in flight)."""
    snapshots = {s.account.account_id: s for s in accounts}
    by_id = {t.transfer_id: t for t in transfers}
    entry_list = list(entries)
    report = Report(accounts=len(snapshots), transfers=len(by_id), entries=len(entry_list))
    _check_accounts(snapshots, entry_list, report)
    _check_trial_balance(snapshots, report)
    _check_transfers_applied_once(by_id, entry_list, report)
    _check_holds(snapshots, by_id, dict(hold_index), report)
    _check_reversals(by_id, report)
    return report


def _check_accounts(snapshots: dict[str, AccountSnapshot], entries: list[Entry], report: Report) -> None:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    newest: dict[str, str] = {}
    for entry in entries:
        total = sums[entry.account_id]
        for index, value in enumerate((entry.debits_posted, entry.credits_posted, entry.debits_pending,
                                       entry.credits_pending)):
            total[index] += value
        newest[entry.account_id] = max(newest.get(entry.account_id, ""), entry.entry_key)
        if entry.account_id not in snapshots:
            report.problems.append(f"entry {entry.entry_key} belongs to missing account {entry.account_id}")
    for account_id, snapshot in sorted(snapshots.items()):
        account = snapshot.account
        stored = [account.debits_posted, account.credits_posted, account.debits_pending,
                  account.credits_pending]
        names = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
        for name, have, summed in zip(names, stored, sums[account_id], strict=True):
            if have != summed:
                report.problems.append(f"account {account_id}: {name} {have} != sum of entries {summed}")
        if snapshot.available_minor != account.available_minor:
            report.problems.append(f"account {account_id}: available_minor {snapshot.available_minor} != "
                                   f"derived {account.available_minor}")
        if account.is_limited and account.available_minor < 0:
            report.problems.append(f"account {account_id}: below its limit "
                                   f"(available {account.available_minor})")
        if snapshot.last_entry_key != newest.get(account_id):
            report.problems.append(f"account {account_id}: last_entry_key {snapshot.last_entry_key} != "
                                   f"newest entry {newest.get(account_id)}")


def _check_trial_balance(snapshots: dict[str, AccountSnapshot], report: Report) -> None:
    posted: Counter[str] = Counter()
    pending: Counter[str] = Counter()
    for snapshot in snapshots.values():
        account = snapshot.account
        posted[account.currency] += account.balance_minor
        pending[account.currency] += account.credits_pending - account.debits_pending
    report.balances_by_currency = dict(posted)
    for currency in sorted(posted):
        if posted[currency]:
            report.problems.append(f"trial balance {currency}: posted balances sum to "
                                   f"{posted[currency]}, not 0")
        if pending[currency]:
            report.problems.append(f"trial balance {currency}: pending credits - debits = "
                                   f"{pending[currency]}")


Deltas = tuple[int, int, int, int]  # debits posted, credits posted, debits pending, credits pending


def _expected_entry_deltas(transfer: Transfer, by_id: dict[str, Transfer]) -> dict[str, Deltas] | None:
    if transfer.kind in _STATE_OF_RESOLUTION:
        pending = by_id.get(transfer.pending_id or "")
        if pending is None:
            return None
        leg = leg_for_resolution(pending, transfer)
    else:
        leg = leg_for_new(transfer)
    return {leg.debit_account_id: (leg.posted_minor, 0, leg.pending_minor, 0),
            leg.credit_account_id: (0, leg.posted_minor, 0, leg.pending_minor)}


def _check_transfers_applied_once(by_id: dict[str, Transfer], entries: list[Entry], report: Report) -> None:
    entries_by_transfer: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        entries_by_transfer[entry.transfer_id].append(entry)
    for transfer_id in sorted(set(entries_by_transfer) - set(by_id)):
        report.problems.append(f"entries of transfer {transfer_id}, which has no record")
    for transfer_id, transfer in sorted(by_id.items()):
        expected = _expected_entry_deltas(transfer, by_id)
        if expected is None:
            report.problems.append(f"transfer {transfer_id}: resolves missing pending {transfer.pending_id}")
            continue
        found = entries_by_transfer.get(transfer_id, [])
        if len(found) != 2:
            report.problems.append(f"transfer {transfer_id}: {len(found)} entries, expected 2 (applied "
                                   f"{'twice' if len(found) > 2 else 'partially or not at all'})")
            continue
        actual = {e.account_id: (e.debits_posted, e.credits_posted, e.debits_pending, e.credits_pending)
                  for e in found}
        if actual != expected:
            report.problems.append(f"transfer {transfer_id}: entries {actual} do not match {expected}")


def _check_holds(snapshots: dict[str, AccountSnapshot], by_id: dict[str, Transfer],
                 hold_index: dict[str, int], report: Report) -> None:
    open_debits: Counter[str] = Counter()
    open_credits: Counter[str] = Counter()
    for transfer_id, transfer in sorted(by_id.items()):
        if transfer.kind is TransferKind.PENDING:
            _check_one_hold(transfer, by_id, hold_index, report)
            if transfer.state is PendingState.PENDING:
                open_debits[transfer.debit_account_id] += transfer.amount_minor
                open_credits[transfer.credit_account_id] += transfer.amount_minor
        elif transfer.kind in _STATE_OF_RESOLUTION:
            pending = by_id.get(transfer.pending_id or "")
            if pending is not None and pending.resolved_by != transfer_id:
                report.problems.append(f"transfer {transfer_id} resolves {pending.transfer_id}, "
                                       f"which names {pending.resolved_by} as its resolution")
    for account_id, snapshot in sorted(snapshots.items()):
        account = snapshot.account
        if account.debits_pending != open_debits[account_id]:
            report.problems.append(f"account {account_id}: debits_pending {account.debits_pending} != open "
                                   f"holds {open_debits[account_id]}")
        if account.credits_pending != open_credits[account_id]:
            report.problems.append(f"account {account_id}: credits_pending {account.credits_pending} != open "
                                   f"holds {open_credits[account_id]}")


def _check_one_hold(hold: Transfer, by_id: dict[str, Transfer], hold_index: dict[str, int],
                    report: Report) -> None:
    hold_id = hold.transfer_id
    if hold.state is PendingState.PENDING:
        if hold.resolved_by is not None:
            report.problems.append(f"hold {hold_id}: PENDING yet resolved by {hold.resolved_by}")
        if hold.expires_at is not None and hold_id not in hold_index:
            report.problems.append(f"hold {hold_id}: open with a timeout but missing from the expiry index")
        return
    if hold_id in hold_index:
        report.problems.append(f"hold {hold_id}: {hold.state} but still in the expiry index")
    resolution = by_id.get(hold.resolved_by or "")
    if resolution is None or resolution.pending_id != hold_id:
        report.problems.append(f"hold {hold_id}: {hold.state} without a resolution record")
    elif _STATE_OF_RESOLUTION[resolution.kind] is not hold.state:
        report.problems.append(f"hold {hold_id}: state {hold.state} but resolved by a {resolution.kind}")


def _check_reversals(by_id: dict[str, Transfer], report: Report) -> None:
    for transfer_id, transfer in sorted(by_id.items()):
        if transfer.reversal_of is not None:
            original = by_id.get(transfer.reversal_of)
            if original is None or original.reversed_by != transfer_id:
                report.problems.append(f"reversal {transfer_id}: original {transfer.reversal_of} does not "
                                       f"name it as its reversal")
        if transfer.reversed_by is not None:
            reversal = by_id.get(transfer.reversed_by)
            if reversal is None or reversal.reversal_of != transfer_id:
                report.problems.append(f"transfer {transfer_id}: reversed_by {transfer.reversed_by} has no "
                                       f"matching reversal")


class LedgerScans(Protocol):
    """The full reads a check needs (DynamoLedgerStore; the reference ledger in tests)."""

    def scan_account_records(self, on_malformed: OnMalformed | None = None
                             ) -> Iterable[tuple[Account, int, str | None]]: ...

    def scan_transfers(self, on_malformed: OnMalformed | None = None) -> Iterable[Transfer]: ...

    def scan_entries(self, on_malformed: OnMalformed | None = None) -> Iterable[Entry]: ...

    def scan_hold_index(self) -> Iterable[tuple[str, int]]: ...


class CheckTooLarge(Exception):
    """The records to read exceed an online check's budget: run the command line instead."""

    def __init__(self, records_read: int, records_max: int, seconds_max: float) -> None:
        super().__init__(f"more than {records_max} records or {seconds_max:g} s to read")
        self.records_read = records_read
        self.records_max = records_max
        self.seconds_max = seconds_max


class ReadBudget:
    """Counts records read and the time taken; raises CheckTooLarge past either bound."""

    def __init__(self, records_max: int, seconds_max: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.records_max = records_max
        self.seconds_max = seconds_max
        self.records_read = 0
        self._clock = clock
        self._deadline = clock() + seconds_max

    def metered(self, records: Iterable[T]) -> Iterator[T]:
        for record in records:
            self.records_read += 1
            if self.records_read > self.records_max or self._clock() > self._deadline:
                raise CheckTooLarge(self.records_read, self.records_max, self.seconds_max)
            yield record


def check_store(store: LedgerScans, budget: ReadBudget | None = None) -> Report:
    """Reads the store's tables and reconciles them; records that cannot be read are named. With a budget,
    CheckTooLarge when the tables hold more than it allows."""
    malformed: list[str] = []

    def note(kind: str, key: str, error: Exception) -> None:
        malformed.append(f"{kind} {key}: malformed record ({error})")

    def read(records: Iterable[T]) -> list[T]:
        return list(budget.metered(records) if budget is not None else records)

    accounts = [AccountSnapshot(*row) for row in read(store.scan_account_records(note))]
    report = reconcile(accounts, read(store.scan_transfers(note)), read(store.scan_entries(note)),
                       read(store.scan_hold_index()))
    report.problems[:0] = malformed
    return report


# --- the audit log's hash chains, within the same kind of budget ---------------------------------------


class ScannableAudit(AuditRepository, Protocol):
    """The audit log as a bounded verification reads it: the chains' scan one record at a time."""

    def record_chains(self) -> Iterator[str]:
        """Each record's chain name, one per record (a full scan)."""
        ...


class _MeteredAudit:
    """An audit repository whose reads count against a budget (verification only reads)."""

    def __init__(self, store: ScannableAudit, budget: ReadBudget) -> None:
        self._store = store
        self._budget = budget

    def head(self, chain: str) -> AuditRecord | None:
        return self._store.head(chain)

    def append(self, record: AuditRecord) -> bool:
        raise AssertionError("verification never appends")

    def chains(self) -> Iterator[str]:
        # The scan reads every record once: metering it per record bounds a large log before its walk.
        return iter(sorted(set(self._budget.metered(self._store.record_chains()))))

    def records(self, chain: str) -> Iterator[AuditRecord]:
        return self._budget.metered(self._store.records(chain))


def verify_audit(store: ScannableAudit, keyring: Mapping[str, bytes],
                 budget: ReadBudget | None = None) -> list[ChainReport]:
    """Every chain of the audit log verified as `finfaas audit verify` does (no anchors: they live with
    whoever saved them); with a budget, CheckTooLarge past it."""
    return verify_log(_MeteredAudit(store, budget) if budget is not None else store, keyring)
