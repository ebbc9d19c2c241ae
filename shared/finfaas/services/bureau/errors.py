"""The bureau's refusals, each with a stable problem code."""

from __future__ import annotations

from finfaas.platform.errors import Refusal


class BureauUnavailable(Refusal):
    """The sandbox bureau is set to fail (BUREAU_SANDBOX_DOWN): no report now."""

    code = "bureau_unavailable"
