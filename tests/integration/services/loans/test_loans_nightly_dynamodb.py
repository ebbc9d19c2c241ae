"""The loans nightly job against DynamoDB Local: a date is closed once per loan, whatever crashes."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from finfaas.domain.ledger import NewAccount
from finfaas.domain.loan_account import close_of_business
from finfaas.platform.config import resource_name
from finfaas.services.ledger.service import LedgerService
from finfaas.services.loans.model import LoanStatus
from finfaas.services.loans.nightly import LoansNightlyService, account_of, autodebit_transfer_id
from finfaas.services.loans.service import LedgerAccounts
from finfaas.store.binding import bound
from finfaas.store.ledger_store import ledger_store_from_config
from finfaas.store.loans_nightly_store import LoansNightlyStore, encode_cursor
from finfaas.store.loans_store import PRODUCTS_PARTITION, LoansStore, _OutboxItem
from finfaas.store.outbox_store import outbox_partition
from unit.services.loans.test_loans_nightly import active_loan
from unit.services.loans.test_loans_store_contract import EVENT, new_product

pytestmark = pytest.mark.emulator

DISBURSED_ON = date(2024, 1, 1)
NIGHT = date(2024, 2, 15)  # the first installment (due 2024-02-01) is 14 days overdue unless repaid
PAID_OFF_ON = date(2024, 1, 15)
FIRST_DUE = date(2024, 2, 1)
LOANS = 60
PAGE = 20


class CrashingNightly:
    """The real store, killed once after `crash_after` committed batches of closes (the process dies
    after the write, before the page's answer reaches the orchestrator)."""

    def __init__(self, store: LoansNightlyStore, crash_after: int) -> None:
        self._store = store
        self._left = crash_after
        self.written = 0  # loans whose close committed before the crash

    def __getattr__(self, name):
        return getattr(self._store, name)

    def record_closes(self, writes):
        refused = self._store.record_closes(writes)
        self.written += len(writes) - len(refused)
        self._left -= bool(writes)  # a page of other tests' loans only writes nothing
        if self._left == 0:
            raise RuntimeError("killed")
        return refused


class NoOrchestrator:
    def start(self, *args, **kwargs):
        raise AssertionError("not started in this test")


@pytest.fixture(scope="module")
def seeded(embedded_aws):
    """A product with a daily penalty and 60 active loans: every third repaid its first installment,
    one paid off but still stored active (the night closes it), the rest overdue."""
    store = LoansStore()
    product = store.create(new_product(daily_penalty_rate=Decimal("0.001")))
    ids = []
    for n in range(LOANS):
        loan_id = f"loan_night_{uuid.uuid4().hex[:16]}"
        loan = active_loan(product, loan_id, n)
        store.create_loan(loan, EVENT)
        ids.append(loan_id)
    return store, product, ids


def run_night(service: LoansNightlyService, mine: set[str]) -> tuple[int, int]:
    """The state machine's loop in process: page, close the page, until no cursor; (closed, unchanged)
    counted over this test's loans only (the session's table holds other tests' loans too)."""
    closed = unchanged = 0
    cursor = None
    while True:
        page = service.page(cursor, PAGE)
        ours = [loan_id for loan_id in page.loan_ids if loan_id in mine]
        result = service.close_loans(NIGHT, ours)
        closed += result.closed
        unchanged += result.unchanged
        assert result.unprocessable == ()
        if page.next is None:
            return closed, unchanged
        cursor = page.next


def events_of(loan_id: str) -> list[str]:
    outbox = bound(_OutboxItem, resource_name("outbox"))
    return [record.type for record in outbox.query(outbox_partition("loans", loan_id), consistent_read=True)
            if record.subject == loan_id and record.type != EVENT.type]


def test_a_night_killed_mid_page_and_run_again_closes_every_loan_once(seeded):
    # GIVEN 60 active loans over three pages, and a run killed after page 2's loans were written
    store, product, ids = seeded
    mine = set(ids)
    nightly = LoansNightlyStore(store)
    expected = {}
    for loan_id in ids:
        account, _ = close_of_business(account_of(store.get_loan(loan_id), product, None), NIGHT)
        expected[loan_id] = (account.days_past_due, account.bucket, account.penalty_charged_minor)

    def service(repository):
        return LoansNightlyService(store, store, repository, lambda: NIGHT, NoOrchestrator())

    crashing = CrashingNightly(nightly, crash_after=2)
    with pytest.raises(RuntimeError, match="killed"):
        run_night(service(crashing), mine)

    # WHEN the execution resumes (the page's Task runs again from its start), then the date is rerun
    closed, unchanged = run_night(service(nightly), mine)
    rerun_closed, rerun_unchanged = run_night(service(nightly), mine)

    # THEN the resumed run closed exactly the loans the killed one had not; a rerun changes nothing
    assert 0 < crashing.written < LOANS and closed == LOANS - crashing.written
    assert (rerun_closed, rerun_unchanged) == (0, LOANS - 1)  # the paid-off loan is no longer active
    for loan_id in ids:
        close = nightly.get_close(loan_id)
        assert close is not None and close.closed_through == NIGHT
        assert (close.days_past_due, close.bucket, close.penalty_charged_minor) == expected[loan_id]
    overdue = [loan_id for n, loan_id in enumerate(ids) if n % 3 and n != 1]
    # Two buckets passed: 1-10 from 2024-02-02, 11-30 from 2024-02-12; one event each, never twice.
    assert all(events_of(loan_id) == ["loan.bucket_changed"] * 2 for loan_id in overdue)
    assert all(expected[loan_id][1] == "11-30" for loan_id in overdue)
    assert store.get_loan(ids[1]).status is LoanStatus.CLOSED
    assert events_of(ids[1]) == ["loan.closed"]
    assert all(events_of(loan_id) == [] for n, loan_id in enumerate(ids) if n % 3 == 0)


def test_a_page_with_a_cursor_of_another_kind_is_refused_naming_it(seeded):
    store, _, _ = seeded
    service = LoansNightlyService(store, store, LoansNightlyStore(store), lambda: NIGHT, NoOrchestrator())
    with pytest.raises(Exception) as refused:
        service.page(json.dumps(["x"]), PAGE)
    assert refused.value.errors == (("cursor", "not a cursor of this job"),)


def test_a_page_that_ends_on_a_product_item_goes_on_from_it(seeded):
    # A Scan's page ends where its Limit does, whatever the item; the product shares the loans table.
    store, product, _ = seeded
    nightly = LoansNightlyStore(store)
    product_key = {"pk": {"S": PRODUCTS_PARTITION}, "sk": {"S": product.product_id}}
    assert store.get(product.product_id) is not None  # the key the cursor names is a real item
    ids, _ = nightly.active_loan_ids(PAGE, encode_cursor(product_key))
    assert all(store.get_loan(loan_id).status is LoanStatus.ACTIVE for loan_id in ids)


def test_a_date_after_the_business_date_is_refused(seeded):
    store, _, ids = seeded
    service = LoansNightlyService(store, store, LoansNightlyStore(store), lambda: NIGHT, NoOrchestrator())
    with pytest.raises(Exception) as refused:
        service.close_loans(date(2024, 2, 16), ids[:1])
    assert refused.value.errors[0][0] == "business_date"


class KilledAfterCommit(LedgerAccounts):
    """The ledger's transaction (the debit, the loan, its close record) commits, then the process dies."""

    def transfer_linked(self, legs, extra):
        super().transfer_linked(legs, extra)
        raise RuntimeError("killed")


def test_an_auto_debit_on_the_due_date_commits_once_across_a_crash_and_a_rerun(seeded):
    # GIVEN an opted-in loan, nothing repaid, its wallet holding 50.00, on DynamoDB Local
    store, product, _ = seeded
    ledger = LedgerService(ledger_store_from_config())
    ledger.ensure_system_accounts("EUR")
    wallet = f"acc-{uuid.uuid4().hex[:12]}"
    ledger_store_from_config().open_account(NewAccount(wallet, "cust-1", "EUR"), datetime.now(UTC))
    ledger.deposit(wallet, 5000, "EUR")
    loan_id = f"loan_auto_{uuid.uuid4().hex[:16]}"
    store.create_loan(replace(active_loan(product, loan_id, 2), account_id=wallet, auto_debit=True), EVENT)
    accounts = LedgerAccounts(ledger)
    nightly = LoansNightlyStore(store)

    def service(money):
        return LoansNightlyService(store, store, nightly, lambda: NIGHT, NoOrchestrator(), wallets=accounts,
                                   ledger=money)

    # WHEN the night of the first due date is killed after its transaction, then runs again, twice
    with pytest.raises(RuntimeError, match="killed"):
        service(KilledAfterCommit(ledger)).close_loans(FIRST_DUE, [loan_id])
    again = service(accounts).close_loans(FIRST_DUE, [loan_id])
    rerun = service(accounts).close_loans(FIRST_DUE, [loan_id])

    # THEN the installment was taken once, in the loan's history, its event written once
    assert (again.closed, rerun.closed) == (0, 0)
    assert accounts.account(wallet).balance_minor == 5000 - 1725
    debit = autodebit_transfer_id(loan_id, FIRST_DUE)
    assert ledger.get_transfer(f"{debit}-principal").amount_minor == 1725 - 100
    assert ledger.get_transfer(f"{debit}-income").amount_minor == 100
    loan = store.get_loan(loan_id)
    assert [t.amount_minor for t in loan.transactions if t.transaction_id == debit] == [1725]
    assert nightly.get_close(loan_id).closed_through == FIRST_DUE
    assert events_of(loan_id) == ["loan.auto_debited"]
