"""What a handler receives and returns: the request, the response and the strict body base."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict

from finfaas.platform import jwt_auth
from finfaas.platform.http.bodies import parse_form, parse_json

if TYPE_CHECKING:
    from finfaas.platform.http.transactional import OutboxAudit, TransactionalIdempotency

JSON_MEDIA_TYPE = "application/json"


class StrictModel(BaseModel):
    """Base for request bodies: unknown fields are rejected, so clients cannot mass-assign."""

    model_config = ConfigDict(extra="forbid")


class Verifier(Protocol):
    def verify(self, token: str) -> jwt_auth.Principal: ...


class TriggerCheck(Protocol):
    """What a token-less entry point accepts instead of a token: proof that its trigger sent the call
    (a schedule's tick, a queue message's MAC). `verify` raises an HttpError (401) otherwise."""

    def verify(self, request: Request) -> None: ...

    def admit(self, request: Request) -> Response | None:
        """Once the request is valid, just before the handler: a Response answers instead of running
        it (a schedule period that already ran); None runs the handler."""
        ...


@dataclass
class Request:
    """What a handler sees: the parsed request, its ids and the authenticated principal."""

    method: str
    path: str
    route: str
    headers: Mapping[str, str]
    query: Mapping[str, list[str]]
    body: bytes
    request_id: str
    trace_id: str | None = None
    principal: jwt_auth.Principal | None = None
    path_params: dict[str, str] = field(default_factory=dict)
    context: Any = None
    # Set for in_transaction routes: the key to complete inside the handler's own transaction.
    idempotency: TransactionalIdempotency | None = None
    # What the audit record names as the target (e.g. "transfer:t-1"); default: the request path.
    audit_target: str | None = None
    # Set for audit="outbox" routes: the facts to carry in the handler's own outbox item.
    outbox_audit: OutboxAudit | None = None
    # Set by a queue route's trigger proof: the message it opened (its MAC checked and removed).
    opened_message: dict[str, Any] | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def media_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return parse_json(self.body)

    def form(self) -> dict[str, str]:
        return parse_form(self.body)


@dataclass
class Response:
    """A handler's explicit answer; returning a model, dict or list means 200 (or the route's status)."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = JSON_MEDIA_TYPE
