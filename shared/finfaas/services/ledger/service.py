"""Ledger use cases: parse and validate input, apply access rules, stamp time and ids, call the store.

Handlers build one LedgerService per process (`LedgerService(store, clock)`) and map LedgerError
subclasses to responses by their `code`. Money-moving calls take `extra=`: one more conditional put
for the repository to carry in the operation's own transaction (the HTTP Idempotency-Key record);
it is passed on only when given, so repositories without transactions need not know it.
Every state-changing call takes a client-supplied id (transfer_id / account_id); an id is generated
only when the caller omits it, and then a retry of the call is not recognised as the same request.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from finfaas.domain.errors import AccountNotFound, InvalidInput, TransferNotFound
from finfaas.domain.ledger import (
    SYSTEM_KINDS,
    Account,
    AccountKind,
    AccountStatus,
    Actor,
    Clock,
    HoldTerms,
    LedgerRepository,
    NewAccount,
    NewTransfer,
    Page,
    PostPending,
    Reversal,
    StatementPage,
    TransactionExtra,
    Transfer,
    VoidPending,
    check_page_size,
    page_size_default,
    system_account,
    system_account_id,
)
from finfaas.domain.money import Money, parse_amount, parse_currency
from finfaas.services.ledger.model import TransferRequest

expiry_sweep_holds_max = 500


def _carrying(extra: TransactionExtra | None) -> dict[str, TransactionExtra]:
    """The repository's `extra=` argument, left out when there is none."""
    return {} if extra is None else {"extra": extra}


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class LedgerService:
    """The ledger's use cases over any LedgerRepository (DynamoDB store or the reference ledger)."""

    def __init__(self, repository: LedgerRepository, clock: Clock = utc_now,
                 id_factory: Callable[[], str] = new_id) -> None:
        self._repository = repository
        self._clock = clock
        self._new_id = id_factory

    # --- accounts ---

    def open_account(self, *, owner_id: str, currency: object, account_id: str | None = None,
                     kind: AccountKind = AccountKind.CUSTOMER, debits_must_not_exceed_credits: bool = True,
                     overdraft_limit_minor: int = 0) -> Account:
        """Opens an account (idempotent on account_id); system kinds go through ensure_system_accounts."""
        if AccountKind(kind) in SYSTEM_KINDS:
            raise InvalidInput("kind: system accounts are opened by ensure_system_accounts", field="kind")
        new = NewAccount(account_id or self._new_id(), owner_id, parse_currency(currency), AccountKind(kind),
                         debits_must_not_exceed_credits, overdraft_limit_minor)
        return self._repository.open_account(new, self._clock())

    def ensure_system_accounts(self, currency: object) -> list[Account]:
        """sys-<purpose>-<CUR> for every system purpose; safe to call on every start."""
        code = parse_currency(currency)
        now = self._clock()
        return [self._repository.open_account(system_account(kind, code), now) for kind in SYSTEM_KINDS]

    def get_account(self, account_id: str, actor: Actor = Actor.system()) -> Account:
        account = self._repository.get_account(account_id)
        if account is None or (actor.is_customer and account.owner_id != actor.owner_id):
            raise AccountNotFound(f"account {account_id} not found", subject=account_id)
        return account

    def list_accounts(self, owner_id: str, *, limit: int = page_size_default,
                      starting_after: str | None = None) -> Page[Account]:
        return self._repository.accounts_by_owner(owner_id, check_page_size(limit), starting_after)

    def freeze(self, account_id: str) -> Account:
        return self._repository.set_account_status(account_id, AccountStatus.FROZEN, self._clock())

    def unfreeze(self, account_id: str) -> Account:
        return self._repository.set_account_status(account_id, AccountStatus.OPEN, self._clock())

    def close(self, account_id: str, actor: Actor = Actor.system()) -> Account:
        """Closes an empty account (no balance, no holds); customers close only their own."""
        self.get_account(account_id, actor)
        return self._repository.set_account_status(account_id, AccountStatus.CLOSED, self._clock())

    # --- money movement ---

    def transfer(self, request: TransferRequest, actor: Actor = Actor.system(), *,
                 extra: TransactionExtra | None = None) -> Transfer:
        """One transfer, posted at once or (pending=True) held until posted, voided or expired."""
        batch = [self._new_transfer(request)]
        return self._repository.create_transfers(batch, actor, self._clock(), **_carrying(extra))[0]

    def transfer_linked(self, requests: Sequence[TransferRequest], actor: Actor = Actor.system(), *,
                        extra: TransactionExtra | None = None) -> list[Transfer]:
        """Up to linked_legs_max legs that commit all together or not at all."""
        if not isinstance(requests, Sequence) or isinstance(requests, str | bytes):
            raise InvalidInput("transfers: a list of legs", field="transfers")
        batch = [self._new_transfer(request, prefix=f"transfers[{i}].") for i, request in enumerate(requests)]
        return self._repository.create_transfers(batch, actor, self._clock(), **_carrying(extra))

    def deposit(self, account_id: str, amount: int | str, currency: str,
                transfer_id: str | None = None) -> Transfer:
        """Money entering the ledger: from the currency's funding account to `account_id`."""
        code = parse_currency(currency)
        funding = system_account_id(AccountKind.FUNDING, code)
        return self.transfer(TransferRequest(funding, account_id, amount, code, transfer_id))

    def post_pending(self, pending_id: str, *, amount: int | str | None = None, currency: str | None = None,
                     transfer_id: str | None = None, remainder_id: str | None = None,
                     actor: Actor = Actor.system(), extra: TransactionExtra | None = None,
                     hold: tuple[str, str, int | str, str] | None = None) -> Transfer:
        """Posts a hold, all of it or (amount given) part of it. The rest is released, or, with
        remainder_id, kept held in the same transaction as a new hold of that id, expiring when the
        posted one would have (a partial capture that leaves the rest capturable). `hold` (debit and
        credit account, amount, currency) is what the caller knows of the hold: the store may post on it
        without reading the hold, on condition that it still holds; the answers are the same."""
        amount_minor = None
        if amount is not None:
            if currency is None:
                raise InvalidInput("currency: required with amount", field="currency")
            amount_minor = parse_amount(amount, parse_currency(currency))
        if remainder_id is not None and amount_minor is None:
            raise InvalidInput("amount: required when the rest stays held", field="amount")
        terms = None
        if hold is not None:
            debit_account_id, credit_account_id, held_amount, held_currency = hold
            held_in = parse_currency(held_currency, field="hold.currency")
            held_minor = parse_amount(held_amount, held_in, field="hold.amount")
            terms = HoldTerms(debit_account_id, credit_account_id, held_minor, held_in)
        request = PostPending(transfer_id or self._new_id(), pending_id, amount_minor, remainder_id, terms)
        return self._repository.post_pending(request, actor, self._clock(), **_carrying(extra))

    def void_pending(self, pending_id: str, *, transfer_id: str | None = None,
                     actor: Actor = Actor.system(), extra: TransactionExtra | None = None) -> Transfer:
        request = VoidPending(transfer_id or self._new_id(), pending_id)
        return self._repository.void_pending(request, actor, self._clock(), **_carrying(extra))

    def reverse(self, reversal_of: str, *, transfer_id: str | None = None,
                actor: Actor = Actor.system(), extra: TransactionExtra | None = None) -> Transfer:
        """Undoes a posted transfer with a new one in the opposite direction (once per transfer)."""
        request = Reversal(transfer_id or self._new_id(), reversal_of)
        return self._repository.reverse(request, actor, self._clock(), **_carrying(extra))

    def expire_due_holds(self, limit: int = expiry_sweep_holds_max) -> list[Transfer]:
        """Voids holds whose timeout has passed (the sweep a timer calls)."""
        return self._repository.expire_due_holds(self._clock(), limit)

    # --- reading ---

    def get_transfer(self, transfer_id: str, actor: Actor = Actor.system()) -> Transfer:
        """A transfer; a customer sees it only when one of its accounts is theirs."""
        transfer = self._repository.get_transfer(transfer_id)
        if transfer is None or (actor.is_customer and not self._touches_owner(transfer, actor)):
            raise TransferNotFound(f"transfer {transfer_id} not found", subject=transfer_id)
        return transfer

    def batch(self, batch_id: str, actor: Actor = Actor.system()) -> list[Transfer]:
        """A linked batch's legs in order, named by its first leg's id; a customer sees it only when its
        first leg touches one of their accounts."""
        legs = self._repository.batch_legs(batch_id)
        if not legs or (actor.is_customer and not self._touches_owner(legs[0], actor)):
            raise TransferNotFound(f"batch {batch_id} not found", field="batch_id", subject=batch_id)
        return legs

    def open_holds(self, account_id: str, *, limit: int = page_size_default,
                   starting_after: str | None = None, actor: Actor = Actor.system()) -> Page[Transfer]:
        """The account's open holds (it is their debit side), oldest first; pass next_cursor back."""
        self.get_account(account_id, actor)
        return self._repository.open_holds(account_id, check_page_size(limit), starting_after)

    def statement(self, account_id: str, *, limit: int = page_size_default, starting_after: str | None = None,
                  actor: Actor = Actor.system()) -> StatementPage:
        """Entries newest first with running balances; pass next_cursor back as starting_after."""
        self.get_account(account_id, actor)
        return self._repository.statement(account_id, check_page_size(limit), starting_after)

    def balance_at(self, account_id: str, at: datetime, actor: Actor = Actor.system()) -> Money:
        """The posted balance as it was at `at` (aware datetime)."""
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise InvalidInput("at: a timezone-aware timestamp", field="at")
        account = self.get_account(account_id, actor)
        return Money(self._repository.balance_at(account_id, at), account.currency)

    # --- internals ---

    def _new_transfer(self, request: TransferRequest, prefix: str = "") -> NewTransfer:
        if not isinstance(request, TransferRequest):
            raise InvalidInput(f"{prefix or 'transfer'}: expected a transfer", field=prefix or "transfer")
        if not isinstance(request.pending, bool):
            raise InvalidInput(f"{prefix}pending: true or false", field=f"{prefix}pending")
        currency = parse_currency(request.currency, field=f"{prefix}currency")
        amount_minor = parse_amount(request.amount, currency, field=f"{prefix}amount")
        return NewTransfer(request.transfer_id or self._new_id(), request.debit_account_id,
                           request.credit_account_id, amount_minor, currency, request.pending,
                           request.timeout_seconds, request.metadata)

    def _touches_owner(self, transfer: Transfer, actor: Actor) -> bool:
        for account_id in (transfer.debit_account_id, transfer.credit_account_id):
            account = self._repository.get_account(account_id)
            if account is not None and account.owner_id == actor.owner_id:
                return True
        return False
