"""Envelope encryption of customer PII, and the log redaction that keeps PII out of log lines."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

import pytest
from finfaas.platform.logging import get_logger, redact
from finfaas.platform.pii import DataKey, EnvelopeCipher, PiiDecryptionFailed, data_key_bytes
from finfaas.services.customers.model import Profile, encryption_context
from finfaas_dev.fakes.platform import InMemoryDataKeys
from finfaas_dev.testing.platform import captured_logs

SECRET_TEXT = b'{"name":"Ada Lovelace","national_id":"AB123456","phone":"+442079460958"}'
ALICE = {"customer_id": "cust-alice"}
BOB = {"customer_id": "cust-bob"}


class DataKeysContract:
    """Behaviour every DataKeyProvider must show; subclasses provide the `keys` fixture."""

    def test_a_data_key_is_256_bits_and_unwraps_under_its_context(self, keys):
        data_key = keys.generate(ALICE)

        assert len(data_key.plaintext) == data_key_bytes
        assert data_key.wrapped != data_key.plaintext
        assert keys.unwrap(data_key.wrapped, data_key.key_id, ALICE) == data_key.plaintext

    def test_a_data_key_does_not_unwrap_under_another_context(self, keys):
        data_key = keys.generate(ALICE)

        with pytest.raises(PiiDecryptionFailed):
            keys.unwrap(data_key.wrapped, data_key.key_id, BOB)

    def test_a_damaged_wrapped_key_does_not_unwrap(self, keys):
        data_key = keys.generate(ALICE)
        damaged = data_key.wrapped[:-1] + bytes([data_key.wrapped[-1] ^ 1])

        with pytest.raises(PiiDecryptionFailed):
            keys.unwrap(damaged, data_key.key_id, ALICE)

    def test_every_data_key_is_new(self, keys):
        first, second = keys.generate(ALICE), keys.generate(ALICE)

        assert first.plaintext != second.plaintext and first.wrapped != second.wrapped


class TestInMemoryDataKeys(DataKeysContract):
    @pytest.fixture
    def keys(self):
        return InMemoryDataKeys()


class CarelessKeys:
    """A provider that ignores the context on unwrap: what a leaked data key amounts to."""

    def __init__(self) -> None:
        self._inner = InMemoryDataKeys()
        self._plaintexts: dict[bytes, bytes] = {}

    def generate(self, context: Mapping[str, str]) -> DataKey:
        data_key = self._inner.generate(context)
        self._plaintexts[data_key.wrapped] = data_key.plaintext
        return data_key

    def unwrap(self, wrapped: bytes, key_id: str, context: Mapping[str, str]) -> bytes:
        return self._plaintexts[wrapped]


@pytest.fixture
def cipher() -> EnvelopeCipher:
    return EnvelopeCipher(InMemoryDataKeys())


def test_a_sealed_record_opens_under_its_own_context(cipher):
    sealed = cipher.seal(SECRET_TEXT, ALICE)

    assert cipher.open(sealed, ALICE) == SECRET_TEXT


def test_the_sealed_text_holds_ciphertext_and_a_wrapped_key_only(cipher):
    sealed = cipher.seal(SECRET_TEXT, ALICE)

    envelope = json.loads(sealed)
    assert set(envelope) == {"v", "alg", "key_id", "wrapped_key", "nonce", "ciphertext"}
    assert envelope["alg"] == "AES-256-GCM"
    assert b"Lovelace" not in sealed.encode() and b"AB123456" not in base64.b64decode(envelope["ciphertext"])


def test_a_record_copied_to_another_customer_does_not_open(cipher):
    sealed = cipher.seal(SECRET_TEXT, ALICE)

    with pytest.raises(PiiDecryptionFailed):
        cipher.open(sealed, BOB)


def test_the_context_binds_the_ciphertext_too_even_with_a_leaked_data_key():
    # GIVEN a key provider that would hand out the data key whatever the context
    cipher = EnvelopeCipher(CarelessKeys())
    sealed = cipher.seal(SECRET_TEXT, ALICE)

    # THEN the AES-GCM associated data still refuses another customer's context
    with pytest.raises(PiiDecryptionFailed):
        cipher.open(sealed, BOB)


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "wrapped_key"])
def test_a_tampered_envelope_does_not_open(cipher, field):
    envelope = json.loads(cipher.seal(SECRET_TEXT, ALICE))
    raw = bytearray(base64.b64decode(envelope[field]))
    raw[0] ^= 0x01
    envelope[field] = base64.b64encode(bytes(raw)).decode()

    with pytest.raises(PiiDecryptionFailed):
        cipher.open(json.dumps(envelope), ALICE)


@pytest.mark.parametrize("sealed", ["", "not json", "{}", '{"v": 2}', "[1, 2]", "x" * 70_000])
def test_a_damaged_envelope_is_a_decryption_failure(cipher, sealed):
    with pytest.raises(PiiDecryptionFailed):
        cipher.open(sealed, ALICE)


def test_each_record_gets_its_own_data_key():
    keys = InMemoryDataKeys()
    cipher = EnvelopeCipher(keys)

    first, second = cipher.seal(SECRET_TEXT, ALICE), cipher.seal(SECRET_TEXT, ALICE)

    assert keys.generated == 2
    assert json.loads(first)["wrapped_key"] != json.loads(second)["wrapped_key"]


@pytest.mark.parametrize("context", [{}, {"customer_id": ""}, {f"k{i}": "v" for i in range(9)}])
def test_an_empty_or_oversized_context_is_a_programming_error(cipher, context):
    with pytest.raises(ValueError):
        cipher.seal(SECRET_TEXT, context)


def test_the_profile_context_names_the_customer():
    assert encryption_context("cust-1") == {"customer_id": "cust-1"}


# --- PII stays out of logs -------------------------------------------------------------------------


PII_FIELDS = {
    "name": "Ada Lovelace",
    "national_id": "AB123456",
    "phone": "+442079460958",
    "username": "ada",
    "password": "correct horse battery",
    "refresh_token": "rt-secret-value",
    "customer_name": "Ada Lovelace",
    "phoneNumber": "+442079460958",
}


def test_the_redaction_filter_covers_every_customer_field():
    redacted = redact({**PII_FIELDS, "customer_id": "cust-1", "profile": dict(PII_FIELDS)})

    assert all(redacted[field] == "[REDACTED]" for field in PII_FIELDS)
    assert all(value == "[REDACTED]" for value in redacted["profile"].values())
    assert redacted["customer_id"] == "cust-1"  # an opaque id, kept for correlation


def test_pii_passed_as_log_fields_or_in_key_value_text_is_not_written():
    with captured_logs() as logs:
        get_logger("test").info("profile saved national_id=AB123456 phone=+442079460958", **PII_FIELDS)

    for value in PII_FIELDS.values():
        assert value not in logs.text


def test_a_profile_object_never_prints_its_contents():
    profile = Profile("Ada Lovelace", "AB123456", "+442079460958")

    assert "Lovelace" not in repr(profile) and "AB123456" not in str(profile)
