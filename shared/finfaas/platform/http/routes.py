"""Route building: a handler's registration checked and compiled into a Route."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, get_args, get_origin

from pydantic import BaseModel

from finfaas.platform import jwt_auth
from finfaas.platform.http.incoming import normalized_path

if TYPE_CHECKING:
    from finfaas.platform.http.messages import TriggerCheck

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Every route under this prefix needs the ops scope, whatever its registration says; one that changes
# something (a state-changing method) needs ops:act as well, so a read-only operator cannot act.
OPS_PATH_PREFIX = "/_/ops/"
path_param_chars_max = 256
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IdempotencyMode = Literal["required", "optional", "in_transaction", "keyed"]
IDEMPOTENCY_MODES = ("required", "optional", "in_transaction", "keyed")
IN_TRANSACTION: Final = "in_transaction"
KEYED: Final = "keyed"
RATE_LIMIT_DEFAULT = "default"
AuditMode = Literal["sync", "outbox"]
AUDIT_MODES = ("sync", "outbox")
AUDIT_SYNC: Final = "sync"
AUDIT_OUTBOX: Final = "outbox"


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


def build_route(
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
        if method in STATE_CHANGING_METHODS:
            scope_list = tuple(dict.fromkeys((*scope_list, jwt_auth.OPS_ACT_SCOPE)))
    loose = _models_allowing_extra(body) if body is not None else []
    if loose:
        raise TypeError(f"{', '.join(loose)} must set extra='forbid' (derive from StrictModel)")
    pattern, params = _compile_path(path)
    _check_signature(handler, params, body is not None, query is not None)
    return Route(
        method=method,
        path=normalized_path(path),
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
    normalized = normalized_path(path)
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
