"""The payments function wired as in production, but calling the ledger function in process."""

from __future__ import annotations

from typing import Any

from finfaas.services.suite_clients import SuiteClient

from support.saga_world import GATEWAY, InProcessGateway, StaticTokens

PAYMENTS_CLIENT_SCOPES = ("ledger:read", "ledger:write")


def wire_payments(payments: Any, ledger: Any, minter: Any) -> InProcessGateway:
    """Gives `payments` (its handler module) its production services on this stage's tables, with its
    gateway client routed to the `ledger` handler module; the gateway records every call."""
    gateway = InProcessGateway(on_orchestrator_crash=lambda: None)
    gateway.handlers["ledger"] = ledger
    ledger.verifier.use(minter.verifier())
    token = minter.mint("payments", PAYMENTS_CLIENT_SCOPES, kind="client")
    suite = SuiteClient(GATEWAY, StaticTokens(token), request=gateway.request)
    payments.services.use(payments.build_services(suite=suite))
    return gateway
