"""The ledger's HTTP face for internal services and operators: request shapes, views, error table.

Money-moving calls carry the request's Idempotency-Key into the ledger's own transaction
(the platform's KeyInTransaction), so a transfer and its stored answer commit together or not at all:
no extra DynamoDB round trip on the happy path, and a retry after a lost answer replays it.

Amounts are integers of minor units (1050 = 10.50 USD) or plain decimal strings of major units
("10.50"), with an ISO 4217 currency; floats, signs, exponents and surplus decimals are refused.

Refusals by HTTP status (stable; the problem's `code` is the domain error's own code):

| status | codes |
| --- | --- |
| 404 | account_not_found, transfer_not_found |
| 409 | insufficient_funds, account_frozen, account_closed, pending_already_posted,
|     | pending_already_voided, pending_expired, already_reversed, exists_with_different_<field> |
| 422 | invalid_input and its kinds (invalid_amount, amount_too_large, too_many_decimals,
|     | unknown_currency, invalid_identifier, same_account, too_many_legs, duplicate_transfer_id,
|     | invalid_timeout, post_amount_exceeds_pending), currency_mismatch, not_pending, not_reversible |
| 503 | ledger_busy (Retry-After; the same request may be retried with the same key) |

409 means "not now, given the state of an account or transfer"; 422 means "never, as sent".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainValidator, StrictBool, StrictInt, StrictStr, WithJsonSchema

from finfaas.domain import errors as ledger_errors
from finfaas.domain.ledger import (
    Account,
    AccountKind,
    Actor,
    Transfer,
    description_chars_max,
    hold_timeout_seconds_max,
    identifier_chars_max,
    linked_legs_max,
    page_size_default,
    page_size_max,
    statement_cursor_chars_max,
)
from finfaas.domain.money import currency_exponent, transfer_amount_minor_max
from finfaas.platform.audit import ChainReport
from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import KeyInTransaction, OutboxAudit, StrictModel, TransactionalIdempotency
from finfaas.platform.idempotency import CompletionRecords, StoredResponse
from finfaas.services.ledger.check import (
    CheckTooLarge,
    LedgerScans,
    ReadBudget,
    ScannableAudit,
    check_store,
    online_check_records_max,
    online_check_seconds_max,
    verify_audit,
)
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.ledger.service import LedgerService, expiry_sweep_holds_max

JSON_MEDIA_TYPE = "application/json"
CUSTOMER_KIND = "customer"
CURRENCY_CODE_CHARS = 3
# A decimal string of major units: long enough for any amount up to transfer_amount_minor_max.
amount_text_chars_max = 64

Identifier = Annotated[str, Field(min_length=1, max_length=identifier_chars_max, pattern=r"^[A-Za-z0-9_-]+$")]
AMOUNT_DESCRIPTION = "minor units as an integer (1050), or major units as a decimal string ('10.50')"


def _amount_type(value: object) -> int | str:
    """Only the two accepted JSON types pass; the domain judges the value (sign, decimals, bounds)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected an integer of minor units or a decimal string of major units")
    if isinstance(value, str) and not 0 < len(value) <= amount_text_chars_max:
        raise ValueError(f"a decimal string of 1-{amount_text_chars_max} characters")
    return value


Amount = Annotated[int | str, PlainValidator(_amount_type), WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 1},
              {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "maxLength": amount_text_chars_max}],
    "description": AMOUNT_DESCRIPTION,
})]
def _amount_in_range(value: object) -> int | str:
    """As Amount, and an integer only within the domain's bounds (so an amount no ledger could hold is
    refused at parse time); the domain judges a decimal string with its currency."""
    checked = _amount_type(value)
    if isinstance(checked, int) and not 1 <= checked <= transfer_amount_minor_max:
        raise ValueError(f"minor units from 1 to {transfer_amount_minor_max}")
    return checked


# The amount of the money routes of other capabilities (transfers, payments): bounded in the schema too.
BoundedAmount = Annotated[int | str, PlainValidator(_amount_in_range), WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 1, "maximum": transfer_amount_minor_max},
              {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "maxLength": amount_text_chars_max}],
    "description": AMOUNT_DESCRIPTION,
})]


Currency = Annotated[StrictStr, Field(min_length=CURRENCY_CODE_CHARS, max_length=CURRENCY_CODE_CHARS,
                                      description="ISO 4217 code, e.g. USD")]
Metadata = Annotated[StrictStr, Field(max_length=description_chars_max)]
TimeoutSeconds = Annotated[StrictInt, Field(ge=0, le=hold_timeout_seconds_max,
                                            description="0: the hold never expires")]


# --- request shapes ---------------------------------------------------------------------------------


class TransferBody(StrictModel):
    """A posted transfer; transfer_id is the client's, so a retry can never move money twice."""

    transfer_id: Identifier
    debit_account_id: Identifier
    credit_account_id: Identifier
    amount: Amount
    currency: Currency
    metadata: Metadata = ""

    def request(self, pending: bool = False, timeout_seconds: int = 0) -> TransferRequest:
        return TransferRequest(self.debit_account_id, self.credit_account_id, self.amount, self.currency,
                               self.transfer_id, pending, timeout_seconds, self.metadata)


class HoldBody(TransferBody):
    """A pending transfer (hold): reserves funds until posted, voided or expired."""

    timeout_seconds: TimeoutSeconds = 0


class LegBody(TransferBody):
    """One leg of a linked batch; a leg may be a hold."""

    pending: StrictBool = False
    timeout_seconds: TimeoutSeconds = 0


class LinkedBody(StrictModel):
    """Legs that commit all together or not at all (fees, splits)."""

    transfers: list[LegBody] = Field(min_length=1, max_length=linked_legs_max)


class HoldTermsBody(StrictModel):
    """What the caller that placed a hold knows of it. A whole post that gives them is written without
    reading the hold, on condition that the hold (without timeout) is still pending on exactly these
    terms; otherwise the post goes as without them."""

    debit_account_id: Identifier
    credit_account_id: Identifier
    amount: Amount
    currency: Currency


class PostBody(StrictModel):
    """Posts a hold: all of it, or `amount` of it (the rest is released)."""

    transfer_id: Identifier
    amount: Amount | None = None
    currency: Currency | None = None
    hold: HoldTermsBody | None = None


class ResolutionBody(StrictModel):
    """Voids a hold or reverses a transfer; transfer_id names the new, resolving transfer."""

    transfer_id: Identifier


class CurrencyBody(StrictModel):
    currency: Currency


class AccountBody(StrictModel):
    """An account a service keeps on its own books (payments: a merchant's); idempotent on account_id."""

    account_id: Identifier
    owner_id: Identifier
    currency: Currency
    kind: Literal["MERCHANT"] = "MERCHANT"


class BatchQuery(StrictModel):
    batch_id: Identifier = Field(description="a linked batch's first leg")


class HoldsQuery(StrictModel):
    state: Literal["PENDING"] = Field(default="PENDING", description="open holds only")
    limit: int = Field(default=page_size_default, ge=1, le=page_size_max)
    starting_after: str | None = Field(default=None, min_length=1, max_length=statement_cursor_chars_max)


class ExpiryQuery(StrictModel):
    limit: int = Field(default=expiry_sweep_holds_max, ge=1, le=expiry_sweep_holds_max)


# --- views ------------------------------------------------------------------------------------------


class TransferView(BaseModel):
    transfer_id: str
    kind: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str
    exponent: int
    created_at: datetime
    metadata: str
    pending_id: str | None = None
    timeout_seconds: int = 0
    expires_at: datetime | None = None
    state: str | None = Field(default=None, description="holds: PENDING, POSTED, VOIDED or EXPIRED")
    resolved_by: str | None = None
    reversal_of: str | None = None
    reversed_by: str | None = None
    batch_id: str | None = None
    batch_size: int = 1


class TransferList(BaseModel):
    transfers: list[TransferView]


class HoldList(BaseModel):
    """Open holds, oldest first; pass next_cursor back as starting_after."""

    data: list[TransferView]
    has_more: bool
    next_cursor: str | None = None


class BalanceView(BaseModel):
    """Integer minor units of `currency` (10^exponent minor units make one major unit)."""

    account_id: str
    currency: str
    exponent: int
    kind: str
    status: str
    posted_minor: int = Field(description="credits posted less debits posted")
    pending_debits_minor: int
    pending_credits_minor: int
    available_minor: int = Field(description="what may be debited: posted less held, plus any overdraft")


class BalanceList(BaseModel):
    accounts: list[BalanceView]


def transfer_view(transfer: Transfer) -> TransferView:
    return TransferView(
        transfer_id=transfer.transfer_id, kind=transfer.kind.value,
        debit_account_id=transfer.debit_account_id, credit_account_id=transfer.credit_account_id,
        amount_minor=transfer.amount_minor, currency=transfer.currency,
        exponent=currency_exponent(transfer.currency), created_at=transfer.created_at,
        metadata=transfer.metadata, pending_id=transfer.pending_id, timeout_seconds=transfer.timeout_seconds,
        expires_at=transfer.expires_at, state=transfer.state.value if transfer.state else None,
        resolved_by=transfer.resolved_by, reversal_of=transfer.reversal_of, reversed_by=transfer.reversed_by,
        batch_id=transfer.batch_id, batch_size=transfer.batch_size,
    )


def balance_view(account: Account) -> BalanceView:
    return BalanceView(
        account_id=account.account_id, currency=account.currency,
        exponent=currency_exponent(account.currency), kind=account.kind.value, status=account.status.value,
        posted_minor=account.balance_minor, pending_debits_minor=account.debits_pending,
        pending_credits_minor=account.credits_pending,
        available_minor=account.available_minor,
    )


# --- answers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A rendered HTTP answer: exactly what is sent and what a replay of the key sends again."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)

    def stored(self) -> StoredResponse:
        return StoredResponse(self.status, self.body, {"Content-Type": JSON_MEDIA_TYPE, **self.headers})


def created(transfers: Sequence[Transfer]) -> Answer:
    """201 with the transfer (or, for a linked batch, every leg) and where to read it."""
    location = {"Location": f"/transfers/{transfers[0].transfer_id}"}
    if len(transfers) == 1:
        return Answer(201, transfer_view(transfers[0]).model_dump_json(), location)
    body = TransferList(transfers=[transfer_view(t) for t in transfers]).model_dump_json()
    return Answer(201, body, location)


def _created_stored(transfers: Sequence[Transfer]) -> StoredResponse:
    """The stored answer a key's completion record holds: the 201 the request gets."""
    return created(transfers).stored()


# --- use cases --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerCaller:
    """Who calls: internal services and operators act for the system; a customer only for itself."""

    sub: str
    kind: str

    @property
    def actor(self) -> Actor:
        return Actor(owner_id=self.sub) if self.kind == CUSTOMER_KIND else Actor.system()


class LedgerApi:
    """The ledger function's use cases; each money movement returns the Answer it commits."""

    def __init__(self, ledger: LedgerService, records: CompletionRecords | None) -> None:
        self._ledger = ledger
        self._records = records

    def transfer(self, caller: LedgerCaller, body: TransferBody,
                 key: TransactionalIdempotency | None = None,
                 audit: OutboxAudit | None = None) -> Answer:
        return created([self._ledger.transfer(body.request(), caller.actor, extra=self._extra(key, audit))])

    def hold(self, caller: LedgerCaller, body: HoldBody,
             key: TransactionalIdempotency | None = None,
             audit: OutboxAudit | None = None) -> Answer:
        request = body.request(pending=True, timeout_seconds=body.timeout_seconds)
        return created([self._ledger.transfer(request, caller.actor, extra=self._extra(key, audit))])

    def transfer_linked(self, caller: LedgerCaller, body: LinkedBody,
                        key: TransactionalIdempotency | None = None,
                        audit: OutboxAudit | None = None) -> Answer:
        requests = [leg.request(leg.pending, leg.timeout_seconds) for leg in body.transfers]
        return created(self._ledger.transfer_linked(requests, caller.actor, extra=self._extra(key, audit)))

    def post_pending(self, caller: LedgerCaller, pending_id: str, body: PostBody,
                     key: TransactionalIdempotency | None = None,
                     audit: OutboxAudit | None = None) -> Answer:
        hold = None
        if body.hold is not None:
            terms = body.hold
            hold = (terms.debit_account_id, terms.credit_account_id, terms.amount, terms.currency)
        posted = self._ledger.post_pending(pending_id, amount=body.amount, currency=body.currency,
                                           transfer_id=body.transfer_id, actor=caller.actor,
                                           extra=self._extra(key, audit), hold=hold)
        return created([posted])

    def void_pending(self, caller: LedgerCaller, pending_id: str, body: ResolutionBody,
                     key: TransactionalIdempotency | None = None,
                     audit: OutboxAudit | None = None) -> Answer:
        voided = self._ledger.void_pending(pending_id, transfer_id=body.transfer_id, actor=caller.actor,
                                           extra=self._extra(key, audit))
        return created([voided])

    def reverse(self, caller: LedgerCaller, transfer_id: str, body: ResolutionBody,
                key: TransactionalIdempotency | None = None,
                audit: OutboxAudit | None = None) -> Answer:
        reversal = self._ledger.reverse(transfer_id, transfer_id=body.transfer_id, actor=caller.actor,
                                        extra=self._extra(key, audit))
        return created([reversal])

    def get_transfer(self, caller: LedgerCaller, transfer_id: str) -> TransferView:
        return transfer_view(self._ledger.get_transfer(transfer_id, caller.actor))

    def batch(self, caller: LedgerCaller, query: BatchQuery) -> TransferList:
        legs = self._ledger.batch(query.batch_id, caller.actor)
        return TransferList(transfers=[transfer_view(t) for t in legs])

    def open_holds(self, account_id: str, query: HoldsQuery) -> HoldList:
        page = self._ledger.open_holds(account_id, limit=query.limit, starting_after=query.starting_after)
        return HoldList(data=[transfer_view(t) for t in page.items], has_more=page.has_more,
                        next_cursor=page.next_cursor)

    def balance(self, account_id: str) -> BalanceView:
        return balance_view(self._ledger.get_account(account_id))

    def expire_holds(self, limit: int) -> TransferList:
        return TransferList(transfers=[transfer_view(t) for t in self._ledger.expire_due_holds(limit)])

    def open_account(self, body: AccountBody) -> BalanceView:
        """Opens the account, or finds it when one with the same fields exists."""
        account = self._ledger.open_account(owner_id=body.owner_id, currency=body.currency,
                                            account_id=body.account_id, kind=AccountKind(body.kind))
        return balance_view(account)

    def ensure_system_accounts(self, currency: str) -> BalanceList:
        return BalanceList(accounts=[balance_view(a) for a in self._ledger.ensure_system_accounts(currency)])

    def _extra(self, key: TransactionalIdempotency | None,
               audit: OutboxAudit | None = None) -> KeyInTransaction[Sequence[Transfer]] | None:
        if key is None or self._records is None:
            return None  # then nothing carries the audit facts either: the platform appends them
        return KeyInTransaction(key, self._records, _created_stored, audit)


# --- error table ------------------------------------------------------------------------------------

_STATUS_BY_ERROR: dict[type[ledger_errors.LedgerError], int] = {
    ledger_errors.LedgerError: 422,
    ledger_errors.InvalidInput: 422,
    ledger_errors.CurrencyMismatch: 422,
    ledger_errors.NotPending: 422,
    ledger_errors.NotReversible: 422,
    ledger_errors.AccountNotFound: 404,
    ledger_errors.TransferNotFound: 404,
    ledger_errors.InsufficientFunds: 409,
    ledger_errors.AccountFrozen: 409,
    ledger_errors.AccountClosed: 409,
    ledger_errors.AccountNotEmpty: 409,
    ledger_errors.InvalidStatusChange: 409,
    ledger_errors.AccountExistsWithDifferentFields: 409,
    ledger_errors.PendingAlreadyPosted: 409,
    ledger_errors.PendingAlreadyVoided: 409,
    ledger_errors.PendingExpired: 409,
    ledger_errors.AlreadyReversed: 409,
    ledger_errors.ExistsWithDifferentFields: 409,
    ledger_errors.LedgerBusy: 503,
}


def _all_subclasses(cls: type[ledger_errors.LedgerError]) -> list[type[ledger_errors.LedgerError]]:
    found: list[type[ledger_errors.LedgerError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found


def _status_of(cls: type[ledger_errors.LedgerError]) -> int:
    return next(_STATUS_BY_ERROR[k] for k in cls.__mro__ if k in _STATUS_BY_ERROR)


def ledger_error_table() -> dict[type[BaseException], ErrorSpec]:
    """Every ledger error class -> its status and its own stable code."""
    classes: list[type[ledger_errors.LedgerError]] = [
        ledger_errors.LedgerError, *_all_subclasses(ledger_errors.LedgerError)]
    return {cls: ErrorSpec(_status_of(cls), cls.code, cls.code.replace("_", " ").capitalize())
            for cls in classes}


# --- operators' checks: `finfaas ledger check` and `finfaas audit verify`, online and bounded ----------

problems_listed_max = 50  # of a check's answer; the total is counted, the command line lists them all
CheckStatus = Literal["passed", "failed", "too_large"]
TOO_LARGE_DETAIL = ("{what} holds more than an online check reads ({records_max} records in "
                    "{seconds_max:g} s): run `{command}` against the stage's tables")


class LedgerCheckView(BaseModel):
    """The ledger check's result: `too_large` when the tables exceed an online check's budget."""

    status: CheckStatus
    accounts: int = 0
    transfers: int = 0
    entries: int = 0
    trial_balance_minor: dict[str, int] = Field(
        default_factory=dict, description="posted balances summed per currency (0 if clean)")
    problems: list[str] = Field(default_factory=list, description=f"the first {problems_listed_max}")
    problems_total: int = 0
    records_max: int = online_check_records_max
    seconds_max: float = online_check_seconds_max
    detail: str = ""


class ChainProblemView(BaseModel):
    seq: int
    kind: str
    detail: str


class ChainView(BaseModel):
    chain: str
    records: int
    head_seq: int
    ok: bool
    problems: list[ChainProblemView]


class AuditVerifyView(BaseModel):
    """Every audit chain's verification: `signatures_checked` is false when no audit key is configured."""

    status: CheckStatus
    chains: list[ChainView] = Field(default_factory=list)
    records: int = 0
    problems_total: int = 0
    signatures_checked: bool = False
    records_max: int = online_check_records_max
    seconds_max: float = online_check_seconds_max
    detail: str = ""


class LedgerChecks:
    """The ledger check and the audit log's verification, each within a budget of records and time."""

    def __init__(self, ledger: LedgerScans, audit: ScannableAudit, keyring: Mapping[str, bytes],
                 records_max: int = online_check_records_max,
                 seconds_max: float = online_check_seconds_max) -> None:
        self._ledger = ledger
        self._audit = audit
        self._keyring = keyring
        self._records_max = records_max
        self._seconds_max = seconds_max

    def ledger(self) -> LedgerCheckView:
        try:
            report = check_store(self._ledger, self._budget())
        except CheckTooLarge:
            return LedgerCheckView(status="too_large", **self._bounds("The ledger", "finfaas ledger check"))
        return LedgerCheckView(
            status="passed" if report.clean else "failed", accounts=report.accounts,
            transfers=report.transfers, entries=report.entries,
            trial_balance_minor=dict(sorted(report.balances_by_currency.items())),
            problems=report.problems[:problems_listed_max], problems_total=len(report.problems),
            records_max=self._records_max, seconds_max=self._seconds_max)

    def audit(self) -> AuditVerifyView:
        try:
            reports = verify_audit(self._audit, self._keyring, self._budget())
        except CheckTooLarge:
            return AuditVerifyView(status="too_large", signatures_checked=bool(self._keyring),
                                   **self._bounds("The audit log", "finfaas audit verify"))
        problems_total = sum(len(report.problems) for report in reports)
        return AuditVerifyView(
            status="failed" if problems_total else "passed", chains=_chain_views(reports),
            records=sum(report.records for report in reports), problems_total=problems_total,
            signatures_checked=bool(self._keyring), records_max=self._records_max,
            seconds_max=self._seconds_max)

    def _budget(self) -> ReadBudget:
        return ReadBudget(self._records_max, self._seconds_max)

    def _bounds(self, what: str, command: str) -> dict[str, Any]:
        detail = TOO_LARGE_DETAIL.format(what=what, records_max=self._records_max,
                                         seconds_max=self._seconds_max, command=command)
        return {"records_max": self._records_max, "seconds_max": self._seconds_max, "detail": detail}


def _chain_views(reports: Sequence[ChainReport]) -> list[ChainView]:
    """Every chain named; its problems listed up to problems_listed_max over all chains."""
    room = problems_listed_max
    views = []
    for report in reports:
        shown = report.problems[:room]
        room -= len(shown)
        views.append(ChainView(chain=report.chain, records=report.records, head_seq=report.head_seq,
                               ok=report.ok, problems=[ChainProblemView(seq=p.seq, kind=p.kind.value,
                                                                        detail=p.detail) for p in shown]))
    return views
