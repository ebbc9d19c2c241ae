"""Names shared by the ledger function's integration tests (imported by name: conftest modules clash)."""

from __future__ import annotations

CURRENCY = "USD"
FUNDING_ACCOUNT = f"sys-funding-{CURRENCY}"
CLIENT = "svc-payments"
CLIENT_SCOPES = ("ledger:write", "ledger:read", "ops", "ops:act")
