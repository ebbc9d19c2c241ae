"""The rail's refusals, each with a stable problem code."""

from __future__ import annotations


class RailError(Exception):
    """Any refusal of the rail."""

    code = "rail_error"


class PaymentConflict(RailError):
    """The payment id was used for a different payment."""

    code = "payment_exists_with_different_fields"


class PaymentNotFound(RailError):
    """No such payment."""

    code = "payment_not_found"


class PaymentRefused(RailError):
    """The payment id was recalled before it arrived: it will never be accepted."""

    code = "payment_recalled"


class RailStoreUnavailable(RailError):
    """The rail's payment store did not answer."""

    code = "rail_store_unavailable"


class InvalidNotice(RailError):
    """A notice that is not signed by the bank, or too old, or unreadable."""

    code = "invalid_notice"
