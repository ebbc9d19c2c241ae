"""Why the console refuses a request: each becomes a page that says so, and nothing is done."""

from __future__ import annotations


class ConsoleRefusal(Exception):
    """A refused request; `code` is stable, the message is what the page tells the operator."""

    code = "refused"
    status = 403


class SignedOut(ConsoleRefusal):
    """No session cookie: the operator signs in first."""

    code = "session_missing"
    status = 401


class SessionExpired(ConsoleRefusal):
    """The session (or the operator's token inside it) has expired."""

    code = "session_expired"
    status = 401


class SessionForged(ConsoleRefusal):
    """A session cookie this console did not seal (altered, or sealed with another key)."""

    code = "session_invalid"
    status = 401


class CsrfRefused(ConsoleRefusal):
    """A form action without this session's CSRF token."""

    code = "csrf_token"
    status = 403


class RoleRefused(ConsoleRefusal):
    """An action the operator's role does not carry."""

    code = "role"
    status = 403


class SignInRefused(ConsoleRefusal):
    """The auth function refused the operator's credentials, or they carry no ops scope."""

    code = "sign_in"
    status = 401


class FunctionDown(Exception):
    """A function the console calls did not answer (or answered 5xx): its part of the page says which."""

    def __init__(self, function: str, detail: str) -> None:
        super().__init__(f"{function}: {detail}")
        self.function = function
        self.detail = detail
