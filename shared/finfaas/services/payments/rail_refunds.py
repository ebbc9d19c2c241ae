"""Refunds to a bank account through the rail: a saga on the orchestrator, as wallet withdrawals are.

The refund is recorded `pending` in ONE ledger transaction that moves its amount from the payment's
receivable shard to the rail's clearing account (`sys-settlement-<CUR>`) and puts the intent with the
refund over the version the bound was checked on (PaymentsService.refund): so a pending refund counts
against `refunded + disputed <= captured` from its first instant, and racing refunds are judged as wallet
refunds are. The saga (infra/statemachines/payments-refund.asl.json) hands the rail a payment whose id is
the refund's transfer id, with the bank account sealed under it, and waits for the rail's signed notice:
settled makes the refund `succeeded` (`refund.updated`, nothing more moves: the money is on the rail's
side already); rejected, or recalled unsettled, reverses it (`<pi>-rr<n>-<tag>`, clearing -> the shard it
left) in the transaction that makes it `failed`, gives its amount and fee share back to what is
refundable, and writes `refund.failed`. Both steps read the refund first: a repeat, or a step for a
refund already final, changes nothing (a settle of a failed refund, or a fail of a settled one, is a 409).
A refund whose outcome the rail never told (its saga failed `Payments.RefundNeedsAttention`) is ended by an
operator through the same two steps (`resolve`), after asking the rail.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from finfaas.domain.creditor import Creditor, CreditorVault
from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.platform.http.transactional import OutboxAudit
from finfaas.platform.orchestrator_api import Orchestrator
from finfaas.platform.retry import Unchanged
from finfaas.services.payments.api import RefundBody
from finfaas.services.payments.errors import RefundNotFound, RefundSagaNotStarted, UnexpectedState
from finfaas.services.payments.model import (
    LedgerStep,
    PaymentIntent,
    RailOutcome,
    Refund,
    RefundStatus,
    Resolution,
    refund_event,
    resolution_chars_max,
)
from finfaas.services.payments.ports import PaymentsLedger, StepKey
from finfaas.services.payments.service import (
    Caller,
    IntentStep,
    PaymentsService,
    RailDestination,
)

REFUND_STATE_MACHINE = "payments-refund"
SAGA_CALLER = Caller("payments-refund-saga", "system")
failure_chars_max = 500  # the rail's reason, as the wallet keeps it


def saga_input(intent: PaymentIntent, refund: Refund) -> dict[str, Any]:
    """The execution's input: what the rail needs (the bank account sealed under the refund's id)."""
    assert refund.bank_account is not None, "only a rail refund has a saga"
    return {"refund_id": refund.transfer_id, "payment_intent": intent.payment_id,
            "refund_number": refund.refund_number, "amount_minor": refund.amount_minor,
            "currency": intent.currency, "bank_account": refund.bank_account.in_flight()}


class RailRefunds:
    """Rail refunds: start one (with its saga), and the saga's settle and fail steps."""

    def __init__(self, payments: PaymentsService, orchestrator: Orchestrator, vault: CreditorVault | None,
                 ledger: PaymentsLedger) -> None:
        self._payments = payments
        self._orchestrator = orchestrator
        self._vault = vault  # seals the bank account for the rail; None refuses rail refunds
        self._ledger = ledger  # PaymentsLedger: the reversal's transfer

    def refund(self, caller: Caller, payment_id: str, body: RefundBody, audit: OutboxAudit | None = None,
               key: StepKey | None = None) -> tuple[PaymentIntent, Refund]:
        """A refund to body.bank_account: pending, its money on the rail's clearing account, and its saga
        started (again, harmlessly, when the same refund number is sent again while it is pending)."""
        bank = body.bank_account
        assert bank is not None, "a rail refund names its bank account"
        if self._vault is None:
            from finfaas.platform.pii import PiiKeyUnavailable

            raise PiiKeyUnavailable("no key to seal a bank account with: rail refunds are unavailable")
        vault = self._vault
        creditor = Creditor(bank.bank_code, bank.account_number, bank.name)
        intent, refund = self._payments.refund(
            caller, payment_id, body, audit, key,
            to_rail=RailDestination(lambda transfer_id: vault.seal(transfer_id, creditor)))
        if refund.status is RefundStatus.PENDING:
            self._start_saga(intent, refund)
        return intent, refund

    def resolve(self, operator: str, payment_id: str, refund_number: str, outcome: RailOutcome,
                reason: str) -> PaymentIntent:
        """An operator ends a refund whose rail outcome stayed unknown, after asking the rail: settled or
        failed as the rail's own notice would, with who and why on the refund and in its event. A late
        notice and the operator decide on the same versioned intent: the first wins, the other repeats
        it (same outcome, nothing changes) or is a 409 naming the refund's status."""
        by = Resolution(operator, reason[:resolution_chars_max])
        if outcome is RailOutcome.SETTLED:
            return self.settled(payment_id, refund_number, by)
        return self.failed(payment_id, refund_number, f"ended by an operator: {by.reason}", by)

    def settled(self, payment_id: str, refund_number: str, by: Resolution | None = None) -> PaymentIntent:
        """The rail paid the refund out: succeeded, with refund.updated."""
        write_id = uuid.uuid4().hex

        def decide(intent: PaymentIntent) -> IntentStep | Unchanged[PaymentIntent]:
            refund = self._rail_refund(intent, refund_number)
            if refund.status is RefundStatus.SUCCEEDED:
                return Unchanged(intent)
            if refund.status is RefundStatus.FAILED:
                raise UnexpectedState(f"refund_number: {refund_number} failed and was reversed",
                                      field="refund_number")
            done = _resolved(replace(refund, status=RefundStatus.SUCCEEDED), by)
            wanted = intent.changed(self._payments.now(), refunds=_replaced(intent.refunds, done),
                                    write_id=write_id)
            return IntentStep(wanted, refund_event(wanted, done, "refund.updated"))

        return self._payments.step(SAGA_CALLER, payment_id, decide)

    def failed(self, payment_id: str, refund_number: str, error: str,
               by: Resolution | None = None) -> PaymentIntent:
        """The rail did not pay the refund out: reversed to the shard it left, failed, refundable again."""
        write_id = uuid.uuid4().hex

        def decide(intent: PaymentIntent) -> IntentStep | Unchanged[PaymentIntent]:
            refund = self._rail_refund(intent, refund_number)
            if refund.status is RefundStatus.FAILED:
                return Unchanged(intent)
            if refund.status is RefundStatus.SUCCEEDED:
                raise UnexpectedState(f"refund_number: {refund_number} was paid out by the rail",
                                      field="refund_number")
            reversal_id = intent.ledger_id("rr", intent.refunds.index(refund), write_id)
            done = _resolved(replace(refund, status=RefundStatus.FAILED, reversal_id=reversal_id,
                                     failure=error[:failure_chars_max]), by)
            wanted = intent.changed(
                self._payments.now(), refunds=_replaced(intent.refunds, done),
                amount_refunded_minor=intent.amount_refunded_minor - refund.amount_minor,
                fee_refunded_minor=intent.fee_refunded_minor - refund.fee_refunded_minor,
                ledger=(*intent.ledger, LedgerStep("refund_reversal", reversal_id, refund.amount_minor)),
                write_id=write_id)
            clearing = system_account_id(AccountKind.SETTLEMENT, intent.currency)
            shard, amount, currency = intent.receivable_account_id, refund.amount_minor, intent.currency
            return IntentStep(wanted, refund_event(wanted, done, "refund.failed"), lambda extra: (
                self._ledger.transfer(reversal_id, clearing, shard, amount, currency, extra)))

        return self._payments.step(SAGA_CALLER, payment_id, decide)

    @staticmethod
    def _rail_refund(intent: PaymentIntent, refund_number: str) -> Refund:
        refund = intent.refund(refund_number)
        if refund is None or refund.bank_account is None:
            raise RefundNotFound(f"refund {refund_number} of {intent.payment_id} is no rail refund",
                                 field="refund_number")
        return refund

    def _start_saga(self, intent: PaymentIntent, refund: Refund) -> None:
        from finfaas.services.suite_clients import ServiceUnreachable

        try:
            self._orchestrator.start(REFUND_STATE_MACHINE, refund.transfer_id, saga_input(intent, refund),
                                     reference=intent.payment_id)
        except (ServiceUnreachable, ValueError) as error:
            raise RefundSagaNotStarted(f"the refund is recorded but its saga did not start ({error}); "
                                       "retry with the same refund_number") from None


def _resolved(refund: Refund, by: Resolution | None) -> Refund:
    return refund if by is None else replace(refund, resolved_by=by.operator, resolution_reason=by.reason)


def _replaced(refunds: tuple[Refund, ...], done: Refund) -> tuple[Refund, ...]:
    return tuple(done if r.refund_number == done.refund_number else r for r in refunds)
