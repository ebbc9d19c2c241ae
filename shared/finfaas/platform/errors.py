"""HTTP errors with a fixed status and code, and the table that maps domain exceptions to problems."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from finfaas.platform.problems import PROBLEM_CODE_PATTERN, FieldError, Problem


class HttpError(Exception):
    """Raised by handlers and the platform; carries its own status, code and title."""

    status = 500
    code = "internal_error"
    title = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Iterable[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = tuple(errors)
        self.headers = dict(headers or {})

    def to_problem(self, instance: str | None) -> Problem:
        return Problem(self.status, self.code, self.title, self.detail, instance, self.errors)


class BadRequest(HttpError):
    """The request cannot be read as sent."""

    status, code, title = 400, "bad_request", "Bad request"


class MalformedJson(BadRequest):
    """The body is not one well-formed JSON document."""

    code, title = "malformed_json", "Malformed JSON body"


class Unauthorized(HttpError):
    """No valid bearer token; the body is the same whatever the reason (no oracle)."""

    status, code, title = 401, "unauthorized", "Unauthorized"
    uniform_detail = "A valid bearer token is required."

    def __init__(self, *, header: str = 'Bearer realm="finfaas"') -> None:
        super().__init__(self.uniform_detail, headers={"WWW-Authenticate": header})


class Forbidden(HttpError):
    """Authenticated, but the token lacks a scope the route needs."""

    status, code, title = 403, "insufficient_scope", "Insufficient scope"


class NotFound(HttpError):
    """No such resource (or not one the caller may see)."""

    status, code, title = 404, "not_found", "Not found"


class MethodNotAllowed(HttpError):
    """The path exists but not for this method."""

    status, code, title = 405, "method_not_allowed", "Method not allowed"

    def __init__(self, method: str, allowed: Iterable[str]) -> None:
        allow = ", ".join(sorted(set(allowed)))
        super().__init__(f"{method} is not allowed here; use {allow}.", headers={"Allow": allow})


class Conflict(HttpError):
    """The request conflicts with the current state of the resource."""

    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(HttpError):
    """The body is larger than the route accepts."""

    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(HttpError):
    """The body's Content-Type is not one the route accepts."""

    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class ValidationFailed(HttpError):
    """The body or query parsed but broke the route's schema."""

    status, code, title = 422, "validation_failed", "Validation failed"


class TooManyRequests(HttpError):
    """The caller exceeded a rate limit; retry after the given delay."""

    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after_seconds: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, int(retry_after_seconds)))})


class ServiceUnavailable(HttpError):
    """A dependency is down; the request may succeed if retried later."""

    status, code, title = 503, "service_unavailable", "Service unavailable"


class InternalError(HttpError):
    """An unexpected failure; the body never says more than this."""

    detail_public = "An unexpected error occurred; it has been logged with the request id."


class Refusal(Exception):
    """Base of a capability's refusals mapped through an ErrorTable: `code` is stable and safe to show,
    `errors` holds (field, message) pairs that name fields only, never their values."""

    code = "refused"

    def __init__(self, message: str, *, errors: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.errors = errors


@dataclass(frozen=True)
class ErrorSpec:
    """How one exception class is shown to clients."""

    status: int
    code: str
    title: str

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"error status must be 4xx or 5xx, got {self.status}")
        if not PROBLEM_CODE_PATTERN.match(self.code):
            raise ValueError(f"error code must be snake_case, got {self.code!r}")


class ErrorTable:
    """Exception class -> (status, code, title), looked up along the class hierarchy, never by message."""

    def __init__(self, entries: Mapping[type[BaseException], ErrorSpec] | None = None) -> None:
        self._entries: dict[type[BaseException], ErrorSpec] = {}
        for exc_type, spec in (entries or {}).items():
            self.add(exc_type, spec.status, spec.code, spec.title)

    def add(self, exc_type: type[BaseException], status: int, code: str, title: str) -> None:
        if issubclass(exc_type, HttpError):
            raise TypeError(f"{exc_type.__name__} already carries its status; do not map it")
        self._entries[exc_type] = ErrorSpec(status, code, title)

    def lookup(self, exc: BaseException) -> ErrorSpec | None:
        for klass in type(exc).__mro__:
            spec = self._entries.get(klass)
            if spec is not None:
                return spec
        return None

    def problem_for(self, exc: BaseException, instance: str | None) -> Problem | None:
        """The problem for a mapped exception; its message is the detail (domain messages are public)."""
        spec = self.lookup(exc)
        if spec is None:
            return None
        errors = _field_errors(getattr(exc, "errors", ()))
        detail = str(exc) or spec.title
        return Problem(spec.status, spec.code, spec.title, detail, instance, errors)

    def specs(self) -> list[ErrorSpec]:
        return list(self._entries.values())


def _field_errors(raw: object) -> tuple[FieldError, ...]:
    """Field errors from a domain exception: FieldError items or (field, message) pairs."""
    if not isinstance(raw, (list, tuple)):
        return ()
    found: list[FieldError] = []
    for item in raw:
        if isinstance(item, FieldError):
            found.append(item)
        elif isinstance(item, tuple) and len(item) == 2 and all(isinstance(part, str) for part in item):
            found.append(FieldError(item[0], item[1]))
    return tuple(found)
