"""Double-entry ledger rules (TigerBeetle-like): accounts, transfers, holds and the posting rules.

Balances follow the credit-normal convention of a bank's customer ledger: an account's balance is
credits_posted - debits_posted, so a deposit is a transfer debiting the currency's funding account
and crediting the customer. Every transfer adds the same amount to one account's debits and another's
credits, so the sum of all balances per currency is zero at every instant.

Each operation is turned into per-account changes (aggregated, one per account) with the
requirements the store must check atomically: existence, ownership, currency, status and funds.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from finfaas.domain.errors import (
    EXISTS_WITH_DIFFERENT_BY_FIELD,
    AccountClosed,
    AccountExistsWithDifferentFields,
    AccountFrozen,
    AccountNotEmpty,
    AccountNotFound,
    AlreadyReversed,
    CurrencyMismatch,
    DuplicateTransferId,
    ExistsWithDifferentLinked,
    InsufficientFunds,
    InvalidIdentifier,
    InvalidInput,
    InvalidStatusChange,
    InvalidTimeout,
    LedgerError,
    NotPending,
    NotReversible,
    PendingAlreadyPosted,
    PendingAlreadyVoided,
    PendingExpired,
    PostAmountExceedsPending,
    SameAccount,
    TooManyLegs,
    TransferNotFound,
)
from finfaas.domain.money import check_amount_minor, dynamodb_number_digits_max, parse_currency

# A linked batch writes per leg at most: its transfer record, two entries, an expiry index item (a hold
# with a timeout) and two account updates; plus one outbox event: 6 * 16 + 1 = 97 items, under
# DynamoDB's 100 per transaction.
transaction_items_max = 100
transaction_items_per_leg_max = 6
linked_legs_max = (transaction_items_max - 1) // transaction_items_per_leg_max
identifier_chars_max = 64
description_chars_max = 140
hold_timeout_seconds_max = 90 * 24 * 3600
overdraft_limit_minor_max = 10**24 - 1
page_size_max = 100
statement_cursor_chars_max = 512
entry_key_chars_max = 128  # time, leg position, a transfer id (identifier_chars_max) and a side
page_size_default = 25

_IDENTIFIER = re.compile(r"\A[A-Za-z0-9_-]+\Z")
_CURSOR_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")  # stored times
_CURSOR_ENTRY_KEY = re.compile(rf"[!-~]{{1,{entry_key_chars_max}}}")  # printable ASCII, no spaces
# A balance DynamoDB can hold (38 digits), so a cursor's balance is always a bounded integer.
_CURSOR_BALANCE = re.compile(rf"-?[0-9]{{1,{dynamodb_number_digits_max}}}")
SYSTEM_ACCOUNT_PREFIX = "sys"


class AccountStatus(StrEnum):
    OPEN = "OPEN"
    FROZEN = "FROZEN"
    CLOSED = "CLOSED"


class AccountKind(StrEnum):
    CUSTOMER = "CUSTOMER"
    FUNDING = "FUNDING"
    SETTLEMENT = "SETTLEMENT"
    FEES = "FEES"
    LOANS = "LOANS"
    WEALTH = "WEALTH"
    MERCHANT = "MERCHANT"  # a merchant's receivable shards, reserve and fees payable (payments)
    LOAN_LOSSES = "LOAN_LOSSES"  # principal of written-off loans, taken out of the loans funding account


SYSTEM_KINDS = (AccountKind.FUNDING, AccountKind.SETTLEMENT, AccountKind.FEES, AccountKind.LOANS,
                AccountKind.WEALTH, AccountKind.LOAN_LOSSES)


class TransferKind(StrEnum):
    POSTED = "POSTED"  # single phase: moves posted balances at once
    PENDING = "PENDING"  # a hold: reserves, resolved later by exactly one POST, VOID or EXPIRY
    POST = "POST"
    VOID = "VOID"
    EXPIRY = "EXPIRY"
    REVERSAL = "REVERSAL"  # a POSTED transfer undoing another one


# Kinds that moved posted balances and may therefore be reversed (once).
REVERSIBLE_KINDS = frozenset({TransferKind.POSTED, TransferKind.POST, TransferKind.REVERSAL})


class PendingState(StrEnum):
    PENDING = "PENDING"
    POSTED = "POSTED"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: a customer (owner_id set: may only debit their own accounts) or the system/staff."""

    owner_id: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(None)

    @property
    def is_customer(self) -> bool:
        return self.owner_id is not None


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    owner_id: str
    currency: str
    kind: AccountKind
    status: AccountStatus
    opened_at: datetime
    debits_must_not_exceed_credits: bool = True
    overdraft_limit_minor: int = 0
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    version: int = 0

    @property
    def balance_minor(self) -> int:
        """Posted balance: what the account holds."""
        return self.credits_posted - self.debits_posted

    @property
    def available_minor(self) -> int:
        """What may still be debited: posted balance less holds, plus any overdraft limit."""
        return self.balance_minor - self.debits_pending + self.overdraft_limit_minor

    @property
    def is_limited(self) -> bool:
        return self.debits_must_not_exceed_credits


@dataclass(frozen=True, slots=True)
class NewAccount:
    account_id: str
    owner_id: str
    currency: str
    kind: AccountKind = AccountKind.CUSTOMER
    debits_must_not_exceed_credits: bool = True
    overdraft_limit_minor: int = 0

    def identity(self) -> dict[str, object]:
        return {"owner_id": self.owner_id, "currency": self.currency, "kind": self.kind,
                "debits_must_not_exceed_credits": self.debits_must_not_exceed_credits,
                "overdraft_limit_minor": self.overdraft_limit_minor}


@dataclass(frozen=True, slots=True)
class Transfer:
    """An immutable record; only `state`/`resolved_by` (holds) and `reversed_by` are ever set later."""

    transfer_id: str
    kind: TransferKind
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str
    created_at: datetime
    pending_id: str | None = None
    timeout_seconds: int = 0
    reversal_of: str | None = None
    batch_id: str | None = None
    batch_size: int = 1
    metadata: str = ""
    state: PendingState | None = None
    resolved_by: str | None = None
    reversed_by: str | None = None

    @property
    def expires_at(self) -> datetime | None:
        """When a hold times out; None for transfers that are not holds or holds without timeout."""
        if self.kind is not TransferKind.PENDING or self.timeout_seconds == 0:
            return None
        return self.created_at + timedelta(seconds=self.timeout_seconds)

    def identity(self) -> dict[str, object]:
        """The client-chosen fields a retry must repeat exactly (not the server's timestamps)."""
        return {"kind": self.kind, "debit_account_id": self.debit_account_id,
                "credit_account_id": self.credit_account_id, "amount_minor": self.amount_minor,
                "currency": self.currency, "pending_id": self.pending_id,
                "timeout_seconds": self.timeout_seconds, "reversal_of": self.reversal_of,
                "batch_id": self.batch_id, "batch_size": self.batch_size, "metadata": self.metadata}


@dataclass(frozen=True, slots=True)
class NewTransfer:
    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str
    pending: bool = False
    timeout_seconds: int = 0
    metadata: str = ""


@dataclass(frozen=True, slots=True)
class PostPending:
    transfer_id: str
    pending_id: str
    amount_minor: int | None = None  # None posts the full reserved amount
    # Given, the rest stays held: a new hold with this id, expiring when the posted one would have.
    remainder_id: str | None = None
    # What the caller knows of the hold: a store may post on these terms without reading the hold, on
    # condition that it is still PENDING on exactly them; otherwise the post goes as without them.
    hold: HoldTerms | None = None


@dataclass(frozen=True, slots=True)
class HoldTerms:
    """A hold's accounts, amount and currency, as the caller that placed it knows them."""

    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str

    def as_hold(self, pending_id: str, now: datetime) -> Transfer:
        """The PENDING hold these terms describe (never expiring: a hold with a timeout is read)."""
        return Transfer(transfer_id=pending_id, kind=TransferKind.PENDING,
                        debit_account_id=self.debit_account_id, credit_account_id=self.credit_account_id,
                        amount_minor=self.amount_minor, currency=self.currency, created_at=now,
                        state=PendingState.PENDING)


@dataclass(frozen=True, slots=True)
class VoidPending:
    transfer_id: str
    pending_id: str


@dataclass(frozen=True, slots=True)
class Reversal:
    transfer_id: str
    reversal_of: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One account's side of one transfer: the deltas it applied, for statements and reconciliation."""

    account_id: str
    entry_key: str
    transfer_id: str
    kind: TransferKind
    counterparty_id: str
    currency: str
    amount_minor: int
    created_at: datetime
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    @property
    def balance_delta_minor(self) -> int:
        return self.credits_posted - self.debits_posted


@dataclass(frozen=True, slots=True)
class StatementLine:
    entry: Entry
    balance_after_minor: int


@dataclass(frozen=True, slots=True)
class StatementPage:
    account_id: str
    currency: str
    lines: list[StatementLine]
    has_more: bool
    next_cursor: str | None


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool
    next_cursor: str | None


# --- posting rules ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One transfer's effect: which counters move on which side."""

    transfer_id: str
    kind: TransferKind
    debit_account_id: str
    credit_account_id: str
    currency: str
    posted_minor: int = 0  # added to debits_posted / credits_posted
    pending_minor: int = 0  # added to debits_pending / credits_pending (negative releases a hold)
    amount_minor: int = 0  # the amount shown on statements


@dataclass(slots=True)
class AccountChange:
    """Aggregated deltas for one account in one operation, and what must hold before they apply."""

    account_id: str
    currency: str
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0
    debited: bool = False  # some leg debits this account
    credited: bool = False
    currencies: set[str] = field(default_factory=set)  # of every leg touching it: more than one never fits
    statuses_allowed: frozenset[AccountStatus] = field(default_factory=lambda: frozenset(AccountStatus))
    owner_id: str | None = None  # required owner (customer actor on a debited account)

    @property
    def available_delta_minor(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def funds_required_minor(self) -> int | None:
        """available_minor must be at least this when the account is limited; None: no check."""
        return -self.available_delta_minor if self.available_delta_minor < 0 else None


_OPEN = frozenset({AccountStatus.OPEN})
_NOT_CLOSED = frozenset({AccountStatus.OPEN, AccountStatus.FROZEN})
_ANY = frozenset(AccountStatus)

# Which statuses each side of each kind needs: new money needs an OPEN debit account; a post may
# complete on a frozen account (the funds were reserved before); releasing a hold is never blocked.
_STATUSES_BY_KIND: dict[TransferKind, tuple[frozenset[AccountStatus], frozenset[AccountStatus]]] = {
    TransferKind.POSTED: (_OPEN, _NOT_CLOSED),
    TransferKind.PENDING: (_OPEN, _NOT_CLOSED),
    TransferKind.REVERSAL: (_OPEN, _NOT_CLOSED),
    TransferKind.POST: (_NOT_CLOSED, _NOT_CLOSED),
    TransferKind.VOID: (_ANY, _ANY),
    TransferKind.EXPIRY: (_ANY, _ANY),
}
_OWNER_CHECKED_KINDS = frozenset({TransferKind.POSTED, TransferKind.PENDING, TransferKind.REVERSAL,
                                  TransferKind.POST, TransferKind.VOID})


def leg_for_new(transfer: Transfer) -> Leg:
    """A POSTED/REVERSAL transfer moves posted balances; a PENDING one reserves."""
    posted = transfer.amount_minor if transfer.kind is not TransferKind.PENDING else 0
    pending = transfer.amount_minor if transfer.kind is TransferKind.PENDING else 0
    return Leg(transfer.transfer_id, transfer.kind, transfer.debit_account_id,
               transfer.credit_account_id, transfer.currency, posted, pending, transfer.amount_minor)


def leg_for_resolution(pending: Transfer, resolution: Transfer) -> Leg:
    """Releases the whole reservation and posts the resolution's amount when it is a POST."""
    posted = resolution.amount_minor if resolution.kind is TransferKind.POST else 0
    return Leg(resolution.transfer_id, resolution.kind, pending.debit_account_id, pending.credit_account_id,
               pending.currency, posted, -pending.amount_minor, resolution.amount_minor)


def account_changes(legs: Sequence[Leg], actor: Actor) -> list[AccountChange]:
    """One aggregated change per account, sorted by account id (a transaction touches an item once)."""
    changes: dict[str, AccountChange] = {}
    for leg in legs:
        debit_statuses, credit_statuses = _STATUSES_BY_KIND[leg.kind]
        debit = changes.setdefault(leg.debit_account_id, AccountChange(leg.debit_account_id, leg.currency))
        debit.currencies.add(leg.currency)
        debit.debits_posted += leg.posted_minor
        debit.debits_pending += leg.pending_minor
        debit.debited = True
        debit.statuses_allowed = debit.statuses_allowed & debit_statuses
        if actor.is_customer and leg.kind in _OWNER_CHECKED_KINDS:
            debit.owner_id = actor.owner_id
        credit = changes.setdefault(leg.credit_account_id, AccountChange(leg.credit_account_id, leg.currency))
        credit.currencies.add(leg.currency)
        credit.credits_posted += leg.posted_minor
        credit.credits_pending += leg.pending_minor
        credit.credited = True
        credit.statuses_allowed = credit.statuses_allowed & credit_statuses
    return [changes[key] for key in sorted(changes)]


# Lower rank wins when several accounts fail at once, so the store and the model name the same one.
_VIOLATION_RANK: dict[type[LedgerError], int] = {
    AccountNotFound: 0, CurrencyMismatch: 1, AccountClosed: 2, AccountFrozen: 3, InsufficientFunds: 4,
}


def violation(change: AccountChange, account: Account | None) -> LedgerError | None:
    """What stops `change` from applying to `account` (as it is now), or None."""
    subject = change.account_id
    if account is None or (change.owner_id is not None and account.owner_id != change.owner_id):
        return AccountNotFound(f"account {subject} not found", subject=subject)
    if account.currency != change.currency or len(change.currencies) > 1:
        return CurrencyMismatch(f"account {subject} holds {account.currency}", subject=subject)
    if account.status not in change.statuses_allowed:
        closed = account.status is AccountStatus.CLOSED
        cls = AccountClosed if closed else AccountFrozen
        return cls(f"account {subject} is {account.status.value.lower()}", subject=subject)
    required = change.funds_required_minor
    if required is not None and account.is_limited and account.available_minor < required:
        return InsufficientFunds(f"account {subject} has insufficient funds", subject=subject)
    return None


def first_violation(candidates: Iterable[LedgerError]) -> LedgerError | None:
    """The violation to report: by kind of problem first, then by account id."""
    ranked = sorted(candidates, key=lambda e: (_VIOLATION_RANK.get(type(e), 9), e.subject or ""))
    return ranked[0] if ranked else None


def apply_change(account: Account, change: AccountChange) -> Account:
    """The account after the change; asserts the invariants that must never break."""
    updated = replace(
        account,
        debits_posted=account.debits_posted + change.debits_posted,
        credits_posted=account.credits_posted + change.credits_posted,
        debits_pending=account.debits_pending + change.debits_pending,
        credits_pending=account.credits_pending + change.credits_pending,
        version=account.version + 1,
    )
    assert min(updated.debits_posted, updated.credits_posted) >= 0
    assert min(updated.debits_pending, updated.credits_pending) >= 0
    return updated


def entries_for(leg: Leg, key_prefix: str, index: int, now: datetime) -> tuple[Entry, Entry]:
    """The debit-side and credit-side statement entries of one leg."""
    return (
        Entry(leg.debit_account_id, entry_key(key_prefix, leg.transfer_id, index, "D"), leg.transfer_id,
              leg.kind, leg.credit_account_id, leg.currency, leg.amount_minor, now,
              debits_posted=leg.posted_minor, debits_pending=leg.pending_minor),
        Entry(leg.credit_account_id, entry_key(key_prefix, leg.transfer_id, index, "C"), leg.transfer_id,
              leg.kind, leg.debit_account_id, leg.currency, leg.amount_minor, now,
              credits_posted=leg.posted_minor, credits_pending=leg.pending_minor),
    )


# --- keys and time ---------------------------------------------------------------------------------

_ENTRY_TIME_DIGITS = 17  # microseconds since 1970 stay below 10**17 until the year 5138


def micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    assert moment.tzinfo is not None, "ledger times are timezone-aware (UTC)"
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def entry_key_prefix(moment_us: int) -> str:
    return f"{moment_us:0{_ENTRY_TIME_DIGITS}d}"


def entry_key(prefix: str, transfer_id: str, index: int, side: str) -> str:
    """Unique and ordered: time, then leg position in its batch (so a batch reads in order), then
    transfer id and side."""
    return f"{prefix}#{index:03d}#{transfer_id}#{side}"


def entry_key_micros(key: str) -> int:
    return int(key.split("#", 1)[0])


def statement_lines(entries_newest_first: Sequence[Entry], balance_after_first: int) -> list[StatementLine]:
    """Running balances derived at read time, walking back from the newest entry's balance."""
    lines, balance = [], balance_after_first
    for entry in entries_newest_first:
        lines.append(StatementLine(entry, balance))
        balance -= entry.balance_delta_minor
    return lines


def statement_page(
    account_id: str, currency: str, entries_newest_first: Sequence[Entry], limit: int,
    balance_after_first: int,
) -> StatementPage:
    """The first `limit` entries as lines (one more tells there is a next page) and the next page's cursor."""
    lines = statement_lines(entries_newest_first[:limit], balance_after_first)
    has_more = len(entries_newest_first) > limit
    next_cursor = None
    if has_more:
        last = lines[-1]
        next_cursor = encode_statement_cursor(
            account_id, last.entry.entry_key, last.balance_after_minor - last.entry.balance_delta_minor)
    return StatementPage(account_id, currency, lines, has_more, next_cursor)


def _encode_cursor(account_id: str, first: str, second: str) -> str:
    """Three plain lines, base64url without padding: the account, then where its list stopped."""
    raw = f"{account_id}\n{first}\n{second}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _cursor_parts(account_id: str, cursor: str, problem: InvalidInput) -> tuple[str, str]:
    """The two positions of a cursor of this account's list; `problem` for anything else."""
    # Plain lines, no JSON: nothing here can nest, overflow or turn into a float.
    if not isinstance(cursor, str) or not 0 < len(cursor) <= statement_cursor_chars_max:
        raise problem
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (ValueError, binascii.Error):
        raise problem from None
    parts = raw.split("\n")
    if len(parts) != 3 or parts[0] != account_id:
        raise problem
    return parts[1], parts[2]


def encode_statement_cursor(account_id: str, entry_key_: str, balance_after_minor: int) -> str:
    """The last key shown and the balance after the next (older) entry; the accounts service seals it."""
    return _encode_cursor(account_id, entry_key_, str(balance_after_minor))


def decode_statement_cursor(account_id: str, cursor: str) -> tuple[str, int]:
    """(last key shown, balance) of a cursor of this account's statement; InvalidInput otherwise."""
    problem = InvalidInput("starting_after: not a cursor of this statement", field="starting_after")
    key, balance = _cursor_parts(account_id, cursor, problem)
    if not _CURSOR_ENTRY_KEY.fullmatch(key) or not _CURSOR_BALANCE.fullmatch(balance):
        raise problem
    return key, int(balance)


def encode_hold_cursor(account_id: str, created_at_text: str, transfer_id: str) -> str:
    """Where a page of an account's open holds stopped: the last hold's creation time and id."""
    return _encode_cursor(account_id, created_at_text, transfer_id)


def decode_hold_cursor(account_id: str, cursor: str) -> tuple[str, str]:
    """(created_at text, transfer id) of a cursor of this account's open holds; InvalidInput otherwise."""
    problem = InvalidInput("starting_after: not a cursor of this list", field="starting_after")
    created_at_text, transfer_id = _cursor_parts(account_id, cursor, problem)
    if not _CURSOR_TIME.fullmatch(created_at_text):
        raise problem
    if not _IDENTIFIER.match(transfer_id) or len(transfer_id) > identifier_chars_max:
        raise problem
    return created_at_text, transfer_id


def check_page_size(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= page_size_max:
        raise InvalidInput(f"limit: 1..{page_size_max}", field="limit")
    return limit


# --- validation ------------------------------------------------------------------------------------


def check_identifier(value: object, *, field: str) -> str:
    if not (isinstance(value, str) and 0 < len(value) <= identifier_chars_max and _IDENTIFIER.match(value)):
        raise InvalidIdentifier(
            f"{field}: 1-{identifier_chars_max} characters from A-Z a-z 0-9 _ -", field=field
        )
    return value


def check_new_account(new: NewAccount) -> NewAccount:
    check_identifier(new.account_id, field="account_id")
    check_identifier(new.owner_id, field="owner_id")
    parse_currency(new.currency)
    if not isinstance(new.overdraft_limit_minor, int) or isinstance(new.overdraft_limit_minor, bool) or not (
        0 <= new.overdraft_limit_minor <= overdraft_limit_minor_max
    ):
        raise InvalidInput(f"overdraft_limit_minor: 0..{overdraft_limit_minor_max}",
                           field="overdraft_limit_minor")
    return new


def check_new_transfer(new: NewTransfer, *, prefix: str = "") -> NewTransfer:
    check_identifier(new.transfer_id, field=f"{prefix}transfer_id")
    check_identifier(new.debit_account_id, field=f"{prefix}debit_account_id")
    check_identifier(new.credit_account_id, field=f"{prefix}credit_account_id")
    if new.debit_account_id == new.credit_account_id:
        raise SameAccount("debit and credit account must differ", field=f"{prefix}credit_account_id")
    parse_currency(new.currency, field=f"{prefix}currency")
    check_amount_minor(new.amount_minor, field=f"{prefix}amount")
    check_timeout(new.timeout_seconds, pending=new.pending, field=f"{prefix}timeout_seconds")
    if not isinstance(new.metadata, str) or len(new.metadata) > description_chars_max:
        raise InvalidInput(f"metadata: at most {description_chars_max} characters", field=f"{prefix}metadata")
    return new


def check_timeout(timeout_seconds: object, *, pending: bool, field: str) -> None:
    if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, int):
        raise InvalidTimeout(f"{field}: whole seconds", field=field)
    if not 0 <= timeout_seconds <= hold_timeout_seconds_max or (timeout_seconds and not pending):
        raise InvalidTimeout(f"{field}: 0..{hold_timeout_seconds_max}, holds only", field=field)


def check_batch(transfers: Sequence[NewTransfer]) -> None:
    """A linked batch: 1..linked_legs_max legs with distinct ids, each valid on its own."""
    if not 0 < len(transfers) <= linked_legs_max:
        raise TooManyLegs(f"transfers: 1..{linked_legs_max} legs", field="transfers")
    seen: set[str] = set()
    for index, transfer in enumerate(transfers):
        check_new_transfer(transfer, prefix=f"transfers[{index}]." if len(transfers) > 1 else "")
        if transfer.transfer_id in seen:
            raise DuplicateTransferId(f"transfer id {transfer.transfer_id} repeats", field="transfer_id")
        seen.add(transfer.transfer_id)


def transfer_from_new(new: NewTransfer, now: datetime, batch: Sequence[NewTransfer]) -> Transfer:
    linked = len(batch) > 1
    return Transfer(
        transfer_id=new.transfer_id,
        kind=TransferKind.PENDING if new.pending else TransferKind.POSTED,
        debit_account_id=new.debit_account_id, credit_account_id=new.credit_account_id,
        amount_minor=new.amount_minor, currency=new.currency, created_at=now,
        timeout_seconds=new.timeout_seconds, metadata=new.metadata,
        batch_id=batch[0].transfer_id if linked else None, batch_size=len(batch),
        state=PendingState.PENDING if new.pending else None,
    )


def check_same_transfer(existing: Transfer, wanted: Transfer) -> Transfer:
    """The existing transfer when a retry repeats it; ExistsWithDifferent<Field> otherwise."""
    existing_fields, wanted_fields = existing.identity(), wanted.identity()
    for name, cls in EXISTS_WITH_DIFFERENT_BY_FIELD.items():
        if existing_fields[name] != wanted_fields[name]:
            raise cls(f"transfer {wanted.transfer_id} exists with a different {name}",
                      field=name, subject=wanted.transfer_id)
    return existing


def replayed_batch(existing: Sequence[Transfer | None], wanted: Sequence[Transfer]) -> list[Transfer]:
    """The stored batch when every leg repeats it exactly; ExistsWithDifferent<Field> when a leg differs,
    ExistsWithDifferentLinked when only some legs exist (their ids were used in another batch)."""
    for stored, want in zip(existing, wanted, strict=True):
        if stored is not None:
            check_same_transfer(stored, want)
    if any(e is None for e in existing):
        first = next(e for e in existing if e is not None)
        raise ExistsWithDifferentLinked(f"transfer {first.transfer_id} exists in another batch",
                                        field="batch_id", subject=first.transfer_id)
    return [e for e in existing if e is not None]


def check_same_account(existing: Account, wanted: NewAccount) -> Account:
    """The existing account when a retry repeats the opening; an error when the id is taken."""
    current = {"owner_id": existing.owner_id, "currency": existing.currency, "kind": existing.kind,
               "debits_must_not_exceed_credits": existing.debits_must_not_exceed_credits,
               "overdraft_limit_minor": existing.overdraft_limit_minor}
    for name, value in wanted.identity().items():
        if current[name] != value:
            raise AccountExistsWithDifferentFields(
                f"account {wanted.account_id} exists with a different {name}", field=name,
                subject=wanted.account_id)
    return existing


def check_resolvable(pending: Transfer | None, resolution_id: str, pending_id: str, now: datetime) -> None:
    """Raises unless `pending` is an unresolved, unexpired hold (a replay is handled before this)."""
    if pending is None:
        raise TransferNotFound(f"pending transfer {pending_id} not found", subject=pending_id)
    if pending.kind is not TransferKind.PENDING:
        raise NotPending(f"transfer {pending_id} is not pending", subject=pending_id)
    if pending.state is PendingState.POSTED:
        raise PendingAlreadyPosted(f"pending transfer {pending_id} was posted", subject=pending_id)
    if pending.state is PendingState.VOIDED:
        raise PendingAlreadyVoided(f"pending transfer {pending_id} was voided", subject=pending_id)
    if pending.state is PendingState.EXPIRED or is_expired(pending, now):
        raise PendingExpired(f"pending transfer {pending_id} expired", subject=pending_id)


def is_expired(pending: Transfer, now: datetime) -> bool:
    expires_at = pending.expires_at
    return expires_at is not None and now >= expires_at


def resolution_transfer(pending: Transfer, transfer_id: str, kind: TransferKind, amount_minor: int | None,
                        now: datetime) -> Transfer:
    """The POST, VOID or EXPIRY record resolving `pending`; a post defaults to the full amount."""
    if kind is TransferKind.POST:
        amount = pending.amount_minor if amount_minor is None else check_amount_minor(amount_minor)
        if amount > pending.amount_minor:
            raise PostAmountExceedsPending(
                f"amount: at most the pending {pending.amount_minor}", field="amount",
                subject=pending.transfer_id)
    else:
        amount = pending.amount_minor
    return Transfer(transfer_id=transfer_id, kind=kind, debit_account_id=pending.debit_account_id,
                    credit_account_id=pending.credit_account_id, amount_minor=amount,
                    currency=pending.currency, created_at=now, pending_id=pending.transfer_id)


def remainder_transfer(pending: Transfer, remainder_id: str, posted_minor: int, now: datetime) -> Transfer:
    """The hold keeping what a partial post leaves of `pending`: same accounts, the rest of the amount,
    and a timeout ending no later than the original's (whole seconds, rounded down)."""
    if posted_minor >= pending.amount_minor:
        raise PostAmountExceedsPending(
            f"amount: less than the pending {pending.amount_minor} when the rest stays held", field="amount",
            subject=pending.transfer_id)
    timeout_seconds = 0
    expires_at = pending.expires_at
    if expires_at is not None:
        timeout_seconds = int((expires_at - now).total_seconds())
        if timeout_seconds < 1:  # 0 would mean a hold that never expires
            raise PendingExpired(f"pending transfer {pending.transfer_id} expired",
                                 subject=pending.transfer_id)
    return Transfer(transfer_id=remainder_id, kind=TransferKind.PENDING,
                    debit_account_id=pending.debit_account_id, credit_account_id=pending.credit_account_id,
                    amount_minor=pending.amount_minor - posted_minor, currency=pending.currency,
                    created_at=now, timeout_seconds=timeout_seconds, metadata=pending.metadata,
                    state=PendingState.PENDING)


def check_same_remainder(existing: Transfer | None, pending: Transfer, remainder_id: str,
                         posted_minor: int) -> Transfer:
    """The hold a replayed partial post left (its timeout and time are the first attempt's)."""
    if existing is None:
        raise InvalidInput(f"remainder_id: the post of {pending.transfer_id} kept its rest under another id",
                           field="remainder_id", subject=remainder_id)
    wanted = Transfer(transfer_id=remainder_id, kind=TransferKind.PENDING,
                      debit_account_id=pending.debit_account_id, credit_account_id=pending.credit_account_id,
                      amount_minor=pending.amount_minor - posted_minor, currency=pending.currency,
                      created_at=existing.created_at, timeout_seconds=existing.timeout_seconds,
                      metadata=pending.metadata, state=PendingState.PENDING)
    return check_same_transfer(existing, wanted)


def expiry_transfer_id(pending_id: str) -> str:
    """Derived from the hold, so sweeping twice cannot expire it twice; '.' is never in client ids."""
    return f"{pending_id}.expiry"


def check_reversible(original: Transfer | None, reversal_of: str) -> Transfer:
    if original is None:
        raise TransferNotFound(f"transfer {reversal_of} not found", subject=reversal_of)
    if original.kind not in REVERSIBLE_KINDS:
        raise NotReversible(f"transfer {reversal_of} did not move posted balances", subject=reversal_of)
    if original.reversed_by is not None:
        raise AlreadyReversed(f"transfer {reversal_of} was already reversed", subject=reversal_of)
    return original


def reversal_transfer(original: Transfer, transfer_id: str, now: datetime) -> Transfer:
    """Undoes `original`: the same amount back from its credit account to its debit account."""
    return Transfer(transfer_id=transfer_id, kind=TransferKind.REVERSAL,
                    debit_account_id=original.credit_account_id, credit_account_id=original.debit_account_id,
                    amount_minor=original.amount_minor, currency=original.currency, created_at=now,
                    reversal_of=original.transfer_id)


def check_pending_kind(pending: Transfer | None, pending_id: str) -> Transfer:
    """The pending transfer; TransferNotFound / NotPending before anything else is judged."""
    if pending is None:
        raise TransferNotFound(f"pending transfer {pending_id} not found", subject=pending_id)
    if pending.kind is not TransferKind.PENDING:
        raise NotPending(f"transfer {pending_id} is not pending", subject=pending_id)
    return pending


def check_reversible_or_replay(original: Transfer | None, request: Reversal) -> Transfer:
    """TransferNotFound / NotReversible; an already-reversed original is judged after replay."""
    if original is None or original.reversed_by is None:
        return check_reversible(original, request.reversal_of)
    check_reversible(replace(original, reversed_by=None), request.reversal_of)
    return original


def check_status_change(account: Account, status: AccountStatus) -> None:
    if account.status is AccountStatus.CLOSED:
        raise InvalidStatusChange(f"account {account.account_id} is closed", subject=account.account_id)
    if status is AccountStatus.CLOSED and (account.balance_minor or account.debits_pending
                                            or account.credits_pending):
        raise AccountNotEmpty(f"account {account.account_id} holds money", subject=account.account_id)


def system_account_id(kind: AccountKind, currency: str) -> str:
    """sys-funding-USD and friends: one per purpose and currency, unlimited."""
    return f"{SYSTEM_ACCOUNT_PREFIX}-{kind.value.lower()}-{currency}"


def system_account(kind: AccountKind, currency: str) -> NewAccount:
    assert kind in SYSTEM_KINDS
    return NewAccount(system_account_id(kind, currency), owner_id="system", currency=currency, kind=kind,
                      debits_must_not_exceed_credits=False)


# --- the repository the store implements -----------------------------------------------------------


class Clock(Protocol):
    def __call__(self) -> datetime: ...


class TransactionExtra(Protocol):
    """One more conditional put riding in an operation's transaction (e.g. an idempotency record).

    The DynamoDB store carries it; a repository without transactions is never given one."""

    def put_for(self, result: Sequence[Transfer]) -> tuple[Any, Any]:
        """(store item, condition) to put, given the transfers the operation returns if it commits."""
        ...

    def conflicted(self, raw_item: dict[str, Any] | None) -> None:
        """The put's condition failed (raw_item: the item in the way); raise to answer the caller
        instead of the operation, or return to have the operation run again."""
        ...

    def committed(self) -> None:
        """The transaction carrying the put committed."""
        ...

    # An extra may also have `more_puts_for(result) -> list[(item, condition)]`: a few more puts (an
    # outbox event of the caller's own) for the DynamoDB store to carry in the same transaction, and
    # `more_conflicted(n, raw_item)`, asked first when the n-th one's condition failed (as conflicted()).
    # It may also have `more_updates_for(result) -> list[(item, actions, condition)]`: a few conditional
    # updates, and `more_updates_conflicted(failed)`, asked last (after conflicted()) when any of its puts
    # or updates failed, with the indexes of the updates that did.


class LedgerRepository(Protocol):
    """Persistence of the ledger. Every method is atomic; a retry of the same request is harmless."""

    def open_account(self, new: NewAccount, now: datetime) -> Account: ...

    def get_account(self, account_id: str) -> Account | None: ...

    def get_accounts(self, account_ids: Sequence[str]) -> dict[str, Account]:
        """The accounts that exist among these ids (at most 100), read consistently in one call."""
        ...

    def accounts_by_owner(self, owner_id: str, limit: int, cursor: str | None) -> Page[Account]: ...

    def set_account_status(self, account_id: str, status: AccountStatus, now: datetime) -> Account: ...

    def create_transfers(
        self, batch: Sequence[NewTransfer], actor: Actor, now: datetime
    ) -> list[Transfer]: ...

    def post_pending(self, request: PostPending, actor: Actor, now: datetime) -> Transfer: ...

    def void_pending(self, request: VoidPending, actor: Actor, now: datetime) -> Transfer: ...

    def reverse(self, request: Reversal, actor: Actor, now: datetime) -> Transfer: ...

    def expire_due_holds(self, now: datetime, limit: int) -> list[Transfer]: ...

    def get_transfer(self, transfer_id: str) -> Transfer | None: ...

    def batch_legs(self, batch_id: str) -> list[Transfer] | None:
        """A linked batch's legs in order (a lone transfer: itself); None when no batch starts there."""
        ...

    def open_holds(self, account_id: str, limit: int, cursor: str | None) -> Page[Transfer]:
        """The account's open holds (it is their debit side), oldest first; none for an unknown account
        (the service reads the account first)."""
        ...

    def statement(self, account_id: str, limit: int, cursor: str | None) -> StatementPage: ...

    def balance_at(self, account_id: str, at: datetime) -> int: ...
