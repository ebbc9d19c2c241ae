"""Event envelopes: structured CloudEvents JSON, and the MAC that tells our messages from forgeries."""

from __future__ import annotations

import base64
import json

import pytest
from finfaas.platform.events import (
    EVENTS_MAC_KEY_SECRET_NAME,
    MAC_EXTENSION,
    EventEnvelope,
    EventMac,
    EventRejected,
    envelope_from_document,
)
from finfaas.platform.mac_keys import mac_keys_from_text, new_mac_key_text
from support.events_fakes import T0

ENVELOPE = EventEnvelope("ledger.account.opened:a-1:1", "finfaas/ledger", "ledger.account.opened", "a-1", T0,
                         {"account": {"account_id": "a-1", "overdraft_limit_minor": "0"}})


def test_the_document_is_a_structured_cloudevent_with_its_schema_named():
    document = ENVELOPE.document()
    assert document["specversion"] == "1.0"
    assert document["time"] == "2026-01-15T09:30:00Z"
    assert document["datacontenttype"] == "application/json"
    assert document["dataschema"] == "urn:finfaas:schema:ledger.account.opened"
    assert envelope_from_document(document) == ENVELOPE


def test_canonical_json_is_the_same_bytes_every_time():
    assert ENVELOPE.canonical_json() == ENVELOPE.canonical_json()
    assert json.loads(ENVELOPE.canonical_json()) == ENVELOPE.document()


def test_a_sealed_message_opens_with_the_same_key_only():
    mac = EventMac.generate()
    body = mac.seal(ENVELOPE.document())
    assert MAC_EXTENSION not in mac.open(body)
    assert envelope_from_document(mac.open(body)) == ENVELOPE
    with pytest.raises(EventRejected, match="MAC does not match"):
        EventMac.generate().open(body)


@pytest.mark.parametrize("tamper", [
    lambda d: d["data"]["account"].update(overdraft_limit_minor="1000000"),
    lambda d: d.update(type="ledger.transfer.reversed"),
    lambda d: d.update(extra="1"),
])
def test_any_change_to_a_sealed_message_is_refused(tamper):
    mac = EventMac.generate()
    document = json.loads(mac.seal(ENVELOPE.document()))
    tamper(document)
    with pytest.raises(EventRejected):
        mac.open(json.dumps(document))


@pytest.mark.parametrize("body", [b"", b"[1]", b"not json", b'{"id": "x"}', b'{"finfaasmac": 3}'])
def test_unsealed_or_malformed_messages_are_refused(body):
    with pytest.raises(EventRejected):
        EventMac.generate().open(body)


def test_during_a_rotation_messages_sealed_with_the_old_key_still_open():
    old, new = new_mac_key_text(), new_mac_key_text()
    body = EventMac(mac_keys_from_text(EVENTS_MAC_KEY_SECRET_NAME, old)).seal(ENVELOPE.document())
    rotated = EventMac(mac_keys_from_text(EVENTS_MAC_KEY_SECRET_NAME, f"{new}\n{old}"))
    assert rotated.open(body)["id"] == ENVELOPE.id
    assert json.loads(rotated.seal(ENVELOPE.document()))[MAC_EXTENSION] != json.loads(body)[MAC_EXTENSION]


def test_short_or_malformed_keys_are_refused():
    with pytest.raises(ValueError):
        EventMac([b"short"])
    with pytest.raises(ValueError):
        mac_keys_from_text(EVENTS_MAC_KEY_SECRET_NAME, "not base64!")
    with pytest.raises(ValueError):
        EventMac(mac_keys_from_text(EVENTS_MAC_KEY_SECRET_NAME, base64.b64encode(b"x" * 8).decode()))


@pytest.mark.parametrize("document", [
    {**ENVELOPE.document(), "data": "text"},
    {k: v for k, v in ENVELOPE.document().items() if k != "subject"},
    {k: v for k, v in ENVELOPE.document().items() if k != "time"},
    {**ENVELOPE.document(), "specversion": "0.3"},
    {**ENVELOPE.document(), "time": "yesterday"},
])
def test_documents_that_are_not_events_of_ours_are_refused(document):
    with pytest.raises(EventRejected):
        envelope_from_document(document)
