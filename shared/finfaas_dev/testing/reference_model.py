"""A pure in-memory ledger with the same contract as the DynamoDB store: the test oracle and a fake.

It applies the domain's rules in the simplest possible way (dicts, one operation at a time), so a
difference between it and the store after any step points at the store's translation of the rules
into DynamoDB conditions, ADD actions and cancellation reasons.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime

# The store's and this oracle's imports match on purpose: both apply the domain's own rules; only the
# storage is written twice, so a difference after any step points at the store's DynamoDB translation.
from finfaas.domain.errors import AccountNotFound, DuplicateTransferId
from finfaas.domain.ledger import (
    Account,
    AccountStatus,
    Actor,
    Entry,
    Leg,
    NewAccount,
    NewTransfer,
    Page,
    PendingState,
    PostPending,
    Reversal,
    StatementPage,
    Transfer,
    TransferKind,
    VoidPending,
    account_changes,
    apply_change,
    check_batch,
    check_identifier,
    check_new_account,
    check_page_size,
    check_pending_kind,
    check_resolvable,
    check_reversible,
    check_reversible_or_replay,
    check_same_account,
    check_same_remainder,
    check_same_transfer,
    check_status_change,
    decode_hold_cursor,
    decode_statement_cursor,
    encode_hold_cursor,
    entries_for,
    entry_key_micros,
    entry_key_prefix,
    expiry_transfer_id,
    first_violation,
    is_expired,
    leg_for_new,
    leg_for_resolution,
    micros,
    remainder_transfer,
    replayed_batch,
    resolution_transfer,
    reversal_transfer,
    statement_page,
    transfer_from_new,
    violation,
)

_RESOLVED_STATE = {TransferKind.POST: PendingState.POSTED, TransferKind.VOID: PendingState.VOIDED,
                   TransferKind.EXPIRY: PendingState.EXPIRED}


class ReferenceLedger:
    """LedgerRepository in memory. Not thread-safe: one operation at a time."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.transfers: dict[str, Transfer] = {}
        self.entries: dict[str, list[Entry]] = {}  # per account, oldest first

    # --- accounts ---

    def open_account(self, new: NewAccount, now: datetime) -> Account:
        check_new_account(new)
        existing = self.accounts.get(new.account_id)
        if existing is not None:
            return check_same_account(existing, new)
        account = Account(new.account_id, new.owner_id, new.currency, new.kind, AccountStatus.OPEN, now,
                          new.debits_must_not_exceed_credits, new.overdraft_limit_minor)
        self.accounts[account.account_id] = account
        return account

    def get_account(self, account_id: str) -> Account | None:
        return self.accounts.get(account_id)

    def get_accounts(self, account_ids: Sequence[str]) -> dict[str, Account]:
        return {i: self.accounts[i] for i in account_ids if i in self.accounts}

    def accounts_by_owner(self, owner_id: str, limit: int, cursor: str | None) -> Page[Account]:
        check_page_size(limit)
        owned = sorted((a for a in self.accounts.values() if a.owner_id == owner_id),
                       key=lambda a: (a.opened_at, a.account_id))
        if cursor is not None:
            owned = _after(owned, cursor)
        page = owned[:limit]
        has_more = len(owned) > limit
        return Page(page, has_more, page[-1].account_id if has_more else None)

    def set_account_status(self, account_id: str, status: AccountStatus, now: datetime) -> Account:
        account = self.accounts.get(account_id)
        if account is None:
            raise AccountNotFound(f"account {account_id} not found", subject=account_id)
        if account.status == status:
            return account
        check_status_change(account, status)
        self.accounts[account_id] = replace(account, status=status, version=account.version + 1)
        return self.accounts[account_id]

    # --- transfers ---

    def create_transfers(self, batch: Sequence[NewTransfer], actor: Actor, now: datetime) -> list[Transfer]:
        check_batch(batch)
        wanted = [transfer_from_new(new, now, batch) for new in batch]
        replayed = self._replayed_batch(wanted)
        if replayed is not None:
            return replayed
        self._apply([leg_for_new(t) for t in wanted], actor, now)
        for transfer in wanted:
            self.transfers[transfer.transfer_id] = transfer
        return wanted

    def post_pending(self, request: PostPending, actor: Actor, now: datetime) -> Transfer:
        if request.remainder_id is not None:
            return self._post_keeping_rest(request, request.remainder_id, actor, now)
        return self._resolve(request.transfer_id, request.pending_id, TransferKind.POST, request.amount_minor,
                             actor, now)

    def void_pending(self, request: VoidPending, actor: Actor, now: datetime) -> Transfer:
        return self._resolve(request.transfer_id, request.pending_id, TransferKind.VOID, None, actor, now)

    def reverse(self, request: Reversal, actor: Actor, now: datetime) -> Transfer:
        check_identifier(request.transfer_id, field="transfer_id")
        check_identifier(request.reversal_of, field="reversal_of")
        original = check_reversible_or_replay(self.transfers.get(request.reversal_of), request)
        wanted = reversal_transfer(original, request.transfer_id, now)
        if original.reversed_by == request.transfer_id:
            return check_same_transfer(self.transfers[request.transfer_id], wanted)
        check_reversible(original, request.reversal_of)
        existing = self.transfers.get(request.transfer_id)
        if existing is not None:
            return check_same_transfer(existing, wanted)
        self._apply([leg_for_new(wanted)], actor, now)
        self.transfers[wanted.transfer_id] = wanted
        self.transfers[original.transfer_id] = replace(original, reversed_by=wanted.transfer_id)
        return wanted

    def expire_due_holds(self, now: datetime, limit: int) -> list[Transfer]:
        due = sorted((t for t in self.transfers.values()
                      if t.state is PendingState.PENDING and is_expired(t, now)),
                     key=lambda t: (t.expires_at, t.transfer_id))
        return [self._expire(hold, now) for hold in due[:limit]]

    def get_transfer(self, transfer_id: str) -> Transfer | None:
        return self.transfers.get(transfer_id)

    def open_holds(self, account_id: str, limit: int, cursor: str | None) -> Page[Transfer]:
        check_page_size(limit)
        # The store's index key: the creation time as it keeps it (UTC text), then the id.
        def position(hold: Transfer) -> tuple[str, str]:
            return hold.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), hold.transfer_id

        holds = sorted((t for t in self.transfers.values()
                        if t.debit_account_id == account_id and t.state is PendingState.PENDING),
                       key=position)
        if cursor is not None:
            after = decode_hold_cursor(account_id, cursor)  # a position: its hold need not exist
            holds = [t for t in holds if position(t) > after]
        page, more = holds[:limit], len(holds) > limit
        if not more:
            return Page(page, False, None)
        return Page(page, True, encode_hold_cursor(account_id, *position(page[-1])))

    def batch_legs(self, batch_id: str) -> list[Transfer] | None:
        first = self.transfers.get(batch_id)
        if first is None or first.batch_id not in (None, batch_id):
            return None
        if first.batch_id is None:
            return [first]
        return [t for t in self.transfers.values() if t.batch_id == batch_id]  # kept in creation order

    # --- statements ---

    def statement(self, account_id: str, limit: int, cursor: str | None) -> StatementPage:
        check_page_size(limit)
        account = self.accounts.get(account_id)
        if account is None:
            raise AccountNotFound(f"account {account_id} not found", subject=account_id)
        newest_first = list(reversed(self.entries.get(account_id, [])))
        balance = account.balance_minor
        if cursor is not None:
            after_key, balance = decode_statement_cursor(account_id, cursor)
            newest_first = [e for e in newest_first if e.entry_key < after_key]
        return statement_page(account_id, account.currency, newest_first, limit, balance)

    def balance_at(self, account_id: str, at: datetime) -> int:
        if account_id not in self.accounts:
            raise AccountNotFound(f"account {account_id} not found", subject=account_id)
        moment = micros(at)
        return sum(e.balance_delta_minor for e in self.entries.get(account_id, [])
                   if entry_key_micros(e.entry_key) <= moment)

    # --- scans for reconciliation (the ledger check), as the DynamoDB store answers them ---

    def scan_account_records(self, on_malformed=None) -> Iterator[tuple[Account, int, str | None]]:
        for account_id, account in self.accounts.items():
            entries = self.entries.get(account_id, [])
            yield account, account.available_minor, entries[-1].entry_key if entries else None

    def scan_transfers(self, on_malformed=None) -> Iterator[Transfer]:
        return iter(list(self.transfers.values()))

    def scan_entries(self, on_malformed=None) -> Iterator[Entry]:
        return iter([entry for entries in self.entries.values() for entry in entries])

    def scan_hold_index(self) -> Iterator[tuple[str, int]]:
        """Open holds with a timeout: the store indexes exactly those."""
        return iter([(t.transfer_id, micros(t.expires_at)) for t in self.transfers.values()
                     if t.state is PendingState.PENDING and t.expires_at is not None])

    # --- internals ---

    def _replayed_batch(self, wanted: list[Transfer]) -> list[Transfer] | None:
        """The stored batch when every leg repeats it exactly; None when no leg exists yet."""
        existing = [self.transfers.get(t.transfer_id) for t in wanted]
        if all(e is None for e in existing):
            return None
        return replayed_batch(existing, wanted)

    def _resolve(self, transfer_id: str, pending_id: str, kind: TransferKind, amount_minor: int | None,
                 actor: Actor, now: datetime) -> Transfer:
        check_identifier(transfer_id, field="transfer_id")
        check_identifier(pending_id, field="pending_id")
        pending = check_pending_kind(self.transfers.get(pending_id), pending_id)
        wanted = resolution_transfer(pending, transfer_id, kind, amount_minor, now)
        if pending.resolved_by == transfer_id:
            return check_same_transfer(self.transfers[transfer_id], wanted)
        check_resolvable(pending, transfer_id, pending_id, now)
        existing = self.transfers.get(transfer_id)
        if existing is not None:
            return check_same_transfer(existing, wanted)
        return self._commit_resolution(pending, wanted, actor, now)

    def _post_keeping_rest(self, request: PostPending, remainder_id: str, actor: Actor,
                           now: datetime) -> Transfer:
        check_identifier(request.transfer_id, field="transfer_id")
        check_identifier(request.pending_id, field="pending_id")
        check_identifier(remainder_id, field="remainder_id")
        pending = check_pending_kind(self.transfers.get(request.pending_id), request.pending_id)
        wanted = resolution_transfer(pending, request.transfer_id, TransferKind.POST, request.amount_minor,
                                     now)
        if pending.resolved_by == request.transfer_id:
            posted = check_same_transfer(self.transfers[request.transfer_id], wanted)
            check_same_remainder(self.transfers.get(remainder_id), pending, remainder_id, posted.amount_minor)
            return posted
        check_resolvable(pending, request.transfer_id, request.pending_id, now)
        rest = remainder_transfer(pending, remainder_id, wanted.amount_minor, now)
        existing = self.transfers.get(request.transfer_id)
        if existing is not None:
            return check_same_transfer(existing, wanted)
        if remainder_id in self.transfers or remainder_id == request.transfer_id:
            raise DuplicateTransferId(f"remainder_id: transfer {remainder_id} exists", field="remainder_id")
        self._apply([leg_for_resolution(pending, wanted), leg_for_new(rest)], actor, now)
        self.transfers[wanted.transfer_id] = wanted
        self.transfers[rest.transfer_id] = rest
        self.transfers[pending.transfer_id] = replace(
            pending, state=PendingState.POSTED, resolved_by=wanted.transfer_id)
        return wanted

    def _expire(self, hold: Transfer, now: datetime) -> Transfer:
        expiry_id = expiry_transfer_id(hold.transfer_id)
        expiry = resolution_transfer(hold, expiry_id, TransferKind.EXPIRY, None, now)
        return self._commit_resolution(hold, expiry, Actor.system(), now)

    def _commit_resolution(self, pending: Transfer, resolution: Transfer, actor: Actor,
                           now: datetime) -> Transfer:
        self._apply([leg_for_resolution(pending, resolution)], actor, now)
        self.transfers[resolution.transfer_id] = resolution
        self.transfers[pending.transfer_id] = replace(
            pending, state=_RESOLVED_STATE[resolution.kind], resolved_by=resolution.transfer_id)
        return resolution

    def _apply(self, legs: Sequence[Leg], actor: Actor, now: datetime) -> None:
        changes = account_changes(legs, actor)
        problem = first_violation(
            v for v in (violation(c, self.accounts.get(c.account_id)) for c in changes) if v is not None)
        if problem is not None:
            raise problem
        for change in changes:
            self.accounts[change.account_id] = apply_change(self.accounts[change.account_id], change)
        # Like the store: an account's entry keys only grow, even if two operations share a time.
        newest_us = [entry_key_micros(self.entries[c.account_id][-1].entry_key)
                     for c in changes if self.entries.get(c.account_id)]
        prefix = entry_key_prefix(max([micros(now)] + [us + 1 for us in newest_us]))
        for index, leg in enumerate(legs):
            for entry in entries_for(leg, prefix, index, now):
                self.entries.setdefault(entry.account_id, []).append(entry)


def _after(accounts: list[Account], cursor: str) -> list[Account]:
    ids = [a.account_id for a in accounts]
    return accounts[ids.index(cursor) + 1:] if cursor in ids else []
