"""In-memory refresh-token repository, for tests: it passes the same contract tests as the DynamoDB
store."""

from __future__ import annotations

import threading
from dataclasses import replace

from finfaas.services.auth.model import FamilyStatus, RefreshTokenRecord, TokenFamily, TokenStatus


class InMemoryRefreshTokenStore:
    """RefreshTokenRepository in dicts, for unit tests; same contract as the DynamoDB store."""

    def __init__(self) -> None:
        self.tokens: dict[str, RefreshTokenRecord] = {}
        self.families: dict[str, TokenFamily] = {}
        self._lock = threading.Lock()

    def start_family(self, family: TokenFamily, first: RefreshTokenRecord) -> None:
        with self._lock:
            assert family.family_id not in self.families and first.token_hash not in self.tokens
            self.families[family.family_id] = family
            self.tokens[first.token_hash] = first

    def get_token(self, token_hash_: str) -> RefreshTokenRecord | None:
        with self._lock:
            return self.tokens.get(token_hash_)

    def get_family(self, family_id: str) -> TokenFamily | None:
        with self._lock:
            return self.families.get(family_id)

    def rotate(self, old: RefreshTokenRecord, new: RefreshTokenRecord, now_s: int) -> bool:
        with self._lock:
            stored = self.tokens.get(old.token_hash)
            family = self.families.get(old.family_id)
            token_usable = (stored is not None and stored.status is TokenStatus.ACTIVE
                            and stored.valid_until_s > now_s)
            family_usable = (family is not None and family.status is FamilyStatus.ACTIVE
                             and family.expires_at_s > now_s)
            if not (token_usable and family_usable) or stored is None or new.token_hash in self.tokens:
                return False
            self.tokens[old.token_hash] = replace(stored, status=TokenStatus.ROTATED,
                                                  replaced_by=new.token_hash)
            self.tokens[new.token_hash] = new
            return True

    def revoke_family(self, family_id: str, now_s: int, reason: str) -> None:
        with self._lock:
            family = self.families.get(family_id)
            if family is not None and family.status is not FamilyStatus.REVOKED:
                self.families[family_id] = replace(family, status=FamilyStatus.REVOKED, revoked_reason=reason)
