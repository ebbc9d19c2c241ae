"""In-memory implementations of the platform's ports, for tests: each passes the same contract tests
as its DynamoDB or KMS adapter (tests/unit/platform/test_*_contract.py, tests/integration/platform/)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from threading import Lock
from typing import Any

from finfaas.platform.audit import AuditRecord
from finfaas.platform.idempotency import IdempotencyRecord, PutOutcome, RecordStatus
from finfaas.platform.pii import (
    DataKey,
    PiiDecryptionFailed,
    canonical_context,
    data_key_bytes,
    gcm_nonce_bytes,
)


class InMemoryDataKeys:
    """DataKeyProvider without KMS, for unit tests: wraps data keys with AES-GCM under a process key,
    bound to the context exactly as KMS binds them; same contract as KmsDataKeys."""

    key_id = "in-memory"

    def __init__(self, master_key: bytes | None = None) -> None:
        self._master_key = master_key or os.urandom(data_key_bytes)
        self.generated = 0
        self.unwrapped = 0

    def generate(self, context: Mapping[str, str]) -> DataKey:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        plaintext = os.urandom(data_key_bytes)
        nonce = os.urandom(gcm_nonce_bytes)
        wrapped = nonce + AESGCM(self._master_key).encrypt(nonce, plaintext, canonical_context(context))
        self.generated += 1
        return DataKey(plaintext, wrapped, self.key_id)

    def unwrap(self, wrapped: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if key_id != self.key_id:
            raise PiiDecryptionFailed("the data key was wrapped by another key")
        nonce, body = wrapped[:gcm_nonce_bytes], wrapped[gcm_nonce_bytes:]
        try:
            plaintext = AESGCM(self._master_key).decrypt(nonce, body, canonical_context(context))
        except (InvalidTag, ValueError):
            raise PiiDecryptionFailed("the data key does not unwrap under this context") from None
        self.unwrapped += 1
        return plaintext



class InMemoryRateLimitStore:
    """RateLimitRepository in a dict, for unit tests and single-process use; same contract."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = Lock()

    def take(self, bucket: str, tokens: int, capacity: int, expires_at_s: int) -> bool:
        with self._lock:
            count = self._counts.get(bucket, 0)
            if count + tokens > capacity:
                return False
            self._counts[bucket] = count + tokens
            return True

    def count(self, bucket: str) -> int:
        with self._lock:
            return self._counts.get(bucket, 0)



class InMemoryIdempotencyStore:
    """IdempotencyRepository in a dict, for unit tests and the local runtime; same contract."""

    def __init__(self) -> None:
        self._records: dict[str, IdempotencyRecord] = {}
        self._lock = Lock()

    def put_if_free(self, record: IdempotencyRecord, now_ms: int) -> PutOutcome:
        with self._lock:
            existing = self._records.get(record.key)
            if existing is not None and not existing.is_free_for(record.fingerprint, now_ms):
                return PutOutcome(False, existing)
            self._records[record.key] = record
            return PutOutcome(True)

    def get(self, key: str) -> IdempotencyRecord | None:
        with self._lock:
            return self._records.get(key)

    def complete(self, record: IdempotencyRecord) -> bool:
        with self._lock:
            if not self._held_by(record.key, record.lease_token):
                return False
            self._records[record.key] = record
            return True

    def release(self, key: str, lease_token: str) -> bool:
        with self._lock:
            if not self._held_by(key, lease_token):
                return False
            del self._records[key]
            return True

    def renew(self, key: str, lease_token: str, lease_expires_at_ms: int) -> bool:
        with self._lock:
            existing = self._records.get(key)
            if existing is None or not self._held_by(key, lease_token):
                return False
            self._records[key] = replace(existing, lease_expires_at_ms=lease_expires_at_ms)
            return True

    def completion_put(self, record: IdempotencyRecord, *, now_ms: int | None = None) -> tuple[Any, Any]:
        """(record, the time its key must be free at), for a fake transaction to apply with put_if_free."""
        return record, now_ms if now_ms is not None else record.written_at_ms

    def record_from_raw(self, raw_item: dict[str, Any]) -> IdempotencyRecord:
        """A fake transaction hands the record in the way as {"record": record}."""
        record: IdempotencyRecord = raw_item["record"]
        return record

    def _held_by(self, key: str, lease_token: str | None) -> bool:
        existing = self._records.get(key)
        return (
            existing is not None
            and lease_token is not None
            and existing.status is RecordStatus.IN_PROGRESS
            and existing.lease_token == lease_token
        )



class InMemoryAuditStore:
    """AuditRepository in a dict, for unit tests; same contract as the DynamoDB store."""

    def __init__(self) -> None:
        self._chains: dict[str, dict[int, AuditRecord]] = {}
        self._lock = Lock()

    def head(self, chain: str) -> AuditRecord | None:
        with self._lock:
            records = self._chains.get(chain)
            return records[max(records)] if records else None

    def append(self, record: AuditRecord) -> bool:
        with self._lock:
            records = self._chains.setdefault(record.chain, {})
            if record.seq in records:
                return False
            records[record.seq] = record
            return True

    def chains(self) -> Iterator[str]:
        with self._lock:
            return iter(sorted(chain for chain, records in self._chains.items() if records))

    def records(self, chain: str) -> Iterator[AuditRecord]:
        with self._lock:
            records = dict(self._chains.get(chain, {}))
        return iter([records[seq] for seq in sorted(records)])

    def record_chains(self) -> Iterator[str]:
        """Each record's chain name, one per record, as the DynamoDB store's scan yields them."""
        with self._lock:
            return iter([chain for chain, records in self._chains.items() for _ in records])

    def replace(self, record: AuditRecord) -> None:
        """Overwrite a stored record (tamper simulation for tests of the verifier)."""
        with self._lock:
            self._chains.setdefault(record.chain, {})[record.seq] = record

    def delete(self, chain: str, seq: int) -> None:
        """Delete a stored record (tamper simulation for tests of the verifier)."""
        with self._lock:
            self._chains.get(chain, {}).pop(seq, None)
