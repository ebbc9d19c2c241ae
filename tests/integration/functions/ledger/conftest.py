"""The ledger function's handler on the embedded DynamoDB Local, called as the template calls it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from finfaas.domain.ledger import NewAccount
from finfaas.store.ledger_store import DynamoLedgerStore
from finfaas_dev.testing.platform import Reply, TokenMinter, call, load_function_handler
from support.ledger_function_testing import CLIENT, CLIENT_SCOPES, CURRENCY, FUNDING_ACCOUNT


@dataclass
class LedgerFunction:
    """The loaded handler module, a token for an internal client, and helpers to call it."""

    module: object
    minter: TokenMinter
    store: DynamoLedgerStore

    def token(self, sub: str = CLIENT, scopes=CLIENT_SCOPES, kind: str = "client") -> str:
        return self.minter.mint(sub=sub, scopes=scopes, kind=kind)

    def post(self, path: str, body: object, key: str | None = None, token: str | None = None,
             headers: dict | None = None) -> Reply:
        all_headers = {**({"Idempotency-Key": key} if key else {}), **(headers or {})}
        return call(self.module.handle, "POST", path, json_body=body, headers=all_headers,
                    token=token or self.token())

    def get(self, path: str, token: str | None = None, query: dict[str, str] | None = None) -> Reply:
        return call(self.module.handle, "GET", path, token=token or self.token(), query=query)

    def balance(self, account_id: str) -> int:
        return self.store.get_account(account_id).balance_minor


@pytest.fixture(scope="session")
def ledger_function(embedded_aws) -> LedgerFunction:
    minter = TokenMinter.generate()
    module = load_function_handler("ledger")
    module.verifier.use(minter.verifier())
    function = LedgerFunction(module, minter, module.services.get().ledger_store)
    reply = function.post("/_/ops/system-accounts", {"currency": CURRENCY})
    assert reply.status == 200, reply.body
    return function


@pytest.fixture
def ids() -> Callable[[str], str]:
    """Makes ids unique to this test: ids('alice') -> 'a1b2c3d4-alice'."""
    prefix = uuid.uuid4().hex[:8]
    return lambda name: f"{prefix}-{name}"


@pytest.fixture
def open_account(ledger_function, ids) -> Callable[..., str]:
    """Opens a customer account and (if given) funds it from the funding account through the function."""

    def open_one(name: str, funded_minor: int = 0) -> str:
        from datetime import UTC, datetime

        account_id = ids(name)
        ledger_function.store.open_account(NewAccount(account_id, ids("owner"), CURRENCY), datetime.now(UTC))
        if funded_minor:
            reply = ledger_function.post("/transfers", {
                "transfer_id": ids(f"fund-{name}"), "debit_account_id": FUNDING_ACCOUNT,
                "credit_account_id": account_id, "amount": funded_minor, "currency": CURRENCY,
            }, key=ids(f"fund-{name}"))
            assert reply.status == 201, reply.body
        return account_id

    return open_one
