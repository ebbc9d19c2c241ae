"""Envelope encryption of personal data at rest: one KMS data key per record, AES-256-GCM locally.

    cipher = EnvelopeCipher(KmsDataKeys(pii_key_id()))
    sealed = cipher.seal(b'{"name": ...}', {"customer_id": "c1"})   # text to store beside the record
    plain = cipher.open(sealed, {"customer_id": "c1"})               # PiiDecryptionFailed for "c2"

Why envelope: KMS never sees the data (Encrypt takes at most 4 KB and costs a call per field), the
data key is wrapped by the KMS key and stored beside the ciphertext, and rotating the KMS key needs
no re-encryption. The encryption context binds each record to its owner twice: KMS refuses to unwrap
the data key under another context, and the same context is the AES-GCM associated data, so a
sealed record copied onto another customer fails to open even with a leaked data key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from finfaas.platform import config, jsonio
from finfaas.platform.mac_keys import checked_mac_keys, mac_keys_from_text
from finfaas.platform.wiring import Lazy

SEALED_FORMAT_VERSION = 1
CIPHER_NAME = "AES-256-GCM"
KMS_KEY_SPEC = "AES_256"
PII_KEY_ENV = "FINFAAS_PII_KEY_ID"
PII_KEY_ALIAS_LOGICAL = "pii"
data_key_bytes = 32
gcm_nonce_bytes = 12
# Envelopes are small (a profile); anything bigger is not one of ours.
sealed_chars_max = 64 * 1024
encryption_context_pairs_max = 8
kms_connect_timeout_seconds = 2
kms_read_timeout_seconds = 5
kms_attempts_max = 3
# Keyed digests (payee fingerprints): a per-stage secret, because account numbers are few enough to
# enumerate: a plain hash of one is as good as the number to anyone holding the table.
DIGEST_KEY_SECRET_NAME = "pii-digest-key"  # noqa: S105 - the secret's name, not a secret
# One key, never a rotation list: fingerprints are stored and compared, so a new key would orphan them.
digest_keys_max = 1
digest_hex_chars = 32  # 128 bits: collisions are out of reach for any payee list
# KMS answers these when the ciphertext, its context or its key do not match: not a transient fault.
KMS_REFUSALS = frozenset({"InvalidCiphertextException", "IncorrectKeyException", "InvalidKeyUsageException"})


class PiiDecryptionFailed(Exception):
    """The sealed record does not open under this context: tampered, or bound to someone else."""


class PiiKeyUnavailable(Exception):
    """KMS could not be reached or refused to work (disabled key, throttling): retry later."""


@dataclass(frozen=True)
class DataKey:
    """A fresh data key: the plaintext for one encryption, the KMS-wrapped copy to store."""

    plaintext: bytes
    wrapped: bytes
    key_id: str


class DataKeyProvider(Protocol):
    def generate(self, context: Mapping[str, str]) -> DataKey:
        """A new 256-bit data key wrapped under the context."""
        ...

    def unwrap(self, wrapped: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        """The plaintext data key; PiiDecryptionFailed if the context or blob do not match."""
        ...


def pii_key_id() -> str:
    """FINFAAS_PII_KEY_ID, else the stage's alias (alias/finfaas-<stage>-pii from infra/template.yaml)."""
    return os.environ.get(PII_KEY_ENV) or f"alias/{config.resource_name(PII_KEY_ALIAS_LOGICAL)}"


def canonical_context(context: Mapping[str, str]) -> bytes:
    """The context as the AES-GCM associated data: sorted keys, no spacing."""
    if not context or len(context) > encryption_context_pairs_max:
        raise ValueError(f"an encryption context has 1..{encryption_context_pairs_max} pairs")
    if not all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in context.items()):
        raise ValueError("encryption context keys and values are non-empty strings")
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


class EnvelopeCipher:
    """Seals and opens byte strings bound to an encryption context."""

    def __init__(self, keys: DataKeyProvider) -> None:
        self._keys = keys

    def seal(self, plaintext: bytes, context: Mapping[str, str]) -> str:
        """JSON text {v, alg, key_id, wrapped_key, nonce, ciphertext}; safe to store and to log."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aad = canonical_context(context)
        data_key = self._keys.generate(context)
        nonce = os.urandom(gcm_nonce_bytes)
        ciphertext = AESGCM(data_key.plaintext).encrypt(nonce, plaintext, aad)
        envelope = {
            "v": SEALED_FORMAT_VERSION,
            "alg": CIPHER_NAME,
            "key_id": data_key.key_id,
            "wrapped_key": _b64(data_key.wrapped),
            "nonce": _b64(nonce),
            "ciphertext": _b64(ciphertext),
        }
        return json.dumps(envelope, separators=(",", ":"), sort_keys=True)

    def open(self, sealed: str, context: Mapping[str, str]) -> bytes:
        """The plaintext; PiiDecryptionFailed when the envelope is damaged or the context differs."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aad = canonical_context(context)
        envelope = _parsed(sealed)
        data_key = self._keys.unwrap(envelope["wrapped_key"], envelope["key_id"], context)
        try:
            return AESGCM(data_key).decrypt(envelope["nonce"], envelope["ciphertext"], aad)
        except (InvalidTag, ValueError):
            raise PiiDecryptionFailed("the sealed record does not open under this context") from None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _parsed(sealed: str) -> dict[str, Any]:
    damaged = PiiDecryptionFailed("the sealed record is damaged")
    if not isinstance(sealed, str) or len(sealed) > sealed_chars_max:
        raise damaged
    try:
        envelope = jsonio.loads(sealed)
        if envelope.get("v") != SEALED_FORMAT_VERSION or envelope.get("alg") != CIPHER_NAME:
            raise damaged
        decoded = {name: base64.b64decode(envelope[name], validate=True)
                   for name in ("wrapped_key", "nonce", "ciphertext")}
        key_id = envelope["key_id"]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise damaged from None
    if not isinstance(key_id, str) or len(decoded["nonce"]) != gcm_nonce_bytes:
        raise damaged
    return {**decoded, "key_id": key_id}


class KmsDataKeys:
    """DataKeyProvider on AWS KMS (GenerateDataKey / Decrypt); botocore resolves the endpoint."""

    def __init__(self, key_id: str, client: Any = None) -> None:
        self.key_id = key_id
        self._client = client
        self._lock = threading.Lock()

    def generate(self, context: Mapping[str, str]) -> DataKey:
        reply = self._call("generate_data_key", KeyId=self.key_id, KeySpec=KMS_KEY_SPEC,
                           EncryptionContext=dict(context))
        return DataKey(reply["Plaintext"], reply["CiphertextBlob"], reply["KeyId"])

    def unwrap(self, wrapped: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        # Naming the key pins which key may unwrap it (AWS's recommendation for symmetric keys).
        reply = self._call("decrypt", CiphertextBlob=wrapped, KeyId=key_id, EncryptionContext=dict(context))
        plaintext = reply["Plaintext"]
        if len(plaintext) != data_key_bytes:
            raise PiiDecryptionFailed("the unwrapped data key has the wrong length")
        return plaintext

    def warm(self) -> None:
        """Build the client in the background (about 0.3 s of botocore): a function started by the work
        that needs a key does its other first steps meanwhile instead of after."""
        threading.Thread(target=self._kms, name="kms-client", daemon=True).start()

    def _call(self, operation: str, **params: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._kms(), operation)(**params)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in KMS_REFUSALS:
                raise PiiDecryptionFailed(f"KMS refused to unwrap: {code}") from None
            raise PiiKeyUnavailable(f"KMS {operation} failed: {code}") from None
        except BotoCoreError as error:
            raise PiiKeyUnavailable(f"KMS {operation} failed: {type(error).__name__}") from None

    def _kms(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _kms_client()
            return self._client


def _kms_client() -> Any:
    """A botocore KMS client (no boto3: it adds ~0.3 s to a cold start for nothing we use)."""
    import botocore.session
    from botocore.config import Config

    settings = Config(
        connect_timeout=kms_connect_timeout_seconds,
        read_timeout=kms_read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": kms_attempts_max},
    )
    return botocore.session.get_session().create_client("kms", region_name=config.settings().region,
                                                        config=settings)


class KeyedDigests:
    """HMAC-SHA256 under the stage's digest key, separated by purpose; hex, truncated to 128 bits."""

    def __init__(self, key: bytes) -> None:
        (self._key,) = checked_mac_keys(DIGEST_KEY_SECRET_NAME, [key], keys_max=digest_keys_max)

    def digest(self, purpose: str, text: str) -> str:
        message = purpose.encode() + b"\x00" + text.encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:digest_hex_chars]


def keyed_digests_from_secret(read_secret: Any = None) -> KeyedDigests:
    """KeyedDigests on the `pii-digest-key` secret (base64); PiiKeyUnavailable when it is missing."""
    reader = read_secret or (lambda name: config.read_secret(name, required=False))
    text = reader(DIGEST_KEY_SECRET_NAME)
    try:
        (key,) = mac_keys_from_text(DIGEST_KEY_SECRET_NAME, text or "", keys_max=digest_keys_max)
    except ValueError:
        raise PiiKeyUnavailable(f"secret {DIGEST_KEY_SECRET_NAME} is missing or not a base64 key") from None
    return KeyedDigests(key)


class SecretKeyedDigests:
    """KeyedDigests whose key is read from the secret on first use, so a function starts without it."""

    def __init__(self, read_secret: Any = None) -> None:
        self._digests = Lazy(lambda: keyed_digests_from_secret(read_secret))

    def digest(self, purpose: str, text: str) -> str:
        return self._digests.get().digest(purpose, text)
