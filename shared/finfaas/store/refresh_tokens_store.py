"""Refresh tokens and their families in DynamoDB (table auth: HASH pk, RANGE sk, TTL expires_at).

Items: `refresh#<sha256 of the token>` / `token`, and `family#<family id>` / `family`. Validity is
judged by `valid_until` and `family_expires_at` (epoch seconds) in condition expressions, never by
TTL; `expires_at` only lets DynamoDB delete records once reuse of them no longer matters.
A rotation is one TransactWriteItems: the old token ACTIVE -> ROTATED, a condition check on the
family, the new token put; no half-rotated state can exist.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite
from tenacity import RetryError

from finfaas.platform.config import resource_name, settings
from finfaas.platform.retry import RetryPolicy
from finfaas.services.auth.errors import RefreshStoreUnavailable
from finfaas.services.auth.model import (
    FamilyStatus,
    RefreshTokenRecord,
    TokenFamily,
    TokenStatus,
    refresh_record_kept_after_family_seconds,
)
from finfaas.store.binding import (
    CONNECT_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    RETRY_ATTEMPTS_MAX,
    StoreMeta,
    bound,
)
from finfaas.store.dynamo import (
    REASON_TRANSACTION_CONFLICT,
    TRANSACTION_CONFLICT_EXCEPTION,
    cancellation_codes,
    conditional_write,
    consistent_get,
)

TABLE_LOGICAL_NAME = "auth"
TOKEN_PK_PREFIX = "refresh#"  # noqa: S105 - an item key prefix, not a credential
TOKEN_SK = "token"  # noqa: S105 - an item sort key, not a credential
FAMILY_PK_PREFIX = "family#"
FAMILY_SK = "family"
# A rotation racing another transaction on the same token or family is retried this often, so the
# loser ends in a condition failure (reuse) rather than an error.
ROTATE_ATTEMPTS_MAX = 4
ROTATE_BACKOFF_MS_MAX = 50.0
# A pause drawn from 0..ROTATE_BACKOFF_MS_MAX before each new try, whatever the attempt.
ROTATE_POLICY = RetryPolicy(ROTATE_ATTEMPTS_MAX, ROTATE_BACKOFF_MS_MAX, ROTATE_BACKOFF_MS_MAX)


class _TokenItem(Model):
    Meta = StoreMeta

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    family_id = UnicodeAttribute()
    customer_id = UnicodeAttribute()
    client_id = UnicodeAttribute()
    scope = UnicodeAttribute()
    status = UnicodeAttribute()
    issued_at = NumberAttribute()
    valid_until = NumberAttribute()
    family_expires_at = NumberAttribute()
    replaced_by = UnicodeAttribute(null=True)
    rotated_at = NumberAttribute(null=True)
    expires_at = NumberAttribute()  # DynamoDB's TTL attribute (epoch seconds)


class _FamilyItem(Model):
    Meta = StoreMeta

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    customer_id = UnicodeAttribute()
    client_id = UnicodeAttribute()
    status = UnicodeAttribute()
    created_at = NumberAttribute()
    family_expires_at = NumberAttribute()
    revoked_at = NumberAttribute(null=True)
    revoked_reason = UnicodeAttribute(null=True)
    expires_at = NumberAttribute()  # DynamoDB's TTL attribute (epoch seconds)


def token_model(table_name: str, region: str) -> type[_TokenItem]:
    """The model bound to one physical table (the name depends on the stage, known at run time)."""
    return bound(_TokenItem, table_name, region)


def family_model(table_name: str, region: str) -> type[_FamilyItem]:
    return bound(_FamilyItem, table_name, region)


class RefreshTokenStore:
    """RefreshTokenRepository on DynamoDB."""

    def __init__(self, table_name: str | None = None, region: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        region = region or settings().region
        self._sleep = sleep
        table_name = table_name or resource_name(TABLE_LOGICAL_NAME)
        self.tokens = token_model(table_name, region)
        self.families = family_model(table_name, region)
        self._connection = Connection(region=region, connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS,
                                      read_timeout_seconds=READ_TIMEOUT_SECONDS,
                                      max_retry_attempts=RETRY_ATTEMPTS_MAX)

    def start_family(self, family: TokenFamily, first: RefreshTokenRecord) -> None:
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(self._family_item(family), condition=self.families.pk.does_not_exist())
                transaction.save(self._token_item(first), condition=self.tokens.pk.does_not_exist())
        except PynamoDBException as error:
            raise RefreshStoreUnavailable("refresh token family not stored") from error

    def get_token(self, token_hash: str) -> RefreshTokenRecord | None:
        item = consistent_get(self.tokens, (f"{TOKEN_PK_PREFIX}{token_hash}", TOKEN_SK),
                              lambda _: RefreshStoreUnavailable("refresh token read failed"))
        if item is None:
            return None
        return RefreshTokenRecord(
            token_hash=token_hash, family_id=item.family_id, customer_id=item.customer_id,
            client_id=item.client_id, scope=item.scope, status=TokenStatus(item.status),
            issued_at_s=int(item.issued_at), valid_until_s=int(item.valid_until),
            family_expires_at_s=int(item.family_expires_at), replaced_by=item.replaced_by,
        )

    def get_family(self, family_id: str) -> TokenFamily | None:
        item = consistent_get(self.families, (f"{FAMILY_PK_PREFIX}{family_id}", FAMILY_SK),
                              lambda _: RefreshStoreUnavailable("token family read failed"))
        if item is None:
            return None
        return TokenFamily(
            family_id=family_id, customer_id=item.customer_id, client_id=item.client_id,
            status=FamilyStatus(item.status), created_at_s=int(item.created_at),
            expires_at_s=int(item.family_expires_at), revoked_reason=item.revoked_reason,
        )

    def rotate(self, old: RefreshTokenRecord, new: RefreshTokenRecord, now_s: int) -> bool:
        # A conflict cancels the whole transaction, so sending it again is safe.
        try:
            return ROTATE_POLICY.retrying(_Conflict, self._sleep)(self._rotate_once, old, new, now_s)
        except RetryError as error:
            raise RefreshStoreUnavailable("rotation kept conflicting with other transactions") from error

    def _rotate_once(self, old: RefreshTokenRecord, new: RefreshTokenRecord, now_s: int) -> bool:
        tokens, families = self.tokens, self.families
        old_item = tokens(f"{TOKEN_PK_PREFIX}{old.token_hash}", TOKEN_SK)
        still_valid = (tokens.status == TokenStatus.ACTIVE.value) & (tokens.valid_until > now_s)
        family_valid = (families.status == FamilyStatus.ACTIVE.value) & (families.family_expires_at > now_s)

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.update(old_item, actions=[tokens.status.set(TokenStatus.ROTATED.value),
                                                      tokens.replaced_by.set(new.token_hash),
                                                      tokens.rotated_at.set(now_s)],
                                   condition=still_valid)
                transaction.condition_check(families, f"{FAMILY_PK_PREFIX}{old.family_id}", FAMILY_SK,
                                            condition=family_valid)
                transaction.save(self._token_item(new), condition=tokens.pk.does_not_exist())

        written = conditional_write(transact)
        if _conflicted(written.error):
            raise _Conflict(written.code) from written.error
        return written.or_raise(lambda w: RefreshStoreUnavailable(f"rotation failed: {w.code}"))

    def revoke_family(self, family_id: str, now_s: int, reason: str) -> None:
        families = self.families
        conditional_write(lambda: families(f"{FAMILY_PK_PREFIX}{family_id}", FAMILY_SK).update(
            actions=[families.status.set(FamilyStatus.REVOKED.value), families.revoked_at.set(now_s),
                     families.revoked_reason.set(reason)],
            # Only an active family: a second revocation keeps the first reason and time.
            condition=families.status == FamilyStatus.ACTIVE.value,
        )).or_raise(lambda _: RefreshStoreUnavailable("family revocation failed"))

    def _token_item(self, record: RefreshTokenRecord) -> _TokenItem:
        return self.tokens(
            f"{TOKEN_PK_PREFIX}{record.token_hash}", TOKEN_SK, family_id=record.family_id,
            customer_id=record.customer_id, client_id=record.client_id, scope=record.scope,
            status=record.status.value, issued_at=record.issued_at_s, valid_until=record.valid_until_s,
            family_expires_at=record.family_expires_at_s, replaced_by=record.replaced_by,
            expires_at=record.kept_until_s,
        )

    def _family_item(self, family: TokenFamily) -> _FamilyItem:
        return self.families(
            f"{FAMILY_PK_PREFIX}{family.family_id}", FAMILY_SK, customer_id=family.customer_id,
            client_id=family.client_id, status=family.status.value, created_at=family.created_at_s,
            family_expires_at=family.expires_at_s,
            expires_at=family.expires_at_s + refresh_record_kept_after_family_seconds,
        )


class _Conflict(Exception):
    """Another transaction held the token or its family; the rotation may be tried again."""


def _conflicted(error: Exception | None) -> bool:
    return (getattr(error, "cause_response_code", None) == TRANSACTION_CONFLICT_EXCEPTION
            or REASON_TRANSACTION_CONFLICT in cancellation_codes(error))
