"""The session cookie: the operator's session sealed (encrypted and authenticated) with the console's key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable

from cryptography.fernet import Fernet, InvalidToken

from finfaas.services.console.errors import CsrfRefused, SessionExpired, SessionForged, SignedOut
from finfaas.services.console.model import Role, Session

COOKIE_NAME = "finfaas_console"
SESSION_KEY_SECRET_NAME = "console-session-key"  # noqa: S105 - a secret's name
# An operator signs in again after this long, whatever the token's lifetime.
session_seconds_max = 8 * 3600
csrf_token_bytes = 24
cookie_chars_max = 4000  # browsers keep about 4 KB per cookie


class SessionCodec:
    """Seals a Session into a cookie value and opens it back, refusing forged and expired ones."""

    def __init__(self, key_text: str, clock: Callable[[], float]) -> None:
        # Fernet wants 32 url-safe base64 bytes; any secret text of enough entropy maps onto them.
        digest = hashlib.sha256(key_text.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._clock = clock

    def new_session(self, operator: str, role: Role, token: str, token_expires_at: int) -> Session:
        expires_at = min(int(self._clock()) + session_seconds_max, token_expires_at)
        return Session(operator, role, token, secrets.token_urlsafe(csrf_token_bytes), expires_at)

    def seal(self, session: Session) -> str:
        payload = {"operator": session.operator, "role": session.role.value, "token": session.token,
                   "csrf": session.csrf, "expires_at": session.expires_at}
        sealed = self._fernet.encrypt_at_time(json.dumps(payload).encode(), int(self._clock())).decode()
        if len(sealed) > cookie_chars_max:
            raise ValueError(f"a session of {len(sealed)} characters does not fit a cookie")
        return sealed

    def open(self, cookie: str | None) -> Session:
        """The session in the cookie; SignedOut, SessionForged or SessionExpired otherwise."""
        if not cookie:
            raise SignedOut("Sign in to use the console.")
        now = int(self._clock())
        try:
            payload = json.loads(self._fernet.decrypt_at_time(cookie.encode(), session_seconds_max, now))
            session = Session(str(payload["operator"]), Role(payload["role"]), str(payload["token"]),
                              str(payload["csrf"]), int(payload["expires_at"]))
        except InvalidToken:
            # Fernet does not tell an old seal from a false one; a seal older than any session is expired.
            raise SessionForged(
                "This session was not issued by this console (or has expired): sign in again.") from None
        except (ValueError, KeyError, TypeError):
            raise SessionForged("This session was not issued by this console: sign in again.") from None
        if session.expires_at <= now:
            raise SessionExpired("Your session has expired: sign in again.")
        return session


def check_csrf(session: Session, sent: str | None) -> None:
    """A form action must carry the session's CSRF token (compared in constant time)."""
    if not sent:
        raise CsrfRefused("This form was sent without its CSRF token: nothing was done. Reload the page.")
    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise CsrfRefused("This form's CSRF token is not this session's: nothing was done. Reload the page.")
