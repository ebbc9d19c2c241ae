"""The ledger service over the reference ledger: input parsing, access rules, system accounts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from finfaas.domain import errors
from finfaas.domain.ledger import Actor, encode_hold_cursor
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.ledger.service import LedgerService
from finfaas_dev.testing.reference_model import ReferenceLedger
from support.clocks import SteppingClock

START = datetime(2026, 3, 1, tzinfo=UTC)
TICK = timedelta(milliseconds=1)  # every clock read is a later moment


@pytest.fixture
def service() -> LedgerService:
    counter = itertools.count(1)
    service = LedgerService(ReferenceLedger(), SteppingClock(START, TICK), lambda: f"id{next(counter)}")
    service.ensure_system_accounts("USD")
    service.open_account(owner_id="u1", currency="USD", account_id="alice")
    service.open_account(owner_id="u2", currency="USD", account_id="bob")
    return service


def test_deposits_come_from_the_funding_account(service):
    service.deposit("alice", "12.34", "USD", transfer_id="dep1")
    assert service.get_account("alice").balance_minor == 1_234
    assert service.get_account("sys-funding-USD").balance_minor == -1_234


def test_system_accounts_are_idempotent_and_cannot_be_opened_as_customer_accounts(service):
    assert [a.account_id for a in service.ensure_system_accounts("USD")][0] == "sys-funding-USD"
    with pytest.raises(errors.InvalidInput):
        service.open_account(owner_id="u1", currency="USD", kind="FUNDING")


def test_customers_see_and_move_only_their_own_money(service):
    service.deposit("alice", 500, "USD", transfer_id="dep1")
    mallory = Actor(owner_id="u9")
    with pytest.raises(errors.AccountNotFound):
        service.get_account("alice", mallory)
    with pytest.raises(errors.AccountNotFound):
        service.transfer(TransferRequest("alice", "bob", 1, "USD", "t1"), mallory)
    with pytest.raises(errors.TransferNotFound):
        service.get_transfer("dep1", mallory)
    with pytest.raises(errors.AccountNotFound):
        service.statement("alice", actor=mallory)
    service.transfer(TransferRequest("alice", "bob", 1, "USD", "t2"), Actor(owner_id="u1"))
    assert service.get_transfer("t2", Actor(owner_id="u2")).amount_minor == 1


def test_bad_input_is_named_by_field(service):
    with pytest.raises(errors.InvalidAmount) as refused:
        service.transfer(TransferRequest("alice", "bob", 1.5, "USD", "t1"))
    assert refused.value.field == "amount"
    with pytest.raises(errors.TooManyDecimals) as refused:
        service.transfer_linked([TransferRequest("alice", "bob", 1, "USD", "a"),
                                 TransferRequest("alice", "bob", "0.001", "USD", "b")])
    assert refused.value.field == "transfers[1].amount"
    with pytest.raises(errors.InvalidInput) as refused:
        service.statement("alice", limit=0)
    assert refused.value.field == "limit"


def test_holds_post_partially_with_an_amount_in_the_holds_currency(service):
    service.deposit("alice", 1_000, "USD", transfer_id="dep1")
    hold = service.transfer(TransferRequest("alice", "bob", "7.00", "USD", "h1", pending=True))
    post = service.post_pending(hold.transfer_id, amount="6.50", currency="USD", transfer_id="p1")
    assert post.amount_minor == 650
    assert service.get_account("alice").available_minor == 350
    assert service.balance_at("alice", service._clock()).amount_minor == 350


def test_a_linked_batch_is_read_in_order_by_its_first_leg_and_only_by_whom_it_touches(service):
    service.deposit("alice", 500, "USD", transfer_id="dep1")
    service.transfer_linked([TransferRequest("alice", "bob", 3, "USD", "b1"),
                             TransferRequest("alice", "sys-fees-USD", 2, "USD", "b2"),
                             TransferRequest("alice", "bob", 1, "USD", "b3")])

    assert [t.transfer_id for t in service.batch("b1")] == ["b1", "b2", "b3"]
    assert [t.transfer_id for t in service.batch("b1", Actor(owner_id="u2"))] == ["b1", "b2", "b3"]
    assert [t.transfer_id for t in service.batch("dep1")] == ["dep1"]  # a lone transfer: a batch of one
    for batch_id, actor in (("b2", Actor.system()), ("nope", Actor.system()), ("b1", Actor(owner_id="u9"))):
        with pytest.raises(errors.TransferNotFound):
            service.batch(batch_id, actor)


def test_an_accounts_open_holds_are_listed_oldest_first_a_page_at_a_time(service):
    service.deposit("alice", 500, "USD", transfer_id="dep1")
    for name in ("h1", "h2", "h3"):
        service.transfer(TransferRequest("alice", "bob", 10, "USD", name, pending=True, timeout_seconds=60))
    service.void_pending("h2")

    first = service.open_holds("alice", limit=1)
    second = service.open_holds("alice", limit=1, starting_after=first.next_cursor)

    assert ([t.transfer_id for t in first.items], first.has_more) == (["h1"], True)
    assert ([t.transfer_id for t in second.items], second.has_more) == (["h3"], False)
    assert service.open_holds("bob").items == []  # bob is the holds' credit side
    with pytest.raises(errors.AccountNotFound):
        service.open_holds("alice", actor=Actor(owner_id="u9"))
    with pytest.raises(errors.InvalidInput):
        service.open_holds("bob", starting_after=first.next_cursor)


def test_an_open_holds_cursor_is_a_position_so_the_hold_it_names_need_not_exist(service):
    # GIVEN two open holds, and a cursor of the account's list naming a hold that is not in the ledger
    service.deposit("alice", 500, "USD", transfer_id="dep1")
    for name in ("h1", "h2"):
        service.transfer(TransferRequest("alice", "bob", 10, "USD", name, pending=True, timeout_seconds=60))
    before_both = encode_hold_cursor("alice", "2026-03-01T00:00:00.000000Z", "gone")

    # WHEN the list goes on from there
    page = service.open_holds("alice", starting_after=before_both)

    # THEN it answers what follows that position, as the store's index query does
    assert [t.transfer_id for t in page.items] == ["h1", "h2"]
