"""Body and query parsing: one JSON document or form, validated against the route's models."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError

from finfaas.platform import jsonio
from finfaas.platform.errors import (
    BadRequest,
    MalformedJson,
    UnsupportedMediaType,
    ValidationFailed,
)
from finfaas.platform.problems import FieldError

if TYPE_CHECKING:
    from finfaas.platform.http.messages import Request
    from finfaas.platform.http.routes import Route

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
form_fields_max = 64
validation_errors_max = 50
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


def _duplicate_json_key(key: str) -> Exception:
    return ValueError(f"Duplicate key {key!r} in JSON object.")


def _unique_keys(
    pairs: list[tuple[str, Any]], refusal: Callable[[str], Exception] = _duplicate_json_key
) -> dict[str, Any]:
    # Parsers disagree on which duplicate wins; refusing them removes the ambiguity.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise refusal(key)
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
    return _unique_keys(pairs, lambda key: BadRequest(f"Form parameter {key!r} appears more than once."))


def check_media_type(route: Route, request: Request) -> None:
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


def validated_body(route: Route, request: Request) -> BaseModel:
    check_media_type(route, request)
    assert route.body_model is not None
    try:
        if request.media_type == FORM_MEDIA_TYPE:
            return route.body_model.model_validate(request.form())
        parse_json(request.body)  # rejects what pydantic would silently accept (duplicates, NaN)
        return route.body_model.model_validate_json(request.body)
    except ValidationError as error:
        raise ValidationFailed("The request body is not valid.", errors=_field_errors(error)) from None


def validated_query(route: Route, query: Mapping[str, list[str]]) -> BaseModel:
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
