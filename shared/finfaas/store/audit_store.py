"""The audit log in DynamoDB (table audit: HASH chain, RANGE seq)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.models import Model

from finfaas.platform.audit import AuditRecord, AuditStoreError
from finfaas.platform.config import resource_name
from finfaas.store.binding import (
    StoreMeta,
    bound,
)
from finfaas.store.dynamo import conditional_write

TABLE_LOGICAL_NAME = "audit"
# Records per Query page when walking a chain for verification.
VERIFY_PAGE_RECORDS = 500


class _AuditItem(Model):
    """Attribute layout shared by the per-table model classes."""

    Meta = StoreMeta

    chain = UnicodeAttribute(hash_key=True)
    seq = NumberAttribute(range_key=True)
    at = UnicodeAttribute()
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    target = UnicodeAttribute()
    outcome = UnicodeAttribute()
    source_ip = UnicodeAttribute(null=True)
    trace_id = UnicodeAttribute(null=True)
    request_id = UnicodeAttribute(null=True)
    prev_hash = UnicodeAttribute()
    alg = UnicodeAttribute()
    key_id = UnicodeAttribute(null=True)
    hash = UnicodeAttribute()
    v = NumberAttribute()


def audit_model(table_name: str) -> type[_AuditItem]:
    """The model bound to one physical table (the name depends on the stage, known at run time)."""
    return bound(_AuditItem, table_name)


RECORD_FIELDS = tuple(AuditRecord.__dataclass_fields__)


class AuditStore:
    """AuditRepository on DynamoDB: conditional put per (chain, seq), consistent queries."""

    def __init__(self, table_name: str | None = None) -> None:
        self.model = audit_model(table_name or resource_name(TABLE_LOGICAL_NAME))

    def head(self, chain: str) -> AuditRecord | None:
        try:
            for item in self.model.query(chain, scan_index_forward=False, limit=1, consistent_read=True):
                return self._to_record(item)
        except PynamoDBException as error:
            raise AuditStoreError("audit head read failed") from error
        return None

    def item_for(self, record: AuditRecord) -> Any:
        """The pynamodb item of a record, e.g. to put it inside another store's transaction."""
        return self.model(**{name: getattr(record, name) for name in RECORD_FIELDS})

    def free_seq_condition(self) -> Any:
        """The put condition that keeps a chain from forking: (chain, seq) not taken yet."""
        return self.model.seq.does_not_exist()

    def append(self, record: AuditRecord) -> bool:
        item = self.item_for(record)
        written = conditional_write(lambda: item.save(condition=self.model.seq.does_not_exist()))
        return written.or_raise(lambda w: AuditStoreError(f"audit append failed: {w.code}"))

    def chains(self) -> Iterator[str]:
        """Every chain name; a full scan, meant for verification, not for the request path."""
        return iter(sorted(set(self.record_chains())))

    def record_chains(self) -> Iterator[str]:
        """Each record's chain name, one per record as the scan reads it (so a reader can stop early)."""
        try:
            for item in self.model.scan(attributes_to_get=["chain"], consistent_read=True):
                yield item.chain
        except PynamoDBException as error:
            raise AuditStoreError("audit scan failed") from error

    def records(self, chain: str) -> Iterator[AuditRecord]:
        try:
            for item in self.model.query(chain, consistent_read=True, scan_index_forward=True,
                                         page_size=VERIFY_PAGE_RECORDS):
                yield self._to_record(item)
        except PynamoDBException as error:
            raise AuditStoreError("audit query failed") from error

    @staticmethod
    def _to_record(item: Any) -> AuditRecord:
        fields = {name: getattr(item, name) for name in RECORD_FIELDS}
        return AuditRecord(**{**fields, "seq": int(fields["seq"]), "v": int(fields["v"])})
