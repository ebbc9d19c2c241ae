"""The session cookie: sealed by the console, refused when forged or expired; CSRF on every action."""

from __future__ import annotations

import pytest
from finfaas.services.console.errors import CsrfRefused, SessionExpired, SessionForged, SignedOut
from finfaas.services.console.model import Role, role_of
from finfaas.services.console.session import SessionCodec, check_csrf, session_seconds_max


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_sealed_session_opens_to_the_same_operator_and_hides_the_token():
    clock = Clock()
    codec = SessionCodec("key-one-" * 4, clock)
    session = codec.new_session("op-ada", Role.ACTOR, "the.bearer.token", int(clock.now) + 600)

    sealed = codec.seal(session)

    assert "the.bearer.token" not in sealed and "op-ada" not in sealed
    assert codec.open(sealed) == session


def test_a_session_ends_with_the_operators_token_and_is_then_refused():
    clock = Clock()
    codec = SessionCodec("key-one-" * 4, clock)
    sealed = codec.seal(codec.new_session("op-ada", Role.READER, "t", int(clock.now) + 600))

    clock.now += 600

    with pytest.raises(SessionExpired):
        codec.open(sealed)


def test_a_session_never_outlives_the_consoles_limit():
    clock = Clock()
    codec = SessionCodec("key-one-" * 4, clock)

    session = codec.new_session("op-ada", Role.READER, "t", int(clock.now) + 10 * session_seconds_max)

    assert session.expires_at == int(clock.now) + session_seconds_max


@pytest.mark.parametrize("cookie", ["", "gAAAAAB-not-a-session", None])
def test_missing_and_forged_cookies_are_refused(cookie):
    codec = SessionCodec("key-one-" * 4, Clock())

    with pytest.raises((SignedOut, SessionForged)):
        codec.open(cookie)


def test_a_session_sealed_with_another_key_is_forged():
    clock = Clock()
    other = SessionCodec("key-two-" * 4, clock)
    sealed = other.seal(other.new_session("op-ada", Role.ACTOR, "t", int(clock.now) + 600))

    with pytest.raises(SessionForged):
        SessionCodec("key-one-" * 4, clock).open(sealed)


def test_an_action_needs_the_sessions_own_csrf_token():
    clock = Clock()
    codec = SessionCodec("key-one-" * 4, clock)
    session = codec.new_session("op-ada", Role.ACTOR, "t", int(clock.now) + 600)

    check_csrf(session, session.csrf)
    for sent in (None, "", "x" + session.csrf[1:]):
        with pytest.raises(CsrfRefused):
            check_csrf(session, sent)


def test_roles_come_from_the_ops_scopes():
    assert role_of(["ops"]) is Role.READER
    assert role_of(["ops", "ops:act"]) is Role.ACTOR
    assert role_of(["ops:act", "transfers:read"]) is None
