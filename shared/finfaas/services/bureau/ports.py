"""What the bureau needs from outside: nothing yet (the sandbox derives its reports); a real bureau's
adapter would be declared here."""

from __future__ import annotations

from typing import Protocol

from finfaas.services.bureau.model import CreditReport


class ReportSource(Protocol):
    """Where reports come from (the sandbox's derivation, or a real bureau)."""

    def __call__(self, customer_id: str) -> CreditReport: ...
