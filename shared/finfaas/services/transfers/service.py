"""The transfers function's use cases: accept a transfer, run its saga steps, show its status.

A transfer is an order (TransferOrder) kept by the transfers function and a saga execution of
infra/statemachines/transfer.asl.json kept by the orchestrator, named by the transfer id. The
saga calls back into this service for the steps that are the transfers function's own:

    validate  accounts exist and are open, same currency, the owner may debit the source,
              per-transfer and daily limits of the customer's tier; acceptance already refused what
              these rules decided then, before writing anything, so this step refuses only what
              changed since. Then risk's decision, behind a circuit breaker (when risk is failing,
              small transfers proceed flagged for later review and larger ones wait for an
              operator's decision); the day's total, the order and its decision in one write. In the
              function, risk's rules run in process: risk's items are read in the validation's one
              read and its decision and count are written in that one write
    complete  COMPLETED, with the transfer.completed event in the same write
    fail      FAILED (nothing moved) or COMPENSATED (the hold was voided), the day's total released
    attention NEEDS_ATTENTION: an operator must decide (e.g. the rail never confirmed either way)

Every step is idempotent on the transfer id (a step already recorded answers as it did), so the
orchestrator's retries, crashes and duplicate deliveries change nothing twice. Order changes are
conditional on the order's version; events go to the outbox in the same transaction.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from finfaas.domain.creditor import Creditor, CreditorVault, SealedCreditor
from finfaas.domain.ledger import AccountKind, AccountStatus, system_account_id
from finfaas.domain.limits import (
    PerTransferLimitExceeded,
    Tier,
    check_per_transfer,
    daily_headroom_minor,
    daily_limit_error,
    usage_day,
)
from finfaas.domain.money import currency_exponent, parse_amount, parse_currency
from finfaas.domain.risk_rules import RiskRequest
from finfaas.platform import jsonio
from finfaas.platform.crashpoints import crash_point
from finfaas.platform.cursors import CursorCodec, InvalidCursor, binding
from finfaas.platform.logging import get_logger
from finfaas.platform.orchestrator_api import Orchestrator
from finfaas.platform.resilience import CircuitBreaker, CircuitOpen
from finfaas.platform.retry import SAVE_RACE_POLICY, Change, Unchanged, read_change_save
from finfaas.services.risk.model import AssessmentToRecord, Lookup, hour_window
from finfaas.services.risk.ports import RiskDecider, RiskRepository, record_refused
from finfaas.services.transfers.api import (
    CreditorBody,
    DecisionBody,
    NewTransferBody,
    OpsTransferList,
    OpsTransferListQuery,
    SagaError,
    SummaryQuery,
    TaskMessage,
    TransferList,
    TransferListQuery,
    TransferSummary,
    ops_transfer_view,
    transfer_view,
)
from finfaas.services.transfers.errors import (
    ConcurrentUpdate,
    DecisionAlreadyRecorded,
    InactiveAccount,
    InvalidDecision,
    NoDecisionPending,
    OrchestratorUnavailable,
    OverTransferLimit,
    SecondApproverRequired,
    TransferExists,
    TransferNotFound,
    UnknownAccount,
    ValidationRefused,
    WrongCurrency,
)
from finfaas.services.transfers.model import (
    DECISION_RECORDED,
    DECISION_REPORTING,
    DECISIONS,
    IN_FLIGHT_STATUSES,
    MONEY_MOVING_DECISIONS,
    OPEN_STATUSES,
    STATE_MACHINE,
    Acceptance,
    AccountInfo,
    DailyUsage,
    ListPosition,
    OrderEvent,
    OrderFilter,
    OrderPage,
    Screening,
    StatusAnswer,
    Step,
    TaskKind,
    TransferOrder,
    TransferStatus,
    UsageOutcome,
    ValidationFacts,
    ValidationHint,
    event_data,
    saga_input,
    transfer_id_for,
    wait_seconds_max,
)
from finfaas.services.transfers.ports import (
    AccountDirectory,
    RiskAssessor,
    TransferOrders,
    ValidationReads,
)
from finfaas.services.transfers.watcher import StatusWatcher, WatcherCounts, watch_tick_seconds

failure_detail_chars_max = 1000
failure_code_chars_max = 64
# GET ?wait=: requests of one process that may wait at once, each parking one request thread. The
# function's WSGI server runs this many threads more than the template's (functions/transfers/handler.py),
# so the saga's steps always find a free one; a request finding every slot taken answers at once.
waiters_max = 256
restart_after_seconds = 5.0  # an ACCEPTED order older than this has its execution started again on read
save_attempts_max = 4
SAVE_POLICY = SAVE_RACE_POLICY.with_attempts(save_attempts_max)
degraded_auto_approve_major_default = 100
# Approving a review or posting a held transfer above this many major units of its currency takes two
# different operators (maker-checker); the function's TRANSFERS_SECOND_APPROVAL_ABOVE_MAJOR.
second_approval_above_major_default = 100_000
# The decision is still being weighed: a first operator's proposal waits for a second operator.
APPROVAL_PROPOSED = "proposed"
_FAILURE_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TRANSFER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LIST_ROUTE = "GET /transfers"
OPS_LIST_ROUTE = "GET /_/ops/transfers"
position_time_chars_max = 40  # an ISO 8601 moment with microseconds and offset
# Orders kept after validation for their Complete (LastWritten): a few minutes of sagas at tens a second,
# a few MB; a saga whose order was dropped reads it, as every one did before.
written_orders_max = 4096
# Where a test may stop the transfers process: the saga took the operator's decision, nothing else did.
DECISION_REPORTED_CRASH_POINT = "transfers.decision.reported"
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_log = get_logger("transfers")


class LedgerAccounts:
    """AccountDirectory over a LedgerRepository (the DynamoDB ledger store, or the reference ledger)."""

    def __init__(self, repository: Any) -> None:
        self._repository = repository

    def accounts(self, account_ids: Sequence[str]) -> dict[str, AccountInfo]:
        found = self._repository.get_accounts(account_ids)
        return {a.account_id: AccountInfo.of(a) for a in found.values()}


class ComposedValidationReads:
    """ValidationReads from the order store, the account directory and, given one, risk's repository: one
    read each (fakes, tests)."""

    def __init__(self, accounts: AccountDirectory, orders: TransferOrders, risk: RiskRepository | None = None
                 ) -> None:
        self._accounts = accounts
        self._orders = orders
        self._risk = risk

    def facts(
        self,
        owner_id: str,
        account_ids: Sequence[str],
        day: str | None,
        currency: str,
        transfer_id: str | None = None,
        screening: Screening | None = None,
    ) -> ValidationFacts:
        order = None if transfer_id is None else self._orders.get(transfer_id)
        found = self._accounts.accounts(account_ids) if account_ids else {}
        total_minor = 0 if day is None else self._orders.day_total_minor(owner_id, day, currency)
        risk = None
        if screening is not None and self._risk is not None:
            risk = self._risk.look_up(screening.request, screening.window)
        return ValidationFacts(found, self._orders.tier_of(owner_id), total_minor, order, risk)


class LastWritten:
    """The orders this process validated last, by id, so the step that finishes one (Complete) can write
    it without reading it first. Bounded (oldest dropped); each is taken once, as a write built on it is
    conditional on its version: an order changed since by another process or step is then read anew."""

    def __init__(self, orders_max: int = written_orders_max) -> None:
        self._orders: OrderedDict[str, TransferOrder] = OrderedDict()
        self._orders_max = orders_max
        self._lock = threading.Lock()

    def keep(self, order: TransferOrder) -> None:
        with self._lock:
            self._orders[order.transfer_id] = order
            self._orders.move_to_end(order.transfer_id)
            while len(self._orders) > self._orders_max:
                self._orders.popitem(last=False)

    def take(self, transfer_id: str) -> TransferOrder | None:
        with self._lock:
            return self._orders.pop(transfer_id, None)


@dataclass(frozen=True)
class TransfersSettings:
    """The product's knobs; the function reads them from its environment."""

    degraded_auto_approve_major: int = degraded_auto_approve_major_default
    wait_seconds_max: float = wait_seconds_max
    watch_tick_seconds: float = watch_tick_seconds
    waiters_max: int = waiters_max
    restart_after_seconds: float = restart_after_seconds
    second_approval_above_major: int = second_approval_above_major_default

    def __post_init__(self) -> None:
        if self.waiters_max < 0 or self.watch_tick_seconds <= 0:
            raise ValueError("waiters_max must be >= 0 and watch_tick_seconds > 0")
        if self.second_approval_above_major < 0:
            raise ValueError("second_approval_above_major must be >= 0")

    def second_approval_above_minor(self, currency: str) -> int:
        return self.second_approval_above_major * 10 ** currency_exponent(currency)

    def degraded_auto_approve_minor(self, currency: str) -> int:
        return self.degraded_auto_approve_major * 10 ** currency_exponent(currency)


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


def _text(moment: datetime | None) -> str | None:
    """A filter's moment as a cursor binds it: the same instant binds the same, whatever its offset."""
    return None if moment is None else moment.astimezone(UTC).isoformat()


# --- use cases ---------------------------------------------------------------------------------------


_R = TypeVar("_R")
_W = TypeVar("_W")
_Answer = dict[str, Any]  # a saga step's output


@dataclass(frozen=True)
class _Reservation:
    """A validated and screened order and the day's usage it reserves, saved together; without usage,
    an order validated earlier that only gains its screening."""

    order: TransferOrder
    usage: DailyUsage | None
    tier: Tier | None
    risk: AssessmentToRecord | None = None  # risk's decision, written with the order


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
        vault: CreditorVault | None = None,
        watcher: StatusWatcher | None = None,
        cursors: CursorCodec | None = None,
        reads: ValidationReads | None = None,
        risk_in_process: RiskDecider | None = None,
    ) -> None:
        self._orders = orders
        # Given risk's use case in process (production), validation reads risk's items with its own and
        # writes the decision with the order: no call to the risk function, no read or write of risk's own.
        self._risk_in_process = risk_in_process
        # Production passes the one-call DynamoDB reader (store/transfer_reads.py).
        self._reads = reads or ComposedValidationReads(accounts, orders)
        # Production passes the stage's keyed codec; a fresh key suits one process (tests).
        self._cursors = cursors or CursorCodec.generate()
        self._vault = vault  # seals payees of external transfers; None refuses them
        self._risk = risk
        self._orchestrator = orchestrator
        self._breaker = breaker or CircuitBreaker("risk")
        self._settings = settings
        self._clock = clock
        self._watcher = watcher or StatusWatcher(
            orders.get_many, waiters_max=settings.waiters_max, tick_seconds=settings.watch_tick_seconds
        )
        self._status_reads = 0
        self._status_reads_lock = threading.Lock()
        self._written = LastWritten()

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

    def get(self, transfer_id: str, owner_id: str | None) -> TransferOrder:
        """The order (a customer sees only their own)."""
        return self.follow(transfer_id, owner_id).order

    def follow(self, transfer_id: str, owner_id: str | None, wait_seconds: float = 0) -> StatusAnswer:
        """The order, read once; with wait_seconds (at most wait_seconds_max), once it is final or time
        is up, as the process's status watcher sees it. Past `waiters_max` waiting requests, at once."""
        order = self._status_read(transfer_id, owner_id)
        self._restart_if_stalled(order)
        if order.status.terminal or wait_seconds <= 0:
            return StatusAnswer(order)
        followed = self._watcher.wait(order, min(wait_seconds, self._settings.wait_seconds_max))
        return StatusAnswer(order, busy=True) if followed is None else StatusAnswer(followed)

    def status_watch(self) -> WatcherCounts:
        """Requests waiting now, the transfers they wait on, and the watcher's batch reads so far."""
        return self._watcher.counts()

    def status_reads(self) -> int:
        """Order reads made by follow() in this process so far: one per status request."""
        with self._status_reads_lock:
            return self._status_reads

    def _status_read(self, transfer_id: str, owner_id: str | None) -> TransferOrder:
        with self._status_reads_lock:
            self._status_reads += 1
        return self._visible(transfer_id, owner_id)

    def set_tier(self, owner_id: str, tier: Tier) -> None:
        self._orders.set_tier(owner_id, tier)

    # -- saga steps -------------------------------------------------------------------------------

    def validate(self, transfer_id: str, hint: ValidationHint | None = None) -> dict[str, Any]:
        """Accounts, ownership, currency and limits, then the risk decision (approve, review, decline):
        the day's total, the order and its decision in one write, one step of the saga.

        Risk decides before that write, so it also sees a transfer the day's total then refuses (the
        reads already refuse one that could not fit). A repeat answers what was recorded; an order
        validated but not yet screened (saved by an earlier definition) is screened and saved alone.
        With the saga input's `hint`, the order is read in the same call as its accounts, tier and day's
        total, and, with risk in process, what risk looks up (its decision then rides in the order's
        write); an order that does not match the hint, and every read after a lost race, read on their
        own, and a decision that no longer holds at the write is made again the usual way."""
        read_ahead: list[tuple[str, ValidationFacts, Screening | None]] = []
        screen_alone: list[bool] = []  # set once the joined decision lost a race: risk's own way from then

        def read() -> TransferOrder:
            if hint is None or read_ahead:
                return self._require(transfer_id)
            now = self._clock()
            day, screening = usage_day(now), self._screening_read(transfer_id, hint, now)
            facts = self._reads.facts(hint.owner_id, hint.account_ids, day, hint.currency, transfer_id,
                                      screening)
            if facts.order is None:
                raise TransferNotFound(f"transfer {transfer_id} not found")
            read_ahead.append((day, facts, screening))
            return facts.order

        def facts_for(order: TransferOrder, day: str) -> ValidationFacts | None:
            """What was read with the order, if it is this very version, day and the hint's transfer."""
            if not read_ahead or hint is None:
                return None
            read_day, facts, _ = read_ahead[-1]
            fresh = facts.order is not None and facts.order.version == order.version
            return facts if fresh and read_day == day and hint.matches(order) else None

        def risk_read_for(order: TransferOrder, facts: ValidationFacts | None) -> tuple[Lookup, str] | None:
            """Risk's lookup read with the order, if it looked this transfer's payee up and still holds."""
            if facts is None or facts.risk is None or screen_alone:
                return None
            screening = read_ahead[-1][2]
            if screening is None or screening.request.destination != order.destination:
                return None  # a payee at another bank: risk knows it by a fingerprint the hint lacks
            return facts.risk, screening.window

        def checked(order: TransferOrder) -> Unchanged[_Answer] | Change[_Reservation, _Answer]:
            if order.usage_day is not None or order.status is not TransferStatus.ACCEPTED:
                if order.screening is not None or order.status.terminal:
                    # A final order is not screened any more: without a decision the saga records failure,
                    # which changes nothing on a final order.
                    return Unchanged(_validated(order.tier, order.screening or {}, transfer_id))
                screened = self._screened(order)
                answer = _validated(order.tier, dict(screened.screening or {}), transfer_id)
                return Change(_Reservation(screened, None, None), answer)
            now = self._clock()
            day = usage_day(now)
            facts = facts_for(order, day)
            tier, used_minor = self._checked(order, day, facts)
            usage = DailyUsage(
                order.owner_id,
                day,
                order.currency,
                order.amount_minor,
                daily_headroom_minor(tier, order.amount_minor, order.currency),
            )
            if used_minor > usage.headroom_minor:
                error = daily_limit_error(tier, order.currency)
                raise ValidationRefused(error.code, error.detail)
            step = Step("validate", "passed", now, f"tier {tier.value}")
            passed = order.changed(now, step, tier=tier.value, usage_day=usage.day)
            risk_read = risk_read_for(order, facts)
            pending = None
            if risk_read is None:
                screened = self._screened(passed)
            else:
                screened, pending = self._screened_on(passed, *risk_read)
            # One write, so one version: the screening joins the version validation made.
            screened = replace(screened, version=passed.version)
            answer = _validated(tier.value, dict(screened.screening or {}), transfer_id)
            return Change(_Reservation(screened, usage, tier, pending), answer)

        def saved(reservation: _Reservation) -> bool:
            if reservation.usage is None or reservation.tier is None:
                return self._orders.save(reservation.order)
            outcome = self._orders.reserve_usage(reservation.order, reservation.usage, reservation.risk)
            if outcome is UsageOutcome.EXCEEDED:
                if reservation.risk is not None:
                    record_refused(self._breaker, self._risk_in_process, reservation.risk, _log, "transfer")
                error = daily_limit_error(reservation.tier, reservation.order.currency)
                raise ValidationRefused(error.code, error.detail)
            if outcome is UsageOutcome.SCREENING_MOVED:
                screen_alone.append(True)
                return False
            if outcome is UsageOutcome.RESERVED:
                self._written.keep(reservation.order)
            return outcome is UsageOutcome.RESERVED

        return read_change_save(
            read, checked, saved, policy=SAVE_POLICY,
            exhausted=lambda: ConcurrentUpdate(f"transfer {transfer_id} kept changing during validation"),
        )

    def _screening_read(self, transfer_id: str, hint: ValidationHint, now: datetime) -> Screening | None:
        """What risk looks up for the hint's transfer, when risk runs in this process: its keys name the
        transfer, its customer, source and payee (the credit account; the amount plays no part)."""
        if self._risk_in_process is None or len(hint.account_ids) < 2:
            return None
        debit_account_id, credit_account_id = hint.account_ids[:2]
        keys = RiskRequest(transfer_id, hint.owner_id, debit_account_id, credit_account_id, 0, hint.currency)
        return Screening(keys, hour_window(now))

    def _screened(self, order: TransferOrder) -> TransferOrder:
        """The order with the risk decision (degraded when risk is failing) and PROCESSING; not saved."""
        return self._with_screening(order, *self._screening(order))

    def _screened_on(self, order: TransferOrder, known: Lookup, window: str
                     ) -> tuple[TransferOrder, AssessmentToRecord | None]:
        """_screened with risk's use case in process on what was read with the order: the order, and the
        decision still to write with it (None when it was recorded already, or risk degraded)."""
        decider = self._risk_in_process
        assert decider is not None
        request = _risk_request(order)
        try:
            decided = self._breaker.call(lambda: decider.decide(request, known, window))
        except CircuitOpen:
            return self._with_screening(order, *self._degraded(order, "risk circuit open")), None
        except Exception as error:  # any failure of the dependency degrades; it is counted by the breaker
            why = f"risk unavailable: {type(error).__name__}"
            return self._with_screening(order, *self._degraded(order, why)), None
        pending = decided if isinstance(decided, AssessmentToRecord) else None
        assessment = decided.assessment if isinstance(decided, AssessmentToRecord) else decided
        answer = {"decision": assessment.decision.value, "score": assessment.score,
                  "reasons": list(assessment.reasons)}
        return self._with_screening(order, *self._screening_of(order, answer)), pending

    def _with_screening(self, order: TransferOrder, screening: dict[str, Any], flags: tuple[str, ...]
                        ) -> TransferOrder:
        now = self._clock()
        detail = ", ".join(screening["reasons"]) or "no rule flagged it"
        return order.changed(
            now,
            Step("screen", screening["decision"], now, detail),
            screening=screening,
            flags=tuple(dict.fromkeys((*order.flags, *flags))),
            status=TransferStatus.PROCESSING,
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
        """An operator's decision for the saga (review: approve|reject; attention: post|void).

        The decision is written on the order before it is reported, so a retry after a lost reply (any
        key) reports the very same thing again and answers as the first did; a different one is refused.
        Approve or post above the second-approval amount is only proposed, until another operator agrees.
        """
        from finfaas.services.suite_clients import TaskNotWaiting

        decision = self._read_change_save(
            transfer_id,
            lambda order: _decision_to_report(order, body, operator, self._clock(), self._settings),
            self._orders.save,
            f"transfer {transfer_id} kept changing",
        )
        if decision["state"] in (DECISION_RECORDED, APPROVAL_PROPOSED):
            return self._require(transfer_id)
        try:
            # The same output on every retry: the orchestrator answers a repeated equal report 200,
            # even after the saga moved on, and refuses any other once one was accepted.
            output = {name: decision[name] for name in ("decision", "note", "operator")}
            self._orchestrator.succeed(decision["token"], output)
        except TaskNotWaiting:
            self._forget_decision(transfer_id, decision)
            raise NoDecisionPending(f"the saga of {transfer_id} no longer waits for this decision") from None
        crash_point(DECISION_REPORTED_CRASH_POINT)  # tests: the saga has it, the order and the reply not
        return self._record_decision(transfer_id, decision)

    # -- lists ------------------------------------------------------------------------------------

    def list_mine(self, owner_id: str, query: TransferListQuery) -> TransferList:
        """The owner's transfers newest first; a page may hold fewer than `limit` when the filters
        matched little of what the store examined (has_more says whether to go on)."""
        where = OrderFilter(frozenset(query.status), query.account, query.created_after, query.created_before)
        bound = binding(LIST_ROUTE, owner_id, status=",".join(sorted(set(query.status))),
                        account=query.account, created_after=_text(query.created_after),
                        created_before=_text(query.created_before))
        after = self._opened(query.starting_after, bound)
        page = self._orders.list_by_owner(owner_id, where, query.limit, after)
        return TransferList(data=[transfer_view(o) for o in page.orders], **self._next(page, bound))

    def list_open(self, operator: str, query: OpsTransferListQuery) -> OpsTransferList:
        """Transfers not yet final in one status, oldest first (operators)."""
        status = TransferStatus(query.status)
        where = OrderFilter(frozenset({status}), None, query.created_after, query.created_before)
        bound = binding(OPS_LIST_ROUTE, operator, status=status.value,
                        created_after=_text(query.created_after), created_before=_text(query.created_before))
        page = self._orders.list_open(status, where, query.limit, self._opened(query.starting_after, bound))
        return OpsTransferList(data=[ops_transfer_view(o) for o in page.orders], **self._next(page, bound))

    def summary(self, query: SummaryQuery) -> TransferSummary:
        """Counts of the transfers not yet final per status, and of those in flight longer than asked."""
        now = self._clock()
        counts = {status: self._orders.count_open(status) for status in OPEN_STATUSES}
        older_than = now - timedelta(seconds=query.in_flight_older_than_s)
        older = [self._orders.count_open(status, older_than) for status in IN_FLIGHT_STATUSES]
        return TransferSummary(
            as_of=now,
            counts={status.value: counted.count for status, counted in counts.items()},
            in_flight_older_than_s=query.in_flight_older_than_s,
            in_flight_older=sum(counted.count for counted in older),
            complete=all(counted.complete for counted in [*counts.values(), *older]),
        )

    def _opened(self, cursor: str | None, bound: dict[str, str]) -> ListPosition | None:
        """The position inside a client's sealed cursor; InvalidCursor unless ours, for this query."""
        if cursor is None:
            return None
        inner = self._cursors.open(cursor, bound)
        if not (isinstance(inner, list) and len(inner) == 2 and all(isinstance(v, str) for v in inner)
                and len(inner[0]) <= position_time_chars_max and _TRANSFER_ID.match(inner[1])):
            raise InvalidCursor("not a cursor of this list")
        try:
            created_at = datetime.fromisoformat(inner[0])
        except ValueError:
            raise InvalidCursor("not a cursor of this list") from None
        if created_at.tzinfo is None:
            raise InvalidCursor("not a cursor of this list")
        return ListPosition(created_at, inner[1])

    def _next(self, page: OrderPage, bound: dict[str, str]) -> dict[str, Any]:
        after = page.resume_after
        if after is None:
            return {"has_more": False, "next_cursor": None}
        sealed = self._cursors.seal([after.created_at.isoformat(), after.transfer_id], bound)
        return {"has_more": True, "next_cursor": sealed}

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
            self._orchestrator.start(
                STATE_MACHINE, order.transfer_id, saga_input(order), reference=order.transfer_id
            )
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

    def _checked(
        self, order: TransferOrder, day: str | None = None, facts: ValidationFacts | None = None
    ) -> tuple[Tier, int]:
        """The owner's tier and (with a day) the day's total so far once every validation rule passes;
        ValidationRefused naming the field otherwise.

        One consistent read of both accounts, the tier and the day's total: acceptance runs this before
        anything is written, and the saga's validate step runs it again before reserving the amount
        (given `facts` already read with the order, it reads nothing)."""
        wanted = [order.debit_account_id]
        if not order.external:
            wanted.append(order.credit_account_id)
        if facts is None:
            facts = self._reads.facts(order.owner_id, wanted, day, order.currency)
        _check_debit_account(order, facts.accounts.get(order.debit_account_id))
        if not order.external:
            _check_credit_account(order, facts.accounts.get(order.credit_account_id))
        try:
            check_per_transfer(facts.tier, order.amount_minor, order.currency)
        except PerTransferLimitExceeded as error:
            raise OverTransferLimit(error.detail) from None
        return facts.tier, facts.day_total_minor

    def _screening(self, order: TransferOrder) -> tuple[dict[str, Any], tuple[str, ...]]:
        request = _risk_request(order)
        body = {"assessment_id": request.assessment_id, "customer_id": request.customer_id,
                "debit_account_id": request.debit_account_id, "destination": request.destination,
                "amount_minor": request.amount_minor, "currency": request.currency,
                "external": request.external}
        try:
            answer = self._breaker.call(lambda: self._risk.assess(body))
        except CircuitOpen:
            return self._degraded(order, "risk circuit open")
        except Exception as error:  # any failure of the dependency degrades; it is counted by the breaker
            return self._degraded(order, f"risk unavailable: {type(error).__name__}")
        return self._screening_of(order, answer)

    def _screening_of(self, order: TransferOrder, answer: Mapping[str, Any]
                      ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The screening recorded on the order from risk's answer (decision, score, reasons)."""
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
            self._watcher.finished(finish.after)
            return True

        def read() -> TransferOrder:
            # The order as this process last wrote it, if it did: the write is conditional on its version,
            # so an order changed since (elsewhere) loses the race and is read from the store.
            written = self._written.take(transfer_id)
            return written if written is not None else self._require(transfer_id)

        return read_change_save(
            read, finished, saved, policy=SAVE_POLICY,
            exhausted=lambda: ConcurrentUpdate(f"transfer {transfer_id} kept changing"),
        )

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

    def _record_decision(self, transfer_id: str, decision: Mapping[str, str]) -> TransferOrder:
        """The reported decision as taken: a step, and the order no longer waits for it."""

        def decided(order: TransferOrder) -> Unchanged[TransferOrder] | Change[TransferOrder, TransferOrder]:
            current = order.decision
            if current is None or current["token"] != decision["token"]:
                return Unchanged(order)
            if current["state"] == DECISION_RECORDED:
                return Unchanged(order)
            now = self._clock()
            waits = order.task_token == decision["token"]
            proceeds = decision["decision"] in ("approve", "post", "void")
            # The saga may have moved on (even finished) before this write: it owns the status then.
            moves_on = waits and proceeds and not order.status.terminal
            status = TransferStatus.PROCESSING if moves_on else order.status
            operators = decision["operator"]
            if decision.get("proposed_by"):
                operators = f"{decision['proposed_by']} and {decision['operator']}"
            note = f"{operators}: {decision['note']}".strip()
            changed = order.changed(
                now,
                Step("decision", decision["decision"], now, note),
                task_token=None if waits else order.task_token,
                task_kind=None if waits else order.task_kind,
                status=status,
                decision={**current, "state": DECISION_RECORDED},
                pending_approval=None,
            )
            return Change(changed, changed)

        return self._read_change_save(
            transfer_id, decided, self._orders.save, f"transfer {transfer_id} kept changing"
        )

    def _forget_decision(self, transfer_id: str, decision: Mapping[str, str]) -> None:
        """A decision the saga refused (it stopped waiting first) is not kept as if it had been taken."""

        def forgotten(order: TransferOrder) -> Unchanged[None] | Change[TransferOrder, None]:
            if order.decision != decision:
                return Unchanged(None)
            return Change(order.changed(self._clock(), None, decision=None), None)

        self._read_change_save(
            transfer_id, forgotten, self._orders.save, f"transfer {transfer_id} kept changing"
        )


def _decision_to_report(
    order: TransferOrder, body: DecisionBody, operator: str, now: datetime, settings: TransfersSettings
) -> Unchanged[Mapping[str, str]] | Change[TransferOrder, Mapping[str, str]]:
    """The decision to report for the order's task: the one already written (a retry), this one, or
    this one proposed (state APPROVAL_PROPOSED) while it waits for a second operator."""
    written = order.decision
    if written is not None and (order.task_token is None or written["token"] == order.task_token):
        if written["decision"] != body.decision:
            raise DecisionAlreadyRecorded(
                f"transfer {order.transfer_id} was already decided: {written['decision']}"
            )
        return Unchanged(written)
    if order.task_token is None or order.task_kind is None:
        raise NoDecisionPending(f"transfer {order.transfer_id} waits for no decision")
    if body.decision not in DECISIONS[order.task_kind]:
        allowed = ", ".join(DECISIONS[order.task_kind])
        raise InvalidDecision(f"a {order.task_kind.value} takes one of {allowed}")
    decision = {
        "token": order.task_token,
        "kind": order.task_kind.value,
        "decision": body.decision,
        "note": body.note,
        "operator": operator,
        "state": DECISION_REPORTING,
    }
    two_needed = (body.decision in MONEY_MOVING_DECISIONS
                  and order.amount_minor > settings.second_approval_above_minor(order.currency))
    if two_needed:
        proposal = order.pending_approval
        if proposal is None or proposal["token"] != order.task_token or proposal["decision"] != body.decision:
            return _proposed(order, body, operator, now)
        if proposal["operator"] == operator:
            raise SecondApproverRequired(
                f"{body.decision} of transfer {order.transfer_id} above "
                f"{settings.second_approval_above_major} {order.currency} was proposed by {operator}: "
                "a second, different operator must confirm it"
            )
        decision["proposed_by"] = proposal["operator"]
    # A single operator's reject or void ends any proposal: nothing leaves the sender's account.
    return Change(order.changed(now, None, decision=decision, pending_approval=None), decision)


def _proposed(
    order: TransferOrder, body: DecisionBody, operator: str, now: datetime
) -> Change[TransferOrder, Mapping[str, str]]:
    """The first operator's money-moving decision, kept on the order until a second operator agrees."""
    assert order.task_token is not None
    proposal = {"token": order.task_token, "decision": body.decision, "operator": operator,
                "note": body.note, "at": now.isoformat()}
    step = Step("approval", f"{body.decision} proposed", now, f"{operator}: {body.note}".strip())
    proposed = {**proposal, "state": APPROVAL_PROPOSED}
    return Change(order.changed(now, step, pending_approval=proposal), proposed)


def _risk_request(order: TransferOrder) -> RiskRequest:
    """What risk is asked about a transfer: it is assessed under the transfer's id."""
    return RiskRequest(order.transfer_id, order.owner_id, order.debit_account_id, order.destination,
                       order.amount_minor, order.currency, order.external)


def _validated(tier: str | None, screening: Mapping[str, Any], transfer_id: str) -> dict[str, Any]:
    """The validate step's answer: the tier it passed with and the risk decision recorded with it."""
    return {"transfer_id": transfer_id, "validated": True, "tier": tier, **screening}


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
