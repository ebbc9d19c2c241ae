"""The orders bench's in-process pieces are built from names that exist (they are imported late, so only a
call finds a rename)."""

from __future__ import annotations

from finfaas.services.wealth.service import WealthService
from finfaas_dev.bench import wealth_orders


def test_the_bench_builds_the_wealth_service_it_runs_the_batch_with():
    # WHEN the bench builds its in-process wealth service (no call reaches DynamoDB yet)
    service = wealth_orders.wealth_service()

    # THEN it is the wealth use cases, on the ledger read as the function reads it
    assert isinstance(service, WealthService)
