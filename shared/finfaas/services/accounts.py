"""The accounts function's use cases: a caller's own accounts, balances and statements; ops controls.

Ownership: every customer-facing call passes Actor(owner_id=caller.sub) to the ledger, which answers
AccountNotFound for another owner's account exactly as for a missing one (no existence oracle).
Account ids are derived from (owner, Idempotency-Key), so a retried opening lands on the same
account even after the idempotency record is gone, and a crash between the two writes is harmless.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from finfaas.domain.errors import LedgerError
from finfaas.domain.ledger import (
    Account,
    AccountKind,
    Actor,
    StatementLine,
    StatementPage,
    page_size_default,
    page_size_max,
)
from finfaas.domain.money import currency_exponent
from finfaas.platform.audit import Outcome
from finfaas.platform.cursors import CursorCodec, InvalidCursor, binding, cursor_chars_max
from finfaas.platform.http import StrictModel
from finfaas.services.customers.model import Caller
from finfaas.services.customers.service import AuditTrail
from finfaas.services.ledger.service import LedgerService

ACCOUNT_ID_PREFIX = "acc_"
account_id_hex_chars = 32
ledger_cursor_chars_max = 512  # the ledger's own cursor (a key and a balance) inside the sealed one
LIST_ROUTE = "GET /accounts"
STATEMENT_ROUTE = "GET /accounts/{account_id}/statement"
# Kinds a customer may open; system kinds are opened by the ledger's own bootstrap.
CustomerAccountKind = Literal["CUSTOMER"]


# --- API shapes -------------------------------------------------------------------------------------


class OpenAccountBody(StrictModel):
    """What a customer may set when opening an account; owner, balances and status are the server's."""

    currency: str = Field(min_length=3, max_length=3, description="ISO 4217 code, e.g. USD")
    kind: CustomerAccountKind = "CUSTOMER"


class PageQuery(StrictModel):
    limit: int = Field(default=page_size_default, ge=1, le=page_size_max)
    starting_after: str | None = Field(default=None, min_length=1, max_length=cursor_chars_max)


class BalanceAtQuery(StrictModel):
    at: AwareDatetime = Field(description="RFC 3339 timestamp with offset, e.g. 2025-01-31T23:59:59Z")


class Balances(BaseModel):
    """Integer minor units of `currency` (10^exponent minor units make one major unit)."""

    currency: str
    exponent: int
    posted_minor: int = Field(description="settled balance: credits posted less debits posted")
    pending_minor: int = Field(description="pending credits less pending debits (holds)")
    pending_debits_minor: int
    pending_credits_minor: int
    available_minor: int = Field(description="what may be spent: posted less held, plus any overdraft")


class AccountView(BaseModel):
    account_id: str
    currency: str
    exponent: int
    kind: str
    status: str
    opened_at: datetime
    balances: Balances


class OpsAccountView(AccountView):
    """What operators see: the customer view plus the owner."""

    owner_id: str


class AccountList(BaseModel):
    data: list[AccountView]
    has_more: bool
    next_cursor: str | None = Field(description="pass as starting_after for the next page")


class StatementEntry(BaseModel):
    transfer_id: str
    kind: str
    side: Literal["debit", "credit"]
    counterparty_id: str
    amount_minor: int
    posted_delta_minor: int = Field(description="this entry's change of the posted balance")
    pending_delta_minor: int = Field(description="this entry's change of pending credits less debits")
    balance_after_minor: int = Field(description="posted balance right after this entry")
    created_at: datetime


class Statement(BaseModel):
    account_id: str
    currency: str
    exponent: int
    data: list[StatementEntry] = Field(description="newest first")
    has_more: bool
    next_cursor: str | None


class BalanceAt(BaseModel):
    account_id: str
    at: datetime
    currency: str
    exponent: int
    posted_minor: int


# --- mapping ----------------------------------------------------------------------------------------


def balances_of(account: Account) -> Balances:
    return Balances(
        currency=account.currency, exponent=currency_exponent(account.currency),
        posted_minor=account.balance_minor,
        pending_minor=account.credits_pending - account.debits_pending,
        pending_debits_minor=account.debits_pending, pending_credits_minor=account.credits_pending,
        available_minor=account.available_minor,
    )


def account_view(account: Account) -> AccountView:
    return AccountView(
        account_id=account.account_id, currency=account.currency,
        exponent=currency_exponent(account.currency), kind=account.kind.value, status=account.status.value,
        opened_at=account.opened_at, balances=balances_of(account),
    )


def ops_account_view(account: Account) -> OpsAccountView:
    return OpsAccountView(**account_view(account).model_dump(), owner_id=account.owner_id)


def statement_entry(line: StatementLine) -> StatementEntry:
    entry = line.entry
    debit = bool(entry.debits_posted or entry.debits_pending)
    return StatementEntry(
        transfer_id=entry.transfer_id, kind=entry.kind.value, side="debit" if debit else "credit",
        counterparty_id=entry.counterparty_id, amount_minor=entry.amount_minor,
        posted_delta_minor=entry.balance_delta_minor,
        pending_delta_minor=entry.credits_pending - entry.debits_pending,
        balance_after_minor=line.balance_after_minor, created_at=entry.created_at,
    )


def statement_view(page: StatementPage) -> Statement:
    return Statement(
        account_id=page.account_id, currency=page.currency, exponent=currency_exponent(page.currency),
        data=[statement_entry(line) for line in page.lines], has_more=page.has_more,
        next_cursor=page.next_cursor,
    )


def derived_account_id(owner_id: str, idempotency_key: str) -> str:
    """The same (owner, key) always names the same account; different owners never collide."""
    scoped = json.dumps([owner_id, idempotency_key], separators=(",", ":"), ensure_ascii=True)
    return ACCOUNT_ID_PREFIX + hashlib.sha256(scoped.encode()).hexdigest()[:account_id_hex_chars]


# --- use cases --------------------------------------------------------------------------------------


class AccountsService:
    """Customer-facing reads and openings, and operator controls, over the ledger; changes are audited."""

    def __init__(self, ledger: LedgerService, audit: AuditTrail, cursors: CursorCodec | None = None) -> None:
        self._ledger = ledger
        self._audit = audit
        # Production passes the stage's keyed codec; a fresh key suits one process (tests).
        self._cursors = cursors or CursorCodec.generate()

    def open(self, caller: Caller, body: OpenAccountBody, idempotency_key: str) -> AccountView:
        """Open an account owned by the caller (idempotent on the caller's Idempotency-Key)."""
        account_id = derived_account_id(caller.sub, idempotency_key)
        account = self._audited(caller, "account.open", account_id, lambda: self._ledger.open_account(
            owner_id=caller.sub, currency=body.currency, account_id=account_id, kind=AccountKind(body.kind)))
        return account_view(account)

    def list_mine(self, caller: Caller, query: PageQuery) -> AccountList:
        bound = binding(LIST_ROUTE, caller.sub)
        page = self._ledger.list_accounts(caller.sub, limit=query.limit,
                                          starting_after=self._opened(query.starting_after, bound))
        return AccountList(data=[account_view(a) for a in page.items], has_more=page.has_more,
                           next_cursor=self._sealed(page.next_cursor, bound))

    def get_mine(self, caller: Caller, account_id: str) -> AccountView:
        return account_view(self._ledger.get_account(account_id, _owner(caller)))

    def statement(self, caller: Caller, account_id: str, query: PageQuery) -> Statement:
        bound = binding(STATEMENT_ROUTE, caller.sub, account_id=account_id)
        page = self._ledger.statement(account_id, limit=query.limit,
                                      starting_after=self._opened(query.starting_after, bound),
                                      actor=_owner(caller))
        return statement_view(replace(page, next_cursor=self._sealed(page.next_cursor, bound)))

    def _opened(self, cursor: str | None, bound: dict[str, str]) -> str | None:
        """The ledger's cursor inside a client's sealed one; InvalidCursor unless ours, for this query."""
        if cursor is None:
            return None
        inner = self._cursors.open(cursor, bound)
        if not isinstance(inner, str) or not 0 < len(inner) <= ledger_cursor_chars_max:
            raise InvalidCursor("not a cursor of this list")
        return inner

    def _sealed(self, inner: str | None, bound: dict[str, str]) -> str | None:
        return None if inner is None else self._cursors.seal(inner, bound)

    def balance_at(self, caller: Caller, account_id: str, at: datetime) -> BalanceAt:
        money = self._ledger.balance_at(account_id, at, _owner(caller))
        return BalanceAt(account_id=account_id, at=at, currency=money.currency,
                         exponent=currency_exponent(money.currency), posted_minor=money.amount_minor)

    # --- operators ---

    def get_any(self, account_id: str) -> OpsAccountView:
        return ops_account_view(self._ledger.get_account(account_id))

    def freeze(self, operator: Caller, account_id: str) -> OpsAccountView:
        """No new debits until unfrozen; holds placed before may still be posted."""
        return ops_account_view(self._audited(operator, "account.freeze", account_id,
                                              lambda: self._ledger.freeze(account_id)))

    def unfreeze(self, operator: Caller, account_id: str) -> OpsAccountView:
        return ops_account_view(self._audited(operator, "account.unfreeze", account_id,
                                              lambda: self._ledger.unfreeze(account_id)))

    def close(self, operator: Caller, account_id: str) -> OpsAccountView:
        """Only an empty account closes (zero balance, no holds either way); closing is final."""
        return ops_account_view(self._audited(operator, "account.close", account_id,
                                              lambda: self._ledger.close(account_id)))

    def _audited(self, caller: Caller, action: str, account_id: str,
                 change: Callable[[], Account]) -> Account:
        target = f"account:{account_id}"
        try:
            account = change()
        except LedgerError as refusal:
            outcome = Outcome.FAILED if refusal.retryable else Outcome.DENIED
            self._audit.record(caller, action, target, outcome)
            raise
        except Exception:
            self._audit.record(caller, action, target, Outcome.FAILED)
            raise
        self._audit.record(caller, action, target, Outcome.SUCCEEDED)
        return account


def _owner(caller: Caller) -> Actor:
    """Every caller of the customer routes, client apps included, sees only what it owns."""
    return Actor(owner_id=caller.sub)
