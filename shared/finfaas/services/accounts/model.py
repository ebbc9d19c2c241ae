"""Account ids derived from the owner and the request, so a retried opening names the same account."""

from __future__ import annotations

import hashlib
import json

ACCOUNT_ID_PREFIX = "acc_"
account_id_hex_chars = 32


def derived_account_id(owner_id: str, idempotency_key: str) -> str:
    """The same (owner, key) always names the same account; different owners never collide."""
    scoped = json.dumps([owner_id, idempotency_key], separators=(",", ":"), ensure_ascii=True)
    return ACCOUNT_ID_PREFIX + hashlib.sha256(scoped.encode()).hexdigest()[:account_id_hex_chars]
