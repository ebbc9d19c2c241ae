"""The transfers function's use cases: accept a transfer, run its saga steps, show its status.

A transfer is an order (TransferOrder) kept by the transfers function and a saga execution of
infra/statemachines/transfer.asl.json kept by the orchestrator, named by the transfer id. The
saga calls back into this service for the steps that are the transfers function's own:

    validate  accounts exist and are open, same currency, the owner may debit the source,
              per-transfer and daily limits of the customer's tier (the day's total is reserved);
              acceptance already refused what these rules decided then, before writing anything,
              so this step refuses only what changed since
    screen    the risk function, behind a circuit breaker; when risk is failing, small transfers
              proceed flagged for later review and larger ones wait for an operator's decision
    complete  COMPLETED, with the transfer.completed event in the same write
    fail      FAILED (nothing moved) or COMPENSATED (the hold was voided), the day's total released
    attention NEEDS_ATTENTION: an operator must decide (e.g. the rail never confirmed either way)

Every step is idempotent on the transfer id (a step already recorded answers as it did), so the
orchestrator's retries, crashes and duplicate deliveries change nothing twice. Order changes are
conditional on the order's version; events go to the outbox in the same transaction.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field, PlainValidator, StrictStr, WithJsonSchema, model_validator

from finfaas.domain.creditor import Creditor, CreditorVault, SealedCreditor
from finfaas.domain.ledger import AccountKind, AccountStatus, system_account_id
from finfaas.domain.limits import (
    TIER_DEFAULT,
    PerTransferLimitExceeded,
    Tier,
    check_per_transfer,
    daily_headroom_minor,
    daily_limit_error,
    usage_day,
)
from finfaas.domain.money import currency_exponent, parse_amount, parse_currency, transfer_amount_minor_max
from finfaas.platform import jsonio
from finfaas.platform.http import StrictModel
from finfaas.platform.orchestrator_api import Orchestrator
from finfaas.platform.resilience import CircuitBreaker, CircuitOpen
from finfaas.platform.retry import SAVE_RACE_POLICY, Change, Unchanged, read_change_save

STATE_MACHINE = "transfer"
TRANSFER_ID_PREFIX = "tr_"
transfer_id_hex_chars = 32
identifier_chars_max = 64
amount_text_chars_max = 64  # a decimal string of major units; enough for any amount the domain allows
reference_chars_max = 140
failure_detail_chars_max = 1000
failure_code_chars_max = 64
steps_max = 40  # a saga records at most a dozen; a loop of operator decisions is bounded too
wait_seconds_max = 5.0  # GET ?wait=: a request holds a function thread at most this long
wait_poll_seconds = 0.1
# GET ?wait=: requests of one process that may hold a thread waiting at once. The saga's own steps
# arrive at the same few request threads (4 under the python3-http template's waitress), so waiters
# must never take them all; a request finding every slot taken answers at once, as with wait=0.
waiters_max = 2
restart_after_seconds = 5.0  # an ACCEPTED order older than this has its execution started again on read
save_attempts_max = 4
SAVE_POLICY = SAVE_RACE_POLICY.with_attempts(save_attempts_max)
degraded_auto_approve_major_default = 100
BANK_CODE_PATTERN = r"^[A-Z0-9]{4,11}$"
BANK_ACCOUNT_PATTERN = r"^[A-Za-z0-9]{4,34}$"
_FAILURE_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class TransferStatus(StrEnum):
    ACCEPTED = "ACCEPTED"  # recorded; the saga has not validated it yet
    PROCESSING = "PROCESSING"  # validated and screened; money is being reserved and moved
    AWAITING_REVIEW = "AWAITING_REVIEW"  # an operator must approve or reject it
    NEEDS_ATTENTION = "NEEDS_ATTENTION"  # an operator must say whether to post or void the hold
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"  # nothing moved
    COMPENSATED = "COMPENSATED"  # funds were reserved and released again

    @property
    def terminal(self) -> bool:
        return self in (TransferStatus.COMPLETED, TransferStatus.FAILED, TransferStatus.COMPENSATED)


class TaskKind(StrEnum):
    REVIEW = "review"  # approve | reject, before any money is reserved
    ATTENTION = "attention"  # post | void, with funds on hold


DECISIONS: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.REVIEW: ("approve", "reject"),
    TaskKind.ATTENTION: ("post", "void"),
}


# --- errors (each a stable problem code) ----------------------------------------------------------


class TransferError(Exception):
    code = "transfer_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TransferNotFound(TransferError):
    code = "transfer_not_found"


@dataclass(frozen=True)
class Acceptance:
    """A POST /transfers answered: the order as accepted, and whether an earlier request made it."""

    order: TransferOrder
    repeated: bool


class TransferExists(TransferError):
    """The transfer id (derived from the Idempotency-Key) was used for a different transfer."""

    code = "transfer_exists_with_different_fields"


class InvalidTransfer(TransferError):
    code = "invalid_transfer"


class ValidationRefused(TransferError):
    """A validation rule refuses the transfer: at acceptance nothing is recorded; in the saga's validate
    step the saga fails. `field` names the request field the refusal concerns, when there is one."""

    def __init__(self, code: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.field = field


class UnknownAccount(ValidationRefused):
    """Missing, not the caller's to debit, or a payee's account the caller may learn nothing about."""

    code = "account_not_found"

    def __init__(self, account_id: str, field: str) -> None:
        super().__init__(self.code, f"account {account_id} not found", field)


class InactiveAccount(ValidationRefused):
    """One of the caller's own accounts is frozen or closed."""

    code = "account_not_active"

    def __init__(self, detail: str, field: str) -> None:
        super().__init__(self.code, detail, field)


class WrongCurrency(ValidationRefused):
    """One of the caller's own accounts holds another currency than the transfer's."""

    code = "currency_mismatch"

    def __init__(self, detail: str, field: str) -> None:
        super().__init__(self.code, detail, field)


class OverTransferLimit(ValidationRefused):
    """The amount is above the per-transfer limit of the caller's tier."""

    code = "per_transfer_limit_exceeded"

    def __init__(self, detail: str) -> None:
        super().__init__(self.code, detail, "amount")


class NoDecisionPending(TransferError):
    code = "no_decision_pending"


class InvalidDecision(TransferError):
    code = "invalid_decision"


class OrchestratorUnavailable(TransferError):
    code = "orchestrator_unavailable"


class TransferStoreUnavailable(TransferError):
    code = "transfer_store_unavailable"


class ConcurrentUpdate(TransferError):
    """The order kept changing under this step; the saga retries it."""

    code = "transfer_busy"


# --- the order -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    outcome: str
    at: datetime
    detail: str = ""


@dataclass(frozen=True)
class TransferOrder:
    """A customer's transfer as the transfers function keeps it; `version` guards every change."""

    transfer_id: str
    owner_id: str
    debit_account_id: str
    credit_account_id: str  # the ledger side: the payee's account, or the settlement account
    amount_minor: int
    currency: str
    created_at: datetime
    status: TransferStatus = TransferStatus.ACCEPTED
    updated_at: datetime | None = None
    reference: str = ""
    creditor: SealedCreditor | None = None  # never in the clear: see domain/creditor.py
    version: int = 1
    tier: str | None = None
    usage_day: str | None = None  # set when the day's total was reserved (validated)
    screening: Mapping[str, Any] | None = None
    flags: tuple[str, ...] = ()
    failure: Mapping[str, str] | None = None
    task_token: str | None = None  # the operator decision the saga waits for
    task_kind: TaskKind | None = None
    steps: tuple[Step, ...] = ()

    @property
    def external(self) -> bool:
        return self.creditor is not None

    @property
    def destination(self) -> str:
        """What risk knows the payee by: the payee's keyed fingerprint, or the account id here."""
        return self.creditor.fingerprint if self.creditor else self.credit_account_id

    def identity(self) -> dict[str, Any]:
        """What a repeated request must repeat exactly."""
        return {
            "owner_id": self.owner_id,
            "debit_account_id": self.debit_account_id,
            "credit_account_id": self.credit_account_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "reference": self.reference,
            "creditor": self.creditor.identity() if self.creditor else None,
        }

    def changed(self, now: datetime, step: Step | None = None, **changes: Any) -> TransferOrder:
        """The next version, with a step appended to the history."""
        steps = self.steps if step is None else (*self.steps, step)[-steps_max:]
        return replace(self, version=self.version + 1, updated_at=now, steps=steps, **changes)


@dataclass(frozen=True)
class OrderEvent:
    """An outbox event written with an order change (transfer.*)."""

    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class DailyUsage:
    """The amount counted against the owner's UTC day in one currency."""

    owner_id: str
    day: str
    currency: str
    amount_minor: int
    headroom_minor: int  # the most the day's total may be before this amount is added


class UsageOutcome(StrEnum):
    RESERVED = "RESERVED"
    EXCEEDED = "EXCEEDED"
    CONFLICT = "CONFLICT"  # the order's version moved: read again


class TransferOrders(Protocol):
    """Orders, daily usage and tiers (DynamoDB: store/transfers_store.py; in memory below)."""

    def create(self, order: TransferOrder, event: OrderEvent) -> TransferOrder:
        """Write a new order with its event and return it (the same object); the existing order if the
        id is taken (nothing written)."""
        ...

    def get(self, transfer_id: str) -> TransferOrder | None: ...

    def save(self, order: TransferOrder, event: OrderEvent | None = None) -> bool:
        """Write order if the stored version is order.version - 1 (with event); False otherwise."""
        ...

    def reserve_usage(self, order: TransferOrder, usage: DailyUsage) -> UsageOutcome:
        """Save order (versioned) and add usage to the day's total if it stays within headroom."""
        ...

    def release_usage(self, order: TransferOrder, usage: DailyUsage, event: OrderEvent | None) -> bool:
        """Save order (versioned) with event and give usage back (once); False on a version conflict."""
        ...

    def tier_of(self, owner_id: str) -> Tier: ...

    def set_tier(self, owner_id: str, tier: Tier) -> None: ...


class InMemoryTransferOrders:
    """TransferOrders in dicts for unit tests; same contract as the DynamoDB store."""

    def __init__(self) -> None:
        self._orders: dict[str, TransferOrder] = {}
        self._totals: dict[tuple[str, str, str], int] = {}
        self._markers: set[tuple[str, str, str, str]] = set()
        self._tiers: dict[str, Tier] = {}
        self.events: list[OrderEvent] = []
        self._lock = threading.Lock()

    def create(self, order: TransferOrder, event: OrderEvent) -> TransferOrder:
        with self._lock:
            existing = self._orders.get(order.transfer_id)
            if existing is not None:
                return existing
            self._orders[order.transfer_id] = order
            self.events.append(event)
            return order

    def get(self, transfer_id: str) -> TransferOrder | None:
        with self._lock:
            return self._orders.get(transfer_id)

    def save(self, order: TransferOrder, event: OrderEvent | None = None) -> bool:
        with self._lock:
            return self._save(order, event)

    def _save(self, order: TransferOrder, event: OrderEvent | None) -> bool:
        stored = self._orders.get(order.transfer_id)
        if stored is None or stored.version != order.version - 1:
            return False
        self._orders[order.transfer_id] = order
        if event is not None:
            self.events.append(event)
        return True

    def reserve_usage(self, order: TransferOrder, usage: DailyUsage) -> UsageOutcome:
        with self._lock:
            stored = self._orders.get(order.transfer_id)
            if stored is None or stored.version != order.version - 1:
                return UsageOutcome.CONFLICT
            day = (usage.owner_id, usage.day, usage.currency)
            if self._totals.get(day, 0) > usage.headroom_minor:
                return UsageOutcome.EXCEEDED
            self._totals[day] = self._totals.get(day, 0) + usage.amount_minor
            self._markers.add((*day, order.transfer_id))
            self._orders[order.transfer_id] = order
            return UsageOutcome.RESERVED

    def release_usage(self, order: TransferOrder, usage: DailyUsage, event: OrderEvent | None) -> bool:
        with self._lock:
            marker = (usage.owner_id, usage.day, usage.currency, order.transfer_id)
            if not self._save(order, event):
                return False
            if marker in self._markers:
                self._markers.discard(marker)
                day = marker[:3]
                self._totals[day] = self._totals.get(day, 0) - usage.amount_minor
            return True

    def tier_of(self, owner_id: str) -> Tier:
        with self._lock:
            return self._tiers.get(owner_id, TIER_DEFAULT)

    def set_tier(self, owner_id: str, tier: Tier) -> None:
        with self._lock:
            self._tiers[owner_id] = tier

    def day_total(self, owner_id: str, day: str, currency: str) -> int:
        with self._lock:
            return self._totals.get((owner_id, day, currency), 0)


# --- collaborators ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountInfo:
    account_id: str
    owner_id: str
    currency: str
    kind: str
    status: str


class AccountDirectory(Protocol):
    """Ledger accounts as validation reads them."""

    def account(self, account_id: str) -> AccountInfo | None: ...


class LedgerAccounts:
    """AccountDirectory over a LedgerRepository (the DynamoDB ledger store, or the reference ledger)."""

    def __init__(self, repository: Any) -> None:
        self._repository = repository

    def account(self, account_id: str) -> AccountInfo | None:
        found = self._repository.get_account(account_id)
        if found is None:
            return None
        return AccountInfo(
            found.account_id, found.owner_id, found.currency, found.kind.value, found.status.value
        )


class RiskAssessor(Protocol):
    def assess(self, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TransfersSettings:
    """The product's knobs; the function reads them from its environment."""

    degraded_auto_approve_major: int = degraded_auto_approve_major_default
    wait_seconds_max: float = wait_seconds_max
    wait_poll_seconds: float = wait_poll_seconds
    waiters_max: int = waiters_max
    restart_after_seconds: float = restart_after_seconds

    def __post_init__(self) -> None:
        if self.waiters_max < 0 or self.wait_poll_seconds <= 0:
            raise ValueError("waiters_max must be >= 0 and wait_poll_seconds > 0")

    def degraded_auto_approve_minor(self, currency: str) -> int:
        return self.degraded_auto_approve_major * 10 ** currency_exponent(currency)


# --- HTTP shapes -------------------------------------------------------------------------------------

Identifier = Annotated[str, Field(min_length=1, max_length=identifier_chars_max, pattern=r"^[A-Za-z0-9_-]+$")]


def _amount_in_range(value: object) -> int | str:
    """Only the two JSON types pass, and an integer only within the domain's bounds (so an amount no
    ledger could hold is refused at parse time); the domain judges a decimal string with its currency."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected an integer of minor units or a decimal string of major units")
    if isinstance(value, int) and not 1 <= value <= transfer_amount_minor_max:
        raise ValueError(f"minor units from 1 to {transfer_amount_minor_max}")
    if isinstance(value, str) and not 0 < len(value) <= amount_text_chars_max:
        raise ValueError(f"a decimal string of 1-{amount_text_chars_max} characters")
    return value


Amount = Annotated[int | str, PlainValidator(_amount_in_range), WithJsonSchema({
    "anyOf": [{"type": "integer", "minimum": 1, "maximum": transfer_amount_minor_max},
              {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "maxLength": amount_text_chars_max}],
    "description": "minor units as an integer (1050), or major units as a decimal string ('10.50')",
})]


class CreditorBody(StrictModel):
    """A payee at another bank: its bank code (BIC-like), account number and name."""

    bank_code: Annotated[str, Field(pattern=BANK_CODE_PATTERN)]
    account_number: Annotated[str, Field(pattern=BANK_ACCOUNT_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=140)]


class NewTransferBody(StrictModel):
    """From one of the caller's accounts to another account here (credit_account_id) or at another
    bank (creditor); exactly one of the two."""

    debit_account_id: Identifier
    credit_account_id: Identifier | None = None
    creditor: CreditorBody | None = None
    amount: Amount
    currency: Annotated[StrictStr, Field(min_length=3, max_length=3)]
    reference: Annotated[str, Field(max_length=reference_chars_max)] = ""

    @model_validator(mode="after")
    def _one_destination(self) -> NewTransferBody:
        if (self.credit_account_id is None) == (self.creditor is None):
            raise ValueError("give exactly one of credit_account_id and creditor")
        if self.credit_account_id == self.debit_account_id:
            raise ValueError("credit_account_id must differ from debit_account_id")
        return self


class StepBody(StrictModel):
    transfer_id: Identifier


class SagaError(StrictModel):
    """What a Catch put in the state: ASL's {"Error", "Cause"}."""

    Error: Annotated[str, Field(min_length=1, max_length=256)]
    Cause: Annotated[str, Field(max_length=64 * 1024)] | None = None


class FailBody(StrictModel):
    transfer_id: Identifier
    outcome: Literal["failed", "compensated"]
    error: SagaError


class AttentionBody(StrictModel):
    transfer_id: Identifier
    error: SagaError


class TaskMessage(StrictModel):
    """A callback task's queue message (the orchestrator's sqs:sendMessage.waitForTaskToken)."""

    task_token: Annotated[str, Field(min_length=1, max_length=1024)]
    transfer_id: Identifier
    kind: TaskKind


class DecisionBody(StrictModel):
    decision: Literal["approve", "reject", "post", "void"]
    note: Annotated[str, Field(max_length=500)] = ""


class TierBody(StrictModel):
    tier: Tier


class WaitQuery(StrictModel):
    wait: Annotated[
        float,
        Field(
            ge=0,
            le=wait_seconds_max,
            description=(
                "seconds to wait for a final status; when the function already holds its most "
                "waiting requests, the current status comes back at once, as with wait=0"
            ),
        ),
    ] = 0


class StepView(BaseModel):
    name: str
    outcome: str
    at: datetime
    detail: str = ""


class TransferView(BaseModel):
    transfer_id: str
    status: TransferStatus
    debit_account_id: str
    credit_account_id: str | None = None
    creditor: dict[str, str] | None = None
    amount_minor: int
    currency: str
    exponent: int
    reference: str
    created_at: datetime
    updated_at: datetime | None = None
    flags: list[str] = Field(default_factory=list)
    screening: dict[str, Any] | None = None
    failure: dict[str, str] | None = None
    decision_pending: TaskKind | None = None
    steps: list[StepView] = Field(default_factory=list)


class Accepted(BaseModel):
    transfer_id: str
    status: TransferStatus
    status_url: str


def transfer_view(order: TransferOrder) -> TransferView:
    creditor = order.creditor.masked() if order.creditor is not None else None
    return TransferView(
        transfer_id=order.transfer_id,
        status=order.status,
        debit_account_id=order.debit_account_id,
        credit_account_id=None if order.external else order.credit_account_id,
        creditor=creditor,
        amount_minor=order.amount_minor,
        currency=order.currency,
        exponent=currency_exponent(order.currency),
        reference=order.reference,
        created_at=order.created_at,
        updated_at=order.updated_at,
        flags=list(order.flags),
        screening=dict(order.screening) if order.screening else None,
        failure=dict(order.failure) if order.failure else None,
        decision_pending=order.task_kind if order.task_token else None,
        steps=[StepView(name=s.name, outcome=s.outcome, at=s.at, detail=s.detail) for s in order.steps],
    )


# --- helpers -----------------------------------------------------------------------------------------


def transfer_id_for(owner_id: str, idempotency_key: str) -> str:
    """Derived from (owner, Idempotency-Key): a retry after any crash lands on the same transfer."""
    digest = hashlib.sha256(f"{owner_id}\x00{idempotency_key}".encode()).hexdigest()
    return TRANSFER_ID_PREFIX + digest[:transfer_id_hex_chars]


def saga_input(order: TransferOrder) -> dict[str, Any]:
    """The execution's input: everything the ledger and rail steps need, nothing they may not see.
    The payee travels sealed (only the rail opens it) with its masked display form."""
    creditor = order.creditor.in_flight() if order.creditor is not None else None
    return {
        "transfer_id": order.transfer_id,
        "debit_account_id": order.debit_account_id,
        "credit_account_id": order.credit_account_id,
        "amount_minor": order.amount_minor,
        "currency": order.currency,
        "external": order.external,
        "creditor": creditor,
    }


def event_data(order: TransferOrder, failure: Mapping[str, str] | None = None) -> dict[str, Any]:
    """transfer.* event data (events/schemas): amounts as decimal strings so no reader rounds them."""
    data: dict[str, Any] = {
        "transfer_id": order.transfer_id,
        "debit_account_id": order.debit_account_id,
        "credit_account_id": order.credit_account_id,
        "amount_minor": str(order.amount_minor),
        "currency": order.currency,
    }
    if order.creditor is not None:
        data["creditor"] = order.creditor.masked()
    if failure is not None:
        data["failure"] = dict(failure)
    return data


def failure_from(error: SagaError) -> dict[str, str]:
    """A stable {code, detail} from the error a saga state caught."""
    name, cause = error.Error, error.Cause or ""
    if name.startswith("States.Http.StatusCode."):
        return _http_failure(name, cause)
    known = {
        "States.Timeout": "timeout",
        "States.HeartbeatTimeout": "timeout",
        "States.Http.Socket": "service_unreachable",
    }
    code = known.get(name) or _snake(name.rsplit(".", 1)[-1])
    return {"code": code, "detail": (cause or name)[:failure_detail_chars_max]}


def _http_failure(name: str, cause: str) -> dict[str, str]:
    body: Any = None
    try:
        body = jsonio.loads(cause).get("ResponseBody")
    except (ValueError, AttributeError):
        pass
    code = body.get("code") if isinstance(body, dict) else None
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(code, str) or not _FAILURE_CODE.match(code):
        code = f"http_{name.rsplit('.', 1)[-1]}"
    return {"code": code, "detail": str(detail or cause or name)[:failure_detail_chars_max]}


def _snake(name: str) -> str:
    text = re.sub(r"[^a-z0-9_]", "_", _CAMEL_BOUNDARY.sub("_", name).lower()).strip("_") or "failed"
    text = text if text[0].isalpha() else f"e_{text}"
    return text[:failure_code_chars_max]


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- use cases ---------------------------------------------------------------------------------------


class FinalNotices:
    """Wakes this process's waiting status requests the moment this process makes their transfer final.

    The saga's last step runs in the transfers function, so with one replica a waiting request hears
    of the final status at once instead of at its next poll; with several, a waiter on another
    replica still sees it at its next poll (the order store stays the only truth)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[str, tuple[threading.Event, int]] = {}

    @contextmanager
    def watching(self, transfer_id: str) -> Iterator[threading.Event]:
        with self._lock:
            event, watchers = self._watched.get(transfer_id, (threading.Event(), 0))
            self._watched[transfer_id] = (event, watchers + 1)
        try:
            yield event
        finally:
            with self._lock:
                event, watchers = self._watched[transfer_id]
                if watchers == 1:
                    del self._watched[transfer_id]
                else:
                    self._watched[transfer_id] = (event, watchers - 1)

    def finished(self, transfer_id: str) -> None:
        with self._lock:
            watched = self._watched.get(transfer_id)
        if watched is not None:
            watched[0].set()

    def watched(self) -> int:
        with self._lock:
            return len(self._watched)


_R = TypeVar("_R")
_W = TypeVar("_W")
_Answer = dict[str, Any]  # a saga step's output


@dataclass(frozen=True)
class _Reservation:
    """A validated order and the day's usage it reserves, saved together."""

    order: TransferOrder
    usage: DailyUsage
    tier: Tier


@dataclass(frozen=True)
class _Finish:
    """A final status to save, with its event; `release` gives the day's usage back."""

    before: TransferOrder
    after: TransferOrder
    event: OrderEvent
    release: bool


class TransfersService:
    """The transfers function's business; every collaborator is injected."""

    def __init__(
        self,
        orders: TransferOrders,
        accounts: AccountDirectory,
        risk: RiskAssessor,
        orchestrator: Orchestrator,
        *,
        breaker: CircuitBreaker | None = None,
        settings: TransfersSettings = TransfersSettings(),
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], None] | None = None,
        vault: CreditorVault | None = None,
    ) -> None:
        self._orders = orders
        self._vault = vault  # seals payees of external transfers; None refuses them
        self._accounts = accounts
        self._risk = risk
        self._orchestrator = orchestrator
        self._breaker = breaker or CircuitBreaker("risk")
        self._settings = settings
        self._clock = clock
        self._sleep = sleep  # None: pause on the transfer's final notice, at most one poll interval
        self._notices = FinalNotices()
        self._waiters = threading.BoundedSemaphore(settings.waiters_max)
        self._status_reads = 0
        self._status_reads_lock = threading.Lock()

    # -- the app's API ----------------------------------------------------------------------------

    def accept(self, owner_id: str, idempotency_key: str, body: NewTransferBody) -> Acceptance:
        """Check the transfer, record it (transfer.accepted) and start its saga; both are idempotent.

        The order's id is derived from (owner, Idempotency-Key) and its write is conditional on that
        id being new, so the order itself is the key's record: a repeat finds it (and starts the saga
        again, which is idempotent by name), a different request under the same key is refused.
        Whatever the request and the caller's accounts already decide is refused before anything is
        written (ValidationRefused); the saga checks again, as the accounts may change meanwhile.
        """
        now = self._clock()
        order = self._new_order(owner_id, idempotency_key, body, now)
        try:
            self._checked(order)
        except ValidationRefused:
            # A repeat of an accepted request answers as the first did, even if an account changed since.
            stored = self._orders.get(order.transfer_id)
            if stored is None:
                raise
            return self._repeated(order, stored)
        stored = self._orders.create(order, OrderEvent("transfer.accepted", event_data(order)))
        return self._repeated(order, stored)

    def get(self, transfer_id: str, owner_id: str | None, wait_seconds: float = 0) -> TransferOrder:
        """The order (a customer sees only their own); with wait_seconds, until it is final or time is up.
        Only `waiters_max` requests wait at once; any other answers at once, never holding a thread."""
        order = self._status_read(transfer_id, owner_id)
        self._restart_if_stalled(order)
        if order.status.terminal or wait_seconds <= 0:
            return order
        if not self._waiters.acquire(blocking=False):
            return order
        try:
            return self._until_final(order, owner_id, min(wait_seconds, self._settings.wait_seconds_max))
        finally:
            self._waiters.release()

    def status_waiting(self) -> int:
        """Transfers that status requests in this process are waiting on right now."""
        return self._notices.watched()

    def status_reads(self) -> int:
        """Order reads made by get() in this process so far (a waiting request reads once per poll)."""
        with self._status_reads_lock:
            return self._status_reads

    def _until_final(self, order: TransferOrder, owner_id: str | None, wait_seconds: float) -> TransferOrder:
        # Bounded twice: by the monotonic deadline, and by the poll count so an injected sleep ends too.
        deadline = time.monotonic() + wait_seconds
        with self._notices.watching(order.transfer_id) as finished:
            for _ in range(math.ceil(wait_seconds / self._settings.wait_poll_seconds)):
                if order.status.terminal or time.monotonic() >= deadline:
                    break
                self._pause(finished, min(self._settings.wait_poll_seconds, deadline - time.monotonic()))
                order = self._status_read(order.transfer_id, owner_id)
        return order

    def _pause(self, finished: threading.Event, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        if self._sleep is not None:
            self._sleep(seconds)
        elif finished.is_set():  # heard already (and the order read since): back to polling
            time.sleep(seconds)
        else:
            finished.wait(seconds)

    def _status_read(self, transfer_id: str, owner_id: str | None) -> TransferOrder:
        with self._status_reads_lock:
            self._status_reads += 1
        return self._visible(transfer_id, owner_id)

    def set_tier(self, owner_id: str, tier: Tier) -> None:
        self._orders.set_tier(owner_id, tier)

    # -- saga steps -------------------------------------------------------------------------------

    def validate(self, transfer_id: str) -> dict[str, Any]:
        """Accounts, ownership, currency and limits; reserves the amount in the day's total."""

        def validated(order: TransferOrder) -> Unchanged[_Answer] | Change[_Reservation, _Answer]:
            if order.usage_day is not None or order.status is not TransferStatus.ACCEPTED:
                return Unchanged({"transfer_id": transfer_id, "tier": order.tier, "validated": True})
            tier = self._checked(order)
            now = self._clock()
            usage = DailyUsage(
                order.owner_id,
                usage_day(now),
                order.currency,
                order.amount_minor,
                daily_headroom_minor(tier, order.amount_minor, order.currency),
            )
            changed = order.changed(
                now,
                Step("validate", "passed", now, f"tier {tier.value}"),
                tier=tier.value,
                usage_day=usage.day,
            )
            result = {"transfer_id": transfer_id, "tier": tier.value, "validated": True}
            return Change(_Reservation(changed, usage, tier), result)

        def reserved(reservation: _Reservation) -> bool:
            outcome = self._orders.reserve_usage(reservation.order, reservation.usage)
            if outcome is UsageOutcome.EXCEEDED:
                error = daily_limit_error(reservation.tier, reservation.order.currency)
                raise ValidationRefused(error.code, error.detail)
            return outcome is UsageOutcome.RESERVED

        return self._read_change_save(
            transfer_id, validated, reserved, f"transfer {transfer_id} kept changing during validation"
        )

    def screen(self, transfer_id: str) -> dict[str, Any]:
        """The risk decision (approve, review, decline), recorded once; degraded when risk is failing."""

        def screened(order: TransferOrder) -> Unchanged[_Answer] | Change[TransferOrder, _Answer]:
            if order.screening is not None:
                return Unchanged(dict(order.screening))
            screening, flags = self._screening(order)
            now = self._clock()
            detail = ", ".join(screening["reasons"]) or "no rule flagged it"
            changed = order.changed(
                now,
                Step("screen", screening["decision"], now, detail),
                screening=screening,
                flags=tuple(dict.fromkeys((*order.flags, *flags))),
                status=TransferStatus.PROCESSING,
            )
            return Change(changed, screening)

        return self._read_change_save(
            transfer_id, screened, self._orders.save, f"transfer {transfer_id} kept changing during screening"
        )

    def complete(self, transfer_id: str) -> dict[str, Any]:
        """COMPLETED, with transfer.completed; a second call changes nothing."""
        return self._finish(transfer_id, TransferStatus.COMPLETED, None)

    def fail(self, transfer_id: str, outcome: str, error: SagaError) -> dict[str, Any]:
        """FAILED or COMPENSATED with its event, the day's total given back; a second call changes nothing."""
        status = TransferStatus.COMPENSATED if outcome == "compensated" else TransferStatus.FAILED
        return self._finish(transfer_id, status, failure_from(error))

    def flag_attention(self, transfer_id: str, error: SagaError) -> dict[str, Any]:
        """NEEDS_ATTENTION: the saga waits for an operator (post or void the hold)."""
        failure = failure_from(error)

        def flagged(order: TransferOrder) -> Unchanged[_Answer] | Change[TransferOrder, _Answer]:
            if order.status.terminal or (
                order.status is TransferStatus.NEEDS_ATTENTION and order.failure == failure
            ):
                return Unchanged({"transfer_id": transfer_id, "status": order.status.value})
            now = self._clock()
            changed = order.changed(
                now,
                Step("attention", "needed", now, failure["detail"]),
                status=TransferStatus.NEEDS_ATTENTION,
                failure=failure,
            )
            return Change(changed, {"transfer_id": transfer_id, "status": changed.status.value})

        return self._read_change_save(
            transfer_id, flagged, self._orders.save, f"transfer {transfer_id} kept changing"
        )

    def take_task(self, message: TaskMessage) -> str:
        """Keep the token of an operator decision the saga waits for; a forged or stale one is dropped."""
        execution = f"{STATE_MACHINE}:{message.transfer_id}"
        if _token_execution(message.task_token) != execution or not self._orchestrator.heartbeat(
            message.task_token
        ):
            return "ignored"
        status = (
            TransferStatus.AWAITING_REVIEW
            if message.kind is TaskKind.REVIEW
            else TransferStatus.NEEDS_ATTENTION
        )

        def waiting(order: TransferOrder) -> Unchanged[str] | Change[TransferOrder, str]:
            if order.task_token == message.task_token or order.status.terminal:
                return Unchanged("kept")
            now = self._clock()
            changed = order.changed(
                now,
                Step(f"{message.kind.value}_requested", "waiting", now),
                task_token=message.task_token,
                task_kind=message.kind,
                status=status,
            )
            return Change(changed, "kept")

        return self._read_change_save(
            message.transfer_id, waiting, self._orders.save, f"transfer {message.transfer_id} kept changing"
        )

    def decide(self, transfer_id: str, body: DecisionBody, operator: str) -> TransferOrder:
        """An operator's decision for the saga (review: approve|reject; attention: post|void)."""
        from finfaas.services.suite_clients import TaskNotWaiting

        order = self._require(transfer_id)
        if order.task_token is None or order.task_kind is None:
            raise NoDecisionPending(f"transfer {transfer_id} waits for no decision")
        if body.decision not in DECISIONS[order.task_kind]:
            raise InvalidDecision(
                f"a {order.task_kind.value} takes one of {', '.join(DECISIONS[order.task_kind])}"
            )
        try:
            self._orchestrator.succeed(
                order.task_token, {"decision": body.decision, "note": body.note, "operator": operator}
            )
        except TaskNotWaiting:
            raise NoDecisionPending(f"the saga of {transfer_id} no longer waits for this decision") from None
        return self._record_decision(transfer_id, order.task_token, body, operator)

    # -- internals --------------------------------------------------------------------------------

    def _new_order(
        self, owner_id: str, idempotency_key: str, body: NewTransferBody, now: datetime
    ) -> TransferOrder:
        currency = parse_currency(body.currency)
        amount_minor = parse_amount(body.amount, currency)
        transfer_id = transfer_id_for(owner_id, idempotency_key)
        creditor = None
        credit_account_id = body.credit_account_id
        if body.creditor is not None:
            creditor = self._sealed(transfer_id, body.creditor)
            credit_account_id = system_account_id(AccountKind.SETTLEMENT, currency)
        assert credit_account_id is not None
        return TransferOrder(
            transfer_id=transfer_id,
            owner_id=owner_id,
            debit_account_id=body.debit_account_id,
            credit_account_id=credit_account_id,
            amount_minor=amount_minor,
            currency=currency,
            created_at=now,
            updated_at=now,
            reference=body.reference,
            creditor=creditor,
            steps=(Step("accept", "accepted", now),),
        )

    def _repeated(self, order: TransferOrder, stored: TransferOrder) -> Acceptance:
        """The acceptance of the order stored under this key, if it is this very request, its saga started.
        A repeat answers as the first did (ACCEPTED), whatever the order's status is now."""
        if stored.identity() != order.identity():
            raise TransferExists(f"transfer {order.transfer_id} exists with different fields; use a new key")
        self._start(stored)
        return Acceptance(order, repeated=stored is not order)

    def _sealed(self, transfer_id: str, body: CreditorBody) -> SealedCreditor:
        """The payee sealed under the transfer's id (one KMS data key); the plaintext goes no further."""
        from finfaas.platform.pii import PiiKeyUnavailable

        if self._vault is None:
            raise PiiKeyUnavailable("no key to seal a payee with: external transfers are unavailable")
        return self._vault.seal(transfer_id, Creditor(body.bank_code, body.account_number, body.name))

    def _start(self, order: TransferOrder) -> None:
        from finfaas.services.suite_clients import ServiceUnreachable

        try:
            self._orchestrator.start(STATE_MACHINE, order.transfer_id, saga_input(order))
        except (ServiceUnreachable, ValueError) as error:
            raise OrchestratorUnavailable(
                f"the transfer is recorded but its saga did not start ({error}); "
                "retry with the same Idempotency-Key"
            ) from None

    def _restart_if_stalled(self, order: TransferOrder) -> None:
        """An ACCEPTED order whose start was lost (a crash, the orchestrator away) is started on read."""
        if order.status is not TransferStatus.ACCEPTED:
            return
        age = self._clock() - order.created_at
        if age > timedelta(seconds=self._settings.restart_after_seconds):
            try:
                self._start(order)
            except OrchestratorUnavailable:
                pass  # the next read tries again

    def _visible(self, transfer_id: str, owner_id: str | None) -> TransferOrder:
        order = self._orders.get(transfer_id)
        if order is None or (owner_id is not None and order.owner_id != owner_id):
            raise TransferNotFound(f"transfer {transfer_id} not found")
        return order

    def _require(self, transfer_id: str) -> TransferOrder:
        return self._visible(transfer_id, None)

    def _checked(self, order: TransferOrder) -> Tier:
        """The owner's tier once every validation rule passes; ValidationRefused naming the field otherwise.

        At most one read per account and one of the tier, each consistent: acceptance runs this before
        anything is written, and the saga's validate step runs it again before reserving the amount."""
        debit = self._accounts.account(order.debit_account_id)
        _check_debit_account(order, debit)
        if not order.external:
            _check_credit_account(order, self._accounts.account(order.credit_account_id))
        tier = self._orders.tier_of(order.owner_id)
        try:
            check_per_transfer(tier, order.amount_minor, order.currency)
        except PerTransferLimitExceeded as error:
            raise OverTransferLimit(error.detail) from None
        return tier

    def _screening(self, order: TransferOrder) -> tuple[dict[str, Any], tuple[str, ...]]:
        request = {
            "assessment_id": order.transfer_id,
            "customer_id": order.owner_id,
            "debit_account_id": order.debit_account_id,
            "destination": order.destination,
            "amount_minor": order.amount_minor,
            "currency": order.currency,
            "external": order.external,
        }
        try:
            answer = self._breaker.call(lambda: self._risk.assess(request))
        except CircuitOpen:
            return self._degraded(order, "risk circuit open")
        except Exception as error:  # any failure of the dependency degrades; it is counted by the breaker
            return self._degraded(order, f"risk unavailable: {type(error).__name__}")
        decision = answer.get("decision")
        if decision not in ("approve", "review", "decline"):
            return self._degraded(order, "risk answered without a decision")
        reasons = [str(r) for r in answer.get("reasons", [])]
        flags = ("risk_review",) if decision == "review" else ()
        return {
            "decision": decision,
            "score": int(answer.get("score", 0)),
            "reasons": reasons,
            "degraded": False,
        }, flags

    def _degraded(self, order: TransferOrder, why: str) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Risk is failing: small transfers go on flagged for later review; larger ones wait for ops."""
        small = order.amount_minor <= self._settings.degraded_auto_approve_minor(order.currency)
        decision = "approve" if small else "review"
        return {
            "decision": decision,
            "score": 0,
            "reasons": ["risk_unavailable"],
            "degraded": True,
            "detail": why,
        }, ("risk_unavailable", "review_later" if small else "ops_review")

    def _finish(
        self, transfer_id: str, status: TransferStatus, failure: dict[str, str] | None
    ) -> dict[str, Any]:

        def finished(order: TransferOrder) -> Unchanged[_Answer] | Change[_Finish, _Answer]:
            if order.status.terminal:
                return Unchanged({"transfer_id": transfer_id, "status": order.status.value})
            now = self._clock()
            detail = failure["detail"] if failure else ""
            changed = order.changed(
                now,
                Step(status.value.lower(), status.value, now, detail),
                status=status,
                failure=failure,
                task_token=None,
                task_kind=None,
            )
            event = OrderEvent(f"transfer.{status.value.lower()}", event_data(order, failure))
            finish = _Finish(order, changed, event, release=status is not TransferStatus.COMPLETED)
            return Change(finish, {"transfer_id": transfer_id, "status": status.value})

        def saved(finish: _Finish) -> bool:
            if not self._saved_with_usage(finish):
                return False
            self._notices.finished(transfer_id)
            return True

        return self._read_change_save(transfer_id, finished, saved, f"transfer {transfer_id} kept changing")

    def _saved_with_usage(self, finish: _Finish) -> bool:
        order = finish.before
        if not finish.release or order.usage_day is None:
            return self._orders.save(finish.after, finish.event)
        usage = DailyUsage(order.owner_id, order.usage_day, order.currency, order.amount_minor, 0)
        return self._orders.release_usage(finish.after, usage, finish.event)

    def _read_change_save(
        self,
        transfer_id: str,
        change: Callable[[TransferOrder], Unchanged[_R] | Change[_W, _R]],
        save: Callable[[_W], bool],
        kept_changing: str,
    ) -> _R:
        """The order read again after each lost race (platform.retry.read_change_save)."""
        return read_change_save(
            lambda: self._require(transfer_id), change, save, policy=SAVE_POLICY,
            exhausted=lambda: ConcurrentUpdate(kept_changing),
        )

    def _record_decision(
        self, transfer_id: str, token: str, body: DecisionBody, operator: str
    ) -> TransferOrder:

        def decided(order: TransferOrder) -> Unchanged[TransferOrder] | Change[TransferOrder, TransferOrder]:
            if order.task_token != token:
                return Unchanged(order)
            now = self._clock()
            status = (
                TransferStatus.PROCESSING if body.decision in ("approve", "post", "void") else order.status
            )
            changed = order.changed(
                now,
                Step("decision", body.decision, now, f"{operator}: {body.note}".strip()),
                task_token=None,
                task_kind=None,
                status=status,
            )
            return Change(changed, changed)

        return self._read_change_save(
            transfer_id, decided, self._orders.save, f"transfer {transfer_id} kept changing"
        )


def _check_debit_account(order: TransferOrder, debit: AccountInfo | None) -> None:
    """The source must be an open customer account of the order's owner, in the transfer's currency."""
    field = "debit_account_id"
    if debit is None or debit.owner_id != order.owner_id or debit.kind != AccountKind.CUSTOMER.value:
        raise UnknownAccount(order.debit_account_id, field)
    if debit.status != AccountStatus.OPEN.value:
        raise InactiveAccount(f"account {order.debit_account_id} is {debit.status}", field)
    if debit.currency != order.currency:
        raise WrongCurrency(f"account {order.debit_account_id} holds {debit.currency}", "currency")


def _check_credit_account(order: TransferOrder, credit: AccountInfo | None) -> None:
    """The payee must be an open customer account in the transfer's currency. Of an account that is not
    the owner's, nothing more is said than of a missing one: its status and currency stay private."""
    field = "credit_account_id"
    if credit is None or credit.kind != AccountKind.CUSTOMER.value:
        raise UnknownAccount(order.credit_account_id, field)
    usable = credit.status == AccountStatus.OPEN.value and credit.currency == order.currency
    if credit.owner_id != order.owner_id and not usable:
        raise UnknownAccount(order.credit_account_id, field)
    if credit.status != AccountStatus.OPEN.value:
        raise InactiveAccount(f"account {order.credit_account_id} is {credit.status}", field)
    if credit.currency != order.currency:
        raise WrongCurrency(f"account {order.credit_account_id} holds {credit.currency}", field)


def _token_execution(task_token: str) -> str | None:
    """The execution id a task token names, or None for a malformed token."""
    from finfaas.workflow.interpreter import parse_task_token

    parsed = parse_task_token(task_token)
    return parsed[0] if parsed else None
