"""The ledger request a caller gives, as the use cases take it."""

from __future__ import annotations

from dataclasses import dataclass


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
