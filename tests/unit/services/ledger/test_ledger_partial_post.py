"""A partial post that keeps the rest on hold, in one operation: the contract, written once. The reference
ledger runs it here; the DynamoDB store runs it in tests/integration/services/ledger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from finfaas.domain import errors
from finfaas.domain.ledger import AccountKind, Actor, NewAccount, NewTransfer, PendingState, PostPending
from finfaas_dev.testing.reference_model import ReferenceLedger
from support.clocks import SteppingClock

SYSTEM = Actor.system()
HOLD_SECONDS = 3600

START = datetime(2026, 3, 1, tzinfo=UTC)
TICK = timedelta(milliseconds=1)  # every clock read is a later moment


class PartialPostContract:
    """Subclasses provide `ledger` (a LedgerRepository) and `clock` (strictly increasing)."""

    @pytest.fixture
    def held(self, ledger, clock):
        """alice funded with 1,000, 700 of it held for shop; the ids by name."""
        prefix = uuid.uuid4().hex[:8]
        ids = {name: f"{prefix}-{name}" for name in ("funding", "alice", "shop", "hold")}
        ledger.open_account(NewAccount(ids["funding"], "system", "USD", AccountKind.FUNDING,
                                       debits_must_not_exceed_credits=False), clock())
        for name in ("alice", "shop"):
            ledger.open_account(NewAccount(ids[name], f"owner-{ids[name]}", "USD"), clock())
        ledger.create_transfers([NewTransfer(f"{prefix}-d", ids["funding"], ids["alice"], 1_000, "USD")],
                                SYSTEM, clock())
        ledger.create_transfers([NewTransfer(ids["hold"], ids["alice"], ids["shop"], 700, "USD", pending=True,
                                             timeout_seconds=HOLD_SECONDS)], SYSTEM, clock())
        return lambda name: ids.get(name, f"{prefix}-{name}")

    def post_keep(self, ledger, clock, held, name: str, pending: str, amount: int, rest: str):
        request = PostPending(held(name), held(pending), amount, held(rest))
        return ledger.post_pending(request, SYSTEM, clock())

    def test_the_captured_part_moves_and_the_rest_stays_held_until_the_same_moment(self, ledger, clock, held):
        original = ledger.get_transfer(held("hold"))

        posted = self.post_keep(ledger, clock, held, "p1", "hold", 250, "rest1")

        rest = ledger.get_transfer(held("rest1"))
        assert (posted.amount_minor, posted.pending_id) == (250, held("hold"))
        assert ledger.get_transfer(held("hold")).state is PendingState.POSTED
        assert (rest.state, rest.amount_minor, rest.debit_account_id, rest.credit_account_id) == (
            PendingState.PENDING, 450, held("alice"), held("shop"))
        assert original.expires_at - timedelta(seconds=1) < rest.expires_at <= original.expires_at
        alice, shop = ledger.get_account(held("alice")), ledger.get_account(held("shop"))
        assert (alice.debits_posted, alice.debits_pending, alice.available_minor) == (250, 450, 300)
        assert (shop.credits_posted, shop.credits_pending) == (250, 450)

    def test_the_rest_can_be_captured_again_and_finally_released(self, ledger, clock, held):
        self.post_keep(ledger, clock, held, "p1", "hold", 100, "rest1")
        self.post_keep(ledger, clock, held, "p2", "rest1", 100, "rest2")

        final = ledger.post_pending(PostPending(held("p3"), held("rest2"), 300), SYSTEM, clock())

        assert final.amount_minor == 300
        alice = ledger.get_account(held("alice"))
        assert (alice.debits_posted, alice.debits_pending, alice.available_minor) == (500, 0, 500)
        assert ledger.get_account(held("shop")).credits_posted == 500

    def test_a_retry_replays_and_moves_nothing_more(self, ledger, clock, held):
        first = self.post_keep(ledger, clock, held, "p1", "hold", 250, "rest1")

        again = self.post_keep(ledger, clock, held, "p1", "hold", 250, "rest1")

        assert again == first
        assert ledger.get_account(held("alice")).debits_posted == 250
        with pytest.raises(errors.InvalidInput) as refused:
            self.post_keep(ledger, clock, held, "p1", "hold", 250, "another-rest")
        assert refused.value.field == "remainder_id"

    def test_nothing_may_be_left_to_keep_and_the_rest_id_must_be_new(self, ledger, clock, held):
        with pytest.raises(errors.PostAmountExceedsPending):
            self.post_keep(ledger, clock, held, "p1", "hold", 700, "rest1")
        with pytest.raises(errors.DuplicateTransferId):
            self.post_keep(ledger, clock, held, "p1", "hold", 100, "hold")

        assert ledger.get_transfer(held("hold")).state is PendingState.PENDING
        assert ledger.get_account(held("alice")).debits_posted == 0

    def test_an_expired_hold_keeps_nothing(self, ledger, clock, held):
        later = ledger.get_transfer(held("hold")).expires_at + timedelta(seconds=1)

        with pytest.raises(errors.PendingExpired):
            ledger.post_pending(PostPending(held("p1"), held("hold"), 100, held("rest1")), SYSTEM, later)

        assert ledger.get_transfer(held("rest1")) is None


class TestReferenceLedger(PartialPostContract):
    @pytest.fixture
    def ledger(self):
        return ReferenceLedger()

    @pytest.fixture
    def clock(self) -> SteppingClock:
        return SteppingClock(START, TICK)
