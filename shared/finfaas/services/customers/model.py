"""Customers as stored, the personal profile and its normalisation, and who is calling."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.platform import jsonio
from finfaas.platform.http import client_ip
from finfaas.services.customers.errors import InvalidProfile

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


# --- what the profile use cases answer -------------------------------------------------------------


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
