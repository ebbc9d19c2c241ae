"""The loans bench's seed writes the ledger in its stored format: a small seed passes `finfaas loans
check` and `finfaas ledger check` (bench/loans_nightly.py, bench/ledger_seed.py), so the seed cannot
drift from what the ledger's use cases write without this failing."""

from __future__ import annotations

import time
import uuid

import boto3
import pytest
from finfaas.domain.ledger import AccountKind, NewAccount, system_account_id
from finfaas.services.ledger.service import LedgerService
from finfaas.services.loans.service import LedgerAccounts
from finfaas.store.ledger_store import DynamoLedgerStore
from finfaas.store.loans_store import LoansStore
from finfaas.store.tables import LedgerTables
from finfaas_dev.bench.loans_nightly import CREATED_AT, WALLET, seed
from finfaas_dev.infra import deploy
from finfaas_dev.ledger_check import check_store
from finfaas_dev.loans_check import check_tables

pytestmark = pytest.mark.emulator

LOANS = 20
PRINCIPAL_MINOR = 10_000  # each seeded loan's
SEED_SECONDS_MAX = 60.0


@pytest.fixture(scope="module")
def seeded(embedded_aws):
    """LOANS loans seeded under a stage of their own: both checks see only the seed's book."""
    stage = f"s{uuid.uuid4().hex[:8]}"
    deploy(stage, "embedded")
    region = boto3.client("dynamodb").meta.region_name
    ledger_store = DynamoLedgerStore(LedgerTables.for_stage(stage), region)
    ledger = LedgerService(ledger_store)
    ledger.ensure_system_accounts("EUR")
    ledger_store.open_account(NewAccount(WALLET, "bench", "EUR"), CREATED_AT)
    loans_store = LoansStore(f"finfaas-{stage}-loans", f"finfaas-{stage}-outbox", region)
    seed(LOANS, loans_store, ledger_store, time.monotonic() + SEED_SECONDS_MAX)
    return loans_store, ledger_store, ledger


def test_a_seeded_book_passes_the_loans_check(seeded):
    loans_store, ledger_store, ledger = seeded
    checked, problems = check_tables(loans_store, ledger_store, LedgerAccounts(ledger).account)
    assert (checked, problems) == (LOANS, [])
    # a third of the loans repaid their first installment's principal to the funding account
    funding = ledger.get_account(system_account_id(AccountKind.LOANS, "EUR"))
    assert 0 < -funding.balance_minor < LOANS * PRINCIPAL_MINOR


def test_a_seeded_book_passes_the_ledger_check(seeded):
    _, ledger_store, ledger = seeded
    report = check_store(ledger_store)
    assert report.problems == []
    # every disbursement and repayment leg is a transfer with its two entries
    assert report.transfers == LOANS + 2 * len(range(0, LOANS, 3))
    assert report.entries == 2 * report.transfers
    assert ledger.get_account(WALLET).balance_minor > 0


def test_a_seeded_repayment_is_a_linked_batch_its_first_leg_naming_both(seeded):
    # GET /transfers?batch_id= reads the legs the first one names, as the repayment use case records them
    loans_store, ledger_store, _ = seeded
    repaid = next(loan for loan in loans_store.scan_loans()
                  if any(t.transaction_id.endswith("-r1") for t in loan.transactions))
    first = f"{repaid.loan_id}-r1-principal"
    assert [t.transfer_id for t in ledger_store.batch_legs(first)] == [first, f"{repaid.loan_id}-r1-income"]
