"""AccountsService and CustomerProfileService over the reference ledger and in-memory fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from finfaas.domain.errors import AccountExistsWithDifferentFields, AccountNotEmpty, AccountNotFound
from finfaas.platform.audit import AuditLog
from finfaas.platform.pii import EnvelopeCipher, PiiDecryptionFailed
from finfaas.services.accounts.api import OpenAccountBody, PageQuery
from finfaas.services.accounts.model import derived_account_id
from finfaas.services.accounts.service import AccountsService
from finfaas.services.customers.errors import CustomerNotFound, InvalidProfile, ProfileNotFound
from finfaas.services.customers.model import Caller, CustomerRecord, normalized_profile
from finfaas.services.customers.service import AuditTrail, CustomerProfileService
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.ledger.service import LedgerService
from finfaas_dev.fakes.customers import InMemoryCustomerStore
from finfaas_dev.fakes.platform import InMemoryAuditStore, InMemoryDataKeys
from finfaas_dev.testing.reference_model import ReferenceLedger
from support.clocks import SteppingClock

ALICE = Caller("cust-alice", "customer", "req-1", None, "198.51.100.7")
BOB = Caller("cust-bob", "customer")
OPERATOR = Caller("ops-console", "client")
START = datetime(2025, 1, 1, tzinfo=UTC)


class World:
    def __init__(self) -> None:
        self.clock = SteppingClock(START, timedelta(milliseconds=1))
        self.audit_store = InMemoryAuditStore()
        audit = AuditTrail(AuditLog(self.audit_store, "accounts"))
        self.ledger = LedgerService(ReferenceLedger(), self.clock)
        self.ledger.ensure_system_accounts("USD")
        self.accounts = AccountsService(self.ledger, audit)
        self.customers = InMemoryCustomerStore()
        for caller in (ALICE, BOB):
            self.customers.customers[caller.sub] = CustomerRecord(caller.sub, caller.sub.split("-")[1], 0)
        self.keys = InMemoryDataKeys()
        self.profiles = CustomerProfileService(self.customers, EnvelopeCipher(self.keys), audit,
                                               clock=lambda: 1_700_000_000)

    def audit_records(self) -> list:
        return [r for chain in self.audit_store.chains() for r in self.audit_store.records(chain)]


@pytest.fixture
def world() -> World:
    return World()


# --- accounts --------------------------------------------------------------------------------------


def test_an_opened_account_belongs_to_the_caller_under_an_id_derived_from_the_key(world):
    view = world.accounts.open(ALICE, OpenAccountBody(currency="EUR"), "key-1")

    assert view.account_id == derived_account_id("cust-alice", "key-1")
    assert world.ledger.get_account(view.account_id).owner_id == "cust-alice"
    assert (view.currency, view.exponent, view.status, view.balances.available_minor) == ("EUR", 2, "OPEN", 0)


def test_the_same_key_opens_the_same_account_and_other_owners_get_other_ids(world):
    first = world.accounts.open(ALICE, OpenAccountBody(currency="EUR"), "key-1")
    again = world.accounts.open(ALICE, OpenAccountBody(currency="EUR"), "key-1")
    bobs = world.accounts.open(BOB, OpenAccountBody(currency="EUR"), "key-1")

    assert again.account_id == first.account_id != bobs.account_id


def test_the_same_key_with_another_currency_is_refused(world):
    world.accounts.open(ALICE, OpenAccountBody(currency="EUR"), "key-1")

    with pytest.raises(AccountExistsWithDifferentFields):
        world.accounts.open(ALICE, OpenAccountBody(currency="USD"), "key-1")


def test_balances_show_posted_pending_and_available(world):
    account_id = world.accounts.open(ALICE, OpenAccountBody(currency="USD"), "k").account_id
    world.ledger.deposit(account_id, 10_000, "USD")
    world.ledger.transfer(TransferRequest(account_id, "sys-settlement-USD", 2_500, "USD"))
    world.ledger.transfer(TransferRequest(account_id, "sys-settlement-USD", 1_000, "USD", pending=True))

    balances = world.accounts.get_mine(ALICE, account_id).balances
    assert (balances.posted_minor, balances.pending_debits_minor) == (7_500, 1_000)
    assert balances.pending_minor == -1_000
    assert balances.available_minor == 6_500 and balances.exponent == 2


def test_another_customers_account_is_not_found_like_a_missing_one(world):
    account_id = world.accounts.open(ALICE, OpenAccountBody(currency="USD"), "k").account_id

    for read in (lambda: world.accounts.get_mine(BOB, account_id),
                 lambda: world.accounts.statement(BOB, account_id, PageQuery()),
                 lambda: world.accounts.balance_at(BOB, account_id, START)):
        with pytest.raises(AccountNotFound) as caught:
            read()
        assert str(caught.value) == f"account {account_id} not found"


def test_listing_shows_only_the_callers_accounts(world):
    mine = {world.accounts.open(ALICE, OpenAccountBody(currency="USD"), f"k{i}").account_id for i in range(3)}
    world.accounts.open(BOB, OpenAccountBody(currency="USD"), "k0")

    listed = world.accounts.list_mine(ALICE, PageQuery(limit=2))
    rest = world.accounts.list_mine(ALICE, PageQuery(limit=2, starting_after=listed.next_cursor))

    assert listed.has_more and not rest.has_more
    assert {a.account_id for a in listed.data + rest.data} == mine


def test_a_statement_runs_newest_first_with_the_balance_after_each_entry(world):
    account_id = world.accounts.open(ALICE, OpenAccountBody(currency="USD"), "k").account_id
    world.ledger.deposit(account_id, 500, "USD")
    world.ledger.deposit(account_id, 300, "USD")
    world.ledger.transfer(TransferRequest(account_id, "sys-settlement-USD", 200, "USD"))

    statement = world.accounts.statement(ALICE, account_id, PageQuery())

    assert [(e.side, e.posted_delta_minor, e.balance_after_minor) for e in statement.data] == [
        ("debit", -200, 600), ("credit", 300, 800), ("credit", 500, 500)]


def test_close_refuses_an_account_holding_money_and_audits_the_refusal(world):
    account_id = world.accounts.open(ALICE, OpenAccountBody(currency="USD"), "k").account_id
    world.ledger.deposit(account_id, 1, "USD")

    with pytest.raises(AccountNotEmpty):
        world.accounts.close(OPERATOR, account_id)

    [refusal] = [r for r in world.audit_records() if r.actor == "ops-console"]
    assert (refusal.action, refusal.target, refusal.outcome) == ("account.close", f"account:{account_id}",
                                                                 "denied")


def test_freeze_unfreeze_and_close_are_audited_with_the_operator(world):
    account_id = world.accounts.open(ALICE, OpenAccountBody(currency="USD"), "k").account_id

    assert world.accounts.freeze(OPERATOR, account_id).status == "FROZEN"
    assert world.accounts.unfreeze(OPERATOR, account_id).status == "OPEN"
    closed = world.accounts.close(OPERATOR, account_id)

    assert (closed.status, closed.owner_id) == ("CLOSED", "cust-alice")
    # Chains are sharded by actor: one actor's records are in order, different actors' need not be.
    records = world.audit_records()
    assert [(r.action, r.outcome) for r in records if r.actor == "cust-alice"] == [
        ("account.open", "succeeded")]
    assert [(r.action, r.outcome) for r in records if r.actor == "ops-console"] == [
        ("account.freeze", "succeeded"), ("account.unfreeze", "succeeded"), ("account.close", "succeeded")]


# --- profiles --------------------------------------------------------------------------------------


def test_a_profile_is_normalised():
    profile = normalized_profile("  Ada   Lovelace ", "ab 123-456", "+44 (20) 7946-0958")

    assert (profile.name, profile.national_id, profile.phone) == ("Ada Lovelace", "AB123456", "+442079460958")


@pytest.mark.parametrize(
    "name, national_id, phone, bad_fields",
    [
        ("", "AB123456", "+442079460958", ["name"]),
        ("12345", "AB123456", "+442079460958", ["name"]),
        ("Ada\u200bLovelace", "AB123456", "+442079460958", ["name"]),
        ("Ada", "AB1", "+442079460958", ["national_id"]),
        ("Ada", "AB#123456", "+442079460958", ["national_id"]),
        ("Ada", "AB123456", "02079460958", ["phone"]),
        ("Ada", "AB123456", "+4420794609581234", ["phone"]),
        ("", "", "", ["name", "national_id", "phone"]),
    ],
    ids=["empty-name", "digits-name", "invisible-char", "short-id", "symbol-id", "no-plus",
         "too-many-digits", "all-bad"],
)
def test_bad_profile_fields_are_named_without_their_values(name, national_id, phone, bad_fields):
    with pytest.raises(InvalidProfile) as caught:
        normalized_profile(name, national_id, phone)

    assert [field for field, _ in caught.value.errors] == bad_fields
    messages = " ".join(message for _, message in caught.value.errors)
    assert all(value not in messages for value in (name, national_id, phone) if len(value) > 3)


def test_a_saved_profile_is_stored_sealed_and_read_back(world):
    receipt = world.profiles.save(ALICE, "Ada Lovelace", "AB123456", "+442079460958")

    stored = world.customers.get("cust-alice")
    assert receipt.customer_id == "cust-alice" and stored.profile_updated_at_s == receipt.updated_at_s
    assert "Lovelace" not in stored.sealed_profile and "AB123456" not in stored.sealed_profile
    read = world.profiles.read(ALICE)
    assert (read.profile.name, read.profile.national_id, read.profile.phone) == (
        "Ada Lovelace", "AB123456", "+442079460958")


def test_a_sealed_profile_copied_onto_another_customer_does_not_open(world):
    world.profiles.save(ALICE, "Ada Lovelace", "AB123456", "+442079460958")
    world.customers.put_profile("cust-bob", world.customers.get("cust-alice").sealed_profile, 1)

    with pytest.raises(PiiDecryptionFailed):
        world.profiles.read(BOB)


def test_profiles_exist_for_customers_only(world):
    with pytest.raises(CustomerNotFound):
        world.profiles.save(Caller("demo-app", "client"), "Ada Lovelace", "AB123456", "+442079460958")
    with pytest.raises(CustomerNotFound):
        world.profiles.read(Caller("cust-ghost", "customer"))
    with pytest.raises(ProfileNotFound):
        world.profiles.read(BOB)
    assert world.keys.generated == 0


def test_profile_access_is_audited_without_personal_data(world):
    world.profiles.save(ALICE, "Ada Lovelace", "AB123456", "+442079460958")
    world.profiles.read(ALICE)
    with pytest.raises(InvalidProfile):
        world.profiles.save(ALICE, "Ada Lovelace", "AB123456", "not a phone")

    records = world.audit_records()
    assert [(r.action, r.outcome) for r in records] == [
        ("customer.profile.update", "succeeded"), ("customer.profile.read", "succeeded"),
        ("customer.profile.update", "failed")]
    text = repr(records)
    assert all(value not in text for value in ("Lovelace", "AB123456", "+442079460958", "not a phone"))
