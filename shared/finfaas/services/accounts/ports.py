"""What accounts need from outside: the ledger's account use cases and an audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from finfaas.domain.ledger import Account, AccountKind, Actor, Page, StatementPage
from finfaas.domain.money import Money
from finfaas.platform.audit import Outcome
from finfaas.services.customers.model import Caller


class Ledger(Protocol):
    """The ledger's account use cases (services/ledger/service.py: LedgerService)."""

    def open_account(self, *, owner_id: str, currency: object, account_id: str | None = ...,
                     kind: AccountKind = ..., debits_must_not_exceed_credits: bool = ...,
                     overdraft_limit_minor: int = ...) -> Account: ...

    def get_account(self, account_id: str, actor: Actor = ...) -> Account: ...

    def list_accounts(self, owner_id: str, *, limit: int = ...,
                      starting_after: str | None = ...) -> Page[Account]: ...

    def statement(self, account_id: str, *, limit: int = ..., starting_after: str | None = ...,
                  actor: Actor = ...) -> StatementPage: ...

    def balance_at(self, account_id: str, at: datetime, actor: Actor = ...) -> Money: ...

    def freeze(self, account_id: str) -> Account: ...

    def unfreeze(self, account_id: str) -> Account: ...

    def close(self, account_id: str, actor: Actor = ...) -> Account: ...


class Audit(Protocol):
    """Records what a caller did and how it ended (services/customers/service.py: AuditTrail)."""

    def record(self, caller: Caller, action: str, target: str, outcome: Outcome) -> None: ...
