"""The saga paths with money at stake, and what each must leave behind: shared by the in-memory crash
tests and their DynamoDB twin (tests/integration/services/transfers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.workflow.model import Status

from support.saga_world import OPENING_BALANCE_MINOR, SagaWorld

AMOUNT_MINOR = 2_500
SETTLEMENT = "sys-settlement-USD"
LEDGER_STEPS = ("hold", "post", "void")
FINAL_EVENT = {
    "COMPLETED": "transfer.completed",
    "COMPENSATED": "transfer.compensated",
    "FAILED": "transfer.failed",
}


@dataclass(frozen=True)
class Scenario:
    debit: str  # account name without the world's prefix
    credit: str | None  # None: to another bank
    account_number: str | None  # the creditor's at the other bank (sandbox test numbers decide the outcome)
    status: str
    execution_status: Status
    moved_to: str | None  # where the amount ends, None for nowhere
    ledger_steps: frozenset[str]

    def body(self, prefix: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "debit_account_id": prefix + self.debit,
            "amount": AMOUNT_MINOR,
            "currency": "USD",
        }
        if self.credit is not None:
            body["credit_account_id"] = prefix + self.credit
        else:
            body["creditor"] = {
                "bank_code": "BANKGB22",
                "account_number": self.account_number,
                "name": "Carol",
            }
        return body


SCENARIOS = {
    "internal-completed": Scenario(
        "acc-a", "acc-b", None, "COMPLETED", Status.SUCCEEDED, "acc-b", frozenset({"hold", "post"})
    ),
    "rail-settled": Scenario(
        "acc-a", None, "12345678", "COMPLETED", Status.SUCCEEDED, SETTLEMENT, frozenset({"hold", "post"})
    ),
    "rail-rejected-compensated": Scenario(
        "acc-a", None, "99990001", "COMPENSATED", Status.FAILED, None, frozenset({"hold", "void"})
    ),
    "rail-stuck-recalled-compensated": Scenario(
        "acc-a", None, "99990003", "COMPENSATED", Status.FAILED, None, frozenset({"hold", "void"})
    ),
    "no-funds-failed": Scenario("acc-c", "acc-b", None, "FAILED", Status.FAILED, None, frozenset()),
}


def run_scenario(world: SagaWorld, scenario: str) -> str:
    reply = world.start_transfer(SCENARIOS[scenario].body(world.prefix))
    assert reply.status_code == 202, reply.content
    world.run()
    return reply.json()["transfer_id"]


def assert_outcome(
    world: SagaWorld,
    transfer_id: str,
    scenario: str,
    events: Callable[[str], list[str]],
    settlement_before: int = 0,
    check_ledger: bool = True,
) -> None:
    """Full effect or none, each ledger transfer made once, one event per outcome, the ledger check clean
    (`check_ledger=False`: the caller checks the ledger once after a series of runs)."""
    expected = SCENARIOS[scenario]
    assert world.transfer(transfer_id).status == expected.status
    assert world.status(transfer_id) is expected.execution_status
    p = world.prefix
    moved = {expected.moved_to: AMOUNT_MINOR} if expected.moved_to else {}
    balances = {p + "acc-a": OPENING_BALANCE_MINOR - sum(moved.values()), p + "acc-b": 0, p + "acc-c": 0}
    for name, amount in moved.items():
        key = name if name == SETTLEMENT else p + name
        balances[key] = amount + (settlement_before if name == SETTLEMENT else 0)
    for account, balance in balances.items():
        assert world.balance(account) == balance, account
        assert world.held(account) == 0, account
    if expected.moved_to != SETTLEMENT:
        assert world.balance(SETTLEMENT) == settlement_before
    made = {step for step in LEDGER_STEPS if world.ledger.get_transfer(f"{transfer_id}-{step}") is not None}
    assert made == expected.ledger_steps
    assert Counter(events(transfer_id)) == Counter({"transfer.accepted": 1, FINAL_EVENT[expected.status]: 1})
    if check_ledger:
        report = world.ledger_check()
        assert report.clean, report.problems
