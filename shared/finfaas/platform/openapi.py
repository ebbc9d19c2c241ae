"""The OpenAPI 3.1 document of a function, generated from its routes and pydantic models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from finfaas.platform.problems import PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA_REF, problem_json_schema

if TYPE_CHECKING:
    from finfaas.platform.http import Route

OPENAPI_VERSION = "3.1.0"
# (model, mode) -> the $ref of its JSON Schema; pydantic types the model loosely (dataclasses too).
SchemaRefs = dict[tuple[Any, JsonSchemaMode], dict[str, Any]]
REF_TEMPLATE = "#/components/schemas/{model}"
PROBLEM_REF = {"$ref": "#/components/responses/Problem"}
RATE_LIMITED_REF = {"$ref": "#/components/responses/RateLimited"}
BEARER_SCHEME = "bearerAuth"
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotency-Replayed"
IDEMPOTENCY_KEY_CHARS_MAX = 255
IDEMPOTENCY_KEY_DESCRIPTION = (
    "Unique per intended operation (1-255 printable ASCII characters), kept at least 24 h. "
    "A retry with the same key and the same request replays the first answer "
    f"({REPLAYED_HEADER}: true); the same key with a different request is refused (422); "
    "a retry while the first attempt is still running is refused (409, Retry-After)."
)


def build_document(
    title: str, version: str, routes: Sequence[Route], *, rate_limited: bool = False
) -> dict[str, Any]:
    """The document; rate_limited says the app enforces route.rate_limit (429 is then declared)."""
    refs, schemas = _model_schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(title, route, refs, schemas, rate_limited)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    schemas["Problem"] = problem_json_schema()
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": f"FinFaaS {title}", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Problem": {
                    "description": "RFC 9457 problem details",
                    "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA_REF}},
                },
                "RateLimited": {
                    "description": "Rate limit reached for this principal; retry after Retry-After seconds",
                    "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
                    "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA_REF}},
                },
            },
            "securitySchemes": {BEARER_SCHEME: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _model_schemas(
    routes: Sequence[Route],
) -> tuple[SchemaRefs, dict[str, Any]]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    pairs: tuple[tuple[type[BaseModel] | None, JsonSchemaMode], ...]
    for route in routes:
        pairs = (
            (route.body_model, "validation"),
            (route.query_model, "validation"),
            (route.response_model, "serialization"),
            (_trigger_answer_model(route), "serialization"),
        )
        for model, mode in pairs:
            if model is not None and (model, mode) not in wanted:
                wanted.append((model, mode))
    if not wanted:
        return {}, {}
    refs, definitions = models_json_schema(wanted, ref_template=REF_TEMPLATE)
    return dict(refs), dict(definitions.get("$defs", {}))


def _operation(
    title: str,
    route: Route,
    refs: SchemaRefs,
    schemas: dict[str, Any],
    rate_limited: bool,
) -> dict[str, Any]:
    parameters = _path_parameters(route) + _query_parameters(route, refs, schemas)
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [title],
        "parameters": parameters + _idempotency_parameters(route),
        "responses": _responses(route, refs, rate_limited),
        "security": [{BEARER_SCHEME: list(route.scopes)}] if route.auth else [],
    }
    if route.scopes:
        operation["x-required-scopes"] = list(route.scopes)
    if route.body_model is not None:
        schema = refs[(route.body_model, "validation")]
        operation["requestBody"] = {
            "required": True,
            "content": {media_type: {"schema": schema} for media_type in route.media_types},
        }
    extra = dict(route.openapi_extra)
    # A route adds or replaces single responses (e.g. OAuth's own error bodies); the rest stay declared.
    operation["responses"].update(extra.pop("responses", {}))
    operation.update(extra)
    return operation


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    from finfaas.platform.http import path_param_chars_max  # http builds documents through this module

    # A longer value is answered 404 before the handler runs, so the document says where ids end.
    schema = {"type": "string", "minLength": 1, "maxLength": path_param_chars_max}
    return [
        {"name": name, "in": "path", "required": True, "schema": dict(schema)} for name in route.param_names
    ]


def _query_parameters(
    route: Route,
    refs: SchemaRefs,
    schemas: dict[str, Any],
) -> list[dict[str, Any]]:
    if route.query_model is None:
        return []
    ref = refs[(route.query_model, "validation")]["$ref"]
    definition = schemas[ref.rsplit("/", 1)[-1]]
    required = set(definition.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": schema}
        for name, schema in definition.get("properties", {}).items()
    ]


def _idempotency_parameters(route: Route) -> list[dict[str, Any]]:
    if route.idempotency is None:
        return []
    return [{
        "name": IDEMPOTENCY_KEY_HEADER,
        "in": "header",
        "required": route.idempotency != "optional",
        "description": IDEMPOTENCY_KEY_DESCRIPTION,
        "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_CHARS_MAX},
    }]


def _trigger_answer_model(route: Route) -> type[BaseModel] | None:
    """The body a route's trigger answers with in the handler's place, if it declares one."""
    model = getattr(route.trigger, "answer_model", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _is_rate_limited(route: Route, rate_limited: bool) -> bool:
    return rate_limited and route.auth and route.rate_limit is not None


def _responses(
    route: Route, refs: SchemaRefs, rate_limited: bool
) -> dict[str, Any]:
    success: dict[str, Any] = {"description": route.summary}
    if route.response_model is not None:
        schema = refs[(route.response_model, "serialization")]
        answer_model = _trigger_answer_model(route)
        if answer_model is not None:  # the trigger may answer in the handler's place (a schedule's skip)
            schema = {"anyOf": [schema, refs[(answer_model, "serialization")]]}
        success["content"] = {"application/json": {"schema": schema}}
    if route.idempotency is not None:
        success["headers"] = {REPLAYED_HEADER: {
            "description": "Present on a replay of the answer stored under the Idempotency-Key",
            "schema": {"type": "string", "enum": ["true"]},
        }}
    responses: dict[str, Any] = {str(route.status): success}
    for status in _problem_statuses(route):
        responses[status] = PROBLEM_REF
    if _is_rate_limited(route, rate_limited):
        responses["429"] = RATE_LIMITED_REF
    responses["default"] = PROBLEM_REF
    return responses


def _problem_statuses(route: Route) -> list[str]:
    statuses = ["400", "404", "413", "500"]
    if route.idempotency is not None:
        statuses += ["409", "422"]
    if route.auth:
        statuses.append("401")
    if route.scopes:
        statuses.append("403")
    if route.body_model is not None or route.method in ("POST", "PUT", "PATCH"):
        statuses.append("415")
    if route.body_model is not None or route.query_model is not None:
        statuses.append("422")
    return sorted(set(statuses) - {str(route.status)})
