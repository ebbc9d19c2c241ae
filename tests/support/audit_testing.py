"""The audit key the tests sign with, and an outbox whose chain another writer appends to mid-relay."""

from __future__ import annotations

from typing import Any

from finfaas.platform.audit import AuditEvent, AuditKey, Outcome, key_id_of, seal_record

SECRET = b"k" * 32
KEY = AuditKey(key_id_of(SECRET), SECRET)
KEYRING = {KEY.key_id: SECRET}
INTRUSION_AT = "2026-01-15T10:00:00+00:00"


class ChainIntruder:
    """Mixed in before an outbox class: another writer appends a record to the chain right after the
    relay has read its head (the first time only), so the relay's own append finds its seq taken."""

    heads_read = 0

    def audit_head(self, chain: str) -> Any:
        head = super().audit_head(chain)  # the outbox class mixed in after this one
        self.heads_read += 1
        if self.heads_read == 1:
            event = AuditEvent("ops-1", "manual", "note:x", Outcome.SUCCEEDED)
            assert self.intruder_log().append(seal_record(chain, head, event, INTRUSION_AT, KEY))
        return head

    def intruder_log(self) -> Any:
        """The audit store the other writer appends to."""
        raise NotImplementedError
