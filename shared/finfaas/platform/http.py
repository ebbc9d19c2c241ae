"""The HTTP adapter every function is built on: python3-http event -> typed request -> response.

    app = FunctionApp("accounts", errors={AccountFrozen: ErrorSpec(409, "account_frozen", "Account frozen")})

    @app.route("GET", "/accounts/{account_id}", scopes=["accounts:read"])
    def get_account(req: Request, account_id: str) -> Account: ...

    def handle(event, context):
        return app.handle(event, context)
"""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any, Protocol, get_args, get_origin
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, ValidationError

from finfaas.platform import jwt_auth, tracing
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
from finfaas.platform.logging import get_logger, request_context
from finfaas.platform.problems import PROBLEM_MEDIA_TYPE, FieldError, Problem

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

_log = get_logger("http")


class StrictModel(BaseModel):
    """Base for request bodies: unknown fields are rejected, so clients cannot mass-assign."""

    model_config = ConfigDict(extra="forbid")


class Verifier(Protocol):
    def verify(self, token: str) -> jwt_auth.Principal: ...


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

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def shape(self) -> str:
        """The path with parameter names erased: /a/{x} and /a/{y} are the same route."""
        return _PARAM.sub("{}", self.path)


def parse_json(raw: bytes) -> Any:
    """One JSON document; duplicate keys, NaN/Infinity and invalid UTF-8 are refused (400)."""
    if not raw.strip():
        raise MalformedJson("The request body is empty; a JSON document is required.")
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise MalformedJson("The request body is not valid UTF-8.") from None
    except RecursionError:
        raise MalformedJson("The JSON document is nested too deeply.") from None
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


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number.")


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
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a handler; auth is required unless auth=False, and every listed scope is needed."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            route = _build_route(
                method, path, handler, scopes, auth, body, query, response, status, media_types, openapi
            )
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

                self._openapi = build_document(self.name, self.version, self._routes)
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
            _log.info(
                "request",
                method=request.method,
                route=route.path if route else None,
                path=request.path,
                status=response.status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
        return _event_response(response, request.request_id)

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
            return _rendered(self._respond(route, self._call(route, request))), route
        except Exception as error:
            return self._error_response(error, request, log_context), route

    def _resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed: list[str] = []
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method == method:
                return route, match.groupdict()
            allowed.append(route.method)
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

    def _authenticate(
        self, route: Route, request: Request, log_context: dict[str, Any]
    ) -> jwt_auth.Principal | None:
        if not route.auth:
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
        missing = principal.missing_scopes(route.scopes)
        if missing:
            raise Forbidden(
                f"This operation needs scope(s): {' '.join(missing)}.",
                headers={
                    "WWW-Authenticate": f'Bearer realm="finfaas", error="insufficient_scope", '
                    f'scope="{" ".join(route.scopes)}"'
                },
            )
        return principal

    def _get_verifier(self) -> Verifier:
        if self._verifier is None:
            self._verifier = jwt_auth.default_verifier()
        return self._verifier

    def _call(self, route: Route, request: Request) -> Any:
        kwargs: dict[str, Any] = dict(request.path_params)
        if route.query_model is not None:
            kwargs["query"] = _validated_query(route, request.query)
        if route.body_model is not None:
            kwargs["body"] = _validated_body(route, request)
        elif request.body and request.method in BODY_METHODS:
            _check_media_type(route, request)
        return route.handler(request, **kwargs)

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
        if problem is not None:
            return problem, {}
        _log.exception("unhandled exception", error_type=type(error).__name__)
        internal = InternalError(InternalError.detail_public)
        return internal.to_problem(instance), {}


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


def _field_errors(error: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(part) for part in item["loc"]) or "(body)", item["msg"])
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
