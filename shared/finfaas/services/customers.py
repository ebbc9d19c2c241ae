"""Customers: records, the personal profile (sealed with KMS envelope encryption), callers and auditing.

The profile (name, national id, phone) is stored only as a sealed envelope bound to the customer id
(finfaas.platform.pii); it is decrypted per request and never logged, audited or echoed by a write.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, replace
from threading import Lock
from typing import Any, Protocol

from finfaas.platform import jsonio
from finfaas.platform.audit import AuditEvent, AuditLog, Outcome
from finfaas.platform.http import client_ip
from finfaas.platform.logging import get_logger
from finfaas.platform.pii import EnvelopeCipher

CUSTOMER_KIND = "customer"
ACTIVE = "ACTIVE"
name_chars_max = 200
national_id_chars_min = 4
national_id_chars_max = 20
# E.164: a country code and subscriber number of at most 15 digits in all.
phone_digits_min = 8
phone_digits_max = 15
# Separators people type inside ids and phone numbers, dropped before validation.
_ID_SEPARATORS = re.compile(r"[\s\-./]")
_PHONE_SEPARATORS = re.compile(r"[\s\-.()/]")
_NATIONAL_ID = re.compile(r"\A[A-Z0-9]+\Z")
_PHONE = re.compile(r"\A\+[1-9][0-9]+\Z")

_log = get_logger("customers")


# --- who is calling -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """The authenticated principal of a request and where it came from (for audit records)."""

    sub: str
    kind: str
    request_id: str | None = None
    trace_id: str | None = None
    source_ip: str | None = None

    @property
    def is_customer(self) -> bool:
        return self.kind == CUSTOMER_KIND

    @classmethod
    def of(cls, request: Any) -> Caller:
        """From a platform Request with a verified principal."""
        principal = request.principal
        return cls(principal.sub, principal.kind, request.request_id, request.trace_id,
                   client_ip(request.headers))


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


# --- records and errors ---------------------------------------------------------------------------


class CustomerError(Exception):
    """Base of customer rule violations; `code` is stable and safe to show to a client."""

    code = "customer_error"

    def __init__(self, message: str, *, errors: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors


class CustomerNotFound(CustomerError):
    """No customer record for this principal (or not one the caller may see)."""

    code = "customer_not_found"


class ProfileNotFound(CustomerError):
    """The customer has not given a profile yet."""

    code = "profile_not_found"


class CustomerStoreUnavailable(RuntimeError):
    """The customers or auth table could not be read or written (network, throttling, conflict)."""


class InvalidProfile(CustomerError):
    """A profile field is malformed; `errors` names the fields, never their values."""

    code = "invalid_profile"


@dataclass(frozen=True)
class CustomerRecord:
    """A customer as stored; the profile only as its sealed envelope."""

    customer_id: str
    username: str
    created_at_s: int
    status: str = ACTIVE
    sealed_profile: str | None = None
    profile_updated_at_s: int | None = None


@dataclass(frozen=True)
class Profile:
    """Personal data, normalised; lives in memory only for the request that needs it."""

    name: str
    national_id: str
    phone: str

    def __repr__(self) -> str:
        # An accidental log of the object must not leak it.
        return "Profile(<redacted>)"

    def to_json(self) -> bytes:
        return json.dumps({"name": self.name, "national_id": self.national_id, "phone": self.phone},
                          ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> Profile:
        fields = jsonio.loads(raw.decode("utf-8"))
        return cls(fields["name"], fields["national_id"], fields["phone"])


@dataclass(frozen=True)
class Credentials:
    """How a customer signs in: the normalised username and an argon2 hash of the password."""

    username: str
    customer_id: str
    password_hash: str
    status: str = ACTIVE

    def __repr__(self) -> str:
        return f"Credentials(customer_id={self.customer_id!r}, <redacted>)"


class CustomerRepository(Protocol):
    def get(self, customer_id: str) -> CustomerRecord | None:
        """The customer (strongly consistent), or None."""
        ...

    def put_profile(self, customer_id: str, sealed_profile: str, updated_at_s: int) -> bool:
        """Replace the sealed profile of an existing customer; False when there is no such customer."""
        ...


class CredentialRepository(Protocol):
    def create(self, customer: CustomerRecord, credentials: Credentials) -> bool:
        """Store both records atomically; False (nothing written) when the username is taken."""
        ...

    def credentials_for(self, username: str) -> Credentials | None:
        """The credentials of a normalised username (strongly consistent), or None."""
        ...

    def replace_password_hash(self, username: str, old_hash: str, new_hash: str) -> bool:
        """Swap the hash (parameters upgraded) if it is still old_hash; False otherwise."""
        ...


# --- profile validation ---------------------------------------------------------------------------


def normalized_profile(name: str, national_id: str, phone: str) -> Profile:
    """The profile in canonical form, or InvalidProfile naming every bad field (values never echoed)."""
    problems: list[tuple[str, str]] = []
    clean_name = _checked(_normalized_name, name, "name", problems)
    clean_id = _checked(_normalized_national_id, national_id, "national_id", problems)
    clean_phone = _checked(_normalized_phone, phone, "phone", problems)
    if problems:
        raise InvalidProfile("The profile is not valid.", errors=tuple(problems))
    return Profile(clean_name, clean_id, clean_phone)


def _checked(normalize: Callable[[str], str], value: str, field: str, problems: list) -> str:
    try:
        return normalize(value)
    except ValueError as reason:
        problems.append((field, str(reason)))
        return ""


def _normalized_name(raw: str) -> str:
    text = " ".join(unicodedata.normalize("NFKC", raw).split())
    if not 0 < len(text) <= name_chars_max:
        raise ValueError(f"1 to {name_chars_max} characters")
    if any(unicodedata.category(char).startswith("C") for char in text):
        raise ValueError("control or invisible characters are not allowed")
    if not any(char.isalpha() for char in text):
        raise ValueError("must contain letters")
    return text


def _normalized_national_id(raw: str) -> str:
    text = _ID_SEPARATORS.sub("", unicodedata.normalize("NFKC", raw)).upper()
    if not national_id_chars_min <= len(text) <= national_id_chars_max or not _NATIONAL_ID.match(text):
        raise ValueError(f"{national_id_chars_min} to {national_id_chars_max} letters or digits")
    return text


def _normalized_phone(raw: str) -> str:
    text = _PHONE_SEPARATORS.sub("", unicodedata.normalize("NFKC", raw))
    if not _PHONE.match(text) or not phone_digits_min <= len(text) - 1 <= phone_digits_max:
        raise ValueError(f"international format: + then {phone_digits_min} to {phone_digits_max} digits")
    return text


# --- the profile use cases ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileReceipt:
    """What a profile write answers: no personal data, so replays and logs hold none."""

    customer_id: str
    updated_at_s: int


@dataclass(frozen=True)
class StoredProfile:
    customer_id: str
    profile: Profile
    updated_at_s: int


def encryption_context(customer_id: str) -> dict[str, str]:
    """Binds a sealed profile to its customer: KMS and AES-GCM both check it on every open."""
    return {"customer_id": customer_id}


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


class InMemoryCustomerStore:
    """Customers and credentials in dicts, for unit tests; same contracts as the DynamoDB store."""

    def __init__(self) -> None:
        self.customers: dict[str, CustomerRecord] = {}
        self.credentials: dict[str, Credentials] = {}
        self._lock = Lock()

    def get(self, customer_id: str) -> CustomerRecord | None:
        with self._lock:
            return self.customers.get(customer_id)

    def put_profile(self, customer_id: str, sealed_profile: str, updated_at_s: int) -> bool:
        with self._lock:
            record = self.customers.get(customer_id)
            if record is None:
                return False
            self.customers[customer_id] = replace(record, sealed_profile=sealed_profile,
                                                  profile_updated_at_s=updated_at_s)
            return True

    def create(self, customer: CustomerRecord, credentials: Credentials) -> bool:
        """Both records, or neither when the username (or customer id) is taken."""
        with self._lock:
            if credentials.username in self.credentials or customer.customer_id in self.customers:
                return False
            self.customers[customer.customer_id] = customer
            self.credentials[credentials.username] = credentials
            return True

    def credentials_for(self, username: str) -> Credentials | None:
        with self._lock:
            return self.credentials.get(username)

    def replace_password_hash(self, username: str, old_hash: str, new_hash: str) -> bool:
        with self._lock:
            current = self.credentials.get(username)
            if current is None or current.password_hash != old_hash:
                return False
            self.credentials[username] = replace(current, password_hash=new_hash)
            return True
