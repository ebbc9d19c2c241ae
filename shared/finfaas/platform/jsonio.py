"""JSON parsing for every document the suite reads back: request bodies, queue messages, cursors,
stored items. The standard parser recurses once per nesting level, so a small document of a few
thousand brackets raises RecursionError (a 500, or a crashed consumer); here depth is measured first,
by a linear scan with no recursion, and a document deeper than the bound is refused as a ValueError.

    document = jsonio.loads(raw)                      # ValueError (JsonRejected) when refused
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

# Far above anything the suite writes (ASL definitions and saga inputs stay under ten levels) and far
# below the interpreter's recursion limit (1,000 frames, shared with the caller's own stack).
json_depth_max = 64
# Documents the suite built itself from bounded inputs and stored (execution state: a state's
# Parameters may wrap a 64-level input a few levels deeper at each step) are read back with more room.
stored_json_depth_max = 256

# A JSON string: quote, then non-quote non-backslash characters or escape pairs, then quote. An
# unterminated string runs to the end (the parser refuses that document anyway). The alternatives are
# disjoint, so matching is linear.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\Z)', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class JsonRejected(ValueError):
    """The text is not a JSON document this suite accepts."""


class JsonTooDeep(JsonRejected):
    """The document nests arrays and objects deeper than the bound."""


def nesting_depth(text: str) -> int:
    """The deepest array/object nesting in text, brackets inside strings not counted (no recursion)."""
    brackets = _BRACKET.findall(_STRING.sub("", text))
    return max(accumulate(_STEP[b] for b in brackets), default=0)


def loads(
    raw: str | bytes | bytearray,
    *,
    depth_max: int = json_depth_max,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """One JSON document, refused (JsonRejected) when deeper than depth_max or holding NaN/Infinity
    literals or numbers too large for a float."""
    text = _text(raw)
    if nesting_depth(text) > depth_max:
        raise JsonTooDeep(f"The JSON document nests deeper than {depth_max} levels.")
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook, parse_constant=_no_constant,
                          parse_float=_finite_float)
    except RecursionError:  # the scan makes this unreachable; kept so no caller ever sees it
        raise JsonTooDeep("The JSON document is nested too deeply.") from None


def _text(raw: str | bytes | bytearray) -> str:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, (bytes, bytearray)):
        raise JsonRejected(f"JSON text must be str or bytes, not {type(raw).__name__}")
    # As json.loads does: UTF-8, UTF-16 or UTF-32, told apart by the first bytes.
    return bytes(raw).decode(json.detect_encoding(raw), "surrogatepass")


def _no_constant(name: str) -> Any:
    raise JsonRejected(f"{name} is not a JSON number.")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise JsonRejected(f"The number {literal[:20]} is too large.")
    return value
