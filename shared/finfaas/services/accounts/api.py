"""The accounts function's HTTP shapes: bodies, queries, views, their builders and the error table."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from finfaas.domain import errors as ledger_errors
from finfaas.domain.ledger import (
    Account,
    StatementLine,
    StatementPage,
    page_size_default,
    page_size_max,
)
from finfaas.domain.money import currency_exponent
from finfaas.platform.cursors import cursor_chars_max
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.platform.pii import PiiKeyUnavailable
from finfaas.services.customers.errors import (
    CustomerNotFound,
    CustomerStoreUnavailable,
    InvalidProfile,
    ProfileNotFound,
)

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


# --- refusals ---------------------------------------------------------------------------------------


def _subclasses(cls: type[ledger_errors.LedgerError]) -> list[type[ledger_errors.LedgerError]]:
    found: list[type[ledger_errors.LedgerError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _title(code: str) -> str:
    return code.replace("_", " ").capitalize()


# Ledger refusals a client can act on, by HTTP status; each class's own code is the problem code.
_LEDGER_ERRORS_BY_STATUS: dict[int, tuple[type[ledger_errors.LedgerError], ...]] = {
    404: (ledger_errors.AccountNotFound,),
    409: (ledger_errors.AccountFrozen, ledger_errors.AccountClosed, ledger_errors.AccountNotEmpty,
          ledger_errors.InvalidStatusChange, ledger_errors.AccountExistsWithDifferentFields),
    422: (ledger_errors.InvalidInput, *_subclasses(ledger_errors.InvalidInput)),
    503: (ledger_errors.LedgerBusy,),
}
# The accounts function also serves the customer's profile, so the customers' refusals are here too.
ERRORS: dict[type[BaseException], ErrorSpec] = {
    **{cls: ErrorSpec(status, cls.code, _title(cls.code))
       for status, classes in _LEDGER_ERRORS_BY_STATUS.items() for cls in classes},
    CustomerNotFound: ErrorSpec(404, CustomerNotFound.code, "Customer not found"),
    ProfileNotFound: ErrorSpec(404, ProfileNotFound.code, "Profile not found"),
    InvalidProfile: ErrorSpec(422, InvalidProfile.code, "Invalid profile"),
    PiiKeyUnavailable: ErrorSpec(503, "pii_key_unavailable", "Encryption key unavailable"),
    CustomerStoreUnavailable: ErrorSpec(503, "customer_store_unavailable", "Customer store unavailable"),
}
