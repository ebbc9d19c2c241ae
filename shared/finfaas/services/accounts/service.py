"""The accounts function's use cases: a caller's own accounts, balances and statements; ops controls.

Ownership: every customer-facing call passes Actor(owner_id=caller.sub) to the ledger, which answers
AccountNotFound for another owner's account exactly as for a missing one (no existence oracle).
Account ids are derived from (owner, Idempotency-Key), so a retried opening lands on the same
account even after the idempotency record is gone, and a crash between the two writes is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from finfaas.domain.errors import LedgerError
from finfaas.domain.ledger import (
    Account,
    AccountKind,
    Actor,
)
from finfaas.domain.money import currency_exponent
from finfaas.platform.audit import Outcome
from finfaas.platform.cursors import CursorCodec, InvalidCursor, binding
from finfaas.services.accounts.api import (
    AccountList,
    AccountView,
    BalanceAt,
    OpenAccountBody,
    OpsAccountView,
    PageQuery,
    Statement,
    account_view,
    ops_account_view,
    statement_view,
)
from finfaas.services.accounts.model import derived_account_id
from finfaas.services.accounts.ports import Audit, Ledger
from finfaas.services.customers.model import Caller

ledger_cursor_chars_max = 512  # the ledger's own cursor (a key and a balance) inside the sealed one
LIST_ROUTE = "GET /accounts"
STATEMENT_ROUTE = "GET /accounts/{account_id}/statement"
OPS_STATEMENT_ROUTE = "GET /_/ops/accounts/{account_id}/statement"


# --- use cases --------------------------------------------------------------------------------------


class AccountsService:
    """Customer-facing reads and openings, and operator controls, over the ledger; changes are audited."""

    def __init__(self, ledger: Ledger, audit: Audit, cursors: CursorCodec | None = None) -> None:
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

    def statement_of_any(self, operator: Caller, account_id: str, query: PageQuery) -> Statement:
        """Any account's statement, holds included, for operators (the cursor is bound to the operator)."""
        bound = binding(OPS_STATEMENT_ROUTE, operator.sub, account_id=account_id)
        page = self._ledger.statement(account_id, limit=query.limit,
                                      starting_after=self._opened(query.starting_after, bound))
        return statement_view(replace(page, next_cursor=self._sealed(page.next_cursor, bound)))

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
