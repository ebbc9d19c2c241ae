"""The ledger on DynamoDB: every operation is one TransactWriteItems, judged by condition expressions.

A fresh transfer is one round trip: balance updates (conditions on currency, status, owner and the
derived available_minor), the transfer record guarded by attribute_not_exists (the idempotency
guard), one statement entry per account and leg, and one outbox event. Nothing is read first; when
DynamoDB cancels, the ALL_OLD items of the failed conditions say why, and the domain's rules name it.

Retries: TransactionConflict, throttling and lost responses re-run the whole operation with bounded
backoff. That is safe because the guard turns a second application into a replay of the first.

Extra puts: a money-moving operation may carry one more conditional put in its transaction (the HTTP
Idempotency-Key's completion record, or a payment intent's new state, see TransactionExtra), so the
key is recorded if and only if the money moved, at no extra round trip; an extra may add a few
unconditional puts of its own (`more_puts_for`: the payment intent's outbox event). When the
conditional put's condition fails, the extra is asked first what to answer (a replay, 409 or 422),
before any ledger rule is judged. An extra may also carry a few conditional updates of its own
(`more_updates_for`: risk's count of the payment's customer); when one of its items failed and neither
its put's nor its more puts' answer was decided, `more_updates_conflicted` is asked last. The extra may
also hand the
request's audit facts to the operation's outbox item (`outbox_audit`), so the audit record commits
with the money and the outbox relay appends it to the audit chain.

Hot accounts: an item takes about 1,000 writes/s. To shard a hot account later, split it into N
sub-accounts `<id>~<k>` with the same currency and owner; credits go to a sub-account picked by
hash(transfer_id) % N (no funds check on credits), debits of a limited account go to one sub-account
that holds enough (or a periodic sweep rebalances into a debit shard), and balances and statements
sum over the N items. Nothing in the record formats needs to change for that.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from pynamodb.connection import Connection
from pynamodb.exceptions import CancellationReason, GetError, QueryError, ScanError, TransactWriteError
from tenacity import RetryError

from finfaas.domain.errors import (
    AccountNotFound,
    DuplicateTransferId,
    InvalidInput,
    LedgerBusy,
    PendingAlreadyPosted,
    PendingAlreadyVoided,
    PendingExpired,
)
from finfaas.domain.ledger import (
    Account,
    AccountChange,
    AccountStatus,
    Actor,
    Entry,
    HoldTerms,
    NewAccount,
    NewTransfer,
    Page,
    PendingState,
    PostPending,
    Reversal,
    StatementPage,
    TransactionExtra,
    Transfer,
    TransferKind,
    VoidPending,
    account_changes,
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
    transaction_items_max,
    transfer_from_new,
    violation,
)
from finfaas.platform import jsonio
from finfaas.platform.retry import RetryPolicy
from finfaas.store.call_meter import TRANSACTION_TABLE_LABEL as TRANSACTION_TABLE_LABEL
from finfaas.store.call_meter import DynamoCallMeter as DynamoCallMeter
from finfaas.store.dynamo import (
    AMBIGUOUS_CODES,
    REASON_CONDITION_FAILED,
    TRANSACTION_CANCELED_EXCEPTION,
    TRANSIENT_CODES,
)
from finfaas.store.models import (
    LedgerModels,
    account_from_raw,
    account_from_record,
    batch_records,
    bind_models,
    entry_from_record,
    entry_record,
    format_time,
    transfer_from_record,
    transfer_record,
)
from finfaas.store.outbox_layout import ledger_outbox_partitions as outbox_partitions
from finfaas.store.tables import LedgerTables

operation_attempts_max = 8
retry_wait_seconds_max = 0.25
retry_wait_seconds_base = 0.005
OPERATION_RETRY = RetryPolicy(operation_attempts_max, wait_ms_base=retry_wait_seconds_base * 1000,
                              wait_ms_max=retry_wait_seconds_max * 1000)
hold_index_shards = 8
expiry_scan_items_max = 1000
# The accounts-by-owner index's LastEvaluatedKey: the table key and the index keys, each a string.
OWNER_CURSOR_ATTRIBUTES = ("account_id", "owner_id", "opened_at")
owner_cursor_depth_max = 2  # {"attribute": {"S": "value"}}
owner_cursor_value_chars_max = 256
HOLD_INDEX_PREFIX = "~holds#"  # entries-table partitions indexing open holds by expiry time
EVENT_SOURCE = "finfaas/ledger"

# Ambiguous answers too: a second application of a ledger operation is a replay of the first.
_TRANSIENT_CODES = TRANSIENT_CODES | AMBIGUOUS_CODES
batch_get_keys_max = 100  # DynamoDB's BatchGetItem limit
_TRANSPORT_ERRORS = (BotocoreConnectionError, ConnectionClosedError, EndpointConnectionError,
                     ReadTimeoutError, ConnectTimeoutError, ConnectionError)
_RESOLVED_STATE = {TransferKind.POST: PendingState.POSTED, TransferKind.VOID: PendingState.VOIDED,
                   TransferKind.EXPIRY: PendingState.EXPIRED}


_T = TypeVar("_T")


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class StoreUnreachable(Exception):
    """DynamoDB did not answer, or the ledger's tables are not there."""


def _outbox_audit(extra: TransactionExtra | None) -> str | None:
    """The audit facts an extra asks the outbox item to carry (extras without any are accepted)."""
    facts = getattr(extra, "outbox_audit", None)
    return facts() if callable(facts) else None


_EXTRA_TAG = "extra"
_EXTRA_UPDATE_TAG = "extra-update"


class StoreRejected(Exception):
    """DynamoDB refused a ledger transaction for a reason no rule explains; nothing was written."""


class _Transient(Exception):
    """The operation may succeed if run again (conflict, throttling, lost response, stale entry key)."""


@dataclass
class _Attempt:
    """What one attempt learnt for the next: the least entry time that keeps keys increasing, and
    whether the hold must be read (its caller's terms did not hold)."""

    entry_time_us_min: int = 0
    entry_time_from_clock: bool = False  # set after losing a race: date entries when they are sent
    hold_read: bool = False


class _HoldNotOnTerms(Exception):
    """A post on the caller's terms found the hold otherwise (nothing written): read it and go on."""


def _condition_failed(reasons: dict, tag: object) -> bool:
    reason = reasons.get(tag)
    return reason is not None and reason.code == REASON_CONDITION_FAILED


@dataclass
class _Transaction:
    """Items of one TransactWriteItems, tagged so cancellation reasons can be matched back."""

    condition_checks: list[tuple[object, dict]] = field(default_factory=list)
    deletes: list[tuple[object, dict]] = field(default_factory=list)
    puts: list[tuple[object, dict]] = field(default_factory=list)
    updates: list[tuple[object, dict]] = field(default_factory=list)

    def put(self, tag: object, record, condition=None) -> None:
        self.puts.append((tag, record.get_save_kwargs_from_instance(
            condition=condition, return_values_on_condition_failure="ALL_OLD")))

    def update(self, tag: object, record, actions: list, condition) -> None:
        self.updates.append((tag, record.get_update_kwargs_from_instance(
            actions=actions, condition=condition, return_values_on_condition_failure="ALL_OLD")))

    def delete(self, tag: object, record) -> None:
        self.deletes.append((tag, record.get_delete_kwargs_from_instance()))

    def size(self) -> int:
        return len(self.condition_checks) + len(self.deletes) + len(self.puts) + len(self.updates)

    def commit(self, connection: Connection) -> None:
        assert 0 < self.size() <= transaction_items_max, f"{self.size()} items in one transaction"
        # pynamodb sends condition checks, deletes, puts, updates in this order: reasons follow it.
        connection.transact_write_items(
            condition_check_items=[k for _, k in self.condition_checks],
            delete_items=[k for _, k in self.deletes], put_items=[k for _, k in self.puts],
            update_items=[k for _, k in self.updates])

    def reasons(self, error: TransactWriteError) -> dict[object, CancellationReason]:
        tagged = self.condition_checks + self.deletes + self.puts + self.updates
        return {tag: reason for (tag, _), reason in zip(tagged, error.cancellation_reasons, strict=False)
                if reason is not None}


class DynamoLedgerStore:
    """LedgerRepository on DynamoDB (pynamodb). Thread-safe; share one per process."""

    def __init__(self, tables: LedgerTables, region: str, *, sleep: Callable[[float], None] = time.sleep,
                 attempts_max: int = operation_attempts_max,
                 entry_clock: Callable[[], datetime] = _wall_clock) -> None:
        self.models: LedgerModels = bind_models(tables, region)
        self._connection = Connection(region=region, max_retry_attempts=2)
        self._sleep = sleep
        self._attempts_max = attempts_max
        # Only to date the entries of a retry that lost the race for an account's newest entry key.
        self._entry_clock = entry_clock

    # --- observability hooks (tests count calls and inject faults through botocore events) ---

    def register_hook(self, event_name: str, handler: Callable[..., object]) -> None:
        """Registers a botocore event handler on every DynamoDB client this store uses."""
        for client in self._clients():
            client.meta.events.register(event_name, handler)

    def unregister_hook(self, event_name: str, handler: Callable[..., object]) -> None:
        for client in self._clients():
            client.meta.events.unregister(event_name, handler)

    def _clients(self) -> list:
        models = (self.models.account, self.models.transfer, self.models.entry, self.models.outbox)
        return [self._connection.client] + [m._get_connection().connection.client for m in models]

    # --- accounts ---

    def open_account(self, new: NewAccount, now: datetime) -> Account:
        check_new_account(new)
        return self._with_retries(lambda attempt: self._open_account(new, now))

    def get_account(self, account_id: str) -> Account | None:
        record = self._get(self.models.account, account_id)
        return account_from_record(record) if record is not None else None

    def get_accounts(self, account_ids: Sequence[str]) -> dict[str, Account]:
        # One consistent BatchGetItem: a transfer's validation reads both its accounts at once.
        keys = list(dict.fromkeys(account_ids))
        if len(keys) > batch_get_keys_max:
            raise InvalidInput(f"account_ids: at most {batch_get_keys_max}", field="account_ids")
        try:
            records = list(self.models.account.batch_get(keys, consistent_read=True)) if keys else []
        except (GetError, *_TRANSPORT_ERRORS) as error:
            raise LedgerBusy(f"store unreachable: {error}") from error
        accounts = (account_from_record(record) for record in records)
        return {account.account_id: account for account in accounts}

    def accounts_by_owner(self, owner_id: str, limit: int, cursor: str | None) -> Page[Account]:
        check_page_size(limit)
        start = _decode_owner_cursor(cursor, owner_id) if cursor else None
        results = self.models.account.by_owner.query(owner_id, limit=limit, page_size=limit,
                                                     last_evaluated_key=start)
        accounts = [account_from_record(r) for r in results]
        last = results.last_evaluated_key
        return Page(accounts, last is not None, _encode_owner_cursor(last) if last else None)

    def set_account_status(self, account_id: str, status: AccountStatus, now: datetime) -> Account:
        check_identifier(account_id, field="account_id")
        return self._with_retries(lambda attempt: self._set_status(account_id, AccountStatus(status), now))

    # --- transfers ---

    def create_transfers(self, batch: Sequence[NewTransfer], actor: Actor, now: datetime,
                         extra: TransactionExtra | None = None) -> list[Transfer]:
        check_batch(batch)
        wanted = [transfer_from_new(new, now, batch) for new in batch]
        return self._with_retries(lambda attempt: self._create(wanted, actor, now, attempt, extra))

    def post_pending(self, request: PostPending, actor: Actor, now: datetime,
                     extra: TransactionExtra | None = None) -> Transfer:
        if request.remainder_id is not None:
            check_identifier(request.remainder_id, field="remainder_id")
        whole = request.amount_minor is None and request.remainder_id is None
        terms = request.hold if whole else None
        return self._resolve(request.transfer_id, request.pending_id, TransferKind.POST,
                             request.amount_minor, actor, now, extra, request.remainder_id, terms)

    def void_pending(self, request: VoidPending, actor: Actor, now: datetime,
                     extra: TransactionExtra | None = None) -> Transfer:
        return self._resolve(request.transfer_id, request.pending_id, TransferKind.VOID, None, actor, now,
                             extra)

    def reverse(self, request: Reversal, actor: Actor, now: datetime,
                extra: TransactionExtra | None = None) -> Transfer:
        check_identifier(request.transfer_id, field="transfer_id")
        check_identifier(request.reversal_of, field="reversal_of")
        return self._with_retries(lambda attempt: self._reverse(request, actor, now, attempt, extra))

    def expire_due_holds(self, now: datetime, limit: int) -> list[Transfer]:
        """Expires up to `limit` holds whose timeout has passed, oldest first within each index shard."""
        due = self._due_hold_ids(now, limit)
        expired = []
        for pending_id in due:
            result = self._with_retries(partial(self._expire, pending_id, now))
            if result is not None:
                expired.append(result)
        return expired

    def get_transfer(self, transfer_id: str) -> Transfer | None:
        record = self._get(self.models.transfer, transfer_id)
        return transfer_from_record(record) if record is not None else None

    def batch_legs(self, batch_id: str) -> list[Transfer] | None:
        """A linked batch's legs in order, read by the ids its first leg names; a lone transfer is a batch
        of one; None when `batch_id` is no batch's first leg."""
        check_identifier(batch_id, field="batch_id")
        record = self._get(self.models.transfer, batch_id)
        if record is None:
            return None
        first = transfer_from_record(record)
        if first.batch_id not in (None, batch_id):
            return None
        # A batch recorded before its first leg named the legs lists that first leg only.
        leg_ids = list(record.batch_legs or [batch_id])
        assert len(leg_ids) <= batch_get_keys_max
        try:
            others = self.models.transfer.batch_get(leg_ids[1:], consistent_read=True) if leg_ids[1:] else []
            found = {r.transfer_id: transfer_from_record(r) for r in others}
        except (GetError, *_TRANSPORT_ERRORS) as error:
            raise LedgerBusy(f"store unreachable: {error}") from error
        found[batch_id] = first
        return [found[leg_id] for leg_id in leg_ids if leg_id in found]

    def open_holds(self, account_id: str, limit: int, cursor: str | None) -> Page[Transfer]:
        """The account's open holds, oldest first: a page of the sparse index's keys, then the holds read
        consistently (one resolved since the index was written is left out). The caller has read the
        account (the service checks it exists and who may see it), so it is not read again here."""
        check_page_size(limit)
        model = self.models.transfer
        start = None
        if cursor is not None:
            created_at, transfer_id = decode_hold_cursor(account_id, cursor)
            start = {"transfer_id": {"S": transfer_id}, "held_account_id": {"S": account_id},
                     "created_at": {"S": created_at}}
        try:
            keys = model.open_holds.query(account_id, limit=limit, page_size=limit, last_evaluated_key=start)
            ids = [r.transfer_id for r in keys]
            last = keys.last_evaluated_key
            found = {r.transfer_id: transfer_from_record(r)
                     for r in model.batch_get(ids, consistent_read=True)} if ids else {}
        except (QueryError, GetError, *_TRANSPORT_ERRORS) as error:
            raise LedgerBusy(f"store unreachable: {error}") from error
        holds = [found[i] for i in ids if i in found and found[i].state is PendingState.PENDING]
        next_cursor = None
        if last is not None:
            next_cursor = encode_hold_cursor(account_id, last["created_at"]["S"], last["transfer_id"]["S"])
        return Page(holds, last is not None, next_cursor)

    # --- statements ---

    def statement(self, account_id: str, limit: int, cursor: str | None) -> StatementPage:
        """Newest first. The first page is anchored on the account's balance and its last entry key
        (one item, read atomically), so later pages never see entries the anchor did not include."""
        check_page_size(limit)
        account, last_key = self._account_with_last_key(account_id)
        if cursor is None:
            upper, balance, inclusive = last_key, account.balance_minor, True
        else:
            (upper, balance), inclusive = decode_statement_cursor(account_id, cursor), False
        entries = self._entries_before(account_id, upper, inclusive, limit + 1) if upper else []
        return statement_page(account_id, account.currency, entries, limit, balance)

    def balance_at(self, account_id: str, at: datetime) -> int:
        """Posted balance at `at`: today's balance less what entries after `at` changed."""
        account, last_key = self._account_with_last_key(account_id)
        if last_key is None:
            return 0
        entry = self.models.entry
        lower = entry_key_prefix(micros(at) + 1)
        if lower > last_key:
            return account.balance_minor
        later = entry.query(account_id, entry.entry_key.between(lower, last_key), consistent_read=True)
        return account.balance_minor - sum(entry_from_record(r).balance_delta_minor for r in later)

    # --- scans for reconciliation (finfaas ledger check) ---

    def scan_account_records(self, on_malformed: OnMalformed | None = None
                             ) -> Iterator[tuple[Account, int, str | None]]:
        """(account, stored available_minor, last_entry_key) of every account."""
        for record in self._scan(self.models.account):
            row = _read("account", record.account_id, partial(_account_row, record), on_malformed)
            if row is not _SKIPPED:
                yield row

    def scan_transfers(self, on_malformed: OnMalformed | None = None) -> Iterator[Transfer]:
        for record in self._scan(self.models.transfer):
            transfer = _read("transfer", record.transfer_id, partial(transfer_from_record, record),
                             on_malformed)
            if transfer is not _SKIPPED:
                yield transfer

    def scan_entries(self, on_malformed: OnMalformed | None = None) -> Iterator[Entry]:
        for record in self._scan(self.models.entry):
            if record.account_id.startswith(HOLD_INDEX_PREFIX):
                continue
            key = f"{record.account_id}/{record.entry_key}"
            entry = _read("entry", key, partial(entry_from_record, record), on_malformed)
            if entry is not _SKIPPED:
                yield entry

    def scan_hold_index(self) -> Iterator[tuple[str, int]]:
        """(pending_id, expires_at_us) of every indexed open hold."""
        return ((r.transfer_id, entry_key_micros(r.entry_key)) for r in self._scan(self.models.entry)
                if r.account_id.startswith(HOLD_INDEX_PREFIX))

    def _scan(self, model) -> Iterator:
        try:
            yield from model.scan(consistent_read=True)
        except ScanError as error:
            raise StoreUnreachable(str(error.cause or error)) from error

    # --- operations (each runs inside _with_retries) ---

    def _open_account(self, new: NewAccount, now: datetime) -> Account:
        record = self.models.account(
            new.account_id, owner_id=new.owner_id, opened_at=format_time(now), currency=new.currency,
            kind=new.kind.value, status=AccountStatus.OPEN.value, limited=new.debits_must_not_exceed_credits,
            overdraft_limit_minor=new.overdraft_limit_minor, debits_pending=0, debits_posted=0,
            credits_pending=0, credits_posted=0, available_minor=new.overdraft_limit_minor, version=0)
        tx = _Transaction()
        tx.put("account", record, self.models.account.account_id.does_not_exist())
        self._outbox(tx, "ledger.account.opened", new.account_id, now, {"account": _account_json(new)})
        reasons = self._commit(tx)
        if reasons is None:
            return account_from_record(record)
        existing = reasons.get("account")
        if existing is None or not existing.raw_item:
            raise _Transient("account put cancelled without a reason")
        return check_same_account(account_from_raw(self.models, existing.raw_item), new)

    def _set_status(self, account_id: str, status: AccountStatus, now: datetime) -> Account:
        model = self.models.account
        condition = model.status.is_in(*_statuses_before(status))
        if status is AccountStatus.CLOSED:
            condition &= (model.credits_posted == model.debits_posted) & (model.debits_pending == 0)
            condition &= model.credits_pending == 0
        tx = _Transaction()
        tx.update("account", model(account_id), [model.status.set(status.value), model.version.add(1)],
                  condition)
        self._outbox(tx, "ledger.account.status_changed", account_id, now, {"status": status.value})
        reasons = self._commit(tx)
        if reasons is None:
            return self._require_account(account_id)
        old = reasons["account"].raw_item if "account" in reasons else None
        if not old:
            raise AccountNotFound(f"account {account_id} not found", subject=account_id)
        account = account_from_raw(self.models, old)
        if account.status is status:
            return account
        check_status_change(account, status)
        raise _Transient("status condition failed but the account allows the change now")

    def _create(self, wanted: list[Transfer], actor: Actor, now: datetime,
                attempt: _Attempt, extra: TransactionExtra | None = None) -> list[Transfer]:
        legs = [leg_for_new(t) for t in wanted]
        tx = _Transaction()
        for transfer, record in zip(wanted, batch_records(self.models, wanted), strict=True):
            tx.put(("transfer", transfer.transfer_id), record,
                   self.models.transfer.transfer_id.does_not_exist())
            if transfer.kind is TransferKind.PENDING and transfer.expires_at is not None:
                tx.put(("hold", transfer.transfer_id), self._hold_index_record(transfer))
        changes = self._add_postings(tx, legs, actor, now, attempt)
        self._outbox(tx, "ledger.transfers.created", wanted[0].transfer_id, now,
                     {"transfers": [_transfer_json(t) for t in wanted]}, _outbox_audit(extra))
        reasons = self._commit(tx, extra, wanted)
        if reasons is None:
            return wanted
        existing = [self._reason_transfer(reasons, ("transfer", t.transfer_id)) for t in wanted]
        if any(e is not None for e in existing):
            return replayed_batch(existing, wanted)
        self._raise_account_problem(reasons, changes, attempt)
        raise _Transient("transfer cancelled without a reason")

    def _resolve(self, transfer_id: str, pending_id: str, kind: TransferKind, amount_minor: int | None,
                 actor: Actor, now: datetime, extra: TransactionExtra | None = None,
                 remainder_id: str | None = None, terms: HoldTerms | None = None) -> Transfer:
        check_identifier(transfer_id, field="transfer_id")
        check_identifier(pending_id, field="pending_id")
        request = (transfer_id, pending_id, kind, amount_minor, actor, now)
        return self._with_retries(
            lambda attempt: self._resolve_once(*request, attempt, extra, remainder_id, terms))

    def _resolve_once(self, transfer_id: str, pending_id: str, kind: TransferKind, amount_minor: int | None,
                      actor: Actor, now: datetime, attempt: _Attempt,
                      extra: TransactionExtra | None = None, remainder_id: str | None = None,
                      terms: HoldTerms | None = None) -> Transfer:
        if terms is not None and not attempt.hold_read:
            posted = self._post_on_terms(transfer_id, pending_id, terms, actor, now, attempt, extra)
            if posted is not None:
                return posted
            attempt.hold_read = True  # the hold is not as the caller knows it: read it, as without terms
        pending = check_pending_kind(self.get_transfer(pending_id), pending_id)
        wanted = resolution_transfer(pending, transfer_id, kind, amount_minor, now)
        if pending.resolved_by == transfer_id:
            resolved = check_same_transfer(self._require_transfer(transfer_id), wanted)
            if remainder_id is not None:
                check_same_remainder(self.get_transfer(remainder_id), pending, remainder_id,
                                     resolved.amount_minor)
            return resolved
        check_resolvable(pending, transfer_id, pending_id, now)
        remainder = None
        if remainder_id is not None:
            if remainder_id == transfer_id:
                raise DuplicateTransferId(f"remainder_id: {remainder_id} is the post's own id",
                                          field="remainder_id")
            remainder = remainder_transfer(pending, remainder_id, wanted.amount_minor, now)
        return self._commit_resolution(pending, wanted, actor, now, attempt, extra, remainder)

    def _post_on_terms(self, transfer_id: str, pending_id: str, terms: HoldTerms, actor: Actor, now: datetime,
                       attempt: _Attempt, extra: TransactionExtra | None) -> Transfer | None:
        """The whole post of a hold built from the caller's terms, in one write and no read, on condition
        that the hold is PENDING without timeout on exactly those terms. A replay answers the first post
        and a hold voided, expired or posted by another answers the refusal it would read; None when the
        hold is missing, still pending on other terms or was just resolved by this very post."""
        pending = terms.as_hold(pending_id, now)
        wanted = resolution_transfer(pending, transfer_id, TransferKind.POST, None, now)
        try:
            return self._commit_resolution(pending, wanted, actor, now, attempt, extra, on_terms=True)
        except _HoldNotOnTerms:
            return None

    def _terms_condition(self, pending: Transfer):
        model = self.models.transfer
        return ((model.kind == TransferKind.PENDING.value) & (model.expires_at_us == 0)
                & (model.debit_account_id == pending.debit_account_id)
                & (model.credit_account_id == pending.credit_account_id)
                & (model.amount_minor == pending.amount_minor) & (model.currency == pending.currency))

    def _commit_resolution(self, pending: Transfer, resolution: Transfer, actor: Actor, now: datetime,
                           attempt: _Attempt, extra: TransactionExtra | None = None,
                           remainder: Transfer | None = None, on_terms: bool = False) -> Transfer:
        """Resolves `pending`; a partial post's `remainder` (a new hold for the rest) commits with it.
        `on_terms`: `pending` was not read but built from the caller's terms, which the write checks."""
        model = self.models.transfer
        tx = _Transaction()
        tx.put("resolution", transfer_record(self.models, resolution), model.transfer_id.does_not_exist())
        state = _RESOLVED_STATE[resolution.kind]
        condition = self._pending_condition(resolution.kind, now)
        if on_terms:
            condition &= self._terms_condition(pending)
        tx.update("pending", model(pending.transfer_id),
                  [model.state.set(state.value), model.resolved_by.set(resolution.transfer_id),
                   model.held_account_id.remove()],
                  condition)
        if pending.expires_at is not None:
            tx.delete("hold", self._hold_index_record(pending))
        legs = [leg_for_resolution(pending, resolution)]
        data = {"pending_id": pending.transfer_id, "transfer": _transfer_json(resolution)}
        if remainder is not None:
            tx.put("remainder", transfer_record(self.models, remainder), model.transfer_id.does_not_exist())
            if remainder.expires_at is not None:
                tx.put(("hold", remainder.transfer_id), self._hold_index_record(remainder))
            legs.append(leg_for_new(remainder))
            data["remainder"] = _transfer_json(remainder)
        changes = self._add_postings(tx, legs, actor, now, attempt)
        self._outbox(tx, f"ledger.pending.{state.value.lower()}", pending.transfer_id, now, data,
                     _outbox_audit(extra))
        reasons = self._commit(tx, extra, [resolution] if remainder is None else [resolution, remainder])
        if reasons is None:
            return resolution
        existing = self._reason_transfer(reasons, "resolution")
        if existing is not None:
            if on_terms and existing.identity() != resolution.identity():
                # The id is taken otherwise, or the terms were not the hold's: answered as the hold reads.
                raise _HoldNotOnTerms(pending.transfer_id)
            return check_same_transfer(existing, resolution)
        if remainder is not None and self._reason_transfer(reasons, "remainder") is not None:
            raise DuplicateTransferId(f"remainder_id: transfer {remainder.transfer_id} exists",
                                      field="remainder_id")
        current = self._reason_transfer(reasons, "pending")
        if on_terms and _condition_failed(reasons, "pending"):
            if current is not None and current.resolved_by != resolution.transfer_id:
                check_resolvable(current, resolution.transfer_id, pending.transfer_id, now)
            raise _HoldNotOnTerms(pending.transfer_id)  # missing, on other terms, or resolved by this post
        if current is not None:
            if current.resolved_by == resolution.transfer_id:
                raise _Transient("resolved by this very request in an earlier attempt")
            check_resolvable(current, resolution.transfer_id, pending.transfer_id, now)
        self._raise_account_problem(reasons, changes, attempt)
        raise _Transient("resolution cancelled without a reason")

    def _reverse(self, request: Reversal, actor: Actor, now: datetime, attempt: _Attempt,
                 extra: TransactionExtra | None = None) -> Transfer:
        original = check_reversible_or_replay(self.get_transfer(request.reversal_of), request)
        wanted = reversal_transfer(original, request.transfer_id, now)
        if original.reversed_by == request.transfer_id:
            return check_same_transfer(self._require_transfer(request.transfer_id), wanted)
        check_reversible(original, request.reversal_of)
        model = self.models.transfer
        tx = _Transaction()
        tx.put("reversal", transfer_record(self.models, wanted), model.transfer_id.does_not_exist())
        tx.update("original", model(original.transfer_id), [model.reversed_by.set(wanted.transfer_id)],
                  model.reversed_by.does_not_exist() & model.transfer_id.exists())
        changes = self._add_postings(tx, [leg_for_new(wanted)], actor, now, attempt)
        self._outbox(tx, "ledger.transfer.reversed", original.transfer_id, now,
                     {"reversal_of": original.transfer_id, "transfer": _transfer_json(wanted)},
                     _outbox_audit(extra))
        reasons = self._commit(tx, extra, [wanted])
        if reasons is None:
            return wanted
        existing = self._reason_transfer(reasons, "reversal")
        if existing is not None:
            return check_same_transfer(existing, wanted)
        current = self._reason_transfer(reasons, "original")
        if current is not None:
            if current.reversed_by == wanted.transfer_id:
                raise _Transient("reversed by this very request in an earlier attempt")
            check_reversible(current, request.reversal_of)
        self._raise_account_problem(reasons, changes, attempt)
        raise _Transient("reversal cancelled without a reason")

    def _expire(self, pending_id: str, now: datetime, attempt: _Attempt) -> Transfer | None:
        pending = self.get_transfer(pending_id)
        if pending is None or pending.state is not PendingState.PENDING:
            return None  # resolved meanwhile; its index item went with the resolution
        expiry = resolution_transfer(pending, expiry_transfer_id(pending_id), TransferKind.EXPIRY, None, now)
        if not is_expired(pending, now):
            return None
        try:
            return self._commit_resolution(pending, expiry, Actor.system(), now, attempt)
        except (PendingAlreadyPosted, PendingAlreadyVoided, PendingExpired):
            return None  # resolved concurrently: nothing left to expire

    # --- building blocks ---

    def _add_postings(self, tx: _Transaction, legs, actor: Actor, now: datetime,
                      attempt: _Attempt) -> list[AccountChange]:
        """Adds one update per account (ADD deltas, conditions) and every leg's two entries."""
        entry_time_us = max(micros(now), attempt.entry_time_us_min)
        if attempt.entry_time_from_clock:
            entry_time_us = max(entry_time_us, micros(self._entry_clock()))
        prefix = entry_key_prefix(entry_time_us)
        changes = account_changes(legs, actor)
        entries: list[Entry] = [e for i, leg in enumerate(legs) for e in entries_for(leg, prefix, i, now)]
        newest_key = {e.account_id: e.entry_key for e in sorted(entries, key=lambda e: e.entry_key)}
        for change in changes:
            self._add_account_update(tx, change, newest_key[change.account_id])
        for entry in entries:
            tx.put(("entry", entry.entry_key), entry_record(self.models, entry))
        return changes

    def _add_account_update(self, tx: _Transaction, change: AccountChange, newest_key: str) -> None:
        model = self.models.account
        deltas = [(model.debits_posted, change.debits_posted),
                  (model.credits_posted, change.credits_posted),
                  (model.debits_pending, change.debits_pending),
                  (model.credits_pending, change.credits_pending),
                  (model.available_minor, change.available_delta_minor)]
        actions = [attribute.add(delta) for attribute, delta in deltas if delta != 0]
        actions += [model.version.add(1), model.last_entry_key.set(newest_key)]
        condition = model.currency == change.currency
        for other in sorted(change.currencies - {change.currency}):
            condition &= model.currency == other  # legs in two currencies on one account: never true
        if change.statuses_allowed != frozenset(AccountStatus):
            condition &= model.status.is_in(*sorted(s.value for s in change.statuses_allowed))
        if change.owner_id is not None:
            condition &= model.owner_id == change.owner_id
        required = change.funds_required_minor
        if required is not None:
            condition &= (model.limited == False) | (model.available_minor >= required)  # noqa: E712
        # Entry keys only grow per account, so a balance read with its last key anchors statements.
        condition &= model.last_entry_key.does_not_exist() | (model.last_entry_key < newest_key)
        tx.update(("account", change.account_id), model(change.account_id), actions, condition)

    def _raise_account_problem(self, reasons: dict, changes: list[AccountChange], attempt: _Attempt) -> None:
        """Raises the domain error behind failed account conditions, or asks for a retry with a
        later entry time when the only failure was an older clock than the account's last entry."""
        problems, stale_keys = [], []
        for change in changes:
            reason = reasons.get(("account", change.account_id))
            if reason is None:
                continue
            account = account_from_raw(self.models, reason.raw_item) if reason.raw_item else None
            problem = violation(change, account)
            if problem is not None:
                problems.append(problem)
            elif reason.raw_item and "last_entry_key" in reason.raw_item:
                stale_keys.append(reason.raw_item["last_entry_key"]["S"])
        chosen = first_violation(problems)
        if chosen is not None:
            raise chosen
        if stale_keys:
            newest_us = max(entry_key_micros(k) for k in stale_keys)
            attempt.entry_time_us_min = newest_us + 1
            attempt.entry_time_from_clock = True
            raise _Transient("entry key older than the account's last entry")

    def _pending_condition(self, kind: TransferKind, now: datetime):
        model = self.models.transfer
        condition = model.state == PendingState.PENDING.value
        if kind is TransferKind.EXPIRY:
            return condition & (model.expires_at_us > 0) & (model.expires_at_us <= micros(now))
        return condition & ((model.expires_at_us == 0) | (model.expires_at_us > micros(now)))

    def _hold_index_record(self, pending: Transfer):
        shard = zlib.crc32(pending.transfer_id.encode()) % hold_index_shards
        expires_at = pending.expires_at
        assert expires_at is not None  # only holds with a timeout are indexed
        key = f"{entry_key_prefix(micros(expires_at))}#{pending.transfer_id}"
        return self.models.entry(
            f"{HOLD_INDEX_PREFIX}{shard}", key, transfer_id=pending.transfer_id, kind=pending.kind.value,
            currency=pending.currency, amount_minor=pending.amount_minor,
            created_at=format_time(pending.created_at))

    def _due_hold_ids(self, now: datetime, limit: int) -> list[str]:
        upper = f"{entry_key_prefix(micros(now))}#~"
        due: list[tuple[str, str]] = []
        for shard in range(hold_index_shards):
            entry = self.models.entry
            items = entry.query(f"{HOLD_INDEX_PREFIX}{shard}", entry.entry_key <= upper, consistent_read=True,
                                limit=min(limit, expiry_scan_items_max))
            due += [(r.entry_key, r.transfer_id) for r in items]
        return [pending_id for _, pending_id in sorted(due)[:limit]]

    def _outbox(self, tx: _Transaction, event_type: str, subject: str, now: datetime, data: dict,
                audit: str | None = None) -> None:
        partition = f"ledger-{zlib.crc32(subject.encode()) % outbox_partitions}"
        time_text = format_time(now)
        event_id = f"{event_type}:{subject}:{micros(now)}"
        event_key = f"{entry_key_prefix(micros(now))}#{event_id}"
        record = self.models.outbox(partition, event_key, event_id=event_id, type=event_type,
                                    source=EVENT_SOURCE, subject=subject, time=time_text,
                                    data=json.dumps(data, separators=(",", ":"), sort_keys=True),
                                    audit=audit)
        tx.put("outbox", record)

    def _commit(self, tx: _Transaction, extra: TransactionExtra | None = None,
                result: Sequence[Transfer] = ()) -> dict[object, CancellationReason] | None:
        """None when committed; the reasons by tag when cancelled by conditions. An extra put rides
        along; when its own condition failed, the extra decides the answer before the ledger does."""
        if extra is not None:
            item, condition = extra.put_for(result)
            tx.put(_EXTRA_TAG, item, condition)
            more: Callable[[Sequence[Transfer]], list[tuple[Any, Any]]] | None = getattr(
                extra, "more_puts_for", None)
            for n, (other, other_condition) in enumerate(more(result) if more is not None else []):
                tx.put((_EXTRA_TAG, n), other, other_condition)
            updates: Callable[[Sequence[Transfer]], list[tuple[Any, list[Any], Any]]] | None = getattr(
                extra, "more_updates_for", None)
            for n, (other, actions, other_condition) in enumerate(updates(result) if updates else []):
                tx.update((_EXTRA_UPDATE_TAG, n), other, actions, other_condition)
        try:
            tx.commit(self._connection)
        except TransactWriteError as error:
            reasons = self._cancellation(tx, error)
            if extra is not None:
                self._extra_conflicts(extra, reasons, error)
            return reasons
        if extra is not None:
            extra.committed()
        return None

    @staticmethod
    def _extra_conflicts(extra: TransactionExtra, reasons: dict[object, CancellationReason],
                         error: TransactWriteError) -> None:
        """Asks the extra about its own failed conditions, those of its more puts first (an
        Idempotency-Key's record among them decides a replay before the intent's version does)."""
        more_failed = sorted(tag[1] for tag in reasons
                             if isinstance(tag, tuple) and len(tag) == 2 and tag[0] == _EXTRA_TAG)
        more_conflicted: Callable[[int, dict[str, Any] | None], None] | None = getattr(
            extra, "more_conflicted", None)
        for n in more_failed:
            if more_conflicted is not None:
                more_conflicted(n, reasons[(_EXTRA_TAG, n)].raw_item)
        if _EXTRA_TAG in reasons:
            extra.conflicted(reasons[_EXTRA_TAG].raw_item)
        updates_failed = sorted(tag[1] for tag in reasons
                                if isinstance(tag, tuple) and len(tag) == 2 and tag[0] == _EXTRA_UPDATE_TAG)
        updates_conflicted: Callable[[list[int]], None] | None = getattr(
            extra, "more_updates_conflicted", None)
        if updates_conflicted is not None and (more_failed or updates_failed):
            updates_conflicted(updates_failed)
        if more_failed or updates_failed or _EXTRA_TAG in reasons:
            raise _Transient("the extra put's condition failed, yet its record is free now") from error

    def _cancellation(self, tx: _Transaction, error: TransactWriteError) -> dict[object, CancellationReason]:
        if isinstance(error.cause, _TRANSPORT_ERRORS):
            raise _Transient(f"response lost: {error.cause}") from error
        if error.cause_response_code != TRANSACTION_CANCELED_EXCEPTION:
            if error.cause_response_code in _TRANSIENT_CODES:
                raise _Transient(error.cause_response_code) from error
            raise StoreRejected(f"transaction refused: {error.cause or error}") from error
        reasons = tx.reasons(error)
        codes = {reason.code for reason in reasons.values()}
        if codes & _TRANSIENT_CODES:
            raise _Transient(", ".join(sorted(codes))) from error
        unexpected = codes - {REASON_CONDITION_FAILED}
        if unexpected:
            # e.g. ValidationError for a number beyond DynamoDB's 38 digits: nothing was written.
            raise StoreRejected(f"transaction cancelled for {sorted(unexpected)}: {error}") from error
        return reasons

    def _reason_transfer(self, reasons: dict, tag: object) -> Transfer | None:
        reason = reasons.get(tag)
        if reason is None or not reason.raw_item:
            return None
        return transfer_from_record(self.models.transfer.from_raw_data(reason.raw_item))

    def _with_retries(self, operation: Callable[[_Attempt], _T]) -> _T:
        attempt = _Attempt()
        retrying = OPERATION_RETRY.with_attempts(self._attempts_max).retrying(_Transient, self._sleep)
        try:
            return retrying(operation, attempt)
        except RetryError as error:
            raise LedgerBusy(f"ledger busy: {error.last_attempt.exception()}") from error

    def _get(self, model, hash_key: str):
        try:
            return model.get(hash_key, consistent_read=True)
        except model.DoesNotExist:
            return None
        except GetError as error:
            if isinstance(error.cause, _TRANSPORT_ERRORS):
                raise LedgerBusy(f"store unreachable: {error.cause}") from error
            raise

    def _require_account(self, account_id: str) -> Account:
        account = self.get_account(account_id)
        if account is None:
            raise AccountNotFound(f"account {account_id} not found", subject=account_id)
        return account

    def _require_transfer(self, transfer_id: str) -> Transfer:
        transfer = self.get_transfer(transfer_id)
        assert transfer is not None, f"transfer {transfer_id} is referenced but missing"
        return transfer

    def _account_with_last_key(self, account_id: str) -> tuple[Account, str | None]:
        check_identifier(account_id, field="account_id")
        record = self._get(self.models.account, account_id)
        if record is None:
            raise AccountNotFound(f"account {account_id} not found", subject=account_id)
        return account_from_record(record), record.last_entry_key

    def _entries_before(self, account_id: str, upper: str, inclusive: bool, count: int) -> list[Entry]:
        entry = self.models.entry
        condition = entry.entry_key <= upper if inclusive else entry.entry_key < upper
        try:
            records = entry.query(account_id, condition, scan_index_forward=False, consistent_read=True,
                                  limit=count, page_size=count)
            return [entry_from_record(r) for r in records]
        except QueryError as error:
            raise LedgerBusy(f"store unreachable: {error.cause}") from error


def _encode_owner_cursor(last_evaluated_key: dict) -> str:
    raw = json.dumps(last_evaluated_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_owner_cursor(cursor: str, owner_id: str) -> dict:
    """The by-owner index key to resume after, only in the shape DynamoDB gave it and for this owner."""
    problem = InvalidInput("starting_after: not a cursor of this list", field="starting_after")
    try:
        key = jsonio.loads(base64.urlsafe_b64decode(cursor.encode()), depth_max=owner_cursor_depth_max)
    except (ValueError, TypeError):
        raise problem from None
    # A key naming another owner, or any other attribute, would reach DynamoDB as ExclusiveStartKey.
    if not isinstance(key, dict) or set(key) != set(OWNER_CURSOR_ATTRIBUTES):
        raise problem
    values = {name: value.get("S") if isinstance(value, dict) and len(value) == 1 else None
              for name, value in key.items()}
    if any(not isinstance(v, str) or not 0 < len(v) <= owner_cursor_value_chars_max for v in values.values()):
        raise problem
    if values["owner_id"] != owner_id:
        raise problem
    return key


def _statuses_before(status: AccountStatus) -> list[str]:
    allowed = {AccountStatus.FROZEN: [AccountStatus.OPEN], AccountStatus.OPEN: [AccountStatus.FROZEN],
               AccountStatus.CLOSED: [AccountStatus.OPEN, AccountStatus.FROZEN]}
    return [s.value for s in allowed[status]]


def _transfer_json(transfer: Transfer) -> dict:
    """Event payload: amounts as strings so no JSON consumer rounds them."""
    data = {k: v for k, v in asdict(transfer).items() if v is not None and k != "created_at"}
    data["amount_minor"] = str(transfer.amount_minor)
    data["created_at"] = format_time(transfer.created_at)
    return {k: (v.value if hasattr(v, "value") else v) for k, v in data.items()}


def _account_json(new: NewAccount) -> dict:
    return {"account_id": new.account_id, "owner_id": new.owner_id, "currency": new.currency,
            "kind": new.kind.value, "debits_must_not_exceed_credits": new.debits_must_not_exceed_credits,
            "overdraft_limit_minor": str(new.overdraft_limit_minor)}



def ledger_store_from_config() -> DynamoLedgerStore:
    """The store for this stage's tables; botocore resolves the endpoint from AWS_ENDPOINT_URL*."""
    from finfaas.platform.config import settings

    return DynamoLedgerStore(LedgerTables.from_config(), settings().region)



OnMalformed = Callable[[str, str, Exception], None]
_SKIPPED = object()


def _account_row(record: Any) -> tuple[Account, int, str | None]:
    return account_from_record(record), record.available_minor, record.last_entry_key


def _read(kind: str, key: str, convert: Callable[[], Any], on_malformed: OnMalformed | None) -> Any:
    """One record's conversion in a scan. A record that cannot be read is reported to on_malformed
    and skipped (_SKIPPED), so reconciliation names it instead of stopping; without on_malformed the
    error propagates."""
    try:
        return convert()
    except (ValueError, TypeError, KeyError) as error:
        if on_malformed is None:
            raise
        on_malformed(kind, key, error)
        return _SKIPPED
