"""The loans function wired as in production, but calling the risk and bureau functions in process."""

from __future__ import annotations

from typing import Any

from finfaas.platform.keys import SERVICE_CLIENTS
from finfaas.services.suite_clients import SuiteClient

from support.saga_world import GATEWAY, InProcessGateway, StaticTokens


def wire_loans(loans: Any, risk: Any, bureau: Any, minter: Any) -> InProcessGateway:
    """Gives `loans` (its handler module) its production services on this stage's tables, with its
    gateway client routed to the `risk` and `bureau` handler modules; the gateway records every call."""
    gateway = InProcessGateway(on_orchestrator_crash=lambda: None)
    gateway.handlers["risk"] = risk
    gateway.handlers["bureau"] = bureau
    # The nightly schedule starts an execution: here an orchestrator that records it.
    from support.wealth_testing import RecordedStarts

    gateway.handlers["orchestrator"] = RecordedStarts()
    risk.verifier.use(minter.verifier())
    bureau.verifier.use(minter.verifier())
    token = minter.mint("loans", SERVICE_CLIENTS["loans"], kind="client")
    suite = SuiteClient(GATEWAY, StaticTokens(token), request=gateway.request)
    loans.services.use(loans.build_services(suite=suite))
    return gateway
