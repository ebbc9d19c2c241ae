"""The customers capability's refusals and failures; `code` is stable and safe to show a client."""

from __future__ import annotations

from finfaas.platform.errors import Refusal


class CustomerError(Refusal):
    """Base of customer rule violations."""

    code = "customer_error"


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
