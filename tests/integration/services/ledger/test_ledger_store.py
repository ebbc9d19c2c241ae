"""The ledger store on DynamoDB Local: postings, idempotency, holds, links, reversals, statements."""

from __future__ import annotations

from datetime import timedelta

import pytest
from finfaas.domain import errors
from finfaas.domain.ledger import (
    AccountKind,
    AccountStatus,
    Actor,
    HoldTerms,
    NewAccount,
    NewTransfer,
    PendingState,
    PostPending,
    Reversal,
    TransferKind,
    VoidPending,
    linked_legs_max,
)

SYSTEM = Actor.system()


@pytest.fixture
def open_customer(ledger_store, clock, ids):
    def open_(name: str, currency: str = "USD", owner: str | None = None, overdraft: int = 0) -> str:
        new = NewAccount(ids(name), owner or ids(f"owner-{name}"), currency, overdraft_limit_minor=overdraft)
        return ledger_store.open_account(new, clock()).account_id

    return open_


@pytest.fixture
def move(ledger_store, clock, ids):
    """move('t1', debit, credit, amount, **options) -> the created transfer."""

    def move_(name, debit, credit, amount, currency="USD", actor=SYSTEM, **options):
        new = NewTransfer(ids(name), debit, credit, amount, currency, **options)
        return ledger_store.create_transfers([new], actor, clock())[0]

    return move_


def test_amounts_round_trip_exactly_at_any_size(ledger_store, funded, open_customer, move):
    # GIVEN amounts a float cannot hold exactly
    funding, alice = funded(), open_customer("alice")
    # WHEN they are moved and read back
    move("big", funding, alice, 12345678901234567890)
    move("odd", funding, alice, 2**53 + 1)
    # THEN every counter is the exact integer sum
    account = ledger_store.get_account(alice)
    assert account.credits_posted == 12345678901234567890 + 2**53 + 1
    assert type(account.credits_posted) is int
    assert ledger_store.get_account(funding).debits_posted == 12345678901234567890 + 2**53 + 1


def test_a_fresh_transfer_is_one_round_trip_and_a_replay_too(funded, open_customer, move, count_calls):
    funding, alice = funded(), open_customer("alice")
    with count_calls() as calls:
        first = move("t1", funding, alice, 500)
    assert calls == {"TransactWriteItems": 1}
    with count_calls() as calls:
        again = move("t1", funding, alice, 500)
    # The cancellation's ALL_OLD item is the stored transfer: no read needed to replay it.
    assert calls == {"TransactWriteItems": 1}
    assert again == first


def test_round_trips_per_operation(ledger_store, clock, ids, funded, open_customer, move, count_calls):
    """Calls per operation on the happy path; printed for the performance notes (-s shows them)."""
    funding = funded()
    measured = {}
    with count_calls() as calls:
        alice = open_customer("alice")
    measured["open_account"] = dict(calls)
    bob = open_customer("bob")
    with count_calls() as calls:
        move("deposit", funding, alice, 1_000)
    measured["transfer"] = dict(calls)
    with count_calls() as calls:
        move("hold", alice, bob, 300, pending=True, timeout_seconds=60)
    measured["pending"] = dict(calls)
    with count_calls() as calls:
        ledger_store.post_pending(PostPending(ids("post"), ids("hold"), 200), SYSTEM, clock())
    measured["post_pending"] = dict(calls)
    move("hold2", alice, bob, 100, pending=True)
    with count_calls() as calls:
        ledger_store.void_pending(VoidPending(ids("void"), ids("hold2")), SYSTEM, clock())
    measured["void_pending"] = dict(calls)
    with count_calls() as calls:
        ledger_store.reverse(Reversal(ids("rev"), ids("post")), SYSTEM, clock())
    measured["reverse"] = dict(calls)
    legs = [NewTransfer(ids(f"leg{i}"), alice, bob, 10, "USD") for i in range(3)]
    with count_calls() as calls:
        ledger_store.create_transfers(legs, SYSTEM, clock())
    measured["linked_3_legs"] = dict(calls)
    with count_calls() as calls:
        ledger_store.statement(alice, 10, None)
    measured["statement_page"] = dict(calls)
    print("\nDynamoDB calls per operation:", measured)
    assert measured["open_account"] == {"TransactWriteItems": 1}
    assert measured["transfer"] == {"TransactWriteItems": 1}
    assert measured["pending"] == {"TransactWriteItems": 1}
    assert measured["linked_3_legs"] == {"TransactWriteItems": 1}
    for resolution in ("post_pending", "void_pending", "reverse"):
        assert measured[resolution] == {"GetItem": 1, "TransactWriteItems": 1}
    assert measured["statement_page"] == {"GetItem": 1, "Query": 1}


def test_same_id_with_other_fields_is_refused_and_changes_nothing(ledger_store, funded, open_customer, move):
    funding, alice, bob = funded(), open_customer("alice"), open_customer("bob")
    move("t1", funding, alice, 500)
    with pytest.raises(errors.ExistsWithDifferentAmount):
        move("t1", funding, alice, 501)
    with pytest.raises(errors.ExistsWithDifferentCreditAccount):
        move("t1", funding, bob, 500)
    with pytest.raises(errors.ExistsWithDifferentKind):
        move("t1", funding, alice, 500, pending=True)
    assert ledger_store.get_account(alice).credits_posted == 500
    assert ledger_store.get_account(bob).credits_posted == 0


def test_limited_account_cannot_go_below_zero_but_overdraft_allows_its_limit(funded, open_customer, move,
                                                                              ledger_store):
    funding = funded()
    alice, carol, bob = open_customer("alice"), open_customer("carol", overdraft=50), open_customer("bob")
    move("d1", funding, alice, 100)
    with pytest.raises(errors.InsufficientFunds) as refused:
        move("t1", alice, bob, 101)
    assert refused.value.subject == alice
    move("t2", alice, bob, 100)
    move("t3", carol, bob, 50)  # carol may go to -50
    with pytest.raises(errors.InsufficientFunds):
        move("t4", carol, bob, 1)
    assert ledger_store.get_account(carol).balance_minor == -50
    assert ledger_store.get_account(bob).balance_minor == 150


def test_account_problems_are_named(ledger_store, clock, funded, open_customer, move, ids):
    funding, alice, euro = funded(), open_customer("alice", owner=ids("u1")), open_customer("euro", "EUR")
    move("d1", funding, alice, 100)
    with pytest.raises(errors.AccountNotFound) as missing:
        move("t1", alice, ids("nobody"), 1)
    assert missing.value.subject == ids("nobody")
    with pytest.raises(errors.CurrencyMismatch) as mismatch:
        move("t2", alice, euro, 1)
    assert mismatch.value.subject == euro
    # A customer cannot debit someone else's account: it looks like it does not exist.
    with pytest.raises(errors.AccountNotFound):
        move("t3", alice, funding, 1, actor=Actor(owner_id=ids("mallory")))
    move("t4", alice, funding, 1, actor=Actor(owner_id=ids("u1")))
    ledger_store.set_account_status(alice, AccountStatus.FROZEN, clock())
    with pytest.raises(errors.AccountFrozen):
        move("t5", alice, funding, 1)
    move("t6", funding, alice, 1)  # a frozen account still receives
    assert ledger_store.get_account(alice).balance_minor == 100


def test_closing_needs_an_empty_account_and_a_closed_one_takes_nothing(ledger_store, clock, funded,
                                                                       open_customer, move):
    funding, alice = funded(), open_customer("alice")
    move("d1", funding, alice, 100)
    with pytest.raises(errors.AccountNotEmpty):
        ledger_store.set_account_status(alice, AccountStatus.CLOSED, clock())
    move("w1", alice, funding, 100)
    closed = ledger_store.set_account_status(alice, AccountStatus.CLOSED, clock())
    assert closed.status is AccountStatus.CLOSED
    with pytest.raises(errors.AccountClosed):
        move("d2", funding, alice, 1)
    with pytest.raises(errors.InvalidStatusChange):
        ledger_store.set_account_status(alice, AccountStatus.OPEN, clock())


def test_reopening_an_account_id_is_idempotent_unless_fields_differ(ledger_store, clock, ids):
    new = NewAccount(ids("acc"), ids("owner"), "JPY")
    first = ledger_store.open_account(new, clock())
    assert ledger_store.open_account(new, clock()) == first
    with pytest.raises(errors.AccountExistsWithDifferentFields) as refused:
        ledger_store.open_account(NewAccount(ids("acc"), ids("owner"), "USD"), clock())
    assert refused.value.field == "currency"


def test_a_hold_reserves_then_posts_part_and_releases_the_rest(ledger_store, clock, ids, funded,
                                                                open_customer, move):
    funding, alice, shop = funded(), open_customer("alice"), open_customer("shop")
    move("d1", funding, alice, 1_000)
    hold = move("hold", alice, shop, 700, pending=True, timeout_seconds=3600)
    account = ledger_store.get_account(alice)
    assert (account.debits_pending, account.available_minor, account.balance_minor) == (700, 300, 1_000)
    with pytest.raises(errors.InsufficientFunds):
        move("t1", alice, shop, 301)
    post = ledger_store.post_pending(PostPending(ids("post"), hold.transfer_id, 650), SYSTEM, clock())
    assert (post.kind, post.amount_minor, post.pending_id) == (TransferKind.POST, 650, hold.transfer_id)
    account = ledger_store.get_account(alice)
    assert (account.debits_pending, account.debits_posted, account.available_minor) == (0, 650, 350)
    assert ledger_store.get_account(shop).credits_posted == 650
    assert ledger_store.get_transfer(hold.transfer_id).state is PendingState.POSTED
    # A retry of the post replays; any other resolution is refused.
    assert ledger_store.post_pending(PostPending(ids("post"), hold.transfer_id, 650), SYSTEM, clock()) == post
    with pytest.raises(errors.PendingAlreadyPosted):
        ledger_store.void_pending(VoidPending(ids("void"), hold.transfer_id), SYSTEM, clock())
    with pytest.raises(errors.PostAmountExceedsPending):
        small = move("h2", alice, shop, 10, pending=True)
        ledger_store.post_pending(PostPending(ids("post2"), small.transfer_id, 11), SYSTEM, clock())


def test_expired_holds_cannot_be_posted_and_the_sweep_releases_them(ledger_store, clock, ids, funded,
                                                                    open_customer, move):
    funding, alice, shop = funded(), open_customer("alice"), open_customer("shop")
    move("d1", funding, alice, 100)
    hold = move("hold", alice, shop, 80, pending=True, timeout_seconds=1)
    later = hold.created_at + timedelta(seconds=2)
    with pytest.raises(errors.PendingExpired):
        ledger_store.post_pending(PostPending(ids("post"), hold.transfer_id), SYSTEM, later)
    not_yet = ledger_store.expire_due_holds(hold.created_at + timedelta(milliseconds=500), 1000)
    assert hold.transfer_id not in {t.pending_id for t in not_yet}
    expired = ledger_store.expire_due_holds(later, 1000)
    assert hold.transfer_id in {t.pending_id for t in expired}
    assert ledger_store.get_transfer(hold.transfer_id).state is PendingState.EXPIRED
    assert ledger_store.get_account(alice).available_minor == 100
    again = ledger_store.expire_due_holds(later, 1000)
    assert hold.transfer_id not in {t.pending_id for t in again}


def test_a_whole_post_on_the_holds_terms_is_one_write_and_its_repeat_answers_the_first(
        ledger_store, clock, ids, funded, open_customer, move, count_calls):
    funding, alice, shop = funded(), open_customer("alice"), open_customer("shop")
    move("d1", funding, alice, 1_000)
    hold = move("hold", alice, shop, 700, pending=True)
    terms = HoldTerms(alice, shop, 700, "USD")
    request = PostPending(ids("post"), hold.transfer_id, hold=terms)

    with count_calls() as calls:
        post = ledger_store.post_pending(request, SYSTEM, clock())
    assert calls == {"TransactWriteItems": 1}  # the hold is not read
    with count_calls() as calls:
        again = ledger_store.post_pending(request, SYSTEM, clock())  # a lost answer's retry

    assert again == post and calls == {"TransactWriteItems": 1}
    assert (post.kind, post.amount_minor, post.pending_id) == (TransferKind.POST, 700, hold.transfer_id)
    account = ledger_store.get_account(alice)
    assert (account.debits_pending, account.debits_posted, account.available_minor) == (0, 700, 300)
    assert ledger_store.get_account(shop).credits_posted == 700
    assert ledger_store.get_transfer(hold.transfer_id).state is PendingState.POSTED


def test_a_post_on_terms_of_a_hold_voided_expired_or_posted_otherwise_answers_as_without_them(
        ledger_store, clock, ids, funded, open_customer, move):
    funding, alice, shop = funded(), open_customer("alice"), open_customer("shop")
    move("d1", funding, alice, 1_000)
    voided = move("voided", alice, shop, 100, pending=True)
    ledger_store.void_pending(VoidPending(ids("void"), voided.transfer_id), SYSTEM, clock())
    posted = move("posted", alice, shop, 100, pending=True)
    ledger_store.post_pending(PostPending(ids("other-post"), posted.transfer_id), SYSTEM, clock())
    expiring = move("expiring", alice, shop, 100, pending=True, timeout_seconds=1)
    terms = HoldTerms(alice, shop, 100, "USD")

    with pytest.raises(errors.PendingAlreadyVoided):
        ledger_store.post_pending(PostPending(ids("p1"), voided.transfer_id, hold=terms), SYSTEM, clock())
    with pytest.raises(errors.PendingAlreadyPosted):
        ledger_store.post_pending(PostPending(ids("p2"), posted.transfer_id, hold=terms), SYSTEM, clock())
    later = expiring.created_at + timedelta(seconds=2)
    with pytest.raises(errors.PendingExpired):
        ledger_store.post_pending(PostPending(ids("p3"), expiring.transfer_id, hold=terms), SYSTEM, later)
    with pytest.raises(errors.TransferNotFound):
        ledger_store.post_pending(PostPending(ids("p4"), ids("no-hold"), hold=terms), SYSTEM, clock())
    # THEN nothing moved past the one post made without terms
    account = ledger_store.get_account(alice)
    assert (account.debits_posted, account.debits_pending) == (100, 100)
    assert [ledger_store.get_transfer(ids(p)) for p in ("p1", "p2", "p3", "p4")] == [None] * 4


def test_terms_that_are_not_the_holds_post_the_hold_as_it_is(ledger_store, clock, ids, funded, open_customer,
                                                             move):
    funding, alice, shop = funded(), open_customer("alice"), open_customer("shop")
    move("d1", funding, alice, 1_000)
    hold = move("hold", alice, shop, 700, pending=True)

    wrong = HoldTerms(alice, shop, 999, "USD")
    post = ledger_store.post_pending(PostPending(ids("post"), hold.transfer_id, hold=wrong), SYSTEM, clock())

    assert post.amount_minor == 700
    assert ledger_store.get_account(shop).credits_posted == 700
    assert ledger_store.get_account(alice).available_minor == 300


def test_linked_legs_commit_together_or_not_at_all(ledger_store, clock, ids, funded, open_customer):
    funding, alice, shop, fees = funded(), open_customer("alice"), open_customer("shop"), funded("USD")
    ledger_store.create_transfers([NewTransfer(ids("d1"), funding, alice, 100, "USD")], SYSTEM, clock())
    # GIVEN a payment plus a fee that together exceed alice's funds
    legs = [NewTransfer(ids("pay"), alice, shop, 95, "USD"), NewTransfer(ids("fee"), alice, fees, 6, "USD")]
    # WHEN they are sent linked THEN neither applies
    with pytest.raises(errors.InsufficientFunds):
        ledger_store.create_transfers(legs, SYSTEM, clock())
    assert ledger_store.get_transfer(ids("pay")) is None
    assert ledger_store.get_account(shop).credits_posted == 0
    # AND with a fee that fits, both apply at once (alice appears in two legs: one aggregated update)
    legs[1] = NewTransfer(ids("fee"), alice, fees, 5, "USD")
    created = ledger_store.create_transfers(legs, SYSTEM, clock())
    assert [t.batch_id for t in created] == [ids("pay"), ids("pay")]
    assert ledger_store.get_account(alice).balance_minor == 0
    assert ledger_store.create_transfers(legs, SYSTEM, clock()) == created
    with pytest.raises(errors.ExistsWithDifferentLinked):
        ledger_store.create_transfers(legs[:1], SYSTEM, clock())


def test_a_linked_batch_cannot_credit_one_account_in_two_currencies(ledger_store, clock, ids, funded,
                                                                     open_customer):
    usd, jpy, alice = funded("USD"), funded("JPY"), open_customer("alice", "USD")
    legs = [NewTransfer(ids("usd"), usd, alice, 100, "USD"), NewTransfer(ids("jpy"), jpy, alice, 100, "JPY")]
    with pytest.raises(errors.CurrencyMismatch) as refused:
        ledger_store.create_transfers(legs, SYSTEM, clock())
    assert refused.value.subject == alice
    assert ledger_store.get_account(alice).credits_posted == 0


def test_the_largest_linked_batch_fits_one_transaction(ledger_store, clock, ids):
    # GIVEN the worst case: every leg a hold with a timeout between two accounts no other leg touches
    def unlimited(name: str) -> str:
        new = NewAccount(ids(name), ids("owner"), "USD", debits_must_not_exceed_credits=False)
        return ledger_store.open_account(new, clock()).account_id

    legs = [NewTransfer(ids(f"leg{i}"), unlimited(f"d{i}"), unlimited(f"c{i}"), i + 1, "USD", pending=True,
                        timeout_seconds=60) for i in range(linked_legs_max)]
    # WHEN they are sent linked THEN they fit one transaction
    assert len(ledger_store.create_transfers(legs, SYSTEM, clock())) == linked_legs_max
    one_more = NewTransfer(ids("one-more"), legs[0].debit_account_id, legs[0].credit_account_id, 1, "USD")
    with pytest.raises(errors.TooManyLegs):
        ledger_store.create_transfers(legs + [one_more], SYSTEM, clock())


def test_a_transfer_is_reversed_once(ledger_store, clock, ids, funded, open_customer, move):
    funding, alice, bob = funded(), open_customer("alice"), open_customer("bob")
    move("d1", funding, alice, 100)
    paid = move("pay", alice, bob, 60)
    reversal = ledger_store.reverse(Reversal(ids("rev"), paid.transfer_id), SYSTEM, clock())
    assert (reversal.debit_account_id, reversal.credit_account_id, reversal.amount_minor) == (bob, alice, 60)
    assert ledger_store.get_account(alice).balance_minor == 100
    assert ledger_store.reverse(Reversal(ids("rev"), paid.transfer_id), SYSTEM, clock()) == reversal
    with pytest.raises(errors.AlreadyReversed):
        ledger_store.reverse(Reversal(ids("rev2"), paid.transfer_id), SYSTEM, clock())
    hold = move("hold", alice, bob, 10, pending=True)
    with pytest.raises(errors.NotReversible):
        ledger_store.reverse(Reversal(ids("rev3"), hold.transfer_id), SYSTEM, clock())
    with pytest.raises(errors.TransferNotFound):
        ledger_store.reverse(Reversal(ids("rev4"), ids("nothing")), SYSTEM, clock())


def test_statement_pages_are_stable_while_new_entries_arrive(ledger_store, funded, open_customer, move):
    funding, alice = funded(), open_customer("alice")
    for i in range(5):
        move(f"d{i}", funding, alice, 10 * (i + 1))  # 10, 20, 30, 40, 50: balance 150
    first = ledger_store.statement(alice, 2, None)
    assert [line.balance_after_minor for line in first.lines] == [150, 100]
    assert first.has_more
    # WHEN money arrives between pages
    move("late", funding, alice, 1_000)
    rest = ledger_store.statement(alice, 10, first.next_cursor)
    # THEN the next page continues where the first ended, with consistent running balances
    assert [line.entry.amount_minor for line in rest.lines] == [30, 20, 10]
    assert [line.balance_after_minor for line in rest.lines] == [60, 30, 10]
    assert not rest.has_more
    assert ledger_store.statement(alice, 1, None).lines[0].balance_after_minor == 1_150


def test_balance_at_a_past_moment(ledger_store, clock, funded, open_customer, move):
    funding, alice = funded(), open_customer("alice")
    before = clock()
    first = move("d1", funding, alice, 100)
    between = clock()
    move("d2", funding, alice, 50)
    assert ledger_store.balance_at(alice, before) == 0
    assert ledger_store.balance_at(alice, first.created_at) == 100
    assert ledger_store.balance_at(alice, between) == 100
    assert ledger_store.balance_at(alice, clock()) == 150


def test_customers_list_their_accounts_in_pages(ledger_store, clock, ids):
    owner = ids("owner")
    opened = [ledger_store.open_account(NewAccount(ids(f"a{i}"), owner, "GBP"), clock()).account_id
              for i in range(3)]
    first = ledger_store.accounts_by_owner(owner, 2, None)
    rest = ledger_store.accounts_by_owner(owner, 2, first.next_cursor)
    assert [a.account_id for a in first.items + rest.items] == opened
    assert first.has_more and not rest.has_more


def test_system_accounts_are_unlimited(ledger_store, clock, ids):
    new = NewAccount(ids("fees"), "system", "USD", AccountKind.FEES, debits_must_not_exceed_credits=False)
    account = ledger_store.open_account(new, clock())
    assert not account.is_limited


def test_accounts_are_read_together_in_one_consistent_call(ledger_store, open_customer, ids, count_calls):
    # GIVEN two open accounts and an id that names none
    alice, bob = open_customer("alice"), open_customer("bob")

    # WHEN a transfer's validation reads them all at once
    with count_calls() as calls:
        found = ledger_store.get_accounts([alice, bob, ids("nobody"), alice])

    # THEN the existing ones come back, as get_account reads them, in one BatchGetItem
    assert found == {alice: ledger_store.get_account(alice), bob: ledger_store.get_account(bob)}
    assert calls == {"BatchGetItem": 1}
