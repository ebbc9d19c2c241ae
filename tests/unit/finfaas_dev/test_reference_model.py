"""The in-memory reference ledger: the oracle the store is compared with, so it must be right itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from finfaas.domain import errors
from finfaas.domain.ledger import (
    AccountKind,
    AccountStatus,
    Actor,
    NewAccount,
    NewTransfer,
    PendingState,
    PostPending,
    Reversal,
    VoidPending,
)
from finfaas_dev.testing.reference_model import ReferenceLedger

SYSTEM = Actor.system()
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def ledger() -> ReferenceLedger:
    ledger = ReferenceLedger()
    ledger.open_account(NewAccount("fund", "sys", "USD", AccountKind.FUNDING, False), T0)
    ledger.open_account(NewAccount("alice", "u1", "USD"), T0)
    ledger.open_account(NewAccount("bob", "u2", "USD"), T0)
    ledger.create_transfers([NewTransfer("d1", "fund", "alice", 100, "USD")], SYSTEM, at(1))
    return ledger


def total(ledger: ReferenceLedger) -> int:
    return sum(a.balance_minor for a in ledger.accounts.values())


def test_balances_always_sum_to_zero_and_limits_hold(ledger):
    ledger.create_transfers([NewTransfer("t1", "alice", "bob", 60, "USD")], SYSTEM, at(2))
    with pytest.raises(errors.InsufficientFunds):
        ledger.create_transfers([NewTransfer("t2", "alice", "bob", 41, "USD")], SYSTEM, at(3))
    assert total(ledger) == 0
    assert (ledger.accounts["alice"].balance_minor, ledger.accounts["bob"].balance_minor) == (40, 60)


def test_replays_return_the_first_result_and_different_fields_are_refused(ledger):
    first = ledger.create_transfers([NewTransfer("t1", "alice", "bob", 10, "USD")], SYSTEM, at(2))
    assert ledger.create_transfers([NewTransfer("t1", "alice", "bob", 10, "USD")], SYSTEM, at(9)) == first
    with pytest.raises(errors.ExistsWithDifferentAmount):
        ledger.create_transfers([NewTransfer("t1", "alice", "bob", 11, "USD")], SYSTEM, at(9))
    assert ledger.accounts["bob"].balance_minor == 10


def test_a_hold_resolves_once(ledger):
    ledger.create_transfers([NewTransfer("h", "alice", "bob", 80, "USD", pending=True, timeout_seconds=10)],
                            SYSTEM, at(2))
    assert ledger.accounts["alice"].available_minor == 20
    ledger.void_pending(VoidPending("v", "h"), SYSTEM, at(3))
    assert ledger.transfers["h"].state is PendingState.VOIDED
    with pytest.raises(errors.PendingAlreadyVoided):
        ledger.post_pending(PostPending("p", "h"), SYSTEM, at(4))
    assert ledger.void_pending(VoidPending("v", "h"), SYSTEM, at(5)).transfer_id == "v"
    assert ledger.accounts["alice"].available_minor == 100


def test_holds_expire_at_their_timeout_and_only_by_the_sweep(ledger):
    ledger.create_transfers([NewTransfer("h", "alice", "bob", 80, "USD", pending=True, timeout_seconds=10)],
                            SYSTEM, at(2))
    assert ledger.expire_due_holds(at(11.9), 10) == []
    with pytest.raises(errors.PendingExpired):
        ledger.post_pending(PostPending("p", "h"), SYSTEM, at(12))
    [expiry] = ledger.expire_due_holds(at(12), 10)
    assert (expiry.transfer_id, expiry.pending_id) == ("h.expiry", "h")
    assert ledger.transfers["h"].state is PendingState.EXPIRED
    assert ledger.accounts["alice"].debits_pending == 0


def test_linked_legs_are_all_or_nothing(ledger):
    legs = [NewTransfer("a", "alice", "bob", 50, "USD"), NewTransfer("b", "alice", "fund", 51, "USD")]
    with pytest.raises(errors.InsufficientFunds):
        ledger.create_transfers(legs, SYSTEM, at(2))
    assert "a" not in ledger.transfers and ledger.accounts["bob"].balance_minor == 0


def test_reversal_undoes_once(ledger):
    ledger.reverse(Reversal("r", "d1"), SYSTEM, at(2))
    assert ledger.accounts["alice"].balance_minor == 0
    with pytest.raises(errors.AlreadyReversed):
        ledger.reverse(Reversal("r2", "d1"), SYSTEM, at(3))


def test_statement_running_balances_and_balance_at(ledger):
    ledger.create_transfers([NewTransfer("t1", "alice", "bob", 30, "USD")], SYSTEM, at(2))
    ledger.create_transfers([NewTransfer("t2", "bob", "alice", 5, "USD")], SYSTEM, at(3))
    page = ledger.statement("alice", 2, None)
    rest = ledger.statement("alice", 2, page.next_cursor)
    assert [(x.entry.transfer_id, x.balance_after_minor) for x in page.lines] == [("t2", 75), ("t1", 70)]
    assert [(x.entry.transfer_id, x.balance_after_minor) for x in rest.lines] == [("d1", 100)]
    assert ledger.balance_at("alice", at(2.5)) == 70
    assert ledger.balance_at("alice", at(0)) == 0


def test_status_changes(ledger):
    ledger.set_account_status("bob", AccountStatus.FROZEN, at(2))
    with pytest.raises(errors.AccountFrozen):
        ledger.create_transfers([NewTransfer("t", "bob", "alice", 1, "USD")], SYSTEM, at(3))
    with pytest.raises(errors.AccountNotEmpty):
        ledger.set_account_status("alice", AccountStatus.CLOSED, at(3))
    assert ledger.set_account_status("bob", AccountStatus.CLOSED, at(4)).status is AccountStatus.CLOSED
