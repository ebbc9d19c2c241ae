"""A settlement's payout on the rail: after the settlement's legs moved the payout to the rail's clearing
account (`sys-settlement-<CUR>`, settlement PAID with `payout.created`), a saga
(infra/statemachines/payments-payout.asl.json, the wallet withdrawal's shape) hands the rail a payment of
the payout to the merchant's settlement bank account, sealed under the payout's rail id
(`stl-<merchant>-<yyyymmdd>-po`, also the execution's name: a second start only finds the first).

The rail's settlement writes `payout.paid` (a versioned save: nothing more moves). A rejection, or a
recall that confirms it never settled, saves the settlement `failed` with `payout.failed` and then gives
the payout back to the merchant's reserve account (`stl-...-por`, clearing -> reserve; the ledger id makes a
retried step find its own transfer). An operator ends a payout whose answer never came (`resolve`). Both
steps read the settlement first: a repeat, or a step for a payout already answered, changes nothing (paid
after failed, or the reverse, is a 409).
A rerun of the day finds the settlement PAID and its payout's execution, so nothing is paid twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date

from finfaas.domain.creditor import Creditor, CreditorVault
from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.platform.logging import get_logger
from finfaas.platform.orchestrator_api import Orchestrator
from finfaas.platform.retry import SAVE_RACE_POLICY, Change, Unchanged, read_change_save
from finfaas.services.payments.errors import MerchantNotFound, SettlementNotFound, UnexpectedState
from finfaas.services.payments.model import (
    Merchant,
    RailOutcome,
    Resolution,
    Settlement,
    SettlementLeg,
    payout_event,
    resolution_chars_max,
)
from finfaas.services.payments.ports import Merchants, PaymentsLedger, Settlements

PAYOUT_STATE_MACHINE = "payments-payout"
PAYOUT_PAID, PAYOUT_FAILED = "paid", "failed"
REVERSAL_SUFFIX = "r"  # of the payout's rail id: `stl-...-po` given back as `stl-...-por`
_log = get_logger("payments")


class RailPayouts:
    """Payouts handed to the rail after settlement, and the saga's paid and failed steps."""

    def __init__(self, merchants: Merchants, settlements: Settlements, ledger: PaymentsLedger,
                 orchestrator: Orchestrator, vault: CreditorVault | None) -> None:
        self._merchants = merchants
        self._settlements = settlements
        self._ledger = ledger
        self._orchestrator = orchestrator
        self._vault = vault  # seals the merchant's bank account for the rail; None: payouts stay on clearing

    def hand_to_rail(self, settlement: Settlement) -> bool:
        """Start the payout's saga when the settlement paid one out and the rail has not answered yet;
        False when nothing was started (no payout, answered, or the orchestrator away: a later run of the
        same day starts it, as the start is idempotent)."""
        from finfaas.services.suite_clients import ServiceUnreachable

        if not settlement.payout_in_transit or self._vault is None:
            return False
        merchant = self._merchant(settlement.merchant_id)
        account = merchant.settlement
        sealed = self._vault.seal(settlement.payout_rail_id,
                                  Creditor(account.bank_code, account.account_number, account.name))
        saga_input = {"payout_id": settlement.payout_rail_id, "merchant_id": settlement.merchant_id,
                      "business_date": settlement.business_date.isoformat(),
                      "amount_minor": settlement.payout_minor, "currency": settlement.currency,
                      "bank_account": sealed.in_flight()}
        try:
            self._orchestrator.start(PAYOUT_STATE_MACHINE, settlement.payout_rail_id, saga_input,
                                     reference=settlement.merchant_id)
        except (ServiceUnreachable, ValueError) as error:
            _log.error("payout saga not started", merchant_id=settlement.merchant_id,
                       error_type=type(error).__name__)
            return False
        return True

    def resolve(self, operator: str, merchant_id: str, business_date: date, outcome: RailOutcome,
                reason: str) -> Settlement:
        """An operator ends a payout whose rail outcome stayed unknown, after asking the rail: paid or
        failed as the rail's own answer would, with who and why on the settlement and in its event. A late
        answer of the rail and the operator decide on the same versioned settlement: the first wins, the
        other repeats it (nothing changes) or is a 409 naming payout_status."""
        by = Resolution(operator, reason[:resolution_chars_max])
        if outcome is RailOutcome.SETTLED:
            return self.paid(merchant_id, business_date, by)
        return self.failed(merchant_id, business_date, by)

    def paid(self, merchant_id: str, business_date: date, by: Resolution | None = None) -> Settlement:
        """The rail paid the payout out: payout.paid."""

        def decide(settlement: Settlement) -> Unchanged[Settlement] | Change[Settlement, Settlement]:
            if settlement.payout_status == PAYOUT_PAID:
                return Unchanged(settlement)
            self._require_in_transit(settlement)
            done = _resolved(replace(settlement, payout_status=PAYOUT_PAID, version=settlement.version + 1),
                             by)
            return Change(done, done)

        return self._save(merchant_id, business_date, decide, "payout.paid")

    def failed(self, merchant_id: str, business_date: date, by: Resolution | None = None) -> Settlement:
        """The rail did not pay the payout out: payout.failed, then the payout back in the merchant's
        reserve. The save comes first, conditional on the payout still in transit, so of this and a racing
        paid (a late answer, an operator) exactly one wins before any money moves; the reversal follows on
        every call (the ledger replays it), so a crash between the two is finished by the next attempt
        (the saga's retry, the operator's), and `finfaas payments check` names a failed payout without it."""
        reserve = self._merchant(merchant_id).accounts.reserve

        def decide(current: Settlement) -> Unchanged[Settlement] | Change[Settlement, Settlement]:
            if current.payout_status == PAYOUT_FAILED:
                return Unchanged(current)
            self._require_in_transit(current)
            done = _resolved(replace(current, payout_status=PAYOUT_FAILED,
                                     payout_reversal_id=current.payout_rail_id + REVERSAL_SUFFIX,
                                     version=current.version + 1), by)
            return Change(done, done)

        settlement = self._save(merchant_id, business_date, decide, "payout.failed")
        reversal_id = settlement.payout_reversal_id
        assert reversal_id is not None, "a failed payout names its way back"
        clearing = system_account_id(AccountKind.SETTLEMENT, settlement.currency)
        self._ledger.move([SettlementLeg(reversal_id, clearing, reserve, settlement.payout_minor,
                                         "payout_returned")], settlement.currency)
        return settlement

    def _save(self, merchant_id: str, business_date: date,
              decide: Callable[[Settlement], Unchanged[Settlement] | Change[Settlement, Settlement]],
              event_type: str) -> Settlement:
        return read_change_save(
            lambda: self._settlement(merchant_id, business_date), decide,
            lambda done: self._settlements.save(done, payout_event(done, event_type)),
            policy=SAVE_RACE_POLICY,
            exhausted=lambda: UnexpectedState(f"settlement {merchant_id} {business_date} kept changing"))

    @staticmethod
    def _require_in_transit(settlement: Settlement) -> None:
        if not settlement.payout_in_transit:
            raise UnexpectedState(f"payout_status: the payout of {settlement.merchant_id} "
                                  f"{settlement.business_date} is {settlement.payout_status or 'not out'}",
                                  field="payout_status")

    def _settlement(self, merchant_id: str, business_date: date) -> Settlement:
        found = self._settlements.get(merchant_id, business_date)
        if found is None:
            raise SettlementNotFound(f"no settlement of {merchant_id} for {business_date}")
        return found

    def _merchant(self, merchant_id: str) -> Merchant:
        merchant = self._merchants.get(merchant_id)
        if merchant is None:
            raise MerchantNotFound(f"merchant {merchant_id} not found")
        return merchant


def _resolved(settlement: Settlement, by: Resolution | None) -> Settlement:
    if by is None:
        return settlement
    return replace(settlement, payout_resolved_by=by.operator, payout_resolution_reason=by.reason)
