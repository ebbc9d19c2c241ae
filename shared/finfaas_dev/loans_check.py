"""`finfaas loans check`: reconcile every loan with its own transactions and with the ledger.

For each disbursed loan: its stored schedule, payments per installment, dues, figures and status equal
the replay of its transactions by domain.loan_account; its disbursement transfer is in the ledger; each
payment's legs (<id>-principal, <id>-income) add up to its amount, each reversal's give the reversed
amount back, and over all its legs the loan's principal and income in the ledger are what the fold says
payments brought in; its loss legs (<id>-loss) are the principal the fold wrote off. Then, per currency,
the identity

    -balance(sys-loans-CUR)       = sum of the outstanding principal of loans in CUR
    -balance(sys-loan_losses-CUR) = sum of the principal written off of loans in CUR

    pending debits of sys-loans-CUR = sum of the principal of loans in CUR disbursing

so the loans funding account and the losses it gave up together equal outstanding principal plus
write-offs, and money in transit to a bank account (held, not yet posted by the rail's settlement) is
counted once, as the funding account's still. A loan whose disbursement failed has no disbursement
transfer (its hold was voided or expired, never posted). It assumes, as the suite does, that only loans
move those two accounts (funding the lending book from elsewhere would show here as a difference).
Exit 0 when clean, 1 otherwise, 2 when unreachable.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from finfaas.domain.errors import TransferNotFound
from finfaas.domain.ledger import Account, AccountKind, Transfer, system_account_id
from finfaas.domain.loan_account import TransactionKind
from finfaas.domain.loans import LoanRuleError
from finfaas.services.loans.model import Loan, LoanProduct, LoanStatus
from finfaas.services.loans.ops import WRITE_OFF_LEG
from finfaas.services.loans.service import collected
from pynamodb.exceptions import PynamoDBException

problems_shown_max = 50
EXIT_CLEAN, EXIT_INCONSISTENT, EXIT_UNREACHABLE = 0, 1, 2
_PAYMENTS = (TransactionKind.REPAYMENT, TransactionKind.PREPAYMENT)
LEGS = ("principal", "income")
SCAN_SEGMENTS = 8  # parallel Scan segments and BatchGetItem threads of a check over the tables
TRANSFERS_PER_READ_MAX = 100  # DynamoDB's BatchGetItem limit


def check(loans: Iterable[Loan], product_of: Callable[[str], LoanProduct | None],
          transfer_of: Callable[[str], Transfer | None],
          account_of: Callable[[str], Account | None]) -> tuple[int, list[str]]:
    """(loans checked, problems), each problem naming its loan or account."""
    problems: list[str] = []
    outstanding: dict[str, int] = defaultdict(int)
    written_off: dict[str, int] = defaultdict(int)
    in_transit: dict[str, int] = defaultdict(int)
    checked = 0
    for loan in loans:
        if loan.status is LoanStatus.DISBURSING:
            in_transit[loan.currency] += loan.principal_minor
        if loan.status is LoanStatus.DISBURSEMENT_FAILED and transfer_of(loan.disbursement_transfer_id):
            problems.append(f"loan {loan.loan_id}: its disbursement failed, yet "
                            f"{loan.disbursement_transfer_id} paid it out")
        if loan.disbursed_on is None:
            continue
        checked += 1
        product = product_of(loan.product_id)
        if product is None:
            problems.append(f"loan {loan.loan_id}: its product {loan.product_id} is gone")
            continue
        try:
            account = loan.account(product)
        except (LoanRuleError, AssertionError) as error:
            problems.append(f"loan {loan.loan_id}: its transactions do not replay ({error})")
            continue
        if not loan.stored_like(account):
            problems.append(f"loan {loan.loan_id}: stored figures differ from the replay of its transactions")
        outstanding[loan.currency] += account.principal_outstanding_minor
        written_off[loan.currency] += account.written_off.principal_minor
        problems.extend(_ledger_problems(loan, collected(account), account.written_off.principal_minor,
                                         transfer_of))
    for currency in sorted(set(outstanding) | set(in_transit)):
        for kind, expected in ((AccountKind.LOANS, outstanding[currency]),
                               (AccountKind.LOAN_LOSSES, written_off[currency])):
            account_id = system_account_id(kind, currency)
            found = account_of(account_id)
            balance = 0 if found is None else found.balance_minor
            if -balance != expected:
                problems.append(f"account {account_id}: balance {balance}, loans say {-expected}")
        funding_id = system_account_id(AccountKind.LOANS, currency)
        funding = account_of(funding_id)
        held = 0 if funding is None else funding.debits_pending
        if held != in_transit[currency]:
            problems.append(f"account {funding_id}: {held} held, loans disbursing say {in_transit[currency]}")
    return checked, problems


def _ledger_problems(loan: Loan, collected_minor: tuple[int, int], lost_minor: int,
                     transfer_of: Callable[[str], Transfer | None]) -> list[str]:
    """What the ledger lacks or counts differently for one loan."""
    problems = []
    paid_out = transfer_of(loan.disbursement_transfer_id)
    if paid_out is None or paid_out.amount_minor != loan.principal_minor:
        problems.append(f"loan {loan.loan_id}: disbursement transfer {loan.disbursement_transfer_id} "
                        "missing or of another amount")
    amounts = {t.transaction_id: t.amount_minor for t in loan.transactions}
    totals = {leg: 0 for leg in LEGS}
    lost = 0
    for transaction in loan.transactions:
        signed = {leg: _signed(loan, transfer_of(f"{transaction.transaction_id}-{leg}")) for leg in LEGS}
        for leg in LEGS:
            totals[leg] += signed[leg]
        loss = transfer_of(f"{transaction.transaction_id}-{WRITE_OFF_LEG}")
        lost += 0 if loss is None else loss.amount_minor
        if transaction.kind in _PAYMENTS:
            expected = transaction.amount_minor
        elif transaction.kind is TransactionKind.REVERSAL and transaction.reverses is not None:
            expected = -amounts.get(transaction.reverses, 0)
        else:
            continue
        if sum(signed.values()) != expected:
            problems.append(f"loan {loan.loan_id}: transaction {transaction.transaction_id}'s ledger legs "
                            f"move {sum(signed.values())}, not {expected}")
    if (totals["principal"], totals["income"]) != collected_minor:
        problems.append(f"loan {loan.loan_id}: the ledger collected {totals['principal']} of principal and "
                        f"{totals['income']} of income, its transactions {collected_minor[0]} and "
                        f"{collected_minor[1]}")
    if lost != lost_minor:
        problems.append(f"loan {loan.loan_id}: {lost} of principal written off in the ledger, "
                        f"{lost_minor} by its transactions")
    return problems


def _signed(loan: Loan, transfer: Transfer | None) -> int:
    """A leg's amount toward the lender (from the wallet), negative back to the wallet; 0 if absent."""
    if transfer is None:
        return 0
    return transfer.amount_minor if transfer.debit_account_id == loan.account_id else -transfer.amount_minor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", help="stage whose tables to check (default: FINFAAS_STAGE)")


def run(args: argparse.Namespace) -> int:
    if args.stage:
        os.environ["FINFAAS_STAGE"] = args.stage
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.loans.errors import LoansStoreUnavailable
    from finfaas.services.loans.service import LedgerAccounts
    from finfaas.store.ledger_store import StoreUnreachable, ledger_store_from_config
    from finfaas.store.loans_store import LoansStore

    ledger_store = ledger_store_from_config()
    try:
        checked, problems = check_tables(LoansStore(), ledger_store,
                                         LedgerAccounts(LedgerService(ledger_store)).account)
    except (LoansStoreUnavailable, StoreUnreachable, PynamoDBException) as error:
        print(f"loans check: cannot reach DynamoDB ({error})", file=sys.stderr)
        return EXIT_UNREACHABLE
    return report(checked, problems)


class CheckTooSlow(Exception):
    """The tables were not read by the deadline given."""


def check_tables(loans_store: Any, ledger_store: Any, account_of: Callable[[str], Account | None],
                 threads: int = SCAN_SEGMENTS, deadline: float = math.inf) -> tuple[int, list[str]]:
    """check() over the DynamoDB tables, read fast: the loans by `threads` parallel Scan segments, every
    transfer the check may ask for by BatchGetItem (100 ids a call) on as many threads, each product once.
    `loans_store` a LoansStore, `ledger_store` a DynamoLedgerStore; CheckTooSlow past `deadline`
    (time.monotonic())."""

    def segment(n: int) -> list[Loan]:
        loans = []
        for loan in loans_store.scan_loans(n, threads):
            if time.monotonic() > deadline:
                raise CheckTooSlow(f"loans not all read by the deadline (segment {n})")
            loans.append(loan)
        return loans

    def transfers(ids: list[str]) -> list[Transfer]:
        if time.monotonic() > deadline:
            raise CheckTooSlow("transfers not all read by the deadline")
        return _transfers(ledger_store, ids)

    with ThreadPoolExecutor(threads) as pool:
        loans = [loan for part in pool.map(segment, range(threads)) for loan in part]
        wanted = sorted({transfer_id for loan in loans for transfer_id in transfer_ids(loan)})
        chunks = [wanted[n:n + TRANSFERS_PER_READ_MAX] for n in range(0, len(wanted), TRANSFERS_PER_READ_MAX)]
        found = {t.transfer_id: t for part in pool.map(transfers, chunks) for t in part}
    return check(loans, functools.cache(loans_store.get), found.get, account_of)


def transfer_ids(loan: Loan) -> list[str]:
    """Every ledger transfer id check() may read for this loan (its disbursement, each transaction's legs)."""
    return [loan.disbursement_transfer_id] + [f"{t.transaction_id}-{leg}" for t in loan.transactions
                                              for leg in (*LEGS, WRITE_OFF_LEG)]


def _transfers(ledger_store: Any, transfer_ids: list[str]) -> list[Transfer]:
    """The transfers of these ids that exist, read with the ledger store's own records (consistent)."""
    from finfaas.store.models import transfer_from_record

    return [transfer_from_record(record) for record
            in ledger_store.models.transfer.batch_get(transfer_ids, consistent_read=True)]


def transfer_reader(ledger: Any) -> Callable[[str], Transfer | None]:
    """A LedgerService's transfers by id, None when absent."""

    def read(transfer_id: str) -> Transfer | None:
        try:
            return ledger.get_transfer(transfer_id)
        except TransferNotFound:
            return None
    return read


def report(checked: int, problems: list[str]) -> int:
    for problem in problems[:problems_shown_max]:
        print(f"PROBLEM {problem}")
    if len(problems) > problems_shown_max:
        print(f"... and {len(problems) - problems_shown_max} more")
    verdict = "OK" if not problems else f"{len(problems)} problem(s)"
    print(f"loans check: {checked} loans replayed and reconciled with the ledger; {verdict}")
    return EXIT_CLEAN if not problems else EXIT_INCONSISTENT
