"""Posting rules: aggregated per-account changes, what blocks them, validation, keys and cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from finfaas.domain import errors
from finfaas.domain.ledger import (
    Account,
    AccountKind,
    AccountStatus,
    Actor,
    Leg,
    NewTransfer,
    Transfer,
    TransferKind,
    account_changes,
    check_batch,
    check_new_transfer,
    check_same_transfer,
    decode_statement_cursor,
    encode_statement_cursor,
    entry_key,
    entry_key_prefix,
    first_violation,
    leg_for_resolution,
    linked_legs_max,
    micros,
    resolution_transfer,
    violation,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def account(account_id="a", *, balance=0, pending=0, overdraft=0, limited=True, status=AccountStatus.OPEN,
            currency="USD", owner="u1") -> Account:
    return Account(account_id, owner, currency, AccountKind.CUSTOMER, status, NOW, limited, overdraft,
                   debits_pending=pending, credits_posted=balance)


def posted(debit, credit, amount, transfer_id="t") -> Leg:
    return Leg(transfer_id, TransferKind.POSTED, debit, credit, "USD", posted_minor=amount,
               amount_minor=amount)


def test_legs_on_the_same_account_become_one_change_judged_on_the_net():
    # GIVEN alice pays 95 to the shop and 5 in fees, and receives 30 back in the same batch
    legs = [posted("alice", "shop", 95), posted("alice", "fees", 5), posted("shop", "alice", 30)]
    changes = {c.account_id: c for c in account_changes(legs, Actor.system())}
    # THEN alice has one change whose funds requirement is the net debit
    alice = changes["alice"]
    assert (alice.debits_posted, alice.credits_posted) == (100, 30)
    assert alice.funds_required_minor == 70
    assert changes["fees"].funds_required_minor is None
    assert [c.account_id for c in account_changes(legs, Actor.system())] == ["alice", "fees", "shop"]


def test_a_customer_actor_must_own_the_debited_accounts_only():
    changes = {c.account_id: c for c in account_changes([posted("alice", "bob", 1)], Actor(owner_id="u1"))}
    assert changes["alice"].owner_id == "u1"
    assert changes["bob"].owner_id is None


@pytest.mark.parametrize(("state", "error"), [
    (None, errors.AccountNotFound),
    (account(owner="someone-else"), errors.AccountNotFound),
    (account(currency="EUR", balance=10), errors.CurrencyMismatch),
    (account(status=AccountStatus.FROZEN, balance=10), errors.AccountFrozen),
    (account(status=AccountStatus.CLOSED), errors.AccountClosed),
    (account(balance=9), errors.InsufficientFunds),
    (account(balance=19, pending=10), errors.InsufficientFunds),
])
def test_what_blocks_a_debit(state, error):
    change = account_changes([posted("a", "b", 10)], Actor(owner_id="u1"))[0]
    assert isinstance(violation(change, state), error)


@pytest.mark.parametrize("state", [
    account(balance=10), account(balance=0, overdraft=10), account(limited=False),
    account(balance=20, pending=10),
])
def test_what_allows_a_debit(state):
    change = account_changes([posted("a", "b", 10)], Actor(owner_id="u1"))[0]
    assert violation(change, state) is None


def test_a_frozen_account_receives_and_completes_holds_but_a_closed_one_does_not():
    credit = {c.account_id: c for c in account_changes([posted("x", "a", 10)], Actor.system())}["a"]
    assert violation(credit, account(status=AccountStatus.FROZEN)) is None
    assert isinstance(violation(credit, account(status=AccountStatus.CLOSED)), errors.AccountClosed)
    hold = Transfer("h", TransferKind.PENDING, "a", "b", 10, "USD", NOW)
    post = resolution_transfer(hold, "p", TransferKind.POST, None, NOW)
    debit = account_changes([leg_for_resolution(hold, post)], Actor.system())[0]
    assert violation(debit, account(status=AccountStatus.FROZEN, balance=10, pending=10)) is None


def test_releasing_a_hold_is_never_blocked():
    hold = Transfer("h", TransferKind.PENDING, "a", "b", 10, "USD", NOW)
    void = resolution_transfer(hold, "v", TransferKind.VOID, None, NOW)
    for change in account_changes([leg_for_resolution(hold, void)], Actor.system()):
        assert violation(change, account(change.account_id, status=AccountStatus.CLOSED, pending=10)) is None


def test_a_partial_post_releases_the_whole_hold_and_posts_the_part():
    hold = Transfer("h", TransferKind.PENDING, "a", "b", 100, "USD", NOW)
    leg = leg_for_resolution(hold, resolution_transfer(hold, "p", TransferKind.POST, 60, NOW))
    assert (leg.posted_minor, leg.pending_minor) == (60, -100)
    debit = account_changes([leg], Actor.system())[0]
    assert debit.available_delta_minor == 40 and debit.funds_required_minor is None
    with pytest.raises(errors.PostAmountExceedsPending):
        resolution_transfer(hold, "p", TransferKind.POST, 101, NOW)


def test_the_reported_problem_is_chosen_by_kind_then_account():
    problems = [errors.InsufficientFunds("", subject="a"), errors.CurrencyMismatch("", subject="z"),
                errors.CurrencyMismatch("", subject="m")]
    assert first_violation(problems) == errors.CurrencyMismatch("", subject="m")
    assert first_violation([]) is None


def test_a_retry_must_repeat_every_client_field():
    stored = Transfer("t", TransferKind.POSTED, "a", "b", 10, "USD", NOW)
    same_but_later = Transfer("t", TransferKind.POSTED, "a", "b", 10, "USD", NOW + timedelta(seconds=5))
    assert check_same_transfer(stored, same_but_later) is stored
    different = Transfer("t", TransferKind.POSTED, "a", "c", 10, "USD", NOW)
    with pytest.raises(errors.ExistsWithDifferentCreditAccount) as refused:
        check_same_transfer(stored, different)
    assert refused.value.field == "credit_account_id"


@pytest.mark.parametrize(("transfer", "error", "field"), [
    (NewTransfer("t#1", "a", "b", 1, "USD"), errors.InvalidIdentifier, "transfer_id"),
    (NewTransfer("t", "", "b", 1, "USD"), errors.InvalidIdentifier, "debit_account_id"),
    (NewTransfer("t", "a", "a", 1, "USD"), errors.SameAccount, "credit_account_id"),
    (NewTransfer("t", "a", "b", 0, "USD"), errors.InvalidAmount, "amount"),
    (NewTransfer("t", "a", "b", 1, "usd"), errors.UnknownCurrency, "currency"),
    (NewTransfer("t", "a", "b", 1, "USD", timeout_seconds=5), errors.InvalidTimeout, "timeout_seconds"),
    (NewTransfer("t", "a", "b", 1, "USD", pending=True, timeout_seconds=-1), errors.InvalidTimeout,
     "timeout_seconds"),
    (NewTransfer("t", "a", "b", 1, "USD", metadata="x" * 141), errors.InvalidInput, "metadata"),
])
def test_transfer_validation_names_the_field(transfer, error, field):
    with pytest.raises(error) as refused:
        check_new_transfer(transfer)
    assert refused.value.field == field


def test_linked_batches_are_bounded_and_ids_distinct():
    leg = NewTransfer("t", "a", "b", 1, "USD")
    with pytest.raises(errors.TooManyLegs):
        check_batch([])
    with pytest.raises(errors.TooManyLegs):
        check_batch([NewTransfer(f"t{i}", "a", "b", 1, "USD") for i in range(linked_legs_max + 1)])
    with pytest.raises(errors.DuplicateTransferId):
        check_batch([leg, leg])
    with pytest.raises(errors.InvalidAmount) as refused:
        check_batch([leg, NewTransfer("u", "a", "b", -1, "USD")])
    assert refused.value.field == "transfers[1].amount"


def test_entry_keys_order_by_time_then_transfer_then_leg():
    early, late = entry_key_prefix(micros(NOW)), entry_key_prefix(micros(NOW) + 1)
    keys = [entry_key(late, "a", 0, "D"), entry_key(early, "z", 1, "C"), entry_key(early, "z", 0, "D")]
    assert sorted(keys) == [keys[2], keys[1], keys[0]]
    assert micros(NOW) == 1767323045678901


def test_statement_cursors_round_trip_and_refuse_other_accounts_or_garbage():
    cursor = encode_statement_cursor("alice", "0001#t#000C", -12345678901234567890)
    assert decode_statement_cursor("alice", cursor) == ("0001#t#000C", -12345678901234567890)
    for bad_account, bad_cursor in (("bob", cursor), ("alice", "not-a-cursor"), ("alice", "")):
        with pytest.raises(errors.InvalidInput) as refused:
            decode_statement_cursor(bad_account, bad_cursor)
        assert refused.value.field == "starting_after"


def test_an_account_touched_in_two_currencies_by_one_batch_never_fits():
    # GIVEN a batch whose legs credit the same account in USD and in JPY
    legs = [posted("fund", "alice", 5), Leg("t2", TransferKind.POSTED, "yen", "alice", "JPY", 5, 0, 5)]
    alice = {c.account_id: c for c in account_changes(legs, Actor.system())}["alice"]
    # THEN whatever alice's currency, the change is a currency mismatch
    assert isinstance(violation(alice, account("alice")), errors.CurrencyMismatch)
    assert isinstance(violation(alice, account("alice", currency="JPY")), errors.CurrencyMismatch)
