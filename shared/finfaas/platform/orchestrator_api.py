"""The orchestrator's API as saga participants (transfers, rail) use it: the port, declared once.

services/suite_clients.py's OrchestratorClient implements it over the gateway; tests use fakes.
"""

from __future__ import annotations

from typing import Any, Protocol


class Orchestrator(Protocol):
    def start(
        self, state_machine: str, name: str, input_value: Any, reference: str | None = None
    ) -> dict[str, Any]:
        """Start (or find, same name and input) an execution; ValueError for a refused start.
        reference: the business object it works on, which operators list executions by."""
        ...

    def heartbeat(self, task_token: str) -> bool:
        """True when the orchestrator waits for this task token."""
        ...

    def succeed(self, task_token: str, output: Any) -> None: ...

    def fail(self, task_token: str, error: str, cause: str) -> None: ...
