"""The customers capability's refusals and failures; `code` is stable and safe to show a client."""

from __future__ import annotations


class CustomerError(Exception):
    """Base of customer rule violations; `code` is stable and safe to show to a client."""

    code = "customer_error"

    def __init__(self, message: str, *, errors: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors


class CustomerNotFound(CustomerError):
    """No customer record for this principal (or not one the caller may see)."""

    code = "customer_not_found"


class ProfileNotFound(CustomerError):
    """The customer has not given a profile yet."""

    code = "profile_not_found"


class CustomerStoreUnavailable(RuntimeError):
    """The customers or auth table could not be read or written (network, throttling, conflict)."""


class InvalidProfile(CustomerError):
    """A profile field is malformed; `errors` names the fields, never their values."""

    code = "invalid_profile"
