"""Page cursors: opaque to clients, authenticated, bound to the caller and the query, and short-lived.

A list route seals what its store needs to resume (a LastEvaluatedKey, a running balance, an id)
with HMAC-SHA256 under the `cursor-hmac-key` secret, over the payload, its expiry and a binding
(route, principal, and the ids and filters that define the list). Opening checks the MAC, the
binding and the expiry before the payload is looked at, so a forged, edited, foreign or stale cursor
is refused as a 422 naming `starting_after`, never handed to DynamoDB.

    cursor = codec.seal({"k": last_key}, binding("GET /accounts", caller.sub))
    payload = codec.open(query.starting_after, binding("GET /accounts", caller.sub))

The payload is still checked for type by its reader after opening: a leaked key must not turn into
a way to feed the store arbitrary values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from finfaas.platform import jsonio
from finfaas.platform.errors import ValidationFailed
from finfaas.platform.mac_keys import checked_mac_keys, mac_key_bytes_min, mac_keys_from_config
from finfaas.platform.problems import FieldError
from finfaas.platform.wiring import Lazy

CURSOR_KEY_SECRET_NAME = "cursor-hmac-key"  # noqa: S105 - the name of the secret file, not a secret
CURSOR_FIELD = "starting_after"
CURSOR_VERSION = "c1"
cursor_chars_max = 1024
cursor_ttl_seconds = 24 * 3600  # a client paging through a list takes minutes; a day is generous
cursor_json_depth_max = 8  # payloads are a key map or a short list
binding_value_chars_max = 256


class InvalidCursor(ValidationFailed):
    """The starting_after cursor is not one this list issued to this caller, or it has expired."""

    code, title = "invalid_cursor", "Invalid cursor"

    def __init__(self, reason: str) -> None:
        message = f"{CURSOR_FIELD}: {reason}; pass back a next_cursor from this list, unchanged"
        super().__init__(message, errors=[FieldError(CURSOR_FIELD, message)])


def binding(route: str, principal: str, **query: str | None) -> dict[str, str]:
    """What a cursor is valid for: the route, the caller and the filters and ids that define the list."""
    bound = {"route": route, "principal": principal}
    bound.update({name: "" if value is None else str(value) for name, value in query.items()})
    for name, value in bound.items():
        if len(value) > binding_value_chars_max:
            raise InvalidCursor(f"{name} is too long for a cursor's query")
    return bound


class CursorCodec:
    """Seals and opens cursors with HMAC-SHA256; the first key signs, any listed key verifies."""

    def __init__(self, keys: Sequence[bytes] | Callable[[], Sequence[bytes]],
                 clock: Callable[[], float] = time.time) -> None:
        # A callable is read on first use: a function that never lists needs no cursor key.
        self._keys: Lazy[tuple[bytes, ...]] = (
            Lazy(lambda: checked_mac_keys(CURSOR_KEY_SECRET_NAME, keys()))
            if callable(keys)
            else Lazy.ready(checked_mac_keys(CURSOR_KEY_SECRET_NAME, keys))
        )
        self._clock = clock

    @classmethod
    def generate(cls, clock: Callable[[], float] = time.time) -> CursorCodec:
        """A codec with a fresh key: cursors valid in this process only (tests, one-process tools)."""
        return cls([secrets.token_bytes(mac_key_bytes_min)], clock)

    @classmethod
    def from_config(cls) -> CursorCodec:
        """Keys from the `cursor-hmac-key` secret, read on first use; ConfigError when it is missing."""
        return cls(lambda: mac_keys_from_config(CURSOR_KEY_SECRET_NAME))

    def seal(self, payload: Any, bound: Mapping[str, str]) -> str:
        """An opaque cursor carrying payload, valid for `bound` until the TTL runs out."""
        expires_at_s = int(self._clock()) + cursor_ttl_seconds
        body = _b64encode(json.dumps([expires_at_s, payload], separators=(",", ":"), sort_keys=True).encode())
        cursor = f"{CURSOR_VERSION}.{body}.{_b64encode(_mac(self._signing_keys()[0], body, bound))}"
        if len(cursor) > cursor_chars_max:
            raise ValueError(f"a cursor payload must seal to at most {cursor_chars_max} characters")
        return cursor

    def open(self, cursor: object, bound: Mapping[str, str]) -> Any:
        """The payload of a cursor sealed for `bound` and not expired; InvalidCursor otherwise."""
        if not isinstance(cursor, str) or not 0 < len(cursor) <= cursor_chars_max:
            raise InvalidCursor(f"not a cursor (1-{cursor_chars_max} characters)")
        version, _, rest = cursor.partition(".")
        body, _, claimed = rest.partition(".")
        if version != CURSOR_VERSION or not body or not claimed:
            raise InvalidCursor("not a cursor of this list")
        try:
            claimed_mac = _b64decode(claimed)
        except ValueError:
            raise InvalidCursor("not a cursor of this list") from None
        if not any(hmac.compare_digest(claimed_mac, _mac(key, body, bound)) for key in self._signing_keys()):
            raise InvalidCursor("not a cursor of this list")
        try:
            expires_at_s, payload = jsonio.loads(_b64decode(body), depth_max=cursor_json_depth_max)
        except (ValueError, TypeError):  # only a leaked key could get here
            raise InvalidCursor("not a cursor of this list") from None
        now_s = self._clock()
        if not isinstance(expires_at_s, int) or not now_s < expires_at_s <= now_s + cursor_ttl_seconds:
            raise InvalidCursor("the cursor has expired; list again from the start")
        return payload

    def _signing_keys(self) -> tuple[bytes, ...]:
        return self._keys.get()


def _mac(key: bytes, body: str, bound: Mapping[str, str]) -> bytes:
    # The binding is in the MAC, not in the cursor: another caller's or another query's cursor fails
    # exactly as a forged one does, and the cursor reveals nothing about whom it was made for.
    scope = json.dumps(dict(bound), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    message = f"{CURSOR_VERSION}\n{scope}\n{body}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
