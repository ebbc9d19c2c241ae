"""Signing keys: the ring's rules, rotation, and the dev secrets a fresh machine gets."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from finfaas.platform.cursors import CURSOR_KEY_SECRET_NAME, CursorCodec
from finfaas.platform.keys import (
    CLIENTS_SECRET,
    DEMO_CREDENTIALS_FILE,
    SIGNING_KEYS_SECRET,
    KeyRing,
    KeyRingError,
    generate_signing_key,
    load_keyring,
    rotated,
    write_dev_secrets,
)
from finfaas.platform.mac_keys import mac_keys_from_text

TEST_BITS = 2048


@pytest.fixture(scope="module")
def old_key() -> dict:
    return generate_signing_key(kid="k-old", bits=TEST_BITS)


@pytest.fixture(scope="module")
def new_key() -> dict:
    return generate_signing_key(kid="k-new", bits=TEST_BITS)


def test_a_generated_key_is_an_active_pkcs8_rsa_entry():
    entry = generate_signing_key(bits=TEST_BITS)

    assert set(entry) == {"kid", "private_key_pem", "status"}
    assert entry["status"] == "active"
    assert entry["private_key_pem"].startswith("-----BEGIN PRIVATE KEY-----")
    assert KeyRing.from_entries([entry]).active.private_key.key_size == TEST_BITS


def test_keys_get_distinct_kids():
    assert generate_signing_key(bits=TEST_BITS)["kid"] != generate_signing_key(bits=TEST_BITS)["kid"]


def test_weak_keys_are_refused():
    with pytest.raises(ValueError):
        generate_signing_key(bits=1024)


def test_the_jwks_publishes_public_parts_only_active_first(old_key, new_key):
    ring = KeyRing.from_entries(rotated([old_key], new_key))

    jwks = ring.jwks()

    assert [key["kid"] for key in jwks["keys"]] == ["k-new", "k-old"]
    for key in jwks["keys"]:
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
        assert {"n", "e"} <= set(key) and not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
        assert "key_ops" not in key


def test_rotation_makes_the_new_key_active_and_keeps_the_old_one_published(old_key, new_key):
    entries = rotated([old_key], new_key)

    assert [(e["kid"], e["status"]) for e in entries] == [("k-new", "active"), ("k-old", "retiring")]
    assert KeyRing.from_entries(entries).active.kid == "k-new"


def test_a_second_rotation_drops_the_retiring_key(old_key, new_key):
    newest = generate_signing_key(kid="k-newest", bits=TEST_BITS)

    entries = rotated(rotated([old_key], new_key), newest)

    assert [(e["kid"], e["status"]) for e in entries] == [("k-newest", "active"), ("k-new", "retiring")]


@pytest.mark.parametrize(
    "entries, message",
    [
        ([], "1 to"),
        ("not a list", "JSON list"),
        ([{"kid": "a"}], "needs kid"),
        ([{"kid": "a", "private_key_pem": "garbage", "status": "active"}], "unreadable"),
    ],
)
def test_a_malformed_ring_is_refused(entries, message):
    with pytest.raises(KeyRingError, match=message):
        KeyRing.from_entries(entries)


def test_a_ring_needs_exactly_one_active_key(old_key, new_key):
    with pytest.raises(KeyRingError, match="exactly one"):
        KeyRing.from_entries([old_key, new_key])
    with pytest.raises(KeyRingError, match="exactly one"):
        KeyRing.from_entries([dict(old_key, status="retiring")])


def test_kids_must_be_unique(old_key):
    with pytest.raises(KeyRingError, match="unique"):
        KeyRing.from_entries([old_key, dict(old_key, status="retiring")])


def test_the_ring_is_read_from_the_named_secret(old_key):
    secrets = {SIGNING_KEYS_SECRET: json.dumps([old_key])}

    assert load_keyring(secrets.get).active.kid == "k-old"


def test_dev_secrets_are_created_private_with_a_usable_demo_client(tmp_path: Path):
    printed: list[str] = []
    folder = tmp_path / "secrets"

    dev = write_dev_secrets(folder, out=printed.append)

    assert set(dev.created) == {SIGNING_KEYS_SECRET, CLIENTS_SECRET, CURSOR_KEY_SECRET_NAME}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in (SIGNING_KEYS_SECRET, CLIENTS_SECRET, DEMO_CREDENTIALS_FILE, CURSOR_KEY_SECRET_NAME):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    load_keyring(lambda name: (folder / name).read_text())
    [client] = json.loads((folder / CLIENTS_SECRET).read_text())
    assert client["client_id"] == dev.client_id
    assert dev.client_secret not in (folder / CLIENTS_SECRET).read_text()
    assert PasswordHasher().verify(client["secret_hash"], dev.client_secret)
    assert "ops" in client["scopes"]
    assert dev.client_secret in printed[0]


def test_dev_secrets_are_kept_on_the_next_start(tmp_path: Path):
    folder = tmp_path / "secrets"
    write_dev_secrets(folder, out=lambda _: None)
    before = {name: (folder / name).read_text()
              for name in (SIGNING_KEYS_SECRET, CLIENTS_SECRET, CURSOR_KEY_SECRET_NAME)}

    again = write_dev_secrets(folder, out=lambda _: None)

    assert again.created == () and again.client_secret is None
    assert before == {name: (folder / name).read_text() for name in before}


def test_the_demo_client_can_manage_webhook_subscriptions(tmp_path: Path):
    folder = tmp_path / "secrets"
    write_dev_secrets(folder, out=lambda _: None)

    [client] = json.loads((folder / CLIENTS_SECRET).read_text())

    assert {"webhooks:read", "webhooks:write"} <= set(client["scopes"])


def test_a_demo_client_kept_from_an_earlier_start_gets_the_current_scopes(tmp_path: Path):
    # GIVEN secrets written by a version whose demo client lacked the webhooks scopes
    folder = tmp_path / "secrets"
    dev = write_dev_secrets(folder, out=lambda _: None)
    [client] = json.loads((folder / CLIENTS_SECRET).read_text())
    client["scopes"] = [s for s in client["scopes"] if not s.startswith("webhooks:")]
    (folder / CLIENTS_SECRET).write_text(json.dumps([client]))
    printed: list[str] = []

    # WHEN the suite starts again
    again = write_dev_secrets(folder, out=printed.append)

    # THEN the same client (same secret) holds the webhooks scopes
    [refreshed] = json.loads((folder / CLIENTS_SECRET).read_text())
    assert {"webhooks:read", "webhooks:write"} <= set(refreshed["scopes"])
    assert PasswordHasher().verify(refreshed["secret_hash"], dev.client_secret)
    assert again.created == () and "scopes updated" in printed[0]
    assert stat.S_IMODE((folder / CLIENTS_SECRET).stat().st_mode) == 0o600
def test_the_dev_cursor_key_seals_cursors_another_process_can_open(tmp_path: Path):
    folder = tmp_path / "secrets"
    write_dev_secrets(folder, out=lambda _: None)
    keys = mac_keys_from_text(CURSOR_KEY_SECRET_NAME, (folder / CURSOR_KEY_SECRET_NAME).read_text())
    bound = {"route": "GET /things", "principal": "p"}

    assert CursorCodec(keys).open(CursorCodec(list(keys)).seal("k", bound), bound) == "k"
