"""`finfaas payments check`: reconcile every merchant settlement with the ledger and name each mismatch.

For each merchant (from the payments table's merchants index) and each of its settlements, oldest first:
the report adds up (captures - refunds - fees - dispute_losses - reserve + reserve_released = payout), it is
paid, its figures are what its receivable shards' ledger entries between the previous cut and its own give
when counted again, its legs are in the ledger as planned, and the reserve it released is that of the
earlier settlements whose reserve period was over, each released once. Exit 0 when clean, 1 otherwise, 2
when unreachable.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date

problems_shown_max = 50
merchants_per_page = 100
merchants_max = 100_000
settlements_per_merchant_max = 3_660  # ten years of daily settlements
EXIT_CLEAN, EXIT_INCONSISTENT, EXIT_UNREACHABLE = 0, 1, 2


def check(use_case, settlements, merchant_ids) -> tuple[int, list[str]]:
    """(settlements checked, problems) over the merchants merchant_ids yields: each settlement verified by
    the settlement use case against the one before it."""
    problems: list[str] = []
    checked = 0
    for merchant_id in merchant_ids:
        previous = None
        for stored in settlements.of_merchant(merchant_id, settlements_per_merchant_max):
            problems.extend(use_case.verify(stored, previous))
            previous = stored
            checked += 1
    return checked, problems


def _merchant_ids(store):
    after = None
    for _ in range(merchants_max // merchants_per_page):
        page = store.merchant_ids(after, merchants_per_page)
        yield from page
        if len(page) < merchants_per_page:
            return
        after = page[-1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", help="stage whose tables to check (default: FINFAAS_STAGE)")


def run(args: argparse.Namespace) -> int:
    if args.stage:
        os.environ["FINFAAS_STAGE"] = args.stage
    from finfaas.platform.calendars import PROJECT_ROOT, load_calendars
    from finfaas.services.ledger.service import LedgerService
    from finfaas.services.payments.errors import PaymentsStoreUnavailable
    from finfaas.services.payments.service import LedgerStoreAccounts
    from finfaas.services.payments.settlement import SETTLEMENT_MARKET, MerchantSettlement
    from finfaas.store.ledger_store import StoreUnreachable, ledger_store_from_config
    from finfaas.store.payments_store import PaymentIntentsStore, PaymentSettlementsStore, PaymentsStore

    store = PaymentsStore()
    settlements = PaymentSettlementsStore(store)
    use_case = MerchantSettlement(store, PaymentIntentsStore(store),
                                  LedgerStoreAccounts(LedgerService(ledger_store_from_config())), settlements,
                                  date.today, calendar=load_calendars(PROJECT_ROOT).get(SETTLEMENT_MARKET))
    try:
        checked, problems = check(use_case, settlements, _merchant_ids(store))
    except (PaymentsStoreUnavailable, StoreUnreachable) as error:
        print(f"payments check: cannot reach DynamoDB ({error})", file=sys.stderr)
        return EXIT_UNREACHABLE
    for problem in problems[:problems_shown_max]:
        print(f"PROBLEM {problem}")
    if len(problems) > problems_shown_max:
        print(f"... and {len(problems) - problems_shown_max} more")
    verdict = "OK" if not problems else f"{len(problems)} problem(s)"
    print(f"payments check: {checked} settlements reconciled with the ledger; {verdict}")
    return EXIT_CLEAN if not problems else EXIT_INCONSISTENT
