"""Customers: records, the personal profile (sealed with KMS envelope encryption), callers and auditing.

The profile (name, national id, phone) is stored only as a sealed envelope bound to the customer id
(finfaas.platform.pii); it is decrypted per request and never logged, audited or echoed by a write.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from finfaas.platform.audit import AuditEvent, AuditLog, Outcome
from finfaas.platform.logging import get_logger
from finfaas.platform.pii import EnvelopeCipher
from finfaas.services.customers.errors import CustomerNotFound, ProfileNotFound
from finfaas.services.customers.model import (
    Caller,
    Profile,
    ProfileReceipt,
    StoredProfile,
    encryption_context,
    normalized_profile,
)
from finfaas.services.customers.ports import CustomerRepository

_log = get_logger("customers")


class AuditTrail:
    """Appends audit events after the fact; a failed append is logged (ids only), never raised,
    because the change it describes has already happened and must be answered truthfully."""

    def __init__(self, log: AuditLog | None) -> None:
        self._log = log

    def record(self, caller: Caller, action: str, target: str, outcome: Outcome) -> None:
        if self._log is None:
            return
        try:
            self._log.append(AuditEvent(caller.sub, action, target, outcome, caller.source_ip,
                                        caller.trace_id, caller.request_id))
        except Exception as error:
            _log.error("audit append failed", action=action, target=target, outcome=outcome.value,
                       actor=caller.sub, request_id=caller.request_id, error_type=type(error).__name__)


class CustomerProfileService:
    """Reads and replaces the caller's own profile; every access is audited without the data."""

    def __init__(self, customers: CustomerRepository, cipher: EnvelopeCipher, audit: AuditTrail,
                 clock: Callable[[], float] = time.time) -> None:
        self._customers = customers
        self._cipher = cipher
        self._audit = audit
        self._clock = clock

    def save(self, caller: Caller, name: str, national_id: str, phone: str) -> ProfileReceipt:
        """Validate, seal under the caller's id and replace the stored profile (a full replace)."""
        target = f"customer:{caller.sub}"
        try:
            updated_at_s = self._replace(caller, normalized_profile(name, national_id, phone))
        except CustomerNotFound:
            self._audit.record(caller, "customer.profile.update", target, Outcome.DENIED)
            raise
        except Exception:
            self._audit.record(caller, "customer.profile.update", target, Outcome.FAILED)
            raise
        self._audit.record(caller, "customer.profile.update", target, Outcome.SUCCEEDED)
        return ProfileReceipt(caller.sub, updated_at_s)

    def _replace(self, caller: Caller, profile: Profile) -> int:
        if not caller.is_customer:
            raise CustomerNotFound("No customer profile belongs to this principal.")
        sealed = self._cipher.seal(profile.to_json(), encryption_context(caller.sub))
        updated_at_s = int(self._clock())
        if not self._customers.put_profile(caller.sub, sealed, updated_at_s):
            raise CustomerNotFound("No customer profile belongs to this principal.")
        return updated_at_s

    def read(self, caller: Caller) -> StoredProfile:
        """The caller's profile, decrypted; reading personal data is audited too."""
        record = self._customers.get(caller.sub) if caller.is_customer else None
        if record is None:
            raise CustomerNotFound("No customer profile belongs to this principal.")
        if record.sealed_profile is None or record.profile_updated_at_s is None:
            raise ProfileNotFound("No profile has been given yet.")
        raw = self._cipher.open(record.sealed_profile, encryption_context(caller.sub))
        self._audit.record(caller, "customer.profile.read", f"customer:{caller.sub}", Outcome.SUCCEEDED)
        return StoredProfile(caller.sub, Profile.from_json(raw), record.profile_updated_at_s)
