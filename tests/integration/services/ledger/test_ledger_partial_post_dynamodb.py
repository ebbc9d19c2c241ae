"""A partial post keeping the rest on hold, on DynamoDB Local: the contract the reference ledger passes,
one transaction for the whole of it, and a lost answer that still posts once."""

from __future__ import annotations

import pytest
from finfaas.domain.ledger import Actor, PendingState, PostPending
from support.ledger_testing import LoseResponses
from unit.services.ledger.test_ledger_partial_post import PartialPostContract

pytestmark = pytest.mark.emulator
SYSTEM = Actor.system()


class TestDynamoDBPartialPost(PartialPostContract):
    @pytest.fixture
    def ledger(self, ledger_store):
        return ledger_store

    def test_post_and_new_hold_are_one_transaction(self, ledger, clock, held, count_calls):
        with count_calls() as calls:
            self.post_keep(ledger, clock, held, "p1", "hold", 250, "rest1")

        assert calls == {"GetItem": 1, "TransactWriteItems": 1}

    def test_a_lost_answer_posts_once_and_keeps_one_rest(self, ledger, clock, held):
        # GIVEN the first answer of the committed transaction never reaches the store
        lost = LoseResponses("TransactWriteItems", times=1)
        ledger.register_hook("after-call.dynamodb", lost)
        try:
            # WHEN the store retries the same post
            posted = ledger.post_pending(PostPending(held("p1"), held("hold"), 250, held("rest1")), SYSTEM,
                                         clock())
        finally:
            ledger.unregister_hook("after-call.dynamodb", lost)

        # THEN it was applied once: the rest is held once, and the caller has the stored post
        assert lost.lost == 1 and posted == ledger.get_transfer(held("p1"))
        alice = ledger.get_account(held("alice"))
        assert (alice.debits_posted, alice.debits_pending) == (250, 450)
        assert ledger.get_transfer(held("rest1")).state is PendingState.PENDING
