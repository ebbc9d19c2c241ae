"""The audit record of an authenticated state-changing request."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from finfaas.platform.audit import ID_PATTERN as AUDIT_ACTOR_PATTERN
from finfaas.platform.audit import TARGET_PATTERN as AUDIT_TARGET_PATTERN
from finfaas.platform.audit import TRACE_ID_PATTERN as AUDIT_TRACE_ID_PATTERN
from finfaas.platform.audit import AuditEvent, Outcome
from finfaas.platform.http.incoming import client_ip

if TYPE_CHECKING:
    from finfaas.platform.http.messages import Request
    from finfaas.platform.http.routes import Route

# Audit actors must be opaque ids; a subject that is not one is recorded by its hash instead.
AUDIT_ACTOR_HASH_HEX_CHARS = 32
# Statuses that change nothing and that a flood could produce at will: not audited.
UNAUDITED_STATUSES = frozenset({429})


def audit_event(route: Route, request: Request, status: int) -> AuditEvent:
    assert request.principal is not None
    trace_id = request.trace_id
    if trace_id is not None and not AUDIT_TRACE_ID_PATTERN.match(trace_id):
        trace_id = None
    return AuditEvent(
        actor=_audit_actor(request.principal.sub),
        action=route.operation_id.lower(),
        target=_audit_target(request),
        outcome=_outcome(status),
        source_ip=client_ip(request.headers),
        trace_id=trace_id,
        request_id=request.request_id,
    )


def _audit_actor(sub: str) -> str:
    if AUDIT_ACTOR_PATTERN.match(sub):
        return sub
    return "sub-sha256:" + hashlib.sha256(sub.encode()).hexdigest()[:AUDIT_ACTOR_HASH_HEX_CHARS]


def _audit_target(request: Request) -> str:
    for candidate in (request.audit_target, request.path.strip("/").removeprefix("_/"), request.route):
        if candidate and AUDIT_TARGET_PATTERN.match(candidate):
            return candidate
    return "unknown"


def _outcome(status: int) -> Outcome:
    if status < 400:
        return Outcome.SUCCEEDED
    if status in (401, 403):
        return Outcome.DENIED
    return Outcome.FAILED
