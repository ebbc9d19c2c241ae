"""Schedule ticks: what the scheduler sends is what a scheduled route accepts, once, while fresh."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from finfaas.platform.mac_keys import mac_keys_from_text
from finfaas.platform.schedule import (
    SCHEDULE_HEADER,
    SCHEDULE_KEY_SECRET_NAME,
    ScheduleProof,
    ScheduleProofInvalid,
    schedule_ticks_remembered_max,
    send_tick,
    sign_tick,
)

KEY = b"s" * 32
NOW = 1_800_000_000.0


class Tick:
    """The part of a request a ScheduleProof reads."""

    def __init__(self, value: str | None) -> None:
        self._value = value

    def header(self, name: str, default: str | None = None) -> str | None:
        return self._value if name == SCHEDULE_HEADER.lower() else default


def test_the_tick_the_scheduler_sends_is_accepted_by_the_route():
    seen: list[str] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            seen.append(self.headers[SCHEDULE_HEADER])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            return None

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        status, _ = send_tick("relay", f"http://127.0.0.1:{server.server_port}/", KEY, NOW, timeout_seconds=5)
    finally:
        thread.join(5)
        server.server_close()

    assert status == 200
    ScheduleProof("relay", [KEY], clock=lambda: NOW + 1).verify(Tick(seen[0]))


def test_a_rotated_key_still_accepts_ticks_signed_with_the_older_one():
    older, newer = b"o" * 32, b"n" * 32
    ScheduleProof("relay", [newer, older], clock=lambda: NOW).verify(Tick(sign_tick(older, "relay", NOW)))


def test_a_missing_key_refuses_every_tick():
    def missing() -> list[bytes]:
        raise FileNotFoundError("schedule-hmac-key")

    with pytest.raises(ScheduleProofInvalid):
        ScheduleProof("relay", missing, clock=lambda: NOW).verify(Tick(sign_tick(KEY, "relay", NOW)))


def test_once_the_memory_is_full_of_fresh_ticks_more_are_refused_not_forgotten():
    proof = ScheduleProof("relay", [KEY], clock=lambda: NOW)
    for offset in range(schedule_ticks_remembered_max):
        proof._remember(f"mac-{offset}", NOW + 60, NOW)  # noqa: SLF001 - filling the bound directly

    with pytest.raises(ScheduleProofInvalid):
        proof.verify(Tick(sign_tick(KEY, "relay", NOW)))


@pytest.mark.parametrize("text", ["", "not base64!", "c2hvcnQ="])
def test_a_malformed_or_short_key_is_a_configuration_error(text):
    with pytest.raises(ValueError):
        mac_keys_from_text(SCHEDULE_KEY_SECRET_NAME, text)
