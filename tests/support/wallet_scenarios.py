"""The wallet sagas' paths with money at stake (top-up, withdrawal) and what each must leave behind."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.services.wallet.model import STATE_MACHINES, MoveKind
from finfaas.workflow.model import Status

from support.saga_world import OPENING_BALANCE_MINOR, SagaWorld

AMOUNT_MINOR = 2_500
SETTLEMENT = "sys-settlement-USD"
LEDGER_SUFFIXES = ("credit", "hold", "post", "void")
# The sandbox's test account numbers decide the rail's answer (services/rail/service.py).
SETTLES, REJECTED, NOTICE_LOST, STUCK = "12345678", "99990001", "99990002", "99990003"


@dataclass(frozen=True)
class WalletScenario:
    kind: MoveKind
    account_number: str
    status: str
    execution_status: Status
    moved: bool  # whether the amount ended on the other side
    ledger_steps: frozenset[str]

    @property
    def wallet(self) -> str:
        """A top-up lands on the empty acc-c; a withdrawal leaves the funded acc-a."""
        return "acc-c" if self.kind is MoveKind.TOPUP else "acc-a"

    def body(self, prefix: str) -> dict[str, Any]:
        return {"account_id": prefix + self.wallet, "amount": AMOUNT_MINOR, "currency": "USD",
                "bank_account": {"bank_code": "BANKUS33", "account_number": self.account_number,
                                 "name": "Ada Lovelace"}}


TOPUP, WITHDRAWAL = MoveKind.TOPUP, MoveKind.WITHDRAWAL
SCENARIOS = {
    "topup-settled": WalletScenario(TOPUP, SETTLES, "succeeded", Status.SUCCEEDED, True,
                                    frozenset({"credit"})),
    "topup-rejected": WalletScenario(TOPUP, REJECTED, "failed", Status.FAILED, False, frozenset()),
    "topup-stuck-recalled": WalletScenario(TOPUP, STUCK, "failed", Status.FAILED, False, frozenset()),
    "topup-notice-lost-recalled": WalletScenario(TOPUP, NOTICE_LOST, "succeeded", Status.SUCCEEDED, True,
                                                 frozenset({"credit"})),
    "withdrawal-settled": WalletScenario(WITHDRAWAL, SETTLES, "succeeded", Status.SUCCEEDED, True,
                                         frozenset({"hold", "post"})),
    "withdrawal-rejected": WalletScenario(WITHDRAWAL, REJECTED, "failed", Status.FAILED, False,
                                          frozenset({"hold", "void"})),
    "withdrawal-stuck-recalled": WalletScenario(WITHDRAWAL, STUCK, "failed", Status.FAILED, False,
                                                frozenset({"hold", "void"})),
}
ROUTES = {TOPUP: "topups", WITHDRAWAL: "withdrawals"}


def run_scenario(world: SagaWorld, scenario: str) -> str:
    expected = SCENARIOS[scenario]
    reply = world.start_move(ROUTES[expected.kind], expected.body(world.prefix))
    assert reply.status_code == 201, reply.content
    world.run()
    return str(reply.json()["id"])


def move_events(world: SagaWorld, move_id: str) -> Counter[str]:
    return Counter(event.type for written_id, _, event in world.stores.wallet.events if written_id == move_id)


def assert_outcome(world: SagaWorld, move_id: str, scenario: str,
                   events: Callable[[str], Counter[str]] | None = None, settlement_before: int = 0) -> None:
    """Full effect or none, each ledger transfer made once, one event per change, no hold left, the
    ledger check clean. `events` reads the move's events (default: the in-memory store's)."""
    expected = SCENARIOS[scenario]
    kind = expected.kind.value
    assert world.move(move_id).status.value == expected.status
    assert world.execution_status(f"{STATE_MACHINES[expected.kind]}:{move_id}") is expected.execution_status
    p = world.prefix
    moved = AMOUNT_MINOR if expected.moved else 0
    if expected.kind is TOPUP:
        balances = {p + "acc-a": OPENING_BALANCE_MINOR, p + "acc-c": moved,
                    SETTLEMENT: settlement_before - moved}
    else:
        balances = {p + "acc-a": OPENING_BALANCE_MINOR - moved, p + "acc-c": 0,
                    SETTLEMENT: settlement_before + moved}
    for account, balance in balances.items():
        assert world.balance(account) == balance, account
        assert world.held(account) == 0, account
    made = {s for s in LEDGER_SUFFIXES if world.ledger.get_transfer(f"{move_id}-{s}") is not None}
    assert made == expected.ledger_steps
    assert {step.transfer_id for step in world.move(move_id).ledger} == {f"{move_id}-{s}" for s in made}
    final = "succeeded" if expected.status == "succeeded" else "failed"
    written = (events or (lambda m: move_events(world, m)))(move_id)
    assert written == Counter({f"{kind}.created": 1, f"{kind}.{final}": 1})
    report = world.ledger_check()
    assert report.clean, report.problems
