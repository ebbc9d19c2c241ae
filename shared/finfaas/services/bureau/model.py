"""A credit report, and the sandbox's deterministic report of each customer."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from finfaas.platform.config import ConfigError

DOWN_SETTING = "BUREAU_SANDBOX_DOWN"
score_min, score_max = 300, 850
# One customer in ten has a poor file (a low score and late accounts), the rest a clean one: enough
# variety to see every underwriting outcome, the same answer for the same customer every time.
poor_file_one_in = 10
# A customer the sandbox never answers for (503), while it answers everyone else: the bureau down for one
# application, in a suite whose bureau serves the others.
UNAVAILABLE_CUSTOMER_SUFFIX = "-bureau-down"


@dataclass(frozen=True)
class CreditReport:
    """What the bureau knows of a customer: a score (300-850) and accounts past due."""

    customer_id: str
    score: int
    delinquencies: int
    open_accounts: int


def sandbox_report(customer_id: str) -> CreditReport:
    """The sandbox's report: derived from the customer id's SHA-256, so it never changes."""
    digest = hashlib.sha256(customer_id.encode()).digest()
    spread = int.from_bytes(digest[:4], "big")
    open_accounts = digest[4] % 8
    if spread % poor_file_one_in == 0:
        return CreditReport(customer_id, 450 + spread % 100, 1 + digest[5] % 3, open_accounts)
    return CreditReport(customer_id, 640 + spread % (score_max - 640 + 1), 0, open_accounts)


def down_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """BUREAU_SANDBOX_DOWN: `true` makes every report a 503 (to try the loans function without it)."""
    raw = (os.environ if environ is None else environ).get(DOWN_SETTING, "false").strip().lower()
    if raw not in ("true", "false"):
        raise ConfigError(f"{DOWN_SETTING} must be true or false, got {raw!r}")
    return raw == "true"
