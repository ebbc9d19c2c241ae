"""Page cursors: opaque, authenticated, bound to caller and query, and short-lived."""

from __future__ import annotations

import base64
import json

import pytest
from finfaas.platform.cursors import (
    CURSOR_KEY_SECRET_NAME,
    CursorCodec,
    InvalidCursor,
    binding,
    cursor_chars_max,
    cursor_ttl_seconds,
)
from finfaas.platform.mac_keys import mac_keys_from_text, new_mac_key_text

ALICE_LIST = binding("GET /accounts", "alice")


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def codec(clock) -> CursorCodec:
    return CursorCodec(mac_keys_from_text(CURSOR_KEY_SECRET_NAME, new_mac_key_text()), clock)


def refused(codec: CursorCodec, cursor: object, bound=ALICE_LIST) -> InvalidCursor:
    with pytest.raises(InvalidCursor) as error:
        codec.open(cursor, bound)
    assert error.value.status == 422 and [e.field for e in error.value.errors] == ["starting_after"]
    return error.value


def test_a_sealed_payload_opens_for_the_same_caller_and_query(codec):
    payload = {"account_id": {"S": "acc_1"}, "balance": "-12"}

    assert codec.open(codec.seal(payload, ALICE_LIST), ALICE_LIST) == payload


@pytest.mark.parametrize("other", [
    binding("GET /accounts", "bob"),                                          # another caller
    binding("GET /accounts/{account_id}/statement", "alice", account_id="a"),  # another route
    binding("GET /accounts", "alice", status="FROZEN"),                        # another filter
])
def test_a_cursor_is_refused_for_another_caller_or_query(codec, other):
    refused(codec, codec.seal("k", ALICE_LIST), other)


def test_an_edited_payload_or_mac_is_refused(codec):
    version, body, mac = codec.seal(["key", "100"], ALICE_LIST).split(".")
    forged_body = base64.urlsafe_b64encode(json.dumps([4_000_000_000, ["key", "999999999999"]]).encode())

    refused(codec, f"{version}.{forged_body.decode().rstrip('=')}.{mac}")
    refused(codec, f"{version}.{body}.{mac[:-4]}AAAA")


def test_a_cursor_sealed_with_another_key_is_refused(codec, clock):
    stranger = CursorCodec.generate(clock)

    refused(codec, stranger.seal("k", ALICE_LIST))


def test_a_cursor_expires_after_its_ttl(codec, clock):
    cursor = codec.seal("k", ALICE_LIST)
    clock.now += cursor_ttl_seconds - 1
    assert codec.open(cursor, ALICE_LIST) == "k"

    clock.now += 1
    assert "expired" in refused(codec, cursor).detail


@pytest.mark.parametrize("garbage", [
    None, 7, "", "c1", "c1..", "c1.e30.", "x1.e30.AAAA", "c1.!!!.???", "c1." + "A" * cursor_chars_max,
    base64.urlsafe_b64encode(b'{"x":1}').decode(), "[" * 500,
])
def test_malformed_or_oversized_cursors_are_refused(codec, garbage):
    refused(codec, garbage)


def test_older_keys_still_open_during_a_rotation_and_the_first_key_signs(clock):
    old, new = (mac_keys_from_text(CURSOR_KEY_SECRET_NAME, new_mac_key_text())[0] for _ in range(2))
    before = CursorCodec([old], clock).seal("k", ALICE_LIST)
    rotated = CursorCodec([new, old], clock)

    assert rotated.open(before, ALICE_LIST) == "k"
    with pytest.raises(InvalidCursor):
        CursorCodec([old], clock).open(rotated.seal("k", ALICE_LIST), ALICE_LIST)


def test_short_or_missing_keys_are_a_configuration_error():
    with pytest.raises(ValueError):
        CursorCodec([b"short"])
    with pytest.raises(ValueError):
        CursorCodec(lambda: mac_keys_from_text(CURSOR_KEY_SECRET_NAME, "")).seal("k", ALICE_LIST)
