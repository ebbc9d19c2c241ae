"""The ledger store on the embedded DynamoDB Local, with a session clock and per-test ids."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import Counter

import pytest
from finfaas.domain.ledger import AccountKind, NewAccount
from finfaas.store.ledger_store import DynamoLedgerStore
from finfaas.store.tables import LedgerTables
from support.ledger_testing import SessionClock

SESSION_CLOCK = SessionClock()


@pytest.fixture(scope="session")
def ledger_store(embedded_aws) -> DynamoLedgerStore:
    return DynamoLedgerStore(LedgerTables.for_stage(embedded_aws.stage), os.environ["AWS_DEFAULT_REGION"])


@pytest.fixture
def clock() -> SessionClock:
    """Monotonic across the whole session, so accounts shared by tests never see time go back."""
    return SESSION_CLOCK


@pytest.fixture
def ids():
    """Makes ids unique to this test: ids('alice') -> 'a1b2c3-alice'."""
    prefix = uuid.uuid4().hex[:8]
    return lambda name: f"{prefix}-{name}"


@pytest.fixture
def funded(ledger_store, clock, ids):
    """Opens a per-test unlimited funding account in `currency` and returns its id."""

    def open_funding(currency: str = "USD") -> str:
        new = NewAccount(ids(f"funding-{currency}"), "system", currency, AccountKind.FUNDING,
                         debits_must_not_exceed_credits=False)
        return ledger_store.open_account(new, clock()).account_id

    return open_funding


@pytest.fixture
def count_calls(ledger_store):
    """with count_calls() as calls: ... -> Counter of DynamoDB operation names sent meanwhile."""

    @contextlib.contextmanager
    def counting():
        calls: Counter[str] = Counter()

        def on_call(model, **_):
            calls[model.name] += 1

        ledger_store.register_hook("before-call.dynamodb", on_call)
        try:
            yield calls
        finally:
            ledger_store.unregister_hook("before-call.dynamodb", on_call)

    return counting
