"""The suite in memory (SagaWorld) with the payments function too: a merchant, a payment captured from
acc-a, refunds of it to a bank account through the rail refund saga, and the merchant's settlement whose
payout goes through the rail payout saga."""

from __future__ import annotations

from collections import Counter
from typing import Any

from finfaas.domain.ledger import AccountKind, NewAccount
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.services.ledger.service import LedgerService
from finfaas.services.payments.api import CaptureBody, NewIntentBody, OnboardBody
from finfaas.services.payments.model import PaymentIntent
from finfaas.services.payments.rail_payouts import RailPayouts
from finfaas.services.payments.rail_refunds import RailRefunds
from finfaas.services.payments.service import Caller, PaymentsService
from finfaas.services.payments.settlement import MerchantSettlement
from finfaas.services.suite_clients import OrchestratorClient, SuiteClient
from finfaas_dev.fakes.payments import (
    InMemoryMerchants,
    InMemoryPaymentIntents,
    InMemoryPaymentsLedger,
    InMemorySettlements,
)
from finfaas_dev.testing.platform import load_function_handler

from support.saga_world import GATEWAY, QUEUE_MAC, USD, SagaWorld, StaticTokens

PAYMENTS_SCOPES = ("orchestrator:start", "orchestrator:read")
PAID_MINOR = 10_000
APP = Caller("shop-app", "client")


class Approve:
    def assess(self, body: dict) -> dict:
        return {"decision": "approve", "score": 0}


class MerchantAccountsOnLedger:
    def __init__(self, world: SagaWorld) -> None:
        self._world = world

    def open_merchant_account(self, account_id: str, owner_id: str, currency: str) -> None:
        if self._world.ledger.accounts.get(account_id) is None:
            self._world.ledger.open_account(NewAccount(account_id, owner_id, currency, AccountKind.MERCHANT),
                                            self._world.clock.utc())


class RailRefundWorld(SagaWorld):
    """SagaWorld on in-memory stores, with the payments function behind the gateway."""

    def _load_functions(self, sandbox: Any, settings: Any) -> None:
        super()._load_functions(sandbox, settings)
        module = load_function_handler("payments")
        module.verifier.use(self.minter.verifier())
        if hasattr(module, "queue_proof"):
            module.queue_proof.use(QUEUE_MAC)
        self.gateway.handlers["payments"] = module
        client = SuiteClient(GATEWAY, StaticTokens(self.token("payments", PAYMENTS_SCOPES)),
                             request=self.gateway.request)
        self.intents = InMemoryPaymentIntents()
        ledger = LedgerService(self.ledger, clock=self.clock.utc)
        money = InMemoryPaymentsLedger(ledger, self.intents)
        self.merchants = InMemoryMerchants()
        self.payments = PaymentsService(self.merchants, MerchantAccountsOnLedger(self), self.clock.utc,
                                        intents=self.intents, money=money, risk=Approve())
        rail = RailRefunds(self.payments, OrchestratorClient(client), self.vault, money)
        self.settlements = InMemorySettlements()
        self.payouts = RailPayouts(self.merchants, self.settlements, money, OrchestratorClient(client),
                                   self.vault)
        self.settlement = MerchantSettlement(self.merchants, self.intents, money, self.settlements,
                                             lambda: self.clock.utc().date(), self.clock.utc, lag_seconds=0,
                                             on_paid=self.payouts.hand_to_rail)
        guard = IdempotencyGuard(self.stores.idempotency(), "payments", clock=self.clock)
        module.services.use(module.PaymentsServices(payments=self.payments, guard=guard, limiter=None,
                                                    audit=None, probe=lambda: None, rail_refunds=rail,
                                                    settlement=self.settlement, rail_payouts=self.payouts))

    def paid(self, merchant_account: str = "000123456789") -> str:
        """A merchant (paid out to merchant_account), and 100.00 captured from acc-a (3.00 fee)."""
        self.payments.onboard(OnboardBody.model_validate({
            "merchant_id": "m-books", "name": "Corner Books", "currency": USD,
            "settlement_account": {"bank_code": "SANDUS00", "account_number": merchant_account, "name": "CB"},
            "fee_schedule": {"bps": 300}}))
        body = NewIntentBody.model_validate({"amount": PAID_MINOR, "currency": USD, "merchant_id": "m-books",
                                             "customer_account_id": self.prefix + "acc-a",
                                             "capture_method": "manual"})
        intent, _ = self.payments.create_intent(APP, "order-1", body)
        self.payments.confirm(APP, intent.payment_id)
        self.payments.capture(APP, intent.payment_id, CaptureBody(final_capture=True))
        return intent.payment_id

    def refund_to_bank(self, payment_id: str, body: dict[str, Any], key: str = "rf-1") -> Any:
        """POST .../refunds as the paying customer, retried with the same key while the orchestrator
        crashes."""
        token = self.token(self.customer, ("payments:write", "payments:read"), kind="customer")
        for _ in range(3):
            path = f"/payment_intents/{payment_id}/refunds"
            reply = self.gateway.call("POST", "payments", path, body, token, {"Idempotency-Key": key})
            if reply.status_code != 503:
                return reply
        return reply

    def intent(self, payment_id: str) -> PaymentIntent:
        found = self.intents.get(payment_id)
        assert found is not None
        return found

    def refund_events(self, payment_id: str) -> Counter[str]:
        return Counter(e.type for pid, _, e in self.intents.events if pid == payment_id
                       and e.type.startswith("refund."))

