"""A payee at another bank: named by a transfer to it and by the rail that carries the payment.

The payee's account number and name are personal data. Only the rail, at the moment it pays, sees
them in the clear; everywhere else (the transfer order, the saga's input and history, the rail's
table, events, risk) a payee is a SealedCreditor: the envelope (sealed under the transfer's id), a
masked display form (bank code and the account number's last digits), and keyed digests that let
risk recognise a payee and a repeated request recognise its own payee without the number itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

# The display form shows at most this many trailing characters, and never more than half the number
# (a 4-character account number shows 2), so the masked form cannot name the account.
masked_tail_chars_max = 4
MASK_CHAR = "*"
FINGERPRINT_PREFIX = "pf_"
FINGERPRINT_PURPOSE = "payee-account"
DIGEST_PURPOSE = "payee-request"
CONTEXT_PURPOSE = "payee"


@dataclass(frozen=True, slots=True)
class Creditor:
    bank_code: str
    account_number: str
    name: str

    def key(self) -> str:
        return f"{self.bank_code}:{self.account_number}"

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, str]) -> Creditor:
        return cls(raw["bank_code"], raw["account_number"], raw["name"])


def masked_account_number(account_number: str) -> str:
    """'****5678': the tail only, at most masked_tail_chars_max and at most half of the number."""
    tail = min(masked_tail_chars_max, len(account_number) // 2)
    return MASK_CHAR * 4 + (account_number[-tail:] if tail else "")


@dataclass(frozen=True, slots=True)
class SealedCreditor:
    """The payee as stored and passed around: the envelope, the display form, keyed digests.

    `fingerprint` names the payee's account (bank code and number) for risk's new-payee and block-list
    checks; `digest` covers every field, so a repeated request is recognised without opening the
    envelope. The rail keeps only the envelope and the display form (both digests empty)."""

    sealed: str
    bank_code: str
    account_number_masked: str
    fingerprint: str = ""
    digest: str = ""

    def masked(self) -> dict[str, str]:
        """What customers, events and webhooks may see."""
        return {"bank_code": self.bank_code, "account_number_masked": self.account_number_masked}

    def in_flight(self) -> dict[str, str]:
        """What the saga carries to the rail: the envelope and the display form."""
        return {"sealed": self.sealed, **self.masked()}

    def identity(self) -> tuple[str, str, str]:
        """What a repeated request must repeat (the envelope differs on every sealing)."""
        return (self.bank_code, self.fingerprint, self.digest)

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SealedCreditor:
        return cls(
            str(raw["sealed"]),
            str(raw["bank_code"]),
            str(raw["account_number_masked"]),
            str(raw.get("fingerprint") or ""),
            str(raw.get("digest") or ""),
        )


def creditor_context(transfer_id: str) -> dict[str, str]:
    """The encryption context: a payee sealed for one transfer opens for no other."""
    return {"transfer_id": transfer_id, "purpose": CONTEXT_PURPOSE}


class Cipher(Protocol):
    """Envelope encryption bound to a context (finfaas.platform.pii.EnvelopeCipher)."""

    def seal(self, plaintext: bytes, context: Mapping[str, str]) -> str: ...

    def open(self, sealed: str, context: Mapping[str, str]) -> bytes: ...


class KeyedDigests(Protocol):
    """HMAC under a stage's secret key (finfaas.platform.pii.KeyedDigests)."""

    def digest(self, purpose: str, text: str) -> str: ...


def payee_fingerprint(digests: KeyedDigests, bank_code: str, account_number: str) -> str:
    """pf_<hex>: the same payee always gives the same value; without the key it names no one."""
    text = f"{bank_code.upper()}:{account_number.upper()}"
    return FINGERPRINT_PREFIX + digests.digest(FINGERPRINT_PURPOSE, text)


class CreditorVault:
    """Seals a payee for a transfer and opens it again; computes the payee's keyed fingerprint."""

    def __init__(self, cipher: Cipher, digests: KeyedDigests | None = None) -> None:
        self._cipher = cipher
        self._digests = digests

    def seal(self, transfer_id: str, creditor: Creditor) -> SealedCreditor:
        """One KMS data key (the envelope) and two local HMACs."""
        plaintext = json.dumps(creditor.to_json(), separators=(",", ":"), sort_keys=True).encode()
        return SealedCreditor(
            sealed=self._cipher.seal(plaintext, creditor_context(transfer_id)),
            bank_code=creditor.bank_code,
            account_number_masked=masked_account_number(creditor.account_number),
            fingerprint=self.fingerprint(creditor.bank_code, creditor.account_number),
            digest=self._keyed().digest(DIGEST_PURPOSE, plaintext.decode()),
        )

    def open(self, transfer_id: str, sealed: SealedCreditor) -> Creditor:
        """The payee in the clear, for the moment of paying; PiiDecryptionFailed for another transfer."""
        raw = json.loads(self._cipher.open(sealed.sealed, creditor_context(transfer_id)))
        return Creditor.from_json(raw)

    def fingerprint(self, bank_code: str, account_number: str) -> str:
        return payee_fingerprint(self._keyed(), bank_code, account_number)

    def _keyed(self) -> KeyedDigests:
        if self._digests is None:
            raise ValueError("this vault has no digest key: it can only open envelopes")
        return self._digests
