"""TransfersService.accept: what the request and the caller's own accounts decide is refused before
anything is written; another customer's account tells the caller nothing a missing one would not.

The service runs on the in-memory order store, a directory of accounts in a dict and an orchestrator
that records what it was asked to start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from finfaas.domain.creditor import CreditorVault
from finfaas.domain.limits import Tier
from finfaas.domain.money import transfer_amount_minor_max
from finfaas.platform.pii import EnvelopeCipher, KeyedDigests
from finfaas.services.transfers.api import NewTransferBody
from finfaas.services.transfers.errors import (
    InactiveAccount,
    OverTransferLimit,
    TransferExists,
    UnknownAccount,
    ValidationRefused,
    WrongCurrency,
)
from finfaas.services.transfers.model import AccountInfo, transfer_id_for
from finfaas.services.transfers.service import TransfersService
from finfaas_dev.fakes.platform import InMemoryDataKeys
from finfaas_dev.fakes.transfers import InMemoryTransferOrders
from pydantic import ValidationError

OWNER, OTHER = "cust-1", "cust-2"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
KEY = "k-1"


class Accounts:
    """AccountDirectory in a dict; counts the reads acceptance makes."""

    def __init__(self, *accounts: AccountInfo) -> None:
        self.by_id = {a.account_id: a for a in accounts}
        self.reads: list[str] = []
        self.calls = 0

    def accounts(self, account_ids) -> dict[str, AccountInfo]:
        self.calls += 1
        self.reads += account_ids
        return {i: self.by_id[i] for i in account_ids if i in self.by_id}


class RecordingOrchestrator:
    def __init__(self) -> None:
        self.started: list[str] = []

    def start(
        self, state_machine: str, name: str, input_value: Any, reference: str | None = None
    ) -> dict[str, Any]:
        self.started.append(name)
        return {"execution_id": f"{state_machine}:{name}"}


class Unused:
    """Risk: acceptance never screens."""

    def __getattr__(self, name: str):
        raise AssertionError(f"acceptance called {name}")


def account(account_id: str, owner: str = OWNER, currency: str = "USD", status: str = "OPEN") -> AccountInfo:
    return AccountInfo(account_id, owner, currency, "CUSTOMER", status)


class World:
    def __init__(self, *accounts: AccountInfo) -> None:
        self.accounts = Accounts(
            account("acc-a"), account("acc-c"), account("acc-b", OTHER), *accounts
        )
        self.orders = InMemoryTransferOrders()
        self.orchestrator = RecordingOrchestrator()
        self.service = TransfersService(
            self.orders, self.accounts, Unused(), self.orchestrator, clock=lambda: NOW,
            vault=CreditorVault(EnvelopeCipher(InMemoryDataKeys()), KeyedDigests(b"k" * 32)),
        )

    def accept(self, key: str = KEY, owner: str = OWNER, **fields: Any):
        body = {"debit_account_id": "acc-a", "credit_account_id": "acc-b", "amount": 2_500, "currency": "USD"}
        return self.service.accept(owner, key, NewTransferBody.model_validate({**body, **fields}))

    def refused(self, **fields: Any) -> ValidationRefused:
        with pytest.raises(ValidationRefused) as refusal:
            self.accept(**fields)
        self.assert_nothing_recorded()
        return refusal.value

    def assert_nothing_recorded(self, key: str = KEY) -> None:
        assert self.orders.get(transfer_id_for(OWNER, key)) is None
        assert self.orders.events == []
        assert self.orchestrator.started == []


def test_another_customers_account_cannot_be_debited_and_nothing_is_recorded():
    refusal = World().refused(debit_account_id="acc-b", credit_account_id="acc-a")

    assert isinstance(refusal, UnknownAccount)
    assert (refusal.field, refusal.detail) == ("debit_account_id", "account acc-b not found")


@pytest.mark.parametrize(
    "payee",
    [account("acc-x", OTHER, currency="EUR"), account("acc-x", OTHER, status="FROZEN"),
     account("acc-x", OTHER, status="CLOSED"), AccountInfo("acc-x", "sys", "USD", "SETTLEMENT", "OPEN")],
    ids=["in-eur", "frozen", "closed", "system"],
)
def test_a_payee_account_of_another_customer_that_cannot_take_the_transfer_is_refused_as_missing(payee):
    missing = World().refused(credit_account_id="acc-x")

    refusal = World(payee).refused(credit_account_id="acc-x")

    assert type(refusal) is type(missing) is UnknownAccount
    assert (refusal.code, refusal.field, refusal.detail) == (missing.code, missing.field, missing.detail)


@pytest.mark.parametrize(
    ("fields", "error", "field", "detail"),
    [
        ({"debit_account_id": "acc-eur"}, WrongCurrency, "currency", "account acc-eur holds EUR"),
        ({"credit_account_id": "acc-eur"}, WrongCurrency, "credit_account_id", "account acc-eur holds EUR"),
        ({"debit_account_id": "acc-frozen"}, InactiveAccount, "debit_account_id",
         "account acc-frozen is FROZEN"),
        ({"credit_account_id": "acc-frozen"}, InactiveAccount, "credit_account_id",
         "account acc-frozen is FROZEN"),
    ],
    ids=["own-source-in-eur", "own-payee-in-eur", "own-source-frozen", "own-payee-frozen"],
)
def test_the_callers_own_accounts_give_the_precise_reason(fields, error, field, detail):
    world = World(account("acc-eur", currency="EUR"), account("acc-frozen", status="FROZEN"))

    refusal = world.refused(**fields)

    assert type(refusal) is error
    assert (refusal.field, refusal.detail) == (field, detail)


@pytest.mark.parametrize("amount", [2**63 + 1, 1_000_001, "10000.01"])
def test_an_amount_above_the_tiers_per_transfer_limit_is_refused_at_once(amount):
    refusal = World().refused(amount=amount)

    assert isinstance(refusal, OverTransferLimit)
    assert (refusal.code, refusal.field) == ("per_transfer_limit_exceeded", "amount")


def test_the_tier_in_force_at_acceptance_decides():
    world = World()
    world.orders.set_tier(OWNER, Tier.PREMIUM)

    accepted = world.accept(amount=1_000_001)

    assert world.orchestrator.started == [accepted.order.transfer_id]


@pytest.mark.parametrize("amount", [0, -1, transfer_amount_minor_max + 1, True, 12.5, "", "1" * 65])
def test_an_amount_no_ledger_could_hold_is_refused_when_the_body_is_parsed(amount):
    body = {"debit_account_id": "acc-a", "credit_account_id": "acc-b", "amount": amount, "currency": "USD"}

    with pytest.raises(ValidationError) as refused:
        NewTransferBody.model_validate(body)

    assert [error["loc"] for error in refused.value.errors()] == [("amount",)]


def test_acceptance_reads_both_accounts_once_in_one_call():
    world = World()

    world.accept()

    assert world.accounts.reads == ["acc-a", "acc-b"]
    assert world.accounts.calls == 1


def test_a_transfer_to_another_bank_reads_only_the_source():
    world = World()
    creditor = {"bank_code": "BANKGB22", "account_number": "12345678", "name": "Carol"}

    world.accept(credit_account_id=None, creditor=creditor)

    assert world.accounts.reads == ["acc-a"]


def test_a_repeat_answers_as_the_first_even_when_an_account_changed_since():
    world = World()
    first = world.accept()
    world.accounts.by_id["acc-a"] = account("acc-a", status="FROZEN")

    again = world.accept()

    assert again.repeated and again.order.transfer_id == first.order.transfer_id
    assert len(world.orders.events) == 1
    with pytest.raises(TransferExists):
        world.accept(amount=1)


def test_the_saga_checks_again_and_keeps_another_customers_account_private():
    # GIVEN a transfer accepted while the payee's account was open, frozen before the saga validates it
    world = World()
    accepted = world.accept()
    world.accounts.by_id["acc-b"] = account("acc-b", OTHER, status="FROZEN")

    with pytest.raises(UnknownAccount) as refusal:
        world.service.validate(accepted.order.transfer_id)

    assert refusal.value.detail == "account acc-b not found"
