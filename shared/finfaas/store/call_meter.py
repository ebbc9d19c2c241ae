"""DynamoDB calls counted by operation and table, for a function's /_/ops/stats.

Apart from the ledger store, so that a function counting its calls reaches no ledger table's name
(finfaas_dev.resource_use reads reachable modules to derive each function's IAM policy).
"""

from __future__ import annotations

from collections import Counter
from threading import Lock

TRANSACTION_TABLE_LABEL = "(transaction)"  # TransactWriteItems names no single table


class DynamoCallMeter:
    """Counts every DynamoDB call this process makes through pynamodb, by operation and table.

    Listens to pynamodb's pre-send signal, so it sees the ledger, idempotency, rate-limit and audit
    stores alike; a botocore-level retry of one call is not counted again.
    """

    def __init__(self) -> None:
        self._calls: Counter[tuple[str, str]] = Counter()
        self._lock = Lock()

    def start(self) -> bool:
        """Begin counting; False when pynamodb's signals are unavailable (blinker not installed)."""
        from pynamodb.signals import pre_dynamodb_send, signals_available

        if not signals_available:
            return False
        pre_dynamodb_send.connect(self._on_call, weak=False)
        return True

    def stop(self) -> None:
        from pynamodb.signals import pre_dynamodb_send, signals_available

        if signals_available:
            pre_dynamodb_send.disconnect(self._on_call)

    def snapshot(self) -> dict[str, int]:
        """{"<operation> <table>": calls} since start."""
        with self._lock:
            calls = sorted(self._calls.items())
        return {f"{operation} {table}": count for (operation, table), count in calls}

    def _on_call(self, sender: object, operation_name: str = "", table_name: str | None = None,
                 **_: object) -> None:
        with self._lock:
            self._calls[(operation_name, table_name or TRANSACTION_TABLE_LABEL)] += 1
