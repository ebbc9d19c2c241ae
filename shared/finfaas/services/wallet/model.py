"""Wallet moves: a top-up (a bank account through the rail into the wallet) and a withdrawal (the wallet
through the rail to a bank account), each followed by its saga; their events and the saga's input."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from finfaas.domain.creditor import SealedCreditor


class MoveKind(StrEnum):
    TOPUP = "topup"
    WITHDRAWAL = "withdrawal"


class MoveStatus(StrEnum):
    """pending while the saga runs; succeeded and failed absorb; needs_attention waits for an operator."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NEEDS_ATTENTION = "needs_attention"

    @property
    def final(self) -> bool:
        return self in (MoveStatus.SUCCEEDED, MoveStatus.FAILED)


# State machine (infra/statemachines/<name>.asl.json) and id prefix of each kind.
STATE_MACHINES = {MoveKind.TOPUP: "wallet-topup", MoveKind.WITHDRAWAL: "wallet-withdrawal"}
MOVE_ID_PREFIXES = {MoveKind.TOPUP: "tu_", MoveKind.WITHDRAWAL: "wd_"}
move_id_hex_chars = 32
move_id_chars_max = 3 + move_id_hex_chars
failure_chars_max = 500

# Ledger transfer ids of a move, derived from its id so every retry of a step finds its own transfer.
CREDIT_SUFFIX, HOLD_SUFFIX, POST_SUFFIX, VOID_SUFFIX = "-credit", "-hold", "-post", "-void"


def move_id_for(kind: MoveKind, owner_id: str, idempotency_key: str) -> str:
    """Derived from (kind, caller, Idempotency-Key): a retry after any crash lands on the same move."""
    digest = hashlib.sha256(f"{kind.value}\x00{owner_id}\x00{idempotency_key}".encode()).hexdigest()
    return MOVE_ID_PREFIXES[kind] + digest[:move_id_hex_chars]


def kind_of(move_id: str) -> MoveKind | None:
    for kind, prefix in MOVE_ID_PREFIXES.items():
        if move_id.startswith(prefix):
            return kind
    return None


@dataclass(frozen=True)
class MoveLedgerStep:
    """A ledger transfer behind a move: credit (top-up), hold, post or void (withdrawal)."""

    kind: str
    transfer_id: str
    amount_minor: int


@dataclass(frozen=True)
class WalletMove:
    """A top-up or a withdrawal. `version` orders its changes; every change is put over version - 1."""

    move_id: str
    kind: MoveKind
    owner_id: str
    account_id: str
    clearing_account_id: str
    amount_minor: int
    currency: str
    bank_account: SealedCreditor
    created_at: datetime
    status: MoveStatus = MoveStatus.PENDING
    ledger: tuple[MoveLedgerStep, ...] = ()
    failure: str = ""
    updated_at: datetime | None = None
    version: int = 1
    write_id: str = ""  # the request that wrote this version (tells a lost answer from a rival's change)

    def __post_init__(self) -> None:
        assert self.amount_minor > 0, "a wallet move moves a positive amount"
        assert self.version >= 1

    def identity(self) -> tuple[Any, ...]:
        """What a repeated request must repeat to find this move."""
        return (self.kind, self.owner_id, self.account_id, self.amount_minor, self.currency,
                self.bank_account.identity())

    def next(self, now: datetime, write_id: str, **changes: Any) -> WalletMove:
        return replace(self, **changes, updated_at=now, version=self.version + 1, write_id=write_id)

    def with_step(self, kind: str, transfer_id: str) -> tuple[MoveLedgerStep, ...]:
        return (*self.ledger, MoveLedgerStep(kind, transfer_id, self.amount_minor))

    @property
    def hold_id(self) -> str:
        return self.move_id + HOLD_SUFFIX


@dataclass(frozen=True)
class MoveEvent:
    """An outbox event of a move's change: `<kind>.<what>` and its data."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)


def move_data(move: WalletMove) -> dict[str, Any]:
    """What integrators see of a move (the bank account masked, the amount as a string of minor units, so
    no JSON reader rounds it)."""
    return {
        "id": move.move_id, "object": move.kind.value, "status": move.status.value,
        "account_id": move.account_id, "owner_id": move.owner_id, "amount_minor": str(move.amount_minor),
        "currency": move.currency, "bank_account": move.bank_account.masked(),
        "failure_reason": move.failure or None,
        "ledger_transfer_ids": [step.transfer_id for step in move.ledger],
    }


def move_event(move: WalletMove, what: str) -> MoveEvent:
    return MoveEvent(f"{move.kind.value}.{what}", move_data(move))


def saga_input(move: WalletMove) -> dict[str, Any]:
    """The execution's input: what the rail needs (the bank account sealed under the move's id)."""
    return {"move_id": move.move_id, "amount_minor": move.amount_minor, "currency": move.currency,
            "bank_account": move.bank_account.in_flight()}


@dataclass(frozen=True)
class MovePage:
    moves: list[WalletMove]
    last_key: dict[str, str] | None
