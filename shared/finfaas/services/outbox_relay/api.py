"""The relay function's error table."""

from __future__ import annotations

from finfaas.platform.errors import ErrorSpec
from finfaas.services.outbox_relay.errors import OutboxUnavailable

ERRORS = {OutboxUnavailable: ErrorSpec(503, "outbox_unavailable", "Outbox unavailable")}
