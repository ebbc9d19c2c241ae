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


class InProcessDisputeNotices:
    """The sandbox rail's dispute notices delivered to the payments handler module in process."""

    def __init__(self, payments: Any) -> None:
        self._payments = payments

    def deliver(self, body: bytes, headers: Any) -> tuple[int, dict]:
        from finfaas_dev.testing.platform import call

        reply = call(self._payments.handle, "POST", "/rail/disputes", body=body, headers=dict(headers))
        return reply.status, reply.json()


def wire_rail_disputes(rail: Any, payments: Any) -> None:
    """Gives `rail` (its handler module) its production services, its dispute notices going to `payments`."""
    rail.services.use(rail.build_services(disputes=InProcessDisputeNotices(payments)))
