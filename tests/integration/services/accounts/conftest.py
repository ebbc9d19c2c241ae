"""The accounts function on the embedded emulators: its real services, tokens from a test key, and
helpers to create customers and move money through the ledger."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

CUSTOMER_SCOPES = ("accounts:read", "accounts:write")


@dataclass
class AccountsWorld:
    handler: object
    minter: object
    ledger: object
    customers: object

    def customer(self) -> tuple[str, str]:
        """A new customer record and a token for it: (customer_id, token)."""
        from finfaas.services.customers.model import Credentials, CustomerRecord

        customer_id = uuid.uuid4().hex
        username = f"user-{customer_id[:12]}"
        created = self.customers.create(CustomerRecord(customer_id, username, 1_700_000_000),
                                        Credentials(username, customer_id, "$argon2id$unused"))
        assert created
        return customer_id, self.minter.mint(customer_id, CUSTOMER_SCOPES)

    def operator(self) -> str:
        return self.minter.mint("ops-console", ["ops", "ops:act"], kind="client")


@pytest.fixture(scope="session")
def accounts_world(embedded_aws) -> AccountsWorld:
    """One accounts function for the session, wired exactly as in production but for the token key."""
    from finfaas.services.ledger.service import LedgerService
    from finfaas.store.customers_store import CustomersStore
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas_dev.testing.platform import TokenMinter, load_function_handler

    handler = load_function_handler("accounts")
    minter = TokenMinter.generate()
    handler.verifier.use(minter.verifier())
    ledger = LedgerService(ledger_store_from_config())
    ledger.ensure_system_accounts("USD")
    return AccountsWorld(handler, minter, ledger, CustomersStore())
