"""Keys of the suite's HMAC secrets (events-, cursor-, schedule-hmac-key, pii-digest-key).

A secret holds base64 keys separated by whitespace: the first signs and every listed one verifies,
so a key is rotated by putting the new one first and dropping the old one once nothing it signed
is still in flight.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence

mac_key_bytes_min = 32
mac_keys_max = 4  # the signing key and up to three older ones still accepted during a rotation


def checked_mac_keys(
    secret_name: str, keys: Sequence[bytes], keys_max: int = mac_keys_max
) -> tuple[bytes, ...]:
    """The keys, if there are 1 to keys_max of at least mac_key_bytes_min bytes; ValueError otherwise."""
    if not 0 < len(keys) <= keys_max or any(len(key) < mac_key_bytes_min for key in keys):
        raise ValueError(f"{secret_name}: 1..{keys_max} keys of at least {mac_key_bytes_min} bytes")
    return tuple(keys)


def mac_keys_from_text(secret_name: str, text: str, keys_max: int = mac_keys_max) -> tuple[bytes, ...]:
    """The keys of a secret's text, signing key first; ValueError naming the secret when unusable."""
    try:
        keys = [base64.b64decode(word, validate=True) for word in text.split()]
    except (binascii.Error, ValueError):
        raise ValueError(f"{secret_name} holds base64 keys separated by spaces") from None
    return checked_mac_keys(secret_name, keys, keys_max)


def mac_keys_from_config(secret_name: str) -> tuple[bytes, ...]:
    """The keys of the stage's secret; ConfigError when it is missing, ValueError when unusable."""
    from finfaas.platform.config import read_secret  # keeps configuration out of import time

    return mac_keys_from_text(secret_name, read_secret(secret_name) or "")


def new_mac_key_text() -> str:
    """A fresh secret holding one key."""
    return base64.b64encode(secrets.token_bytes(mac_key_bytes_min)).decode("ascii")
