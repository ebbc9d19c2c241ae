"""The FunctionApp pipeline: route -> limits -> token -> scopes -> rate limit -> body -> key -> handler
-> audit; the platform routes (health, readiness, OpenAPI) and the error rendering."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from finfaas.platform import jwt_auth, tracing
from finfaas.platform.audit import AuditLog, audit_facts_json, format_audit_time
from finfaas.platform.errors import (
    ErrorSpec,
    ErrorTable,
    Forbidden,
    HttpError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from finfaas.platform.http.audit_events import UNAUDITED_STATUSES, audit_event
from finfaas.platform.http.bodies import check_media_type, validated_body, validated_query
from finfaas.platform.http.incoming import incoming_request
from finfaas.platform.http.messages import JSON_MEDIA_TYPE, Request, Response, TriggerCheck, Verifier
from finfaas.platform.http.rendering import event_response, from_stored, rendered, stored_response
from finfaas.platform.http.routes import (
    AUDIT_MODES,
    AUDIT_OUTBOX,
    AUDIT_SYNC,
    IDEMPOTENCY_MODES,
    IN_TRANSACTION,
    KEYED,
    RATE_LIMIT_DEFAULT,
    STATE_CHANGING_METHODS,
    AuditMode,
    IdempotencyMode,
    Route,
    build_route,
    path_param_chars_max,
)
from finfaas.platform.http.transactional import IdempotentReplay, OutboxAudit, TransactionalIdempotency
from finfaas.platform.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    IdempotencyGuard,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    IdempotencyStoreError,
    RequestScope,
    StoredResponse,
    is_storable,
    required_key,
)
from finfaas.platform.logging import get_logger, request_context
from finfaas.platform.problems import PROBLEM_MEDIA_TYPE, FieldError, Problem
from finfaas.platform.ratelimit import RateLimiter

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
HEALTH_PATH = "/_/health"
READY_PATH = "/_/ready"
OPENAPI_PATH = "/_/openapi.json"
RESILIENCE_PATH = "/_/ops/resilience"
# No id has control characters: a path parameter with one is refused before anything reads it.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# Probes are frequent and uninteresting: no trace segment for them.
UNTRACED_PATHS = frozenset({HEALTH_PATH, READY_PATH, OPENAPI_PATH})
request_body_bytes_max = 1024 * 1024
# Platform stores a function's own error table need not know about.
PLATFORM_ERRORS: dict[type[BaseException], ErrorSpec] = {
    IdempotencyStoreError: ErrorSpec(503, "idempotency_store_unavailable", "Idempotency store unavailable"),
}

_log = get_logger("http")
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

    def built(self) -> T | None:
        """The instance if it exists already; never builds it (a figure must not cost a cold start)."""
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
            route = build_route(
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

    def dynamodb_stats_route(self, dynamodb_calls: Callable[[], Mapping[str, int]]) -> None:
        """Register GET /_/ops/stats (ops scope) for a function whose own figures are its DynamoDB calls."""

        @self.route("GET", "/_/ops/stats", rate_limit=None)
        def stats(req: Request) -> dict[str, Any]:
            """This process's DynamoDB calls by operation and table, and the platform steps' cost."""
            return {"dynamodb_calls": dynamodb_calls(), "steps": self.timings.snapshot()}

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
        self.route("GET", RESILIENCE_PATH, rate_limit=None)(self._resilience)

    def _resilience(self, req: Request) -> dict[str, Any]:
        """This replica's circuit breakers and the requests its rate limiter refused (ops scope)."""
        from finfaas.platform.resilience import breaker_states

        limiter = self._limiter.built()
        return {"function": self.name, "breakers": breaker_states(),
                "rate_limit_rejections": limiter.rejections() if limiter is not None else {},
                "rate_limited": self._limiter.configured}

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
        request = incoming_request(event, context)
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
        answer = event_response(response, request.request_id)
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
        # Last, so a malformed request never takes a trigger's claim (a schedule's period) from a valid one.
        answered = route.trigger.admit(request) if route.trigger is not None else None
        if answered is not None:
            return rendered(answered)
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
            produced.append((response, stored_response(response)))
            return produced[-1][1]

        started = time.perf_counter()
        try:
            answer = guard.run(scope, produce)
        finally:
            # What the claim and the completion cost, the handler's own time left out.
            self.timings.add("idempotency", time.perf_counter() - started - handler_seconds)
        if produced and answer is produced[-1][1]:
            return produced[-1][0]
        return from_stored(answer)

    def _run_in_transaction(self, route: Route, request: Request, kwargs: dict[str, Any],
                            guard: IdempotencyGuard, scope: RequestScope,
                            log_context: dict[str, Any]) -> Response:
        request.idempotency = TransactionalIdempotency(guard, scope)
        try:
            response = self._invoke(route, request, kwargs)
        except IdempotentReplay as replay:
            return from_stored(replay.response)
        except (IdempotencyKeyInUse, IdempotencyKeyReused):
            raise  # about the key, not the operation: never stored under it
        except Exception as error:
            response = self._error_response(error, request, log_context)
        if request.idempotency.recorded:
            return response
        return self._record_outcome(guard, scope, response)

    def _record_outcome(self, guard: IdempotencyGuard, scope: RequestScope, response: Response) -> Response:
        """Store an answer the handler's transaction did not record (a 4xx, a ledger-level replay)."""
        stored = stored_response(response)
        if not is_storable(stored):
            return response
        try:
            with _timed(self.timings, "idempotency"):
                answer = guard.record_outcome(scope, stored)
        except IdempotencyStoreError:
            # The answer is true whether or not it could be stored: give it rather than a 503.
            _log.exception("idempotency outcome not stored")
            return response
        return response if answer is stored else from_stored(answer)

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
            kwargs["query"] = validated_query(route, request.query)
        if route.body_model is not None:
            kwargs["body"] = validated_body(route, request)
        elif request.body and request.method in BODY_METHODS:
            check_media_type(route, request)
        return kwargs

    def _invoke(self, route: Route, request: Request, kwargs: dict[str, Any]) -> Response:
        return rendered(self._respond(route, route.handler(request, **kwargs)))

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
                return rendered(render(error, request))
            except Exception as render_error:
                error = render_error
        problem, headers = self._problem(error, request.path)
        log_context["error_code"] = problem.code
        return rendered(Response(problem.to_dict(), problem.status, headers, PROBLEM_MEDIA_TYPE))

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
        return OutboxAudit(lambda: audit_facts_json(audit_event(route, request, route.status),
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
                    audit_log.append(audit_event(route, request, response.status))
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
