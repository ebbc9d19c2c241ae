"""Auto-debit by the loans nightly job (services/loans/nightly.py): on a due date, a loan whose customer
opted in is repaid from the wallet, the amount due or what the wallet holds if less, allocated like any
repayment, in one ledger transaction with the loan's close, once per (loan, due date)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import date

import pytest
from finfaas.domain.errors import AccountFrozen, LedgerBusy
from finfaas.domain.ledger import AccountKind, system_account_id
from finfaas.services.ledger.service import LedgerService
from finfaas.services.loans.errors import LoanBusy
from finfaas.services.loans.model import LoanStatus
from finfaas.services.loans.nightly import (
    AUTO_DEBIT_FAILED,
    AUTO_DEBITED,
    LoansNightlyService,
    auto_debit_date,
    autodebit_transfer_id,
    collectable_minor,
)
from finfaas_dev.fakes.loans import InMemoryLoanNightly, InMemoryLoansLedger
from finfaas_dev.testing.platform import call
from support.loans_world import CUSTOMER, LoansWorld

DISBURSED_ON = date(2024, 1, 1)  # LoansWorld's business date: 100.00 EUR over 6 months at 12 %
FIRST_DUE = date(2024, 2, 1)
SECOND_DUE = date(2024, 3, 1)
INSTALLMENT_MINOR = 1725  # Fineract's worked example: 17.25, of which interest 1.00
INTEREST_MINOR = 100
PRINCIPAL_MINOR = 10_000


# --- the rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("due", "available", "taken"), [
    (1725, 5000, 1725),  # the wallet covers it: exactly the amount due
    (1725, 1725, 1725),
    (1725, 1000, 1000),  # less in the wallet: all of it
    (1725, 0, 0),
    (1725, -1, 0),  # a wallet that is not open gives nothing
])
def test_an_auto_debit_takes_the_amount_due_or_what_the_wallet_holds_if_less(due, available, taken):
    assert collectable_minor(due, available) == taken


class AutoDebitWorld:
    """LoansWorld with a disbursed 100.00 loan (opted in unless told otherwise; its wallet holds the
    principal lent, less `spend`) and the nightly job wired to the same ledger."""

    def __init__(self, auto_debit: bool = True, spend: int = 0) -> None:
        self.world = LoansWorld()
        self.loan_id = self.world.active_loan(auto_debit=auto_debit)
        if spend:
            self._spend(spend)
        self.world.business_date = date(2024, 3, 5)
        self.nightly = InMemoryLoanNightly(self.world.loans)
        self.money = InMemoryLoansLedger(LedgerService(self.world.ledger), self.world.loans)
        self.service = self.nightly_service(self.money)

    def nightly_service(self, ledger: object) -> LoansNightlyService:
        return LoansNightlyService(self.world.products, self.world.loans, self.nightly,
                                   lambda: self.world.business_date, self.world.orchestrator,
                                   wallets=self.money, ledger=ledger)  # type: ignore[arg-type]

    def _spend(self, amount_minor: int) -> None:
        from finfaas.services.ledger.model import TransferRequest

        elsewhere = system_account_id(AccountKind.FEES, "EUR")
        spent = TransferRequest("acc-cust-1", elsewhere, amount_minor, "EUR", f"spend-{uuid.uuid4().hex[:8]}")
        LedgerService(self.world.ledger).transfer(spent)

    def close(self, day: date = FIRST_DUE):
        return self.service.close_loans(day, [self.loan_id])

    def events(self, *types: str) -> list[dict]:
        return [dict(e.data) for subject, _, e in self.nightly.events
                if subject == self.loan_id and e.type in types]


def test_the_due_date_is_the_latest_one_the_night_closes_and_never_one_collected_before():
    night = AutoDebitWorld()
    loan = night.world.loans.get_loan(night.loan_id)

    assert auto_debit_date(loan, DISBURSED_ON, FIRST_DUE - date.resolution) is None
    assert auto_debit_date(loan, DISBURSED_ON, FIRST_DUE) == FIRST_DUE
    assert auto_debit_date(loan, DISBURSED_ON, SECOND_DUE) == SECOND_DUE  # a night closing both
    assert auto_debit_date(loan, FIRST_DUE, FIRST_DUE) is None  # that date is closed already
    assert auto_debit_date(replace(loan, auto_debit=False), DISBURSED_ON, FIRST_DUE) is None


# --- the nightly job ------------------------------------------------------------------------------------


def test_on_the_due_date_the_amount_due_is_taken_from_the_wallet_and_a_rerun_takes_nothing():
    # GIVEN an opted-in loan whose wallet holds the 100.00 lent
    night = AutoDebitWorld()
    wallet = night.world.wallet_minor()
    loans_account = night.world.account_minor(system_account_id(AccountKind.LOANS, "EUR"))
    fees = night.world.account_minor(system_account_id(AccountKind.FEES, "EUR"))

    # WHEN the night of the first due date closes
    result = night.close()

    # THEN the installment due is taken, allocated interest then principal, in the loan's history
    assert (result.closed, result.unchanged) == (1, 0)
    assert night.world.wallet_minor() == wallet - INSTALLMENT_MINOR
    assert night.world.account_minor(system_account_id(AccountKind.LOANS, "EUR")) == \
        loans_account + INSTALLMENT_MINOR - INTEREST_MINOR
    assert night.world.account_minor(system_account_id(AccountKind.FEES, "EUR")) == fees + INTEREST_MINOR
    loan = night.world.loans.get_loan(night.loan_id)
    debit = autodebit_transfer_id(night.loan_id, FIRST_DUE)
    assert [(t.transaction_id, t.amount_minor) for t in loan.transactions if t.transaction_id == debit] == \
        [(debit, INSTALLMENT_MINOR)]
    assert loan.owed()[0].total_minor == 0 and loan.figures.days_past_due == 0
    assert night.events(AUTO_DEBITED) == [{
        "loan_id": night.loan_id, "account_id": "acc-cust-1", "currency": "EUR", "due_on": "2024-02-01",
        "due_minor": "1725", "amount_minor": "1725", "shortfall_minor": "0", "transfer_id": debit}]

    # AND the same date again changes nothing and moves nothing
    again = night.close()
    assert (again.closed, again.unchanged) == (0, 1)
    assert night.world.wallet_minor() == wallet - INSTALLMENT_MINOR
    assert len(night.events(AUTO_DEBITED, AUTO_DEBIT_FAILED)) == 1


def test_a_wallet_holding_less_gives_what_it_holds_and_the_event_names_the_shortfall():
    night = AutoDebitWorld(spend=PRINCIPAL_MINOR - 1000)  # 10.00 left

    night.close()

    assert night.world.wallet_minor() == 0
    [event] = night.events(AUTO_DEBITED)
    assert (event["amount_minor"], event["shortfall_minor"]) == ("1000", "725")
    loan = night.world.loans.get_loan(night.loan_id)
    assert loan.owed()[0].total_minor == INSTALLMENT_MINOR - 1000
    assert loan.paid[0].interest_minor == INTEREST_MINOR  # allocated by the product's order


def test_an_empty_wallet_fails_the_auto_debit_with_an_event_and_the_date_still_closes():
    night = AutoDebitWorld(spend=PRINCIPAL_MINOR)

    result = night.close()

    assert result.closed == 1
    assert night.events(AUTO_DEBITED) == []
    assert [e["reason"] for e in night.events(AUTO_DEBIT_FAILED)] == ["insufficient_funds"]
    loan = night.world.loans.get_loan(night.loan_id)
    assert not any("autodebit" in t.transaction_id for t in loan.transactions)
    assert night.nightly.get_close(night.loan_id).closed_through == FIRST_DUE
    assert night.close().closed == 0 and len(night.events(AUTO_DEBIT_FAILED)) == 1


def test_a_loan_not_opted_in_is_closed_without_touching_the_wallet():
    night = AutoDebitWorld(auto_debit=False)
    wallet = night.world.wallet_minor()

    assert night.close().closed == 1

    assert night.world.wallet_minor() == wallet
    assert night.events(AUTO_DEBITED, AUTO_DEBIT_FAILED) == []


class CountedReads:
    """A repository whose single reads are counted (each is a GetItem on DynamoDB)."""

    def __init__(self, inner: object, *names: str) -> None:
        self._inner = inner
        self.reads = 0
        for name in names:
            setattr(self, name, self._counted(getattr(inner, name)))

    def _counted(self, read):
        def counted(*args, **kwargs):
            self.reads += 1
            return read(*args, **kwargs)
        return counted

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_an_auto_debit_loan_is_read_once_with_its_page_and_not_again_one_by_one():
    night = AutoDebitWorld()
    loans = CountedReads(night.world.loans, "get_loan")
    nightly = CountedReads(night.nightly, "get_close")
    service = LoansNightlyService(night.world.products, loans, nightly, lambda: night.world.business_date,
                                  night.world.orchestrator, wallets=night.money, ledger=night.money)

    assert service.close_loans(FIRST_DUE, [night.loan_id]).closed == 1

    assert (loans.reads, nightly.reads) == (0, 0)  # the page's batch read served the debit
    assert len(night.events(AUTO_DEBITED)) == 1


def test_an_installment_repaid_by_hand_on_its_due_date_is_not_debited_again():
    night = AutoDebitWorld()
    night.world.business_date = FIRST_DUE
    assert night.world.repay(night.loan_id, "17.25").status == 200
    wallet = night.world.wallet_minor()
    night.world.business_date = date(2024, 3, 5)

    assert night.close().closed == 1

    assert night.world.wallet_minor() == wallet
    assert night.events(AUTO_DEBITED, AUTO_DEBIT_FAILED) == []


class KilledAfterCommit(InMemoryLoansLedger):
    """The ledger's transaction commits, then the process dies before the page's answer is sent."""

    def transfer_linked(self, legs, extra):
        super().transfer_linked(legs, extra)
        raise RuntimeError("killed")


def test_a_night_killed_after_the_debit_committed_debits_once_when_the_page_runs_again():
    night = AutoDebitWorld()
    wallet = night.world.wallet_minor()
    killed = night.nightly_service(KilledAfterCommit(LedgerService(night.world.ledger), night.world.loans))
    with pytest.raises(RuntimeError, match="killed"):
        killed.close_loans(FIRST_DUE, [night.loan_id])

    result = night.close()  # the Task retried

    assert (result.closed, result.unchanged) == (0, 1)
    assert night.world.wallet_minor() == wallet - INSTALLMENT_MINOR
    assert len(night.events(AUTO_DEBITED)) == 1


class FrozenWallet(InMemoryLoansLedger):
    """The wallet is frozen between the job's read of its balance and the debit."""

    def transfer_linked(self, legs, extra):
        raise AccountFrozen("account acc-cust-1 is frozen")


def test_a_wallet_the_ledger_refuses_fails_the_auto_debit_and_the_night_goes_on():
    night = AutoDebitWorld()
    wallet = night.world.wallet_minor()
    frozen = night.nightly_service(FrozenWallet(LedgerService(night.world.ledger), night.world.loans))

    result = frozen.close_loans(FIRST_DUE, [night.loan_id])

    assert (result.closed, result.unprocessable) == (1, ())
    assert night.world.wallet_minor() == wallet
    assert [e["reason"] for e in night.events(AUTO_DEBIT_FAILED)] == ["account_unavailable"]


class BusyLedger(InMemoryLoansLedger):
    """The ledger's retries run out on contention or an unreachable table: nothing was written."""

    def transfer_linked(self, legs, extra):
        raise LedgerBusy("ledger busy: TransactionConflict")


def test_a_busy_ledger_fails_the_page_for_a_retry_and_never_records_a_failed_debit():
    # GIVEN an opted-in loan whose wallet covers the installment, and a ledger that stays busy
    night = AutoDebitWorld()
    wallet = night.world.wallet_minor()
    busy = night.nightly_service(BusyLedger(LedgerService(night.world.ledger), night.world.loans))

    # WHEN the night of its due date runs: the page fails as a whole, to be retried
    with pytest.raises(LoanBusy):
        busy.close_loans(FIRST_DUE, [night.loan_id])

    # THEN nothing is recorded (no failed debit, no closed date), so the retried page collects
    assert night.events(AUTO_DEBITED, AUTO_DEBIT_FAILED) == []
    assert night.nightly.get_close(night.loan_id) is None
    assert (night.close().closed, night.world.wallet_minor()) == (1, wallet - INSTALLMENT_MINOR)
    assert len(night.events(AUTO_DEBITED)) == 1


def test_two_runs_of_one_date_at_once_debit_once():
    night = AutoDebitWorld()
    wallet = night.world.wallet_minor()
    results = []

    def run() -> None:
        results.append(night.close())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(r.closed for r in results) == [0, 1]
    assert night.world.wallet_minor() == wallet - INSTALLMENT_MINOR
    assert len(night.events(AUTO_DEBITED)) == 1


# --- the setting --------------------------------------------------------------------------------------


def test_the_customer_turns_auto_debit_on_and_off_and_another_customer_sees_404():
    world = LoansWorld()
    loan_id = world.active_loan()
    assert world.loan(loan_id)["auto_debit"] is False

    def set_to(enabled: bool, token: str | None = None):
        return call(world.handler.handle, "POST", f"/loans/{loan_id}/auto-debit",
                    token=token or world.customer, json_body={"enabled": enabled})

    on = set_to(True)
    assert on.status == 200 and on.json()["auto_debit"] is True
    assert set_to(True).json()["auto_debit"] is True  # the same setting again: unchanged
    assert world.loans.get_loan(loan_id).auto_debit is True
    assert set_to(False).json()["auto_debit"] is False
    assert world.event_types(loan_id).count("loan.auto_debit_changed") == 2
    stranger = world.minter.mint(f"not-{CUSTOMER}", ["loans:read", "loans:write"])
    assert set_to(True, stranger).status == 404
    refused = call(world.handler.handle, "POST", f"/loans/{loan_id}/auto-debit", token=world.customer,
                   json_body={"enabled": "yes"})
    assert refused.status == 422 and "enabled" in refused.body


def test_a_closed_loan_refuses_the_setting_naming_its_status():
    world = LoansWorld()
    loan_id = world.active_loan()
    world.loans.tamper(replace(world.loans.get_loan(loan_id), status=LoanStatus.CLOSED))

    reply = call(world.handler.handle, "POST", f"/loans/{loan_id}/auto-debit", token=world.customer,
                 json_body={"enabled": True})

    assert reply.status == 409 and reply.json()["errors"][0]["field"] == "status"
