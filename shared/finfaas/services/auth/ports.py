"""What auth needs from outside: the refresh-token repository (credentials: customers/ports.py)."""

from __future__ import annotations

from typing import Protocol

from finfaas.services.auth.model import RefreshTokenRecord, TokenFamily


class RefreshTokenRepository(Protocol):
    def start_family(self, family: TokenFamily, first: RefreshTokenRecord) -> None:
        """Store a new family and its first token together."""
        ...

    def get_token(self, token_hash: str) -> RefreshTokenRecord | None:
        """The token record (strongly consistent), or None."""
        ...

    def get_family(self, family_id: str) -> TokenFamily | None:
        ...

    def rotate(self, old: RefreshTokenRecord, new: RefreshTokenRecord, now_s: int) -> bool:
        """Atomically: old ACTIVE and valid at now_s -> ROTATED (replaced_by new), its family ACTIVE and
        unexpired, new stored. False, and nothing written, when any of that does not hold."""
        ...

    def revoke_family(self, family_id: str, now_s: int, reason: str) -> None:
        """Mark the family REVOKED (idempotent)."""
        ...
