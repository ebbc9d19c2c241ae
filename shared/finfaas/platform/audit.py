"""Append-only, tamper-evident audit log: who did what, when, from where, with what outcome.

Each record carries `seq` (1, 2, ... per chain) and `hash = H(prev_hash + canonical JSON of the
record without its hash)`, where H is HMAC-SHA256 under the audit key when one is configured, else
SHA-256. The first record's prev_hash is GENESIS_HASH.

Why the HMAC key: a plain SHA-256 chain only proves the records agree with each other; anyone who
can write the table can change a record and recompute every later hash. The key lives outside the
table (the OpenFaaS secret `audit-hmac-key`, which table permissions do not grant), so a writer
with table access but without the key cannot rebuild the chain. Once a key is configured the
verifier also reports records that are not HMAC-signed (a downgrade). No chain by itself shows
that its newest records were deleted (truncation): `finfaas audit verify --save-anchors FILE`
keeps each chain's head somewhere else, and a later `--anchors FILE` proves the chain still
reaches it with the same hash.

Appending: a conditional put on (chain, seq = head + 1); if another instance took that seq, the
loser re-reads the head and retries with the next one, so a chain never forks. Heads are cached in
process: a lone writer pays one write per record. Chains are per function and sharded by actor
(`<function>-<shard>`): instances of one function rarely race on one head, and one actor's events
stay in one ordered chain. More shards cut contention; fewer keep verification output short.

What goes in: ids, never personal data. Actor and target are opaque ids (validated: no spaces, no
'@', so a name or e-mail address cannot slip in); the client IP is kept because a security audit
needs it (it is personal data under GDPR: retention belongs to the table's policy).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from threading import Lock
from typing import Protocol

from finfaas.platform import jsonio
from finfaas.platform.retry import Change, RetryPolicy, read_change_save

AUDIT_KEY_SECRET_NAME = "audit-hmac-key"  # noqa: S105 - the name of the secret file, not a secret
GENESIS_HASH = "0" * 64
RECORD_VERSION = 1
ALG_SHA256 = "sha256"
ALG_HMAC_SHA256 = "hmac-sha256"
AUDIT_SHARDS_DEFAULT = 4
APPEND_ATTEMPTS_MAX = 12
# Exponential backoff with full jitter before retrying a lost seq, so racing appenders spread out
# instead of the fastest one winning every round: at most ~1.6 s of waiting in all.
APPEND_BACKOFF_MS_BASE = 5.0
APPEND_BACKOFF_MS_MAX = 250.0
APPEND_RETRY = RetryPolicy(APPEND_ATTEMPTS_MAX, APPEND_BACKOFF_MS_BASE, APPEND_BACKOFF_MS_MAX)
AUDIT_KEY_BYTES_MIN = 32
KEY_ID_HEX_CHARS = 12
# How far from its position a moved record is looked for (each side), and how many recent hashes
# the verifier keeps to check links: bounded memory whatever the chain's length.
REORDER_SEARCH_RECORDS = 64
LINK_MEMORY_RECORDS = 100_000

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:|-]{0,127}$")
ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
TARGET_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$")
TRACE_ID_PATTERN = re.compile(r"^[A-Za-z0-9=;:._-]{1,200}$")
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
CHAIN_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    DENIED = "denied"
    FAILED = "failed"


class AuditEventInvalid(ValueError):
    """An audit event field is malformed; the message names the field, never its value."""


class AuditStoreError(RuntimeError):
    """The audit table could not be read or written."""


class AuditAppendConflict(RuntimeError):
    """Too many other appenders won the next seq in a row; the event was not recorded."""


@dataclass(frozen=True)
class AuditEvent:
    """What happened: actor (principal id), action, target (type:id), outcome and request context."""

    actor: str
    action: str
    target: str
    outcome: Outcome
    source_ip: str | None = None
    trace_id: str | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        _require(ID_PATTERN, self.actor, "actor")
        _require(ACTION_PATTERN, self.action, "action")
        _require(TARGET_PATTERN, self.target, "target")
        if not isinstance(self.outcome, Outcome):
            raise AuditEventInvalid("outcome must be an Outcome")
        if self.source_ip is not None:
            try:
                ipaddress.ip_address(self.source_ip)
            except ValueError:
                raise AuditEventInvalid("source_ip must be an IPv4 or IPv6 address") from None
        if self.trace_id is not None:
            _require(TRACE_ID_PATTERN, self.trace_id, "trace_id")
        if self.request_id is not None:
            _require(REQUEST_ID_PATTERN, self.request_id, "request_id")


def _require(pattern: re.Pattern[str], value: object, name: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise AuditEventInvalid(f"{name} must match {pattern.pattern}")


@dataclass(frozen=True)
class AuditRecord:
    """One stored record; every field but `hash` is covered by the hash."""

    chain: str
    seq: int
    at: str
    actor: str
    action: str
    target: str
    outcome: str
    source_ip: str | None
    trace_id: str | None
    request_id: str | None
    prev_hash: str
    alg: str
    key_id: str | None
    hash: str
    v: int = RECORD_VERSION

    def content(self) -> dict[str, object]:
        fields = asdict(self)
        del fields["hash"]
        return fields

    def with_seq(self, seq: int) -> AuditRecord:
        return AuditRecord(**{**asdict(self), "seq": seq})


@dataclass(frozen=True)
class AuditKey:
    """The HMAC key new records are signed with; key_id is stored so verifiers pick the right key."""

    key_id: str
    secret: bytes = field(repr=False)


def canonical_json(content: Mapping[str, object]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def record_hash(content: Mapping[str, object], secret: bytes | None) -> str:
    """H(prev_hash + canonical JSON): HMAC-SHA256 with secret, else SHA-256."""
    message = str(content["prev_hash"]).encode() + canonical_json(content)
    if secret is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def key_id_of(secret: bytes) -> str:
    # Domain-separated so the stored id is not a plain hash of the key.
    return hashlib.sha256(b"finfaas-audit-key-id:" + secret).hexdigest()[:KEY_ID_HEX_CHARS]


def keyring_from_text(text: str | None) -> dict[str, bytes]:
    """Secret file -> {key_id: key}; one key per line, the first signs, all verify (rotation)."""
    keys = [line.strip().encode() for line in (text or "").splitlines() if line.strip()]
    for key in keys:
        if len(key) < AUDIT_KEY_BYTES_MIN:
            raise ValueError(f"audit keys must be at least {AUDIT_KEY_BYTES_MIN} bytes")
    return {key_id_of(key): key for key in keys}


def signing_key_from_text(text: str | None) -> AuditKey | None:
    """The first key of the secret file, or None when there is none (records are then SHA-256 only)."""
    keyring = keyring_from_text(text)
    if not keyring:
        return None
    key_id, secret = next(iter(keyring.items()))
    return AuditKey(key_id, secret)


def chain_name(function: str, actor: str, shards: int) -> str:
    shard = int(hashlib.sha256(actor.encode()).hexdigest()[:8], 16) % shards
    return f"{function}-{shard}"


def seal_record(chain: str, head: AuditRecord | None, event: AuditEvent, at: str,
                key: AuditKey | None) -> AuditRecord:
    """The record that follows head (None: the chain's first) in chain, hashed and signed with key."""
    unsealed = AuditRecord(
        chain=chain,
        seq=head.seq + 1 if head else 1,
        at=at,
        actor=event.actor,
        action=event.action,
        target=event.target,
        outcome=event.outcome.value,
        source_ip=event.source_ip,
        trace_id=event.trace_id,
        request_id=event.request_id,
        prev_hash=head.hash if head else GENESIS_HASH,
        alg=ALG_HMAC_SHA256 if key else ALG_SHA256,
        key_id=key.key_id if key else None,
        hash="",
    )
    secret = key.secret if key else None
    return AuditRecord(**{**asdict(unsealed), "hash": record_hash(unsealed.content(), secret)})


def format_audit_time(moment: float) -> str:
    """A record's `at`: UTC, millisecond precision."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def audit_facts_json(event: AuditEvent, at: str) -> str:
    """An event and its time as JSON text, to travel inside an outbox item until a relay seals it."""
    facts = {**asdict(event), "outcome": event.outcome.value, "at": at, "v": RECORD_VERSION}
    return json.dumps(facts, sort_keys=True, separators=(",", ":"))


def audit_facts_from_json(text: str) -> tuple[AuditEvent, str]:
    """(event, at) from audit_facts_json text; AuditEventInvalid if anything is malformed."""
    try:
        facts = jsonio.loads(text)
        at = facts.pop("at")
        facts.pop("v", None)
        datetime.fromisoformat(at)
        return AuditEvent(**{**facts, "outcome": Outcome(facts["outcome"])}), at
    except (ValueError, TypeError, KeyError, AttributeError):
        raise AuditEventInvalid("audit facts are not a valid audit event") from None


def audit_key_from_secret() -> AuditKey | None:
    """The signing key from the `audit-hmac-key` secret, or None when it is not configured."""
    from finfaas.platform.config import read_secret  # keeps this module free of configuration at import

    return signing_key_from_text(read_secret(AUDIT_KEY_SECRET_NAME, required=False))


class AuditRepository(Protocol):
    def head(self, chain: str) -> AuditRecord | None:
        """The record with the highest seq (strongly consistent); None for an empty chain."""
        ...

    def append(self, record: AuditRecord) -> bool:
        """Store record unless (chain, seq) is taken; False if it is (another appender won)."""
        ...

    def chains(self) -> Iterator[str]:
        """Every chain name in the log, each once."""
        ...

    def records(self, chain: str) -> Iterator[AuditRecord]:
        """The chain's records in ascending seq (strongly consistent)."""
        ...


class AuditLog:
    """Appends audit events to this function's chains."""

    def __init__(
        self,
        store: AuditRepository,
        function: str,
        *,
        key: AuditKey | None = None,
        shards: int = AUDIT_SHARDS_DEFAULT,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not CHAIN_PATTERN.match(f"{function}-{shards}") or shards < 1:
            raise ValueError("function must be lower-case letters, digits and '-'; shards >= 1")
        self._store = store
        self._function = function
        self._key = key
        self._shards = shards
        self._clock = clock
        self._sleep = sleep
        self._heads: dict[str, AuditRecord] = {}
        self._locks: dict[str, Lock] = {}
        self._locks_guard = Lock()

    def chain_for(self, actor: str) -> str:
        return chain_name(self._function, actor, self._shards)

    def append(self, event: AuditEvent) -> AuditRecord:
        """Record event at the end of its chain; raises AuditAppendConflict after too many lost races."""
        chain = self.chain_for(event.actor)
        at = format_audit_time(self._clock())
        cached = self._heads.get(chain)

        def read_head() -> AuditRecord | None:
            # The head this instance wrote last, first; after a lost race, the store's new head.
            nonlocal cached
            head, cached = cached or self._store.head(chain), None
            return head

        def sealed_on(head: AuditRecord | None) -> Change[AuditRecord, AuditRecord]:
            record = self._sealed(chain, head, event, at)
            return Change(record, record)

        with self._lock_for(chain):
            record = read_change_save(
                read_head, sealed_on, self._store.append, policy=APPEND_RETRY, sleep=self._sleep,
                exhausted=lambda: AuditAppendConflict(
                    f"chain {chain}: lost {APPEND_ATTEMPTS_MAX} races for the next seq"),
            )
            self._heads[chain] = record
            return record

    def _sealed(self, chain: str, head: AuditRecord | None, event: AuditEvent, at: str) -> AuditRecord:
        return seal_record(chain, head, event, at, self._key)

    def _lock_for(self, chain: str) -> Lock:
        with self._locks_guard:
            return self._locks.setdefault(chain, Lock())


# --- verification ---------------------------------------------------------------------------------


class ProblemKind(StrEnum):
    MODIFIED = "modified"
    MISSING = "missing"
    REORDERED = "reordered"
    BROKEN_LINK = "broken link"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown key"
    TRUNCATED = "truncated"
    CHAIN_MISSING = "chain missing"


@dataclass(frozen=True)
class ChainProblem:
    chain: str
    seq: int
    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        return f"chain {self.chain} seq {self.seq}: {self.kind.value}: {self.detail}"


@dataclass(frozen=True)
class Anchor:
    """A chain head seen earlier (saved outside the table), to detect truncation later."""

    chain: str
    seq: int
    hash: str


@dataclass
class ChainReport:
    chain: str
    records: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def anchor(self) -> Anchor:
        return Anchor(self.chain, self.head_seq, self.head_hash)


class _ChainWalker:
    """Checks one chain record by record in seq order, with bounded memory."""

    def __init__(self, chain: str, keyring: Mapping[str, bytes], anchor: Anchor | None) -> None:
        self.report = ChainReport(chain)
        self._keyring = keyring
        self._anchor = anchor
        self._anchor_hash: str | None = None
        self._expected_seq = 1
        self._missing: set[int] = set()
        self._hash_of_written: dict[int, str] = {}
        self._written_of_hash: dict[str, int] = {}
        self._waiting: dict[int, tuple[int, str]] = {}  # predecessor's written seq -> (seq, prev_hash)

    def visit(self, record: AuditRecord) -> None:
        self._note_gap(record.seq)
        written = self._written_seq(record)
        self._remember(written, record.hash)
        self._check_link(record, written)
        self._resolve_waiting(written, record.hash)
        self._forget_old(record.seq)
        if self._anchor is not None and record.seq == self._anchor.seq:
            self._anchor_hash = record.hash
        self.report.records += 1
        self.report.head_seq, self.report.head_hash = record.seq, record.hash

    def finish(self) -> ChainReport:
        for predecessor, (seq, _) in sorted(self._waiting.items()):
            if predecessor not in self._missing:
                self._problem(seq, ProblemKind.BROKEN_LINK, f"its predecessor (written as seq {predecessor}) "
                              "is not in the chain: deleted or moved")
        self._check_anchor()
        return self.report

    def _note_gap(self, seq: int) -> None:
        if seq > self._expected_seq:
            first, last = self._expected_seq, seq - 1
            span = f"seq {first}" if first == last else f"seq {first}..{last}"
            self._problem(first, ProblemKind.MISSING, f"{span} not found: deleted")
            self._missing.update(range(first, min(last, first + LINK_MEMORY_RECORDS) + 1))
        self._expected_seq = seq + 1

    def _written_seq(self, record: AuditRecord) -> int:
        """The seq the record was sealed with: its own, a nearby one (moved), or its own if altered."""
        secret, usable = self._secret_for(record)
        if not usable:
            return record.seq
        if record_hash(record.content(), secret) == record.hash:
            return record.seq
        for candidate in self._candidate_seqs(record):
            if record_hash(record.with_seq(candidate).content(), secret) == record.hash:
                self._problem(
                    record.seq, ProblemKind.REORDERED, f"the record here was written as seq {candidate}"
                )
                return candidate
        self._problem(record.seq, ProblemKind.MODIFIED, "content does not match its hash")
        return record.seq

    def _candidate_seqs(self, record: AuditRecord) -> Iterator[int]:
        after_predecessor = self._written_of_hash.get(record.prev_hash)
        if after_predecessor is not None:
            yield after_predecessor + 1
        for distance in range(1, REORDER_SEARCH_RECORDS + 1):
            yield record.seq + distance
            if record.seq - distance >= 1:
                yield record.seq - distance

    def _secret_for(self, record: AuditRecord) -> tuple[bytes | None, bool]:
        if record.alg == ALG_SHA256:
            if self._keyring:
                self._problem(record.seq, ProblemKind.UNSIGNED, "not HMAC-signed though a key is configured")
            return None, True
        if record.alg == ALG_HMAC_SHA256:
            secret = self._keyring.get(record.key_id or "")
            if secret is None:
                self._problem(record.seq, ProblemKind.UNKNOWN_KEY,
                              f"signed with key {record.key_id}, which this verifier does not have")
                return None, False
            return secret, True
        self._problem(record.seq, ProblemKind.MODIFIED, f"unknown hash algorithm {record.alg!r}")
        return None, False

    def _check_link(self, record: AuditRecord, written: int) -> None:
        if written == 1:
            if record.prev_hash != GENESIS_HASH:
                self._problem(record.seq, ProblemKind.BROKEN_LINK, "the first record does not start a chain")
            return
        expected = self._hash_of_written.get(written - 1)
        if expected is None:
            self._waiting[written - 1] = (record.seq, record.prev_hash)
        elif record.prev_hash != expected:
            self._problem(record.seq, ProblemKind.BROKEN_LINK, self._link_detail(record, written))

    def _link_detail(self, record: AuditRecord, written: int) -> str:
        follows = self._written_of_hash.get(record.prev_hash)
        if follows is not None:
            return f"it follows seq {follows}, not seq {written - 1}: reordered"
        return f"prev_hash does not match seq {written - 1}: that record was altered and re-hashed"

    def _resolve_waiting(self, written: int, stored_hash: str) -> None:
        waiting = self._waiting.pop(written, None)
        if waiting is not None and waiting[1] != stored_hash:
            self._problem(waiting[0], ProblemKind.BROKEN_LINK, f"prev_hash does not match seq {written}")

    def _remember(self, written: int, stored_hash: str) -> None:
        self._hash_of_written[written] = stored_hash
        self._written_of_hash[stored_hash] = written

    def _forget_old(self, seq: int) -> None:
        # Records are (nearly) in written order, so dropping one old seq per visit bounds the memory.
        old_hash = self._hash_of_written.pop(seq - LINK_MEMORY_RECORDS, None)
        if old_hash is not None:
            self._written_of_hash.pop(old_hash, None)

    def _check_anchor(self) -> None:
        anchor = self._anchor
        if anchor is None:
            return
        if self.report.head_seq < anchor.seq:
            self._problem(anchor.seq, ProblemKind.TRUNCATED,
                          f"the chain ends at seq {self.report.head_seq}; it reached seq {anchor.seq} before")
        elif self._anchor_hash is not None and self._anchor_hash != anchor.hash:
            self._problem(anchor.seq, ProblemKind.MODIFIED, "the hash differs from the saved anchor")

    def _problem(self, seq: int, kind: ProblemKind, detail: str) -> None:
        self.report.problems.append(ChainProblem(self.report.chain, seq, kind, detail))


def verify_chain(
    chain: str,
    records: Iterable[AuditRecord],
    keyring: Mapping[str, bytes] | None = None,
    anchor: Anchor | None = None,
) -> ChainReport:
    """Walk one chain in seq order and report every modified, missing or moved record."""
    walker = _ChainWalker(chain, keyring or {}, anchor)
    for record in records:
        walker.visit(record)
    return walker.finish()


def verify_log(
    store: AuditRepository,
    keyring: Mapping[str, bytes] | None = None,
    chains: Iterable[str] | None = None,
    anchors: Iterable[Anchor] = (),
) -> list[ChainReport]:
    """Verify the named chains (default: every chain in the store, plus every anchored one)."""
    anchor_by_chain = {anchor.chain: anchor for anchor in anchors}
    present = set(store.chains())
    wanted = sorted(set(chains) if chains is not None else present | set(anchor_by_chain))
    reports = []
    for chain in wanted:
        anchor = anchor_by_chain.get(chain)
        if chain not in present:
            reports.append(_missing_chain(chain, anchor))
            continue
        reports.append(verify_chain(chain, store.records(chain), keyring, anchor))
    return reports


def _missing_chain(chain: str, anchor: Anchor | None) -> ChainReport:
    report = ChainReport(chain)
    report.problems.append(ChainProblem(chain, anchor.seq if anchor else 0, ProblemKind.CHAIN_MISSING,
                                        "no record of this chain is in the table"))
    return report


def anchors_to_json(reports: Iterable[ChainReport]) -> str:
    heads = {r.chain: {"seq": r.head_seq, "hash": r.head_hash} for r in reports if r.records}
    return json.dumps({"version": RECORD_VERSION, "chains": heads}, indent=2, sort_keys=True)


def anchors_from_json(text: str) -> list[Anchor]:
    chains = jsonio.loads(text)["chains"]
    return [Anchor(chain, int(head["seq"]), str(head["hash"])) for chain, head in chains.items()]
