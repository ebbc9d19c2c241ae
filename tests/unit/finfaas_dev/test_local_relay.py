"""The relay thread of `finfaas up`: starts, publishes, stops; creates the events key once."""

from __future__ import annotations

import stat
import time

from finfaas.platform.events import EVENTS_MAC_KEY_SECRET_NAME, EventMac
from finfaas.platform.mac_keys import mac_keys_from_text
from finfaas.services.outbox_relay.service import OutboxRelay
from finfaas_dev.relay import ensure_events_mac_key, start_relay
from support.events_fakes import FakeOutbox, FakeQueue, outbox_event

WAIT_SECONDS_MAX = 5.0


def test_the_events_key_is_created_private_once_and_then_kept(tmp_path):
    assert ensure_events_mac_key(tmp_path)
    path = tmp_path / EVENTS_MAC_KEY_SECRET_NAME
    first = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    EventMac(mac_keys_from_text(EVENTS_MAC_KEY_SECRET_NAME, first))  # usable as it is
    assert not ensure_events_mac_key(tmp_path)
    assert path.read_text() == first


def test_the_relay_thread_publishes_what_appears_and_stops_when_asked(tmp_path):
    outbox, queue = FakeOutbox(["ledger-0"]), FakeQueue()
    running = start_relay(tmp_path, OutboxRelay(outbox, queue, EventMac.generate(), "finfaas-up-test"))
    try:
        outbox.add(outbox_event(1), outbox_event(2))
        deadline = time.monotonic() + WAIT_SECONDS_MAX
        while outbox.remaining() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outbox.remaining() == [] and len(queue.sent) == 2
    finally:
        assert running.stop()
    assert (tmp_path / EVENTS_MAC_KEY_SECRET_NAME).exists()
