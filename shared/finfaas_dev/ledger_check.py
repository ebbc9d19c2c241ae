"""`finfaas ledger check`: reconcile the ledger's tables and name every inconsistency.

The checks are finfaas.services.ledger.check's, the same the ledger function runs online; here they read
the whole tables, without its budget. Exit 0 when clean, 1 otherwise, 2 when DynamoDB cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import sys

from finfaas.services.ledger.check import AccountSnapshot, Report, check_store, reconcile

__all__ = ["AccountSnapshot", "Report", "add_arguments", "check_store", "reconcile", "run"]

problems_shown_max = 50
EXIT_CLEAN, EXIT_INCONSISTENT, EXIT_UNREACHABLE = 0, 1, 2


# --- command line ---


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", help="stage whose tables to check (default: FINFAAS_STAGE)")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")


def run(args: argparse.Namespace) -> int:
    from finfaas.platform.config import settings
    from finfaas.store.ledger_store import DynamoLedgerStore, StoreUnreachable
    from finfaas.store.tables import LedgerTables

    tables = LedgerTables.for_stage(args.stage) if args.stage else LedgerTables.from_config()
    store = DynamoLedgerStore(tables, args.region or settings().region)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
    try:
        report = check_store(store)
    except StoreUnreachable as error:
        print(f"ledger check: cannot reach DynamoDB at {endpoint} ({error})", file=sys.stderr)
        return EXIT_UNREACHABLE
    for problem in report.problems[:problems_shown_max]:
        print(f"PROBLEM {problem}")
    if len(report.problems) > problems_shown_max:
        print(f"... and {len(report.problems) - problems_shown_max} more")
    print(report.summary())
    return EXIT_CLEAN if report.clean else EXIT_INCONSISTENT
