"""Customer sign-up and sign-in: argon2 passwords, short-lived access tokens, rotating refresh tokens.

Refresh tokens (OAuth 2.1 / RFC 6819 5.2.2.3): each is single-use; refreshing marks it ROTATED and
issues its successor in one transaction. A sign-in starts a token family; presenting a token that
was already rotated means two parties hold it (one of them stole it), and since the server cannot
tell which is legitimate it revokes the whole family. Only SHA-256 hashes of tokens are stored;
validity is judged by stored timestamps, never by the table's TTL (which the emulators ignore).

Sign-in follows platform.ratelimit.SignInThrottle (fail closed): attempts are limited per source
address; failures slow down their (username, source) pair exponentially, and a username's failures
from everywhere only slow it past a high ceiling, so a flood from one place never locks the owner
out from another. An unknown username costs the same argon2 verification as a wrong password, with
the same answer.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from finfaas.platform.audit import Outcome
from finfaas.platform.logging import get_logger
from finfaas.platform.ratelimit import SIGN_IN_LIMIT, UNKNOWN_SOURCE, RateLimit, RateLimiter, SignInThrottle
from finfaas.platform.tokens import CUSTOMER_KIND, OAuthError, TokenIssuer, granted_scopes
from finfaas.services.auth.errors import UsernameTaken, invalid_grant
from finfaas.services.auth.model import (
    USERNAME_PATTERN,
    CustomerTokens,
    FamilyStatus,
    RefreshTokenRecord,
    SignedUp,
    TokenFamily,
    TokenStatus,
    check_password,
    check_username,
    normalized_username,
    password_chars_max,
    token_hash,
    username_chars_max,
    username_chars_min,
)
from finfaas.services.auth.ports import RefreshTokenRepository
from finfaas.services.customers.model import ACTIVE, Caller, Credentials, CustomerRecord
from finfaas.services.customers.ports import CredentialRepository
from finfaas.services.customers.service import AuditTrail

# What a customer's token may carry; ops and client-only scopes never.
CUSTOMER_SCOPES = frozenset({
    "accounts:read", "accounts:write", "payments:read", "payments:write", "transfers:read",
    "transfers:write", "wealth:read", "wealth:write", "loans:read", "loans:write",
})
# The client id bound to tokens obtained without client authentication (a first-party public app).
PUBLIC_CLIENT_ID = "public"
ANONYMOUS = "anonymous"
UNKNOWN_TARGET = "customer:unknown"
SIGN_UP_LIMIT = RateLimit("sign_up", requests_max=20, window_seconds=3600, tokens_per_call=1, fail_open=False)
CUSTOMER_LIMITS: Mapping[str, RateLimit] = {limit.name: limit for limit in (SIGN_IN_LIMIT, SIGN_UP_LIMIT)}
refresh_token_bytes = 32
refresh_token_chars_max = 128
refresh_token_lifetime_seconds = 14 * 24 * 3600
# A family ends this long after sign-in, however often it is refreshed: then sign in again.
refresh_family_lifetime_seconds = 30 * 24 * 3600
_REFRESH_TOKEN_CHARS = re.compile(r"\A[A-Za-z0-9_-]+\Z")

_log = get_logger("auth_customers")


# --- the service ----------------------------------------------------------------------------------


class CustomerAuthService:
    """Sign-up, sign-in (password grant), refresh-token rotation and revocation for customers."""

    def __init__(
        self,
        credentials: CredentialRepository,
        refresh_tokens: RefreshTokenRepository,
        issuer: Callable[[], TokenIssuer],
        limiter: RateLimiter,
        audit: AuditTrail,
        *,
        hasher: Any = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(refresh_token_bytes),
    ) -> None:
        if hasher is None:
            from argon2 import PasswordHasher

            hasher = PasswordHasher()  # argon2id with the library's memory-hard defaults
        self._credentials = credentials
        self._tokens = refresh_tokens
        self._issuer = issuer
        self._limiter = limiter
        self._sign_in_throttle = SignInThrottle(limiter)
        self._audit = audit
        self._hasher = hasher
        self._clock = clock
        self._new_id = new_id
        self._new_secret = new_secret
        self._decoy_hash: str | None = None
        self._decoy_lock = threading.Lock()

    # --- sign-up ---

    def sign_up(self, username: str, password: str, origin: Caller) -> SignedUp:
        """A new customer with these credentials; UsernameTaken, InvalidUsername or WeakPassword."""
        self._limiter.enforce(f"ip:{origin.source_ip or UNKNOWN_SOURCE}", SIGN_UP_LIMIT.name)
        name = check_username(normalized_username(username))
        checked = check_password(password, name)
        customer_id = self._new_id()
        now_s = int(self._clock())
        credentials = Credentials(name, customer_id, self._hasher.hash(checked))
        if not self._credentials.create(CustomerRecord(customer_id, name, now_s), credentials):
            self._audit.record(origin, "customer.sign_up", UNKNOWN_TARGET, Outcome.DENIED)
            raise UsernameTaken("This username is taken.", errors=(("username", "taken"),))
        self._audit.record(replace(origin, sub=customer_id, kind=CUSTOMER_KIND), "customer.sign_up",
                           f"customer:{customer_id}", Outcome.SUCCEEDED)
        return SignedUp(customer_id, name)

    # --- sign-in ---

    def sign_in(self, username: str, password: str, client_id: str, scope: str | None,
                origin: Caller) -> CustomerTokens:
        """OAuth 2.0 password grant (RFC 6749 4.3) for a customer."""
        name = normalized_username(username)
        attempt = self._sign_in_throttle.admit(name, origin.source_ip)
        scopes = granted_scopes(scope, CUSTOMER_SCOPES)
        found, matched = self._verified(name, password)
        if found is None:
            self._sign_in_throttle.failed(attempt)
            self._audit.record(origin, "customer.sign_in", UNKNOWN_TARGET, Outcome.DENIED)
            raise invalid_grant()
        who = replace(origin, sub=found.customer_id, kind=CUSTOMER_KIND)
        if not matched or found.status != ACTIVE:
            self._sign_in_throttle.failed(attempt)
            self._audit.record(who, "customer.sign_in", f"customer:{found.customer_id}", Outcome.DENIED)
            raise invalid_grant()
        tokens = self._start_family(found.customer_id, client_id, scopes)
        self._audit.record(who, "customer.sign_in", f"customer:{found.customer_id}", Outcome.SUCCEEDED)
        return tokens

    def _verified(self, username: str, password: str) -> tuple[Credentials | None, bool]:
        """(credentials or None, whether the password matched); every path runs one argon2 verification."""
        from argon2.exceptions import Argon2Error, InvalidHashError

        valid_name = username_chars_min <= len(username) <= username_chars_max and USERNAME_PATTERN.match(
            username)
        found = self._credentials.credentials_for(username) if valid_name else None
        stored_hash = found.password_hash if found is not None else self._decoy()
        # No stored password is longer than the policy allows: verify a stand-in that cannot match,
        # so a megabyte of input costs what any other wrong password costs.
        candidate = password if len(password) <= password_chars_max else ""
        try:
            self._hasher.verify(stored_hash, unicodedata.normalize("NFKC", candidate))
        except (Argon2Error, InvalidHashError):
            return found, False
        if found is not None:
            self._upgrade_hash(found, password)
        return found, found is not None

    def _upgrade_hash(self, credentials: Credentials, password: str) -> None:
        """Re-hash with today's parameters after they were raised; best effort."""
        if not self._hasher.check_needs_rehash(credentials.password_hash):
            return
        try:
            new_hash = self._hasher.hash(unicodedata.normalize("NFKC", password))
            self._credentials.replace_password_hash(credentials.username, credentials.password_hash, new_hash)
        except Exception as error:
            _log.warning("password re-hash skipped", customer_id=credentials.customer_id,
                         error_type=type(error).__name__)

    def _decoy(self) -> str:
        with self._decoy_lock:
            if self._decoy_hash is None:
                self._decoy_hash = self._hasher.hash(secrets.token_urlsafe(16))
            return self._decoy_hash

    # --- refresh ---

    def refresh(self, refresh_token: str, client_id: str, scope: str | None,
                origin: Caller) -> CustomerTokens:
        """OAuth 2.0 refresh_token grant (RFC 6749 6) with rotation and reuse detection."""
        now_s = int(self._clock())
        current = self._known_token(refresh_token)
        if current is None or current.client_id != client_id:
            self._audit.record(origin, "customer.token.refresh", UNKNOWN_TARGET, Outcome.DENIED)
            raise invalid_grant()
        who = replace(origin, sub=current.customer_id, kind=CUSTOMER_KIND)
        if current.status is TokenStatus.ROTATED:
            self._revoke_for_reuse(current, who, now_s)
        scopes = granted_scopes(scope, frozenset(current.scope.split()))
        successor = self._token_record(current.family_id, current.customer_id, client_id, scopes,
                                       now_s, current.family_expires_at_s)
        new_text, new_record = successor
        if current.valid_until_s <= now_s or not self._tokens.rotate(current, new_record, now_s):
            self._refused_refresh(current, who, now_s)
        access = self._issuer().issue(current.customer_id, CUSTOMER_KIND, scopes, client_id)
        self._audit.record(who, "customer.token.refresh", f"family:{current.family_id}", Outcome.SUCCEEDED)
        return CustomerTokens(access, new_text, new_record.valid_until_s - now_s)

    def _known_token(self, refresh_token: str) -> RefreshTokenRecord | None:
        if not refresh_token or len(refresh_token) > refresh_token_chars_max:
            return None
        if not _REFRESH_TOKEN_CHARS.match(refresh_token):
            return None
        return self._tokens.get_token(token_hash(refresh_token))

    def _refused_refresh(self, current: RefreshTokenRecord, who: Caller, now_s: int) -> None:
        """After a failed rotation: a concurrent use of the same token is reuse too."""
        latest = self._tokens.get_token(current.token_hash)
        if latest is not None and latest.status is TokenStatus.ROTATED:
            self._revoke_for_reuse(latest, who, now_s)
        self._audit.record(who, "customer.token.refresh", f"family:{current.family_id}", Outcome.DENIED)
        raise invalid_grant()

    def _revoke_for_reuse(self, token: RefreshTokenRecord, who: Caller, now_s: int) -> None:
        self._tokens.revoke_family(token.family_id, now_s, "reuse")
        _log.warning("refresh token reuse: family revoked", family_id=token.family_id,
                     customer_id=token.customer_id)
        self._audit.record(who, "customer.token.reuse_detected", f"family:{token.family_id}", Outcome.DENIED)
        raise invalid_grant()

    # --- revocation ---

    def revoke(self, refresh_token: str, client_id: str, origin: Caller) -> None:
        """RFC 7009: end the token's family; unknown tokens are silently accepted."""
        current = self._known_token(refresh_token)
        if current is None:
            return
        if current.client_id != client_id:
            raise OAuthError("invalid_request", "The token was not issued to this client.")
        self._tokens.revoke_family(current.family_id, int(self._clock()), "revoked")
        who = replace(origin, sub=current.customer_id, kind=CUSTOMER_KIND)
        self._audit.record(who, "customer.token.revoke", f"family:{current.family_id}", Outcome.SUCCEEDED)

    # --- building blocks ---

    def _start_family(self, customer_id: str, client_id: str, scopes: Iterable[str]) -> CustomerTokens:
        now_s = int(self._clock())
        family = TokenFamily(self._new_id(), customer_id, client_id, FamilyStatus.ACTIVE, now_s,
                             now_s + refresh_family_lifetime_seconds)
        text, first = self._token_record(family.family_id, customer_id, client_id, scopes, now_s,
                                         family.expires_at_s)
        self._tokens.start_family(family, first)
        access = self._issuer().issue(customer_id, CUSTOMER_KIND, scopes, client_id)
        return CustomerTokens(access, text, first.valid_until_s - now_s)

    def _token_record(self, family_id: str, customer_id: str, client_id: str, scopes: Iterable[str],
                      now_s: int, family_expires_at_s: int) -> tuple[str, RefreshTokenRecord]:
        text = self._new_secret()
        record = RefreshTokenRecord(
            token_hash=token_hash(text), family_id=family_id, customer_id=customer_id, client_id=client_id,
            scope=" ".join(sorted(set(scopes))), status=TokenStatus.ACTIVE, issued_at_s=now_s,
            valid_until_s=min(now_s + refresh_token_lifetime_seconds, family_expires_at_s),
            family_expires_at_s=family_expires_at_s,
        )
        return text, record
