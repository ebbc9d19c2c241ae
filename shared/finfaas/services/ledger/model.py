"""The ledger request a caller gives, as the use cases take it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from finfaas.domain.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """One leg as a caller gives it: amount is minor units (int) or a decimal string of major units."""

    debit_account_id: str
    credit_account_id: str
    amount: int | str
    currency: str
    transfer_id: str | None = None
    pending: bool = False
    timeout_seconds: int = 0
    metadata: str = ""

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> TransferRequest:
        """From a parsed JSON object; unknown keys are refused so typos do not pass silently."""
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise InvalidInput(f"{unknown[0]}: unknown field", field=unknown[0])
        for required in ("debit_account_id", "credit_account_id", "amount", "currency"):
            if required not in data:
                raise InvalidInput(f"{required}: required", field=required)
        return cls(**data)  # type: ignore[arg-type]
