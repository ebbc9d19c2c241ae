"""Refresh-token records and families, what sign-up and sign-in answer, and the username and
password policies."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from finfaas.platform.tokens import IssuedToken
from finfaas.services.auth.errors import InvalidUsername, WeakPassword

USERNAME_PATTERN = re.compile(r"\A[a-z0-9][a-z0-9._-]*\Z")
username_chars_min = 3
username_chars_max = 64
# NIST SP 800-63B 5.1.1.2: at least 8 (we ask 12), allow at least 64, no composition rules.
password_chars_min = 12
password_chars_max = 128
password_distinct_chars_min = 5
# A few of the most common passwords long enough to pass the length rule.
COMMON_PASSWORDS = frozenset({
    "password1234", "123456789012", "1234567890123", "qwertyuiopas", "qwerty123456", "password123!",
    "iloveyou1234", "adminadmin12", "letmein12345", "welcome12345", "passwordpassword",
    "abcdefghijkl", "abc123456789", "111111111111", "000000000000", "changeme1234",
})
# Rotated tokens are kept as long as their family may live, so their reuse is still recognised.
refresh_record_kept_after_family_seconds = 24 * 3600


# --- refresh token records ------------------------------------------------------------------------


class TokenStatus(StrEnum):
    ACTIVE = "ACTIVE"
    ROTATED = "ROTATED"


class FamilyStatus(StrEnum):
    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"


@dataclass(frozen=True)
class RefreshTokenRecord:
    """One refresh token, by the SHA-256 of its text; the text itself is never stored."""

    token_hash: str
    family_id: str
    customer_id: str
    client_id: str
    scope: str
    status: TokenStatus
    issued_at_s: int
    valid_until_s: int
    family_expires_at_s: int
    replaced_by: str | None = None

    @property
    def kept_until_s(self) -> int:
        """The TTL: rotated records must outlive their family to catch reuse."""
        return self.family_expires_at_s + refresh_record_kept_after_family_seconds


@dataclass(frozen=True)
class TokenFamily:
    """Every refresh token descending from one sign-in; revoking it ends them all."""

    family_id: str
    customer_id: str
    client_id: str
    status: FamilyStatus
    created_at_s: int
    expires_at_s: int
    revoked_reason: str | None = None


def token_hash(token: str) -> str:
    """What is stored for a refresh token: 256 random bits need no salt or slow hash."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedUp:
    customer_id: str
    username: str


@dataclass(frozen=True)
class CustomerTokens:
    """An access token and the refresh token that replaces it when it expires."""

    access: IssuedToken
    refresh_token: str
    refresh_expires_in: int

    def to_dict(self) -> dict[str, Any]:
        """The RFC 6749 5.1 success body with its refresh token."""
        return {**self.access.to_dict(), "refresh_token": self.refresh_token,
                "refresh_token_expires_in": self.refresh_expires_in}


# --- policies -------------------------------------------------------------------------------------


def normalized_username(raw: str) -> str:
    """Usernames compare case-insensitively and without surrounding spaces."""
    return unicodedata.normalize("NFKC", raw).strip().lower()


def check_username(username: str) -> str:
    if not username_chars_min <= len(username) <= username_chars_max or not USERNAME_PATTERN.match(username):
        raise InvalidUsername("The username is not valid.", errors=(("username", (
            f"{username_chars_min} to {username_chars_max} characters: lower-case letters, digits, "
            "'.', '_' or '-', starting with a letter or digit")),))
    return username


def check_password(password: str, username: str) -> str:
    """NIST SP 800-63B: length, no trivially guessable values; the password is never echoed."""
    text = unicodedata.normalize("NFKC", password)
    problem = _password_problem(text, username)
    if problem:
        raise WeakPassword("The password does not meet the policy.", errors=(("password", problem),))
    return text


def _password_problem(text: str, username: str) -> str | None:
    if not password_chars_min <= len(text) <= password_chars_max:
        return f"{password_chars_min} to {password_chars_max} characters"
    if len(set(text)) < password_distinct_chars_min:
        return f"at least {password_distinct_chars_min} different characters"
    lowered = text.lower()
    if lowered in COMMON_PASSWORDS:
        return "too common"
    if username and username in lowered:
        return "must not contain the username"
    return None
