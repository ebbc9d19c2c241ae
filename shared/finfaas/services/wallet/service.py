"""Wallet use cases: a customer's top-up (bank -> wallet) and withdrawal (wallet -> bank) through the rail,
each an orchestrated saga (infra/statemachines/wallet-topup|wallet-withdrawal.asl.json), and the steps
those sagas call.

Money rides on the ledger with the rail's clearing account (`sys-settlement-<CUR>`, as the transfer saga's
external leg): a top-up is credited (clearing -> wallet) only when the rail confirms it collected; a
withdrawal holds the amount (wallet -> clearing) when it is requested, in the same transaction as the
move's record, posts the hold when the rail confirms the payout and voids it when the rail refuses.
Every money step is ONE ledger transaction that also carries the move's new state, put over the version
it was decided from, with its outbox event (MoveWrite, the ledger's TransactionExtra), as payment
intents do. Ledger ids derive from the move (`<id>-credit`, `-hold`, `-post`, `-void`): a step retried
after a lost answer finds its own transfer, and a step repeated by a redelivery finds the move final.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from finfaas.domain.creditor import Creditor, CreditorVault
from finfaas.domain.errors import (
    AccountClosed,
    AccountFrozen,
    InsufficientFunds,
    PendingAlreadyPosted,
    PendingAlreadyVoided,
    PendingExpired,
)
from finfaas.domain.ledger import AccountKind, AccountStatus, system_account_id
from finfaas.domain.ledger import expiry_transfer_id as ledger_expiry_transfer_id
from finfaas.domain.money import parse_amount, parse_currency
from finfaas.platform.cursors import CursorCodec, InvalidCursor, binding
from finfaas.platform.orchestrator_api import Orchestrator
from finfaas.platform.retry import Change, RetryPolicy, Unchanged, read_change_save
from finfaas.services.wallet.api import MoveListQuery, NewMoveBody
from finfaas.services.wallet.errors import (
    AppliedEarlier,
    CurrencyNotOnRail,
    MoveBusy,
    MoveExists,
    MoveNotFound,
    MoveStateConflict,
    SagaNotStarted,
    WalletAccountNotFound,
    WalletCurrencyMismatch,
    WithdrawalRefused,
)
from finfaas.services.wallet.model import (
    CREDIT_SUFFIX,
    POST_SUFFIX,
    STATE_MACHINES,
    VOID_SUFFIX,
    MoveEvent,
    MoveKind,
    MovePage,
    MoveStatus,
    WalletMove,
    failure_chars_max,
    move_event,
    move_id_for,
    saga_input,
)
from finfaas.services.wallet.ports import WalletLedger, WalletMoves

# A withdrawal's hold never expires (0): once the rail has the payout it may have paid, so only the rail's
# answer or an operator may release the money; an expiry would give it back to the wallet while the
# customer keeps the payout. Holds written with the earlier 7 days are still met expired by the void.
withdrawal_hold_seconds = 0
# A pending move older than this whose saga start was lost (a crash, the orchestrator away) is started
# again when it is read; a start of a running execution only finds it.
restart_after_seconds_default = 5.0
step_attempts_max = 8
STEP_POLICY = RetryPolicy(step_attempts_max, wait_ms_base=5.0, wait_ms_max=100.0)
CUSTOMER_KIND = "customer"
LIST_ROUTES = {MoveKind.TOPUP: "GET /topups", MoveKind.WITHDRAWAL: "GET /withdrawals"}


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Caller:
    """Who asks: a customer (only its own accounts and moves) or a client app (for any customer)."""

    sub: str
    kind: str

    @property
    def is_customer(self) -> bool:
        return self.kind == CUSTOMER_KIND


@dataclass(frozen=True)
class WalletSettings:
    restart_after_seconds: float = restart_after_seconds_default


class _MoveMoved(Exception):
    """The stored move is no longer the version a step was decided from."""


class MoveWrite:
    """The ledger's TransactionExtra for one move step: the move's new state (or the new move) and its
    event. A failed condition is this request's own earlier attempt (AppliedEarlier) or a rival's change
    (_MoveMoved: decide again)."""

    def __init__(self, moves: WalletMoves, wanted: WalletMove, event: MoveEvent) -> None:
        self._moves = moves
        self._wanted = wanted
        self._event = event

    def put_for(self, result: Any) -> tuple[Any, Any]:
        return self._moves.move_put(self._wanted)

    def more_puts_for(self, result: Any) -> list[tuple[Any, Any]]:
        return [self._moves.event_put(self._wanted, self._event)]

    def conflicted(self, raw_item: dict[str, Any] | None) -> None:
        stored = self._moves.move_from_raw(raw_item) if raw_item else None
        if stored is not None and (stored.version, stored.write_id) == (self._wanted.version,
                                                                         self._wanted.write_id):
            raise AppliedEarlier(self._wanted.move_id)
        raise _MoveMoved(self._wanted.move_id)

    def committed(self) -> None:
        return None


@dataclass(frozen=True)
class _Step:
    """A step decided from the stored move: what to store, its event and the ledger call carrying both
    (None: a plain versioned save)."""

    wanted: WalletMove
    event: MoveEvent
    money: Callable[[MoveWrite], object] | None = None
    on_expired: Callable[[], None] | None = None


class WalletService:
    """Top-ups and withdrawals over their ports."""

    def __init__(self, moves: WalletMoves, ledger: WalletLedger, orchestrator: Orchestrator, *,
                 vault: CreditorVault | None, cursors: CursorCodec | None = None,
                 settings: WalletSettings = WalletSettings(), clock: Callable[[], datetime] = utc_now,
                 sleep: Callable[[float], None] | None = None) -> None:
        self._moves = moves
        self._ledger = ledger
        self._orchestrator = orchestrator
        self._vault = vault  # seals the customer's bank account for the rail; None refuses moves
        self._cursors = cursors
        self._settings = settings
        self._clock = clock
        self._sleep = sleep

    # --- the customer's side ---

    def start(self, caller: Caller, kind: MoveKind, key: str, body: NewMoveBody) -> tuple[WalletMove, bool]:
        """A new move and its saga, or the one this caller's key made (True). Nothing is written when the
        account, the amount, the currency or (withdrawals) the balance refuses it."""
        move_id = move_id_for(kind, caller.sub, key)
        existing = self._moves.get(move_id)
        if existing is not None:
            self._start_saga(self._repeat_of(existing, body))
            return existing, True
        wanted = self._new_move(caller, kind, move_id, body)
        event = move_event(wanted, "created")
        if kind is MoveKind.TOPUP:
            stored = self._moves.create(wanted, event)
        else:
            stored = self._hold_and_create(wanted, event)
        if stored is not wanted:
            self._repeat_of(stored, body)
        self._start_saga(stored)
        return stored, stored is not wanted

    def move(self, caller: Caller, kind: MoveKind, move_id: str) -> WalletMove:
        """The move; another customer's (or another kind's) answers as a missing one. A pending move whose
        saga start was lost is started again."""
        move = self._visible(caller, kind, move_id)
        if move.status is MoveStatus.PENDING and move.updated_at is None:
            age = self._clock() - move.created_at
            if age > timedelta(seconds=self._settings.restart_after_seconds):
                try:
                    self._start_saga(move)
                except SagaNotStarted:
                    pass  # the next read tries again
        return move

    def list_moves(self, caller: Caller, kind: MoveKind, query: MoveListQuery) -> tuple[MovePage, str | None]:
        """A page of the owner's moves newest first and the sealed cursor to the next (None: the last):
        a customer's own (another customer named: none), or the customer an app names."""
        if caller.is_customer and query.customer not in (None, caller.sub):
            return MovePage([], None), None
        owner = caller.sub if caller.is_customer or query.customer is None else query.customer
        bound = binding(LIST_ROUTES[kind], caller.sub, customer=owner)
        start = self._opened(query.starting_after, bound)
        page = self._moves.page(owner, kind, query.limit, start)
        if page.last_key is None:
            return page, None
        assert self._cursors is not None, "wallet built without a cursor codec"
        return page, self._cursors.seal(page.last_key, bound)

    # --- the saga's steps ---

    def credit(self, move_id: str) -> WalletMove:
        """The rail collected a top-up: clearing -> wallet, with succeeded, in one transaction."""
        transfer_id = move_id + CREDIT_SUFFIX

        def decide(move: WalletMove, now: datetime, write_id: str) -> _Step | Unchanged[WalletMove]:
            self._require_kind(move, MoveKind.TOPUP)
            if move.status is MoveStatus.SUCCEEDED:
                return Unchanged(move)
            if move.status is MoveStatus.FAILED:
                raise MoveStateConflict(f"top-up {move_id} failed: it is never credited", field="move_id")
            wanted = move.next(now, write_id, status=MoveStatus.SUCCEEDED, failure="",
                               ledger=move.with_step("credit", transfer_id))
            return _Step(wanted, move_event(wanted, "succeeded"), lambda extra: self._ledger.transfer(
                transfer_id, move.clearing_account_id, move.account_id, move.amount_minor, move.currency,
                extra))

        return self._step(move_id, decide)

    def fail_topup(self, move_id: str, error: str) -> WalletMove:
        """The rail did not collect a top-up: failed, nothing credited (nothing was)."""

        def decide(move: WalletMove, now: datetime, write_id: str) -> _Step | Unchanged[WalletMove]:
            self._require_kind(move, MoveKind.TOPUP)
            if move.status is MoveStatus.FAILED:
                return Unchanged(move)
            if move.status is MoveStatus.SUCCEEDED:
                raise MoveStateConflict(f"top-up {move_id} was credited: it cannot fail", field="move_id")
            wanted = move.next(now, write_id, status=MoveStatus.FAILED, failure=error[:failure_chars_max])
            return _Step(wanted, move_event(wanted, "failed"))

        return self._step(move_id, decide)

    def post(self, move_id: str) -> WalletMove:
        """The rail paid a withdrawal out: the hold is posted, with succeeded, in one transaction."""
        transfer_id = move_id + POST_SUFFIX

        def decide(move: WalletMove, now: datetime, write_id: str) -> _Step | Unchanged[WalletMove]:
            self._require_kind(move, MoveKind.WITHDRAWAL)
            if move.status is MoveStatus.SUCCEEDED:
                return Unchanged(move)
            if move.status is MoveStatus.FAILED:
                raise MoveStateConflict(f"withdrawal {move_id} failed: its hold is released",
                                        field="move_id")
            wanted = move.next(now, write_id, status=MoveStatus.SUCCEEDED, failure="",
                               ledger=move.with_step("post", transfer_id))
            return _Step(wanted, move_event(wanted, "succeeded"), lambda extra: self._ledger.post(
                move.hold_id, transfer_id, move.amount_minor, move.currency, None, extra))

        return self._step(move_id, decide)

    def void(self, move_id: str, error: str) -> WalletMove:
        """The rail did not pay a withdrawal out: the hold is voided, with failed, in one transaction; a hold
        the ledger's sweep already expired is recorded as released by that expiry."""
        transfer_id = move_id + VOID_SUFFIX
        expired: list[bool] = []  # the ledger refused the void: its sweep expired the hold first

        def decide(move: WalletMove, now: datetime, write_id: str) -> _Step | Unchanged[WalletMove]:
            self._require_kind(move, MoveKind.WITHDRAWAL)
            if move.status is MoveStatus.FAILED:
                return Unchanged(move)
            if move.status is MoveStatus.SUCCEEDED:
                raise MoveStateConflict(f"withdrawal {move_id} was paid out: its hold is posted",
                                        field="move_id")
            release = ledger_expiry_transfer_id(move.hold_id) if expired else transfer_id
            wanted = move.next(now, write_id, status=MoveStatus.FAILED, failure=error[:failure_chars_max],
                               ledger=move.with_step("void", release))
            if expired:
                return _Step(wanted, move_event(wanted, "failed"))
            return _Step(wanted, move_event(wanted, "failed"), lambda extra: self._ledger.void(
                move.hold_id, transfer_id, extra), on_expired=lambda: expired.append(True))

        return self._step(move_id, decide)

    def flag_attention(self, move_id: str, error: str) -> WalletMove:
        """The rail's answer is unknown or a money step failed: an operator must decide."""

        def decide(move: WalletMove, now: datetime, write_id: str) -> _Step | Unchanged[WalletMove]:
            if move.status.final or move.status is MoveStatus.NEEDS_ATTENTION:
                return Unchanged(move)
            wanted = move.next(now, write_id, status=MoveStatus.NEEDS_ATTENTION,
                               failure=error[:failure_chars_max])
            return _Step(wanted, move_event(wanted, "needs_attention"))

        return self._step(move_id, decide)

    # --- operators ---

    def decide(self, kind: MoveKind, move_id: str, decision: str, operator: str) -> WalletMove:
        """An operator ends a move that needs attention: credit or fail a top-up, post or void a
        withdrawal's hold, each the saga's own step; any other move, or a decision for the other kind, is
        a 409 and changes nothing."""
        move = self._moves.get(move_id)
        if move is None or move.kind is not kind:
            raise MoveNotFound(f"{kind.value} {move_id} not found")
        allowed = ("credit", "fail") if kind is MoveKind.TOPUP else ("post", "void")
        if decision not in allowed:
            raise MoveStateConflict(f"decision: a {kind.value} is ended by {' or '.join(allowed)}",
                                    field="decision")
        if move.status is not MoveStatus.NEEDS_ATTENTION:
            raise MoveStateConflict(f"{kind.value} {move_id} is {move.status.value}, not needs_attention",
                                    field="move_id")
        reason = f"decided by {operator}"
        steps: dict[str, Callable[[], WalletMove]] = {
            "credit": lambda: self.credit(move_id), "fail": lambda: self.fail_topup(move_id, reason),
            "post": lambda: self.post(move_id), "void": lambda: self.void(move_id, reason)}
        return steps[decision]()

    # --- internals ---

    def _new_move(self, caller: Caller, kind: MoveKind, move_id: str, body: NewMoveBody) -> WalletMove:
        currency = parse_currency(body.currency)
        amount = parse_amount(body.amount, currency)
        account = self._ledger.account(body.account_id)
        if account is None or account.kind is not AccountKind.CUSTOMER or (
                caller.is_customer and account.owner_id != caller.sub):
            raise WalletAccountNotFound(f"account_id: account {body.account_id} not found",
                                        field="account_id")
        if account.currency != currency:
            raise WalletCurrencyMismatch(f"currency: account {account.account_id} holds {account.currency}",
                                         field="currency")
        if kind is MoveKind.WITHDRAWAL and account.status is AccountStatus.FROZEN:  # credits still land
            raise AccountFrozen(f"account_id: account {account.account_id} is frozen", field="account_id")
        if account.status is AccountStatus.CLOSED:
            raise AccountClosed(f"account_id: account {account.account_id} is closed", field="account_id")
        if kind is MoveKind.WITHDRAWAL and account.is_limited and amount > account.available_minor:
            raise WithdrawalRefused(f"amount: above the available balance {account.available_minor}",
                                    field="amount")
        clearing = system_account_id(AccountKind.SETTLEMENT, currency)
        if self._ledger.account(clearing) is None:  # else the money would have nowhere to clear
            raise CurrencyNotOnRail(f"currency: the rail clears no {currency} here", field="currency")
        if self._vault is None:
            from finfaas.platform.pii import PiiKeyUnavailable

            raise PiiKeyUnavailable("no key to seal a bank account with: wallet moves are unavailable")
        bank = body.bank_account
        sealed = self._vault.seal(move_id, Creditor(bank.bank_code, bank.account_number, bank.name))
        move = WalletMove(move_id=move_id, kind=kind, owner_id=account.owner_id,
                          account_id=account.account_id,
                          clearing_account_id=clearing,
                          amount_minor=amount, currency=currency, bank_account=sealed,
                          created_at=self._clock(), write_id=uuid.uuid4().hex)
        if kind is MoveKind.WITHDRAWAL:  # held in the transaction that records it
            return replace(move, ledger=move.with_step("hold", move.hold_id))
        return move

    def _hold_and_create(self, wanted: WalletMove, event: MoveEvent) -> WalletMove:
        """The withdrawal's hold and its record in one ledger transaction; the stored move when a rival
        request with the same key wrote it first."""
        try:
            self._ledger.hold(wanted.hold_id, wanted.account_id, wanted.clearing_account_id,
                              wanted.amount_minor, wanted.currency, withdrawal_hold_seconds,
                              MoveWrite(self._moves, wanted, event))
        except AppliedEarlier:
            return wanted
        except _MoveMoved:
            stored = self._moves.get(wanted.move_id)
            if stored is None:
                raise MoveBusy(f"withdrawal {wanted.move_id} is being written; try again") from None
            return stored
        except InsufficientFunds:
            raise WithdrawalRefused("amount: above the available balance", field="amount") from None
        return wanted

    def _repeat_of(self, stored: WalletMove, body: NewMoveBody) -> WalletMove:
        """The stored move when body asks for it again; MoveExists when the key made another."""
        currency = parse_currency(body.currency)
        bank = body.bank_account
        fingerprint = self._vault.fingerprint(bank.bank_code, bank.account_number) if self._vault else ""
        asked = (body.account_id, parse_amount(body.amount, currency), currency, bank.bank_code, fingerprint)
        made = (stored.account_id, stored.amount_minor, stored.currency, stored.bank_account.bank_code,
                stored.bank_account.fingerprint)
        if asked != made:
            raise MoveExists(f"the Idempotency-Key made {stored.kind.value} {stored.move_id} "
                             "with other fields")
        return stored

    def _start_saga(self, move: WalletMove) -> None:
        from finfaas.services.suite_clients import ServiceUnreachable

        try:
            self._orchestrator.start(STATE_MACHINES[move.kind], move.move_id, saga_input(move),
                                     reference=move.move_id)
        except (ServiceUnreachable, ValueError) as error:
            raise SagaNotStarted(f"the {move.kind.value} is recorded but its saga did not start ({error}); "
                                 "retry with the same Idempotency-Key") from None

    def _visible(self, caller: Caller, kind: MoveKind, move_id: str) -> WalletMove:
        move = self._moves.get(move_id)
        if move is None or move.kind is not kind or (caller.is_customer and move.owner_id != caller.sub):
            raise MoveNotFound(f"{kind.value} {move_id} not found")
        return move

    def _opened(self, cursor: str | None, bound: dict[str, str]) -> dict[str, str] | None:
        if cursor is None:
            return None
        if self._cursors is None:
            raise InvalidCursor("not a cursor of this list")
        key = self._cursors.open(cursor, bound)
        if not isinstance(key, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in key.items()):
            raise InvalidCursor("not a cursor of this list")
        return key

    @staticmethod
    def _require_kind(move: WalletMove, kind: MoveKind) -> None:
        if move.kind is not kind:
            raise MoveStateConflict(f"{move.move_id} is a {move.kind.value}", field="move_id")

    def _step(self, move_id: str,
              decide: Callable[[WalletMove, datetime, str], _Step | Unchanged[WalletMove]]) -> WalletMove:
        """Read, decide, write (money and move in one ledger transaction); decide again on a rival's
        change, at most as often as the step policy allows."""
        write_id = uuid.uuid4().hex

        def read() -> WalletMove:
            move = self._moves.get(move_id)
            if move is None:
                raise MoveNotFound(f"move {move_id} not found")
            return move

        def change(move: WalletMove) -> Unchanged[WalletMove] | Change[_Step, WalletMove]:
            step = decide(move, self._clock(), write_id)
            return step if isinstance(step, Unchanged) else Change(step, step.wanted)

        def save(step: _Step) -> bool:
            if step.money is None:
                return self._moves.save(step.wanted, step.event)
            try:
                step.money(MoveWrite(self._moves, step.wanted, step.event))
            except AppliedEarlier:
                return True
            except (_MoveMoved, PendingAlreadyPosted, PendingAlreadyVoided):
                return False  # a rival step resolved it first: decide again from what it stored
            except PendingExpired:
                if step.on_expired is None:
                    raise
                step.on_expired()  # decided again, recorded as released by the ledger's expiry
                return False
            return True

        options: dict[str, Any] = {} if self._sleep is None else {"sleep": self._sleep}
        return read_change_save(read, change, save,
                                exhausted=lambda: MoveBusy(f"move {move_id} kept changing"),
                                policy=STEP_POLICY, **options)
