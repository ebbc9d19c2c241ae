"""The risk capability's refusals and failures."""

from __future__ import annotations


class InvalidBlockEntry(ValueError):
    """A block-list entry is not <kind>:<value> with a known kind."""

    code = "invalid_block_entry"


class RiskStoreUnavailable(RuntimeError):
    """The risk table could not be read or written."""

    code = "risk_store_unavailable"
