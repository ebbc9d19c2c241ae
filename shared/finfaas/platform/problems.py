"""RFC 9457 problem details: the one body shape every error response takes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PROBLEM_MEDIA_TYPE = "application/problem+json"
# Where every served OpenAPI document keeps problem_json_schema().
PROBLEM_SCHEMA_REF = {"$ref": "#/components/schemas/Problem"}
# Opaque, stable and never dereferenced: clients switch on `type` (or `code`), not on `title`.
PROBLEM_TYPE_PREFIX = "urn:finfaas:problem:"
PROBLEM_CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
# Members a problem body always has; extensions may not shadow them.
PROBLEM_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code", "errors"})


@dataclass(frozen=True)
class FieldError:
    """One invalid input: where it is (dotted path) and what is wrong with it."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True)
class Problem:
    """An error response body; `type` is derived from the stable `code`."""

    status: int
    code: str
    title: str
    detail: str
    instance: str | None = None
    errors: tuple[FieldError, ...] = ()
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"a problem has a 4xx or 5xx status, got {self.status}")
        if not PROBLEM_CODE_PATTERN.match(self.code):
            raise ValueError(f"problem code must be snake_case, got {self.code!r}")
        shadowed = PROBLEM_MEMBERS.intersection(self.extensions)
        if shadowed:
            raise ValueError(f"problem extensions may not replace {sorted(shadowed)}")

    @property
    def type(self) -> str:
        return problem_type(self.code)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            "errors": [error.to_dict() for error in self.errors],
        }
        if self.instance is not None:
            body["instance"] = self.instance
        body.update(self.extensions)
        return body


def problem_type(code: str) -> str:
    """The `type` URI of a problem code."""
    return PROBLEM_TYPE_PREFIX + code


def problem_json_schema() -> dict[str, Any]:
    """JSON Schema of a problem body, for the OpenAPI document."""
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail", "code", "errors"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "code": {"type": "string", "pattern": PROBLEM_CODE_PATTERN.pattern},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
        "additionalProperties": True,
    }
