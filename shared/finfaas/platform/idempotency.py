"""HTTP idempotency keys (ARCHITECTURE §4): run a state-changing request once, replay its response.

Two ways to use it:

* Claim / complete (any route): `IdempotencyGuard.run(scope, handler)` claims the key with a
  conditional put (IN_PROGRESS, with a lease), runs the handler, then stores the response as
  COMPLETED. Cost: 2 extra DynamoDB writes per fresh request; a replay costs a failed conditional
  put plus one consistent read.
* In the caller's transaction (money-moving routes): the ledger builds the response first and adds
  `guard.completion_record(scope, response)` to its own TransactWriteItems (through
  `IdempotencyStore.add_completion_to` or `completion_put`), so the key is recorded if and only if
  the money moved. Cost: 0 extra round trips on the happy path; after a cancellation,
  `guard.replay_after_conflict(scope)` reads the record once, or `guard.answer_for(scope, record)`
  decodes the one the cancellation reason returned (ALL_OLD) and reads nothing.

Where this goes beyond Powertools' idempotency utility (money needs it):

* completing or releasing a claim is conditional on the claim's own lease token, so an attempt
  whose lease lapsed (and was taken over) can never overwrite the new owner's record;
* a lapsed lease is taken over only by the same request (same fingerprint): a different body
  under a used key is always 422, even if the first attempt crashed;
* the key is scoped by principal, function and route, so one client's key never collides with
  another's, and the stored key is a hash (no raw client input in the table's partition key).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from finfaas.platform import jsonio
from finfaas.platform.errors import BadRequest, Conflict, HttpError
from finfaas.platform.leases import LeaseRenewal
from finfaas.platform.logging import get_logger

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotency-Replayed"
KEY_CHARS_MAX = 255
# Printable ASCII, space included: what an HTTP header value can carry without encoding games.
KEY_CHAR_CODE_MIN = 0x20
KEY_CHAR_CODE_MAX = 0x7E
# ARCHITECTURE §4 asks for at least 24 h; the record counts from completion (or from the claim).
RECORD_RETENTION_SECONDS = 24 * 3600
# How long a claim blocks duplicates before a retry may take it over. Short, so a retry after the
# claimant died waits seconds rather than a minute; the guard renews it while the handler runs.
CLAIM_LEASE_SECONDS = 6
# How often a running handler's claim is renewed: three renewals fit in one lease, so one slow or
# failed write does not let the key go.
CLAIM_RENEW_SECONDS = 2.0
# A handler still running after this stops renewing and its claim lapses: above every function's
# own timeout, so only a wedged thread gets there.
CLAIM_HELD_SECONDS_MAX = 300
# A claim can lose a race to a record that then disappears (released, expired): try again a little.
CLAIM_ATTEMPTS_MAX = 3
# DynamoDB items are at most 400 KB; leave room for the other attributes.
STORED_BODY_BYTES_MAX = 350_000
# Response headers worth replaying; the rest (Date, tracing, rate-limit counters) belong to each reply.
STORED_HEADER_NAMES = frozenset({"content-type", "location", "etag", "content-language"})
# Retryable by definition: storing them would pin a transient refusal to the key.
STATUSES_NOT_STORED = frozenset({408, 425, 429})
SERVER_ERROR_STATUS_MIN = 500
# Marks a record's key format, so a later change of scoping cannot match old records by accident.
STORAGE_KEY_VERSION = "v1"

log = get_logger("idempotency")


class RecordStatus(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"


class IdempotencyKeyMissing(BadRequest):
    """The route moves money or changes state and requires an Idempotency-Key header."""

    code, title = "idempotency_key_missing", "Idempotency-Key header required"


class IdempotencyKeyInvalid(BadRequest):
    """The Idempotency-Key header is empty, too long or has unprintable characters."""

    code, title = "idempotency_key_invalid", "Invalid Idempotency-Key header"


class IdempotencyKeyInUse(Conflict):
    """A request with this Idempotency-Key is still running."""

    code, title = "idempotency_key_in_use", "Idempotency-Key in use"


class IdempotencyKeyReused(HttpError):
    """This Idempotency-Key was used with a different request (method, path or body)."""

    status, code, title = 422, "idempotency_key_reused", "Idempotency-Key reused with a different request"


class IdempotencyStoreError(RuntimeError):
    """The idempotency table could not be read or written (network, throttling, missing table)."""


@dataclass(frozen=True)
class StoredResponse:
    """What a replay returns: status, the headers that matter, and the body text."""

    status_code: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IdempotencyRecord:
    """One key's state; `expires_at_s` (epoch seconds) is both the TTL and the liveness test."""

    key: str
    fingerprint: str
    status: RecordStatus
    expires_at_s: int
    lease_token: str | None = None
    lease_expires_at_ms: int = 0
    response: StoredResponse | None = None
    # When the guard built it (its clock): the "now" of a write condition made far from the guard.
    written_at_ms: int = 0

    def is_expired(self, now_ms: int) -> bool:
        # Neither emulator (nor DynamoDB, for up to days) deletes TTL-expired items: judge by timestamp.
        return self.expires_at_s * 1000 <= now_ms

    def lease_lapsed(self, now_ms: int) -> bool:
        return self.status is RecordStatus.IN_PROGRESS and self.lease_expires_at_ms <= now_ms

    def is_free_for(self, fingerprint: str, now_ms: int) -> bool:
        """May a request with this fingerprint take the key over? The stores' write condition."""
        return self.is_expired(now_ms) or (self.lease_lapsed(now_ms) and self.fingerprint == fingerprint)


@dataclass(frozen=True)
class PutOutcome:
    """Result of a conditional put: written, or the record in the way (None if it vanished since)."""

    written: bool
    existing: IdempotencyRecord | None = None


class IdempotencyRepository(Protocol):
    """Storage of idempotency records; every write is conditional (see each method)."""

    def put_if_free(self, record: IdempotencyRecord, now_ms: int) -> PutOutcome:
        """Write record if its key is absent, expired, or IN_PROGRESS with a lapsed lease and the same
        fingerprint (IdempotencyRecord.is_free_for)."""
        ...

    def get(self, key: str) -> IdempotencyRecord | None:
        """The stored record (strongly consistent), expired or not; None if absent."""
        ...

    def complete(self, record: IdempotencyRecord) -> bool:
        """Replace the IN_PROGRESS record held by record.lease_token; False if that claim was lost."""
        ...

    def release(self, key: str, lease_token: str) -> bool:
        """Delete the IN_PROGRESS record held by lease_token; False if that claim was lost."""
        ...

    def renew(self, key: str, lease_token: str, lease_expires_at_ms: int) -> bool:
        """Move the lease end of the IN_PROGRESS record held by lease_token; False if that claim was lost."""
        ...


class CompletionRecords(Protocol):
    """The idempotency table as a caller's own transaction needs it (store/idempotency_store.py)."""

    def completion_put(self, record: IdempotencyRecord) -> tuple[Any, Any]:
        """(item, condition) putting the COMPLETED record in the caller's transaction."""
        ...

    def record_from_raw(self, raw_item: dict[str, Any]) -> IdempotencyRecord:
        """The record a cancellation reason returned (ALL_OLD)."""
        ...


@dataclass(frozen=True)
class RequestScope:
    """A validated key and the request it stands for."""

    storage_key: str
    fingerprint: str


@dataclass(frozen=True)
class Claim:
    """Proof that this attempt holds the key; pass it to finish() or abandon()."""

    scope: RequestScope
    lease_token: str


def required_key(raw: str | None) -> str:
    """The header value of a route that requires one: IdempotencyKeyMissing when absent."""
    if raw is None:
        raise IdempotencyKeyMissing(
            f"This request changes state: send an {IDEMPOTENCY_KEY_HEADER} header "
            f"(1-{KEY_CHARS_MAX} printable characters, unique per intended operation)."
        )
    return validate_key(raw)


def validate_key(raw: str | None) -> str:
    """The header value if it is 1-255 printable ASCII characters, else IdempotencyKeyInvalid."""
    if raw is None or not raw:
        raise IdempotencyKeyInvalid(f"The {IDEMPOTENCY_KEY_HEADER} header must not be empty.")
    if len(raw) > KEY_CHARS_MAX:
        raise IdempotencyKeyInvalid(
            f"The {IDEMPOTENCY_KEY_HEADER} header must be at most {KEY_CHARS_MAX} characters."
        )
    if any(not KEY_CHAR_CODE_MIN <= ord(char) <= KEY_CHAR_CODE_MAX for char in raw):
        raise IdempotencyKeyInvalid(
            f"The {IDEMPOTENCY_KEY_HEADER} header must contain printable ASCII characters only."
        )
    return raw


def storage_key(principal: str, function: str, route: str, key: str) -> str:
    """Key scoped by principal, function and route; hashed so client text never forms the item key."""
    scoped = json.dumps([principal, function, route, key], ensure_ascii=True, separators=(",", ":"))
    return f"{STORAGE_KEY_VERSION}:{function}:{hashlib.sha256(scoped.encode()).hexdigest()}"


def canonical_body(body: bytes | str | None) -> bytes:
    """JSON bodies re-serialised with sorted keys and no spacing; anything else byte for byte."""
    raw = body.encode() if isinstance(body, str) else (body or b"")
    try:
        parsed = jsonio.loads(raw)
    except ValueError:
        return raw
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(
    method: str,
    path: str,
    body: bytes | str | None,
    query: Mapping[str, str | list[str]] | None = None,
) -> str:
    """SHA-256 over method, path, sorted query and canonical body: equal for the same request."""
    pairs = sorted(
        (name, value)
        for name, values in (query or {}).items()
        for value in ([values] if isinstance(values, str) else values)
    )
    head = json.dumps([method.upper(), path, pairs], separators=(",", ":")).encode()
    digest = hashlib.sha256(head)
    digest.update(b"\n")
    digest.update(canonical_body(body))
    return digest.hexdigest()


def is_storable(response: StoredResponse) -> bool:
    """2xx-4xx responses are final for the key; 5xx and 'try again' statuses let the client retry."""
    return response.status_code < SERVER_ERROR_STATUS_MIN and response.status_code not in STATUSES_NOT_STORED


def replayed(response: StoredResponse) -> StoredResponse:
    return replace(response, headers={**response.headers, REPLAYED_HEADER: "true"})


def _kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() in STORED_HEADER_NAMES}


class IdempotencyGuard:
    """Runs a request at most once per key and replays its stored response to retries."""

    def __init__(
        self,
        store: IdempotencyRepository,
        function: str,
        *,
        clock: Callable[[], float] = time.time,
        lease_seconds: int = CLAIM_LEASE_SECONDS,
        retention_seconds: int = RECORD_RETENTION_SECONDS,
        new_token: Callable[[], str] = lambda: uuid.uuid4().hex,
        renew_seconds: float = CLAIM_RENEW_SECONDS,
        held_seconds_max: float = CLAIM_HELD_SECONDS_MAX,
    ) -> None:
        if retention_seconds < RECORD_RETENTION_SECONDS:
            raise ValueError(f"idempotency records must be kept at least {RECORD_RETENTION_SECONDS} s")
        self._store = store
        self._function = function
        self._clock = clock
        self._lease_ms = lease_seconds * 1000
        self._retention_s = retention_seconds
        self._new_token = new_token
        self._renew_seconds = renew_seconds
        self._held_seconds_max = held_seconds_max

    def scope(
        self,
        *,
        principal: str,
        route: str,
        key: str | None,
        method: str,
        path: str,
        body: bytes | str | None,
        query: Mapping[str, str | list[str]] | None = None,
        required: bool = False,
    ) -> RequestScope | None:
        """The request's scope; None when no key was sent and the route does not require one."""
        if key is None:
            if required:
                required_key(key)
            return None
        valid = validate_key(key)
        return RequestScope(
            storage_key(principal, self._function, route, valid), fingerprint(method, path, body, query)
        )

    def run(self, scope: RequestScope, handler: Callable[[], StoredResponse]) -> StoredResponse:
        """Claim, run handler, store its response; or replay, 409 or 422 without running it."""
        outcome = self.begin(scope)
        if isinstance(outcome, StoredResponse):
            return outcome
        try:
            with self.renewing(outcome):
                response = handler()
        except BaseException:
            self.abandon(outcome)
            raise
        self.finish(outcome, response)
        return response

    def renewing(self, claim: Claim) -> ClaimRenewal:
        """A context that renews claim's lease while it is open, so only a dead claimant's key lapses."""
        return ClaimRenewal(self, claim)

    def renew(self, claim: Claim) -> bool:
        """Extend claim's lease from now; False once the claim is lost (nothing more to renew)."""
        try:
            until_ms = self._now_ms() + self._lease_ms
            return self._store.renew(claim.scope.storage_key, claim.lease_token, until_ms)
        except IdempotencyStoreError:
            log.warning("idempotency claim not renewed; trying again", key=claim.scope.storage_key)
            return True

    def begin(self, scope: RequestScope) -> Claim | StoredResponse:
        """A Claim to run the request, or the stored response to replay; raises 409/422 problems."""
        for _ in range(CLAIM_ATTEMPTS_MAX):
            now_ms = self._now_ms()
            token = self._new_token()
            record = IdempotencyRecord(
                key=scope.storage_key,
                fingerprint=scope.fingerprint,
                status=RecordStatus.IN_PROGRESS,
                expires_at_s=self._expiry_s(now_ms),
                lease_token=token,
                lease_expires_at_ms=now_ms + self._lease_ms,
                written_at_ms=now_ms,
            )
            outcome = self._store.put_if_free(record, now_ms)
            if outcome.written:
                return Claim(scope, token)
            if outcome.existing is not None and not outcome.existing.is_free_for(scope.fingerprint, now_ms):
                return self._answer_for(scope, outcome.existing, now_ms)
        raise IdempotencyKeyInUse(f"Another request with this {IDEMPOTENCY_KEY_HEADER} is running; retry.")

    def finish(self, claim: Claim, response: StoredResponse) -> None:
        """Store a final response for replays, or release the key so the client may retry."""
        if not is_storable(response) or not self._fits(response):
            self.abandon(claim)
            return
        record = self.completion_record(claim.scope, response, claim)
        try:
            kept = self._store.complete(record)
        except IdempotencyStoreError:
            # The work is done: answering 5xx would invite a retry that runs it again after the lease.
            log.exception("idempotency record not completed", key=claim.scope.storage_key)
            return
        if not kept:
            log.error("idempotency lease lost before completion", key=claim.scope.storage_key)

    def abandon(self, claim: Claim) -> None:
        """Release the key (the attempt failed or its result must not be replayed)."""
        try:
            released = self._store.release(claim.scope.storage_key, claim.lease_token)
        except IdempotencyStoreError:
            log.exception("idempotency claim not released; it lapses with its lease",
                          key=claim.scope.storage_key)
            return
        if not released:
            log.warning("idempotency claim already lost when releasing", key=claim.scope.storage_key)

    def completion_record(
        self, scope: RequestScope, response: StoredResponse, claim: Claim | None = None
    ) -> IdempotencyRecord:
        """The COMPLETED record for response; add it to a transaction or pass it to the store."""
        now_ms = self._now_ms()
        return IdempotencyRecord(
            key=scope.storage_key,
            fingerprint=scope.fingerprint,
            status=RecordStatus.COMPLETED,
            expires_at_s=self._expiry_s(now_ms),
            lease_token=claim.lease_token if claim else None,
            response=StoredResponse(response.status_code, response.body, _kept_headers(response.headers)),
            written_at_ms=now_ms,
        )

    def replay_after_conflict(self, scope: RequestScope) -> StoredResponse | None:
        """After the caller's transaction was cancelled: the replay if the key was done by an equal
        request; 409/422 if the key is busy or reused; None if the key is not why it failed."""
        return self.answer_for(scope, self._store.get(scope.storage_key))

    def answer_for(self, scope: RequestScope, existing: IdempotencyRecord | None) -> StoredResponse | None:
        """Like replay_after_conflict, given the record in the way (e.g. from a cancellation reason
        with ALL_OLD), which saves the read."""
        now_ms = self._now_ms()
        if existing is None or existing.is_free_for(scope.fingerprint, now_ms):
            return None
        return self._answer_for(scope, existing, now_ms)

    def record_outcome(self, scope: RequestScope, response: StoredResponse) -> StoredResponse:
        """Store a final response produced without a claim (a 4xx after a cancelled transaction);
        returns the response to send, which is the earlier one if an equal request finished first."""
        if not is_storable(response) or not self._fits(response):
            return response
        outcome = self._store.put_if_free(self.completion_record(scope, response), self._now_ms())
        if outcome.written or outcome.existing is None:
            return response
        return self._answer_for(scope, outcome.existing, self._now_ms())

    def _answer_for(self, scope: RequestScope, existing: IdempotencyRecord, now_ms: int) -> StoredResponse:
        if existing.fingerprint != scope.fingerprint:
            raise IdempotencyKeyReused(
                f"This {IDEMPOTENCY_KEY_HEADER} was already used for a different request; "
                "use a new key for a new operation."
            )
        if existing.status is RecordStatus.COMPLETED and existing.response is not None:
            return replayed(existing.response)
        retry_after_s = max(1, -(-(existing.lease_expires_at_ms - now_ms) // 1000))
        raise IdempotencyKeyInUse(
            f"A request with this {IDEMPOTENCY_KEY_HEADER} is still running; retry later.",
            headers={"Retry-After": str(retry_after_s)},
        )

    def _fits(self, response: StoredResponse) -> bool:
        if len(response.body.encode()) <= STORED_BODY_BYTES_MAX:
            return True
        log.error("response too large to store for replay; key released", status=response.status_code)
        return False

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _expiry_s(self, now_ms: int) -> int:
        return now_ms // 1000 + self._retention_s


class ClaimRenewal(LeaseRenewal):
    """Renews one claim's lease on a thread of its own every renew_seconds until closed, the claim is
    lost, or held_seconds_max has passed."""

    def __init__(self, guard: IdempotencyGuard, claim: Claim) -> None:
        super().__init__(guard._renew_seconds, thread_name="idempotency-claim-renewal")
        self._guard = guard
        self._claim = claim
        # Built where it is entered (`with guard.renewing(claim)`), so the clock starts with the work.
        self._deadline = time.monotonic() + guard._held_seconds_max
        self.renewals = 0

    def _renew_once(self) -> bool:
        if time.monotonic() >= self._deadline:
            return False
        if not self._guard.renew(self._claim):
            log.error("idempotency claim lost while its request ran", key=self._claim.scope.storage_key)
            return False
        self.renewals += 1
        return True
