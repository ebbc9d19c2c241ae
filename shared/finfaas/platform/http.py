"""The HTTP adapter every function is built on: python3-http event -> typed request -> response.

    app = FunctionApp("accounts", errors={AccountFrozen: ErrorSpec(409, "account_frozen", "Account frozen")})

    @app.route("GET", "/accounts/{account_id}", scopes=["accounts:read"])
    def get_account(req: Request, account_id: str) -> Account: ...

    def handle(event, context):
        return app.handle(event, context)

Optional platform services, each an instance or a zero-argument factory called once on first use
(so a cold start that answers /_/health imports no AWS code):

    app = FunctionApp("ledger", idempotency=build_guard, limiter=build_limiter, audit=build_audit_log)

    @app.route("POST", "/payments", scopes=["payments:write"], body=NewPayment,
               idempotency="required", rate_limit="money")
    def create_payment(req: Request, body: NewPayment) -> Payment: ...

Order of a request: route -> size limits -> token -> scopes -> rate limit (429 + Retry-After) ->
body/query validation (422, never stored under a key) -> Idempotency-Key -> handler -> audit.

`idempotency=`:
* "required" / "optional": the platform claims the key, runs the handler and stores its answer
  (2xx-4xx stored and replayed with `Idempotency-Replayed: true`; 5xx released so the client may
  retry). Same key + different request -> 422; same key while running -> 409. "required" answers
  400 when the header is missing.
* "in_transaction": the key is required; the handler receives `req.idempotency`
  (TransactionalIdempotency) and writes the completion record inside its own transaction; the
  platform stores final 4xx answers and answers that did not write the record themselves.
* "keyed": the key is required and checked (400 when missing or malformed) and the platform keeps
  no record: the handler's own conditional write is keyed by it (e.g. the id it creates is derived
  from the caller and the key), so that write is the record, and a repeat finds what the first
  wrote. The handler answers a repeat itself (`Idempotency-Replayed: true`, 422 for a different
  request under the same key). Use it only where a repeat's answer follows from that write alone.
`rate_limit=`: the name of a limit the app's limiter knows (default "default"); None disables it.
Unauthenticated routes are never rate limited (there is no principal to count).
Audit: with an app-level AuditLog, every authenticated POST/PUT/PATCH/DELETE appends who (token
subject), what (operation id), target (`req.audit_target` or the path), outcome, source IP,
request id and trace id. 429s are not audited (they change nothing and would let a flood write).
`audit="outbox"` (a route option): the handler receives `req.outbox_audit` and writes its facts
(`facts()`, JSON text) into the outbox item of its own transaction, then calls `mark_recorded()`
once that transaction commits; the outbox relay seals them into the audit chain. The platform then
appends nothing, so the audit costs no round trip and is exactly as durable as the change. Answers
whose transaction did not carry the facts (refusals, replays) are appended as usual.
"""

from __future__ import annotations

import hashlib
import inspect
import ipaddress
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import Enum
from typing import Any, Generic, Literal, Protocol, TypeVar, get_args, get_origin
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, ValidationError

from finfaas.platform import jsonio, jwt_auth, tracing
from finfaas.platform.audit import ID_PATTERN as AUDIT_ACTOR_PATTERN
from finfaas.platform.audit import TARGET_PATTERN as AUDIT_TARGET_PATTERN
from finfaas.platform.audit import TRACE_ID_PATTERN as AUDIT_TRACE_ID_PATTERN
from finfaas.platform.audit import AuditEvent, AuditLog, Outcome, audit_facts_json, format_audit_time
from finfaas.platform.errors import (
    BadRequest,
    ErrorSpec,
    ErrorTable,
    Forbidden,
    HttpError,
    InternalError,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from finfaas.platform.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    IdempotencyGuard,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    IdempotencyRecord,
    IdempotencyStoreError,
    RequestScope,
    StoredResponse,
    is_storable,
    required_key,
)
from finfaas.platform.logging import get_logger, request_context
from finfaas.platform.problems import PROBLEM_MEDIA_TYPE, FieldError, Problem
from finfaas.platform.ratelimit import RateLimiter

JSON_MEDIA_TYPE = "application/json"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
HEALTH_PATH = "/_/health"
READY_PATH = "/_/ready"
OPENAPI_PATH = "/_/openapi.json"
# Every route under this prefix needs the ops scope, whatever its registration says.
OPS_PATH_PREFIX = "/_/ops/"
# Probes are frequent and uninteresting: no trace segment for them.
UNTRACED_PATHS = frozenset({HEALTH_PATH, READY_PATH, OPENAPI_PATH})
REQUEST_ID_HEADER = "X-Request-Id"
# Accepted in this order as the caller's correlation id; the OpenFaaS gateway sets X-Call-Id.
REQUEST_ID_SOURCES = ("x-request-id", "x-correlation-id", "x-call-id")
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
DEFAULT_RESPONSE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
request_body_bytes_max = 1024 * 1024
path_param_chars_max = 256
form_fields_max = 64
validation_errors_max = 50
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IdempotencyMode = Literal["required", "optional", "in_transaction", "keyed"]
IDEMPOTENCY_MODES = ("required", "optional", "in_transaction", "keyed")
IN_TRANSACTION = "in_transaction"
KEYED = "keyed"
RATE_LIMIT_DEFAULT = "default"
AuditMode = Literal["sync", "outbox"]
AUDIT_MODES = ("sync", "outbox")
AUDIT_SYNC = "sync"
AUDIT_OUTBOX = "outbox"
# The caller's address is read from ONE header: the one the deployed edge sets, overwriting any
# client's copy (the local gateway and an ingress in front of OpenFaaS: X-Real-Ip; Knative behind
# Kourier or Istio: X-Envoy-External-Address). Any other address header is client-controlled.
CLIENT_IP_HEADER_ENV = "FINFAAS_CLIENT_IP_HEADER"
CLIENT_IP_HEADER_DEFAULT = "X-Real-Ip"
# Only if configured: X-Forwarded-For's right-most entry, the one the nearest proxy appended.
FORWARDED_FOR_HEADER = "x-forwarded-for"
client_ip_chars_max = 45  # the longest textual IPv6 address
# Audit actors must be opaque ids; a subject that is not one is recorded by its hash instead.
AUDIT_ACTOR_HASH_HEX_CHARS = 32
# Statuses that change nothing and that a flood could produce at will: not audited.
UNAUDITED_STATUSES = frozenset({429})
# Platform stores a function's own error table need not know about.
PLATFORM_ERRORS = {
    IdempotencyStoreError: ErrorSpec(503, "idempotency_store_unavailable", "Idempotency store unavailable"),
}

_log = get_logger("http")


class StrictModel(BaseModel):
    """Base for request bodies: unknown fields are rejected, so clients cannot mass-assign."""

    model_config = ConfigDict(extra="forbid")


class Verifier(Protocol):
    def verify(self, token: str) -> jwt_auth.Principal: ...


class TriggerCheck(Protocol):
    """What a token-less entry point accepts instead of a token: proof that its trigger sent the call
    (a schedule's signed tick, a queue message's MAC). `verify` raises an HttpError (401) otherwise."""

    def verify(self, request: Request) -> None: ...


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


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[..., Any]
    scopes: tuple[str, ...]
    auth: bool
    body_model: type[BaseModel] | None
    query_model: type[BaseModel] | None
    response_model: type[BaseModel] | None
    status: int
    media_types: tuple[str, ...]
    summary: str
    openapi_extra: Mapping[str, Any]
    pattern: re.Pattern[str]
    param_names: tuple[str, ...]
    list_query_fields: frozenset[str]
    idempotency: IdempotencyMode | None = None
    rate_limit: str | None = RATE_LIMIT_DEFAULT
    audit: AuditMode = AUDIT_SYNC
    trigger: TriggerCheck | None = None

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def shape(self) -> str:
        """The path with parameter names erased: /a/{x} and /a/{y} are the same route."""
        return _PARAM.sub("{}", self.path)


class IdempotentReplay(Exception):
    """Raised inside an in_transaction handler: answer with this stored response instead."""

    def __init__(self, response: StoredResponse) -> None:
        super().__init__(f"replay of a stored {response.status_code} response")
        self.response = response


@dataclass
class TransactionalIdempotency:
    """An in_transaction route's Idempotency-Key: complete it in the same transaction as the change.

    The handler (or the service it calls) puts `completion_record(response)` into its transaction,
    calls `mark_recorded()` once that transaction commits, and calls `conflict(existing)` when the
    record's own condition failed (raises the replay, 409 or 422; returns if the key is free, so
    the transaction may be retried).
    """

    guard: IdempotencyGuard
    scope: RequestScope
    recorded: bool = False

    def completion_record(self, response: StoredResponse) -> IdempotencyRecord:
        return self.guard.completion_record(self.scope, response)

    def conflict(self, existing: IdempotencyRecord | None) -> None:
        answer = self.guard.answer_for(self.scope, existing)
        if answer is not None:
            raise IdempotentReplay(answer)

    def mark_recorded(self) -> None:
        self.recorded = True


@dataclass
class OutboxAudit:
    """An audit="outbox" route's audit record, to be written inside the handler's own transaction.

    `facts()` is the record's content as the request stands when called (outcome succeeded, since
    only a committed transaction carries it); `mark_recorded()` after that transaction commits
    tells the platform not to append it again.
    """

    build_facts: Callable[[], str] = field(repr=False)
    recorded: bool = False

    def facts(self) -> str:
        return self.build_facts()

    def mark_recorded(self) -> None:
        self.recorded = True


T = TypeVar("T")


class _Provided(Generic[T]):
    """An instance given now, or built by a factory once, on first use (AWS clients stay out of
    cold start); a factory that raises is tried again on the next request."""

    def __init__(self, source: T | Callable[[], T] | None) -> None:
        self.configured = source is not None
        self._factory = source if callable(source) else None
        self._value = None if callable(source) else source
        self._lock = threading.Lock()

    def get(self) -> T | None:
        if self._value is None and self._factory is not None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
        return self._value


class StepTimings:
    """Calls and wall time per platform step (request, rate_limit, idempotency, audit) in this process."""

    def __init__(self) -> None:
        self._totals: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def add(self, step: str, seconds: float) -> None:
        with self._lock:
            total = self._totals.setdefault(step, [0, 0.0])
            total[0] += 1
            total[1] += seconds

    def snapshot(self) -> dict[str, dict[str, float]]:
        """{step: {"calls": n, "ms_total": t, "ms_mean": t / n}}."""
        with self._lock:
            return {
                step: {"calls": int(calls), "ms_total": round(seconds * 1000, 3),
                       "ms_mean": round(seconds * 1000 / calls, 3) if calls else 0.0}
                for step, (calls, seconds) in sorted(self._totals.items())
            }


class _timed:
    def __init__(self, timings: StepTimings, step: str) -> None:
        self._timings, self._step = timings, step

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        self._timings.add(self._step, time.perf_counter() - self._started)


BODY_FIELD = "(body)"  # the field name of a problem about the body as a whole


def parse_json(raw: bytes) -> Any:
    """One JSON document; duplicate keys, NaN/Infinity, excess depth and invalid UTF-8 are refused (400)."""
    if not raw.strip():
        raise MalformedJson("The request body is empty; a JSON document is required.")
    try:
        return jsonio.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise MalformedJson("The request body is not valid UTF-8.") from None
    except jsonio.JsonTooDeep as error:
        raise MalformedJson(str(error), errors=[FieldError(BODY_FIELD, str(error))]) from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise MalformedJson(f"Invalid JSON at {where}: {error.msg}.") from None
    except ValueError as error:
        raise MalformedJson(str(error)) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which duplicate wins; refusing them removes the ambiguity.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"Duplicate key {key!r} in JSON object.")
        result[key] = value
    return result


def parse_form(raw: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body; a parameter sent twice is an error (RFC 6749 3.2)."""
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=form_fields_max
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("The form body is not valid application/x-www-form-urlencoded.") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise BadRequest(f"Form parameter {key!r} appears more than once.")
        form[key] = value
    return form


class FunctionApp:
    """One function's routes, error table and readiness checks; `handle` is the OpenFaaS entry point."""

    def __init__(
        self,
        name: str,
        *,
        version: str = "0.1.0",
        errors: ErrorTable | Mapping[type[BaseException], ErrorSpec] | None = None,
        verifier: Verifier | None = None,
        body_bytes_max: int = request_body_bytes_max,
        traced_libraries: Sequence[str] = tracing.PATCHED_LIBRARIES_DEFAULT,
        tracer: tracing.Tracer | None = None,
        idempotency: IdempotencyGuard | Callable[[], IdempotencyGuard] | None = None,
        limiter: RateLimiter | Callable[[], RateLimiter] | None = None,
        audit: AuditLog | Callable[[], AuditLog | None] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.errors = errors if isinstance(errors, ErrorTable) else ErrorTable(errors)
        self.body_bytes_max = body_bytes_max
        self._verifier = verifier
        self._routes: list[Route] = []
        self._readiness: dict[str, Callable[[], None]] = {}
        self._exception_handlers: dict[type[BaseException], Callable[[BaseException, Request], Response]] = {}
        self._openapi: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._tracer = tracer or tracing.start(name, traced_libraries)
        self._guard: _Provided[IdempotencyGuard] = _Provided(idempotency)
        self._limiter: _Provided[RateLimiter] = _Provided(limiter)
        self._audit_log: _Provided[AuditLog | None] = _Provided(audit)
        self.timings = StepTimings()
        self._add_platform_routes()

    # -- registration ---------------------------------------------------------------------------

    def route(
        self,
        method: str,
        path: str,
        *,
        scopes: Iterable[str] = (),
        auth: bool = True,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        media_types: Sequence[str] = (JSON_MEDIA_TYPE,),
        openapi: Mapping[str, Any] | None = None,
        idempotency: IdempotencyMode | None = None,
        rate_limit: str | None = RATE_LIMIT_DEFAULT,
        audit: AuditMode = AUDIT_SYNC,
        trigger: TriggerCheck | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a handler; auth is required unless auth=False, and every listed scope is needed.

        trigger: on an auth=False route called by a queue or a schedule, what proves the call came
        from that trigger (checked where a token would be, before the body is read).
        idempotency ("required", "optional", "in_transaction"), rate_limit (a limit name, None for
        none) and audit ("sync", "outbox") take effect when the app was given an idempotency guard /
        a limiter / an audit log."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            route = _build_route(
                method, path, handler, scopes, auth, body, query, response, status, media_types, openapi
            )
            route = replace(route, idempotency=idempotency, rate_limit=rate_limit, audit=audit,
                            trigger=trigger)
            self._check_platform_options(route)
            self._add_route(route)
            return handler

        return register

    def readiness_check(self, name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
        """Register a check for /_/ready; it raises when the function cannot serve (table unreachable)."""

        def register(check: Callable[[], None]) -> Callable[[], None]:
            self._readiness[name] = check
            return check

        return register

    def exception_handler(
        self, exc_type: type[BaseException]
    ) -> Callable[[Callable[[Any, Request], Response]], Callable[[Any, Request], Response]]:
        """Render an exception in a format other than problem+json (e.g. OAuth 2.0 token errors)."""

        def register(render: Callable[[Any, Request], Response]) -> Callable[[Any, Request], Response]:
            self._exception_handlers[exc_type] = render
            return render

        return register

    def _check_platform_options(self, route: Route) -> None:
        self._check_audit_option(route)
        if route.trigger is not None and route.auth:
            raise ValueError(f"{route.method} {route.path}: a trigger proof replaces the token (auth=False)")
        if route.idempotency is None:
            return
        where = f"{route.method} {route.path}"
        if route.idempotency not in IDEMPOTENCY_MODES:
            raise ValueError(f"{where}: idempotency must be one of {IDEMPOTENCY_MODES}")
        if route.method not in STATE_CHANGING_METHODS:
            raise ValueError(f"{where}: only state-changing methods take an {IDEMPOTENCY_KEY_HEADER}")
        if not route.auth:
            raise ValueError(f"{where}: keys are scoped by principal, so idempotent routes need auth")
        if route.idempotency != KEYED and not self._guard.configured:
            raise ValueError(f"{where}: pass FunctionApp(idempotency=...) to use idempotency keys")

    @staticmethod
    def _check_audit_option(route: Route) -> None:
        where = f"{route.method} {route.path}"
        if route.audit not in AUDIT_MODES:
            raise ValueError(f"{where}: audit must be one of {AUDIT_MODES}")
        if route.audit == AUDIT_OUTBOX and (route.method not in STATE_CHANGING_METHODS or not route.auth):
            raise ValueError(f"{where}: only authenticated state-changing routes are audited")

    def _add_route(self, route: Route) -> None:
        for existing in self._routes:
            if existing.method == route.method and existing.shape == route.shape:
                raise ValueError(f"{route.method} {route.path} is already registered")
        self._routes.append(route)
        # Literal segments beat parameters: /accounts/search before /accounts/{account_id}.
        self._routes.sort(key=lambda r: len(r.param_names))
        self._openapi = None

    def _add_platform_routes(self) -> None:
        def ready(req: Request) -> Response:
            """Readiness: every registered check passes."""
            return self._ready()

        def openapi_document(req: Request) -> Response:
            """The OpenAPI 3.1 document of this function."""
            return Response(self.openapi(), headers={"Cache-Control": "public, max-age=60"})

        self.route("GET", HEALTH_PATH, auth=False)(health)
        self.route("GET", READY_PATH, auth=False)(ready)
        self.route("GET", OPENAPI_PATH, auth=False)(openapi_document)

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    # -- platform routes -------------------------------------------------------------------------

    def _ready(self) -> Response:
        failures: list[FieldError] = []
        for name, check in self._readiness.items():
            try:
                check()
            except Exception:
                _log.exception("readiness check failed", check=name)
                failures.append(FieldError(name, "unavailable"))
        if failures:
            raise NotReady("A dependency of this function is unavailable.", errors=failures)
        return Response({"status": "ready", "checks": sorted(self._readiness)})

    def openapi(self) -> dict[str, Any]:
        with self._lock:
            if self._openapi is None:
                from finfaas.platform.openapi import build_document

                self._openapi = build_document(
                    self.name, self.version, self._routes, rate_limited=self._limiter.configured
                )
            return self._openapi

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        """The python3-http entry point: never raises, always answers."""
        started = time.perf_counter()
        request = _incoming_request(event, context)
        with request_context(function=self.name, request_id=request.request_id) as log_context:
            with self._trace(request) as invocation:
                request.trace_id = log_context["trace_id"] = invocation.trace_id
                response, route = self._dispatch(request, log_context)
                invocation.set_status(response.status)
                if request.principal is not None:
                    invocation.set_user(request.principal.sub)
            elapsed_s = time.perf_counter() - started
            self.timings.add("request", elapsed_s)
            _log.info(
                "request",
                method=request.method,
                route=route.path if route else None,
                path=request.path,
                status=response.status,
                duration_ms=round(elapsed_s * 1000, 2),
            )
        answer = _event_response(response, request.request_id)
        if request.method == "HEAD":
            answer["body"] = ""
        return answer

    def _trace(self, request: Request) -> Any:
        trace_header = request.header(tracing.TRACE_HEADER)
        if request.path in UNTRACED_PATHS:
            return _untraced(trace_header)
        return self._tracer.invocation(self.name, trace_header, request.method, request.path)

    def _dispatch(self, request: Request, log_context: dict[str, Any]) -> tuple[Response, Route | None]:
        route: Route | None = None
        try:
            route, request.path_params = self._resolve(request.method, request.path)
            request.route = route.path
            self._check_limits(request)
            request.principal = self._authenticate(route, request, log_context)
            self._authorize(route, request.principal)
            self._enforce_rate_limit(route, request.principal)
            request.outbox_audit = self._outbox_audit(route, request)
            response = self._run(route, request, log_context)
        except Exception as error:
            response = self._error_response(error, request, log_context)
        if route is not None:
            self._audit(route, request, response)
        return response, route

    def _run(self, route: Route, request: Request, log_context: dict[str, Any]) -> Response:
        """Validate, then run the handler once per Idempotency-Key when the route asks for it."""
        kwargs = self._arguments(route, request)  # a malformed request is refused, never stored
        if route.idempotency == KEYED:
            required_key(request.header(IDEMPOTENCY_KEY_HEADER.lower()))
            return self._invoke(route, request, kwargs)
        guard = self._guard.get() if route.idempotency else None
        if guard is None:
            return self._invoke(route, request, kwargs)
        assert request.principal is not None  # idempotent routes require auth (checked at registration)
        with _timed(self.timings, "idempotency"):
            scope = guard.scope(
                principal=request.principal.sub,
                route=f"{route.method} {route.path}",
                key=request.header(IDEMPOTENCY_KEY_HEADER.lower()),
                method=request.method,
                path=request.path,
                body=request.body,
                query=request.query,
                required=route.idempotency != "optional",
            )
        if scope is None:
            return self._invoke(route, request, kwargs)
        if route.idempotency == IN_TRANSACTION:
            return self._run_in_transaction(route, request, kwargs, guard, scope, log_context)
        return self._run_claimed(route, request, kwargs, guard, scope, log_context)

    def _run_claimed(self, route: Route, request: Request, kwargs: dict[str, Any], guard: IdempotencyGuard,
                     scope: RequestScope, log_context: dict[str, Any]) -> Response:
        produced: list[tuple[Response, StoredResponse]] = []
        handler_seconds = 0.0

        def produce() -> StoredResponse:
            nonlocal handler_seconds
            started = time.perf_counter()
            try:
                response = self._invoke(route, request, kwargs)
            except Exception as error:
                # Rendered here so the guard sees the status: 4xx are stored, 5xx release the key.
                response = self._error_response(error, request, log_context)
            handler_seconds = time.perf_counter() - started
            produced.append((response, _stored(response)))
            return produced[-1][1]

        started = time.perf_counter()
        try:
            answer = guard.run(scope, produce)
        finally:
            # What the claim and the completion cost, the handler's own time left out.
            self.timings.add("idempotency", time.perf_counter() - started - handler_seconds)
        if produced and answer is produced[-1][1]:
            return produced[-1][0]
        return _from_stored(answer)

    def _run_in_transaction(self, route: Route, request: Request, kwargs: dict[str, Any],
                            guard: IdempotencyGuard, scope: RequestScope,
                            log_context: dict[str, Any]) -> Response:
        request.idempotency = TransactionalIdempotency(guard, scope)
        try:
            response = self._invoke(route, request, kwargs)
        except IdempotentReplay as replay:
            return _from_stored(replay.response)
        except (IdempotencyKeyInUse, IdempotencyKeyReused):
            raise  # about the key, not the operation: never stored under it
        except Exception as error:
            response = self._error_response(error, request, log_context)
        if request.idempotency.recorded:
            return response
        return self._record_outcome(guard, scope, response)

    def _record_outcome(self, guard: IdempotencyGuard, scope: RequestScope, response: Response) -> Response:
        """Store an answer the handler's transaction did not record (a 4xx, a ledger-level replay)."""
        stored = _stored(response)
        if not is_storable(stored):
            return response
        try:
            with _timed(self.timings, "idempotency"):
                answer = guard.record_outcome(scope, stored)
        except IdempotencyStoreError:
            # The answer is true whether or not it could be stored: give it rather than a 503.
            _log.exception("idempotency outcome not stored")
            return response
        return response if answer is stored else _from_stored(answer)

    def _resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed: list[str] = []
        served = "GET" if method == "HEAD" else method  # RFC 9110: HEAD is GET without the body
        for route in self._routes:
            # fullmatch: `$` alone would let a trailing newline through.
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == served:
                return route, match.groupdict()
            allowed.extend(("GET", "HEAD") if route.method == "GET" else (route.method,))
        if allowed:
            raise MethodNotAllowed(method, allowed)
        raise NotFound(f"No resource at {path}.")

    def _check_limits(self, request: Request) -> None:
        if len(request.body) > self.body_bytes_max:
            raise PayloadTooLarge(
                f"The body is {len(request.body)} bytes; this function accepts {self.body_bytes_max}."
            )
        for name, value in request.path_params.items():
            if len(value) > path_param_chars_max:
                raise NotFound(f"No resource at {request.route} with a {len(value)}-character {name}.")
            if _CONTROL_CHARACTERS.search(value):
                # No id has them: refused before any token check, store read or log line sees them.
                raise NotFound(f"No resource at {request.route} with control characters in {name}.")

    def _authenticate(
        self, route: Route, request: Request, log_context: dict[str, Any]
    ) -> jwt_auth.Principal | None:
        """The verified principal (None on auth=False routes); 401 for any unacceptable token."""
        if not route.auth:
            if route.trigger is not None:
                route.trigger.verify(request)
            return None
        try:
            principal = self._get_verifier().verify(jwt_auth.bearer_token(request.header("authorization")))
        except jwt_auth.InvalidToken as rejection:
            log_context["auth_failure"] = str(rejection)
            header = 'Bearer realm="finfaas"'
            if request.header("authorization"):
                header += ', error="invalid_token"'
            raise Unauthorized(header=header) from None
        except jwt_auth.KeysUnavailable:
            _log.exception("token keys unavailable")
            raise ServiceUnavailable("Token keys are unavailable; retry shortly.") from None
        log_context["sub"] = principal.sub
        return principal

    def _authorize(self, route: Route, principal: jwt_auth.Principal | None) -> None:
        if principal is None:
            return
        missing = principal.missing_scopes(route.scopes)
        if missing:
            raise Forbidden(
                f"This operation needs scope(s): {' '.join(missing)}.",
                headers={
                    "WWW-Authenticate": f'Bearer realm="finfaas", error="insufficient_scope", '
                    f'scope="{" ".join(route.scopes)}"'
                },
            )

    def _enforce_rate_limit(self, route: Route, principal: jwt_auth.Principal | None) -> None:
        if principal is None or route.rate_limit is None:
            return
        limiter = self._limiter.get()
        if limiter is None:
            return
        with _timed(self.timings, "rate_limit"):
            limiter.enforce(principal.sub, route.rate_limit)

    def _get_verifier(self) -> Verifier:
        if self._verifier is None:
            self._verifier = jwt_auth.default_verifier()
        return self._verifier

    def _arguments(self, route: Route, request: Request) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(request.path_params)
        if route.query_model is not None:
            kwargs["query"] = _validated_query(route, request.query)
        if route.body_model is not None:
            kwargs["body"] = _validated_body(route, request)
        elif request.body and request.method in BODY_METHODS:
            _check_media_type(route, request)
        return kwargs

    def _invoke(self, route: Route, request: Request, kwargs: dict[str, Any]) -> Response:
        return _rendered(self._respond(route, route.handler(request, **kwargs)))

    def _respond(self, route: Route, result: Any) -> Response:
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(status=204)
        if route.response_model is not None and not isinstance(result, route.response_model):
            # A handler answering outside its declared contract is a server bug, not a client error.
            result = route.response_model.model_validate(result)
        return Response(result, status=route.status)

    def _error_response(self, error: Exception, request: Request, log_context: dict[str, Any]) -> Response:
        render = _lookup(self._exception_handlers, error)
        if render is not None:
            try:
                return _rendered(render(error, request))
            except Exception as render_error:
                error = render_error
        problem, headers = self._problem(error, request.path)
        log_context["error_code"] = problem.code
        return _rendered(Response(problem.to_dict(), problem.status, headers, PROBLEM_MEDIA_TYPE))

    def _problem(self, error: Exception, instance: str) -> tuple[Problem, dict[str, str]]:
        if isinstance(error, HttpError):
            if isinstance(error, InternalError) or error.status >= 500:
                _log.warning("server-side problem", code=error.code, detail=error.detail)
            return error.to_problem(instance), error.headers
        problem = self.errors.problem_for(error, instance)
        problem = problem or _PLATFORM_ERROR_TABLE.problem_for(error, instance)
        if problem is not None:
            if problem.status >= 500:
                _log.warning("server-side problem", code=problem.code, error_type=type(error).__name__)
            return _with_field(problem, error), _retry_after(problem)
        _log.exception("unhandled exception", error_type=type(error).__name__)
        internal = InternalError(InternalError.detail_public)
        return internal.to_problem(instance), {}

    # -- audit -------------------------------------------------------------------------------------

    def _outbox_audit(self, route: Route, request: Request) -> OutboxAudit | None:
        if route.audit != AUDIT_OUTBOX or request.principal is None or self._audit_log.get() is None:
            return None  # facts go to the outbox only where an audit log would have taken them
        return OutboxAudit(lambda: audit_facts_json(_audit_event(route, request, route.status),
                                                    format_audit_time(time.time())))

    def _audit(self, route: Route, request: Request, response: Response) -> None:
        """Append who did what to which target with what outcome; a failure is logged, never raised,
        because the answer is already decided and must be given truthfully."""
        if (request.principal is None or route.method not in STATE_CHANGING_METHODS
                or response.status in UNAUDITED_STATUSES or not self._audit_log.configured):
            return
        if request.outbox_audit is not None and request.outbox_audit.recorded:
            return  # committed inside the handler's transaction; the relay appends it
        try:
            with _timed(self.timings, "audit"):
                audit_log = self._audit_log.get()
                if audit_log is not None:
                    audit_log.append(_audit_event(route, request, response.status))
        except Exception as error:
            _log.error("audit append failed", action=route.operation_id, status=response.status,
                       error_type=type(error).__name__)


_PLATFORM_ERROR_TABLE = ErrorTable(PLATFORM_ERRORS)
# A mapped 503 (a store or key service briefly away) tells clients when to come back.
UNAVAILABLE_RETRY_AFTER_SECONDS = 1


def _with_field(problem: Problem, error: Exception) -> Problem:
    """A domain error naming its field (`error.field`) lists it in the problem's errors."""
    field_name = getattr(error, "field", None)
    if problem.errors or not isinstance(field_name, str) or not 400 <= problem.status < 500:
        return problem
    return replace(problem, errors=(FieldError(field_name, problem.detail),))


def _retry_after(problem: Problem) -> dict[str, str]:
    return {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)} if problem.status == 503 else {}


class NotReady(ServiceUnavailable):
    """A readiness check failed."""

    code, title = "not_ready", "Not ready"


def health(req: Request) -> dict[str, str]:
    """Liveness: the process answers; no I/O."""
    return {"status": "ok"}


# -- route building ----------------------------------------------------------------------------


def _build_route(
    method: str,
    path: str,
    handler: Callable[..., Any],
    scopes: Iterable[str],
    auth: bool,
    body: type[BaseModel] | None,
    query: type[BaseModel] | None,
    response: type[BaseModel] | None,
    status: int,
    media_types: Sequence[str],
    openapi: Mapping[str, Any] | None,
) -> Route:
    method = method.upper()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not path.startswith("/"):
        raise ValueError(f"route path must start with '/', got {path!r}")
    scope_list = tuple(dict.fromkeys(scopes))
    if path.startswith(OPS_PATH_PREFIX):
        if not auth:
            raise ValueError(f"{path}: ops routes always need authentication")
        scope_list = tuple(dict.fromkeys((*scope_list, jwt_auth.OPS_SCOPE)))
    loose = _models_allowing_extra(body) if body is not None else []
    if loose:
        raise TypeError(f"{', '.join(loose)} must set extra='forbid' (derive from StrictModel)")
    pattern, params = _compile_path(path)
    _check_signature(handler, params, body is not None, query is not None)
    return Route(
        method=method,
        path=_normalized_path(path),
        handler=handler,
        scopes=scope_list,
        auth=auth,
        body_model=body,
        query_model=query,
        response_model=response or _returned_model(handler),
        status=status,
        media_types=tuple(m.lower() for m in media_types),
        summary=(inspect.getdoc(handler) or handler.__name__).splitlines()[0],
        openapi_extra=dict(openapi or {}),
        pattern=pattern,
        param_names=params,
        list_query_fields=_list_fields(query),
    )


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _compile_path(path: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    normalized = _normalized_path(path)
    names = tuple(_PARAM.findall(normalized))
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a path parameter appears twice")
    regex, position = "", 0
    for match in _PARAM.finditer(normalized):
        regex += re.escape(normalized[position : match.start()]) + f"(?P<{match.group(1)}>[^/]+)"
        position = match.end()
    regex += re.escape(normalized[position:])
    return re.compile(f"^{regex}$"), names


def _check_signature(
    handler: Callable[..., Any], params: tuple[str, ...], has_body: bool, has_query: bool
) -> None:
    accepted = set(list(inspect.signature(handler).parameters)[1:])
    needed = set(params) | ({"body"} if has_body else set()) | ({"query"} if has_query else set())
    if needed - accepted:
        raise TypeError(f"{handler.__name__} must accept {sorted(needed - accepted)} after the request")


def _returned_model(handler: Callable[..., Any]) -> type[BaseModel] | None:
    try:
        annotation = inspect.signature(handler, eval_str=True).return_annotation
    except (NameError, TypeError):
        return None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _models_allowing_extra(model: type[BaseModel]) -> list[str]:
    """Names of the model and nested models that would accept unknown fields."""
    loose: list[str] = []
    seen: set[type[BaseModel]] = set()
    pending: list[Any] = [model]
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                continue
            seen.add(annotation)
            if annotation.model_config.get("extra") != "forbid":
                loose.append(annotation.__name__)
            pending.extend(info.annotation for info in annotation.model_fields.values())
        else:
            pending.extend(get_args(annotation))
    return loose


def _list_fields(model: type[BaseModel] | None) -> frozenset[str]:
    if model is None:
        return frozenset()
    return frozenset(
        info.alias or name
        for name, info in model.model_fields.items()
        if get_origin(info.annotation) in (list, tuple, set, frozenset)
    )


# -- request parsing ---------------------------------------------------------------------------


def _check_media_type(route: Route, request: Request) -> None:
    media_type = request.media_type
    charset = _charset(request.header("content-type") or "")
    if media_type not in route.media_types or charset not in (None, "utf-8"):
        sent = media_type or "no Content-Type"
        raise UnsupportedMediaType(f"Send the body as {' or '.join(route.media_types)} (UTF-8); got {sent}.")


def _charset(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _validated_body(route: Route, request: Request) -> BaseModel:
    _check_media_type(route, request)
    assert route.body_model is not None
    try:
        if request.media_type == FORM_MEDIA_TYPE:
            return route.body_model.model_validate(request.form())
        parse_json(request.body)  # rejects what pydantic would silently accept (duplicates, NaN)
        return route.body_model.model_validate_json(request.body)
    except ValidationError as error:
        raise ValidationFailed("The request body is not valid.", errors=_field_errors(error)) from None


def _validated_query(route: Route, query: Mapping[str, list[str]]) -> BaseModel:
    assert route.query_model is not None
    values = {
        key: items if key in route.list_query_fields else items[-1] for key, items in query.items() if items
    }
    try:
        return route.query_model.model_validate(values)
    except ValidationError as error:
        raise ValidationFailed("The query parameters are not valid.", errors=_field_errors(error)) from None


def validation_failed(detail: str, error: ValidationError) -> ValidationFailed:
    """The 422 of a model validated by the handler itself (e.g. after opening a sealed message)."""
    return ValidationFailed(detail, errors=_field_errors(error))


def _field_errors(error: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(part) for part in item["loc"]) or BODY_FIELD, item["msg"])
        for item in error.errors(include_url=False, include_input=False)[:validation_errors_max]
    ]


def _incoming_request(event: Any, context: Any) -> Request:
    """The request as received, before routing; tolerant of runtimes that pass plain dicts."""
    headers = _lower_headers(getattr(event, "headers", None))
    body = getattr(event, "body", b"") or b""
    return Request(
        method=str(getattr(event, "method", "GET") or "GET").upper(),
        path=_normalized_path(getattr(event, "path", "/")),
        route="",
        headers=headers,
        query=_query_lists(getattr(event, "query", None)),
        body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
        request_id=_request_id(headers),
        context=context,
    )


def _lower_headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    items = headers.items() if hasattr(headers, "items") else headers
    lowered: dict[str, str] = {}
    for key, value in items:
        lowered.setdefault(str(key).lower(), str(value))
    return lowered


def _query_lists(query: Any) -> dict[str, list[str]]:
    if query is None:
        return {}
    if hasattr(query, "getlist"):
        return {key: list(query.getlist(key)) for key in query.keys()}
    return {str(key): value if isinstance(value, list) else [str(value)] for key, value in query.items()}


def _normalized_path(path: Any) -> str:
    text = str(path or "/")
    if not text.startswith("/"):
        text = "/" + text
    return text.rstrip("/") or "/"


def _request_id(headers: Mapping[str, str]) -> str:
    for name in REQUEST_ID_SOURCES:
        candidate = headers.get(name, "").strip()
        if REQUEST_ID_PATTERN.match(candidate):
            return candidate
    return uuid.uuid4().hex


def _lookup(table: Mapping[type[BaseException], Any], error: BaseException) -> Any:
    for klass in type(error).__mro__:
        if klass in table:
            return table[klass]
    return None


class _untraced:
    """A trace context for probes: carries an id for the log line, opens no segment."""

    def __init__(self, header: str | None) -> None:
        self.invocation = tracing.Invocation(tracing.parse_trace_header(header))

    def __enter__(self) -> tracing.Invocation:
        return self.invocation

    def __exit__(self, *exc_info: object) -> None:
        return None


# -- idempotency and audit helpers -------------------------------------------------------------


def _stored(response: Response) -> StoredResponse:
    """A rendered response as the idempotency store keeps it (its media type travels as a header)."""
    headers = dict(response.headers)
    if response.body is not None:
        headers = _merged_headers(headers, {"Content-Type": response.media_type})
    return StoredResponse(response.status, response.body or "", headers)


def _from_stored(stored: StoredResponse) -> Response:
    headers = dict(stored.headers)
    media_type = next((v for k, v in headers.items() if k.lower() == "content-type"), JSON_MEDIA_TYPE)
    return Response(stored.body or None, stored.status_code, headers, media_type)


def client_ip_header() -> str:
    """The header the deployed edge sets to the caller's address ($FINFAAS_CLIENT_IP_HEADER)."""
    return os.environ.get(CLIENT_IP_HEADER_ENV, "").strip() or CLIENT_IP_HEADER_DEFAULT


def client_ip(headers: Mapping[str, str], header: str | None = None) -> str | None:
    """The caller's address from the edge's header; None (unknown) when absent or not an IP address."""
    name = (header or client_ip_header()).lower()  # a Request's headers are keyed in lower case
    raw = headers.get(name) or ""
    if name == FORWARDED_FOR_HEADER:
        raw = raw.rsplit(",", 1)[-1]
    raw = raw.strip()
    if not raw or len(raw) > client_ip_chars_max:
        return None
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return None


def _audit_event(route: Route, request: Request, status: int) -> AuditEvent:
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


# -- response rendering ------------------------------------------------------------------------


def _rendered(response: Response) -> Response:
    """The response with its body as text: index.py str()s any body that is not a dict."""
    if response.status == 204 or response.body is None:
        response.body = None
    elif isinstance(response.body, bytes):
        response.body = response.body.decode("utf-8")
    elif not isinstance(response.body, str):
        response.body = _dump_json(response.body)
    return response


def _event_response(response: Response, request_id: str) -> dict[str, Any]:
    content_type = {"Content-Type": response.media_type} if response.body is not None else {}
    headers = _merged_headers(
        DEFAULT_RESPONSE_HEADERS, content_type, response.headers, {REQUEST_ID_HEADER: request_id}
    )
    return {"statusCode": response.status, "body": response.body or "", "headers": headers}


def _merged_headers(*layers: Mapping[str, str]) -> dict[str, str]:
    """Later layers win, whatever the case of the header names."""
    merged: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for name, value in layer.items():
            merged[name.lower()] = (name, value)
    return dict(merged.values())


def _dump_json(body: Any) -> str:
    return json.dumps(body, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
