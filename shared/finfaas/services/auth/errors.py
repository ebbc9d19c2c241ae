"""The auth capability's refusals and failures; `code` is stable and safe to show a client."""

from __future__ import annotations

from finfaas.platform.errors import Refusal
from finfaas.platform.tokens import OAuthError


class SignUpError(Refusal):
    """Base of sign-up refusals."""

    code = "sign_up_error"


class UsernameTaken(SignUpError):
    """Another customer has this username."""

    code = "username_taken"


class InvalidUsername(SignUpError):
    """The username breaks the username rules."""

    code = "invalid_username"


class WeakPassword(SignUpError):
    """The password breaks the password policy."""

    code = "weak_password"


class RefreshStoreUnavailable(RuntimeError):
    """The refresh-token table could not be read or written."""


def invalid_grant() -> OAuthError:
    # One answer for unknown user, wrong password, and every unusable refresh token: no oracle.
    return OAuthError("invalid_grant", "The credentials or refresh token are not valid.")
