"""The JSONPath subset of the engine, payload templates (`"key.$"`) and intrinsic functions.

Paths: `$` (the state's input) or `$$` (the context object) followed by any number of
`.field`, `['field']` / `["field"]` and `[index]` (index >= 0). Wildcards, filters, slices,
unions and `..` are refused at load time: a money workflow reads exact fields.
ResultPath is stricter (fields only, no index), since it builds the objects it names.

Intrinsic functions (in a `"key.$"` value): States.Format, States.StringToJson,
States.JsonToString, States.Array, States.ArrayGetItem, States.ArrayLength, States.ArrayContains,
States.MathAdd, States.StringSplit. Arguments are 'strings' (escapes \\' \\{ \\} \\\\),
numbers, true/false/null, paths and nested intrinsic calls. States.UUID and States.MathRandom are
not offered: a Task's request must be the same on every retry, or its idempotency key would be
refused by the function (same key, different body).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from finfaas.platform import jsonio
from finfaas.workflow.errors import (
    INTRINSIC_FAILURE,
    PARAMETER_PATH_FAILURE,
    RESULT_PATH_MATCH_FAILURE,
    PathSyntaxError,
    StatesError,
)

PATH_SUFFIX = ".$"
path_chars_max = 1024
intrinsic_chars_max = 4096
intrinsic_depth_max = 8
string_split_items_max = 1000

_FIELD = re.compile(r"\.([^.\[\]'\"\s]+)")
_QUOTED = re.compile(r"\[(?:'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\")\]")
_INDEX = re.compile(r"\[(\d+)\]")
_UNSUPPORTED_HINT = "wildcards, filters, slices, unions and '..' are not supported"


@dataclass(frozen=True)
class Path:
    """A compiled reference path: which root and the steps below it."""

    text: str
    context: bool  # $$ (context object) rather than $ (state input)
    steps: tuple[str | int, ...]

    def read(
        self, data: Any, context: Mapping[str, Any] | None = None, *, error: str = PARAMETER_PATH_FAILURE
    ) -> Any:
        """The value at this path; a missing field or index raises StatesError(error)."""
        node = (context or {}) if self.context else data
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(node, list) or step >= len(node):
                    raise StatesError(error, f"{self.text}: no index {step}")
                node = node[step]
            else:
                if not isinstance(node, dict) or step not in node:
                    raise StatesError(error, f"{self.text}: no field {step!r}")
                node = node[step]
        return node

    def exists(self, data: Any, context: Mapping[str, Any] | None = None) -> bool:
        try:
            self.read(data, context)
        except StatesError:
            return False
        return True


def parse_path(text: str, *, allow_context: bool = True) -> Path:
    """Compile a reference path of the subset; PathSyntaxError says what is outside it."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise PathSyntaxError(f"{text!r} is not a path: paths start with '$'")
    if len(text) > path_chars_max:
        raise PathSyntaxError(f"path longer than {path_chars_max} characters")
    context = text.startswith("$$")
    if context and not allow_context:
        raise PathSyntaxError(f"{text!r}: the context object ($$) cannot be used here")
    position = 2 if context else 1
    steps: list[str | int] = []
    while position < len(text):
        step, position = _next_step(text, position)
        steps.append(step)
    return Path(text, context, tuple(steps))


def _next_step(text: str, position: int) -> tuple[str | int, int]:
    for pattern in (_FIELD, _QUOTED, _INDEX):
        match = pattern.match(text, position)
        if match is None:
            continue
        if pattern is _INDEX:
            return int(match.group(1)), match.end()
        if pattern is _QUOTED:
            raw = match.group(1) if match.group(1) is not None else match.group(2)
            return re.sub(r"\\(.)", r"\1", raw), match.end()
        return match.group(1), match.end()
    raise PathSyntaxError(f"{text!r}: unsupported syntax at character {position} ({_UNSUPPORTED_HINT})")


def parse_result_path(text: str) -> Path:
    """ResultPath: `$` or fields below it, no indexes and no context object."""
    path = parse_path(text, allow_context=False)
    if any(isinstance(step, int) for step in path.steps):
        raise PathSyntaxError(f"{text!r}: ResultPath names fields only, not array indexes")
    return path


def write_result(target: Any, path: Path, value: Any) -> Any:
    """A copy of target with value placed at path (ResultPath), creating objects on the way."""
    if not path.steps:
        return copy.deepcopy(value)
    if not isinstance(target, dict):
        raise StatesError(RESULT_PATH_MATCH_FAILURE, f"{path.text}: the state input is not an object")
    result = copy.deepcopy(target)
    node = result
    for step in path.steps[:-1]:
        child = node.setdefault(step, {})
        if not isinstance(child, dict):
            raise StatesError(RESULT_PATH_MATCH_FAILURE, f"{path.text}: {step!r} is not an object")
        node = child
    node[path.steps[-1]] = copy.deepcopy(value)
    return result


# --- payload templates (Parameters, ResultSelector, Pass/Result) ----------------------------------


@dataclass(frozen=True)
class Template:
    """A compiled payload template: static JSON where `"name.$"` fields are computed."""

    source: Any
    compiled: Any

    def evaluate(self, data: Any, context: Mapping[str, Any]) -> Any:
        return _evaluate(self.compiled, data, context)

    def uses_context(self, prefix: str) -> bool:
        """Does any path in the template start with this context path (e.g. `$$.Task.Token`)?"""
        return any(text == prefix or text.startswith(prefix + ".") for text in _path_texts(self.compiled))


@dataclass(frozen=True)
class _Computed:
    """A `.$` value: a path or an intrinsic call."""

    expression: Any  # Path or _Call


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple[Any, ...]  # literals, Path or _Call


def compile_template(source: Any) -> Template:
    """Check and compile a payload template; PathSyntaxError names the offending field."""
    return Template(source, _compile(source, "$"))


def _compile(node: Any, where: str) -> Any:
    if isinstance(node, dict):
        compiled: dict[str, Any] = {}
        for key, value in node.items():
            if key.endswith(PATH_SUFFIX):
                if not isinstance(value, str):
                    raise PathSyntaxError(f"{where}.{key}: a '.$' field needs a path or intrinsic function")
                name = key[: -len(PATH_SUFFIX)]
                if name in compiled or name in node:
                    raise PathSyntaxError(f"{where}.{key}: {name!r} is given twice")
                compiled[name] = _Computed(_compile_expression(value, f"{where}.{key}"))
            else:
                compiled[key] = _compile(value, f"{where}.{key}")
        return compiled
    if isinstance(node, list):
        return [_compile(item, f"{where}[{i}]") for i, item in enumerate(node)]
    return node


def _compile_expression(text: str, where: str) -> Any:
    try:
        if text.startswith("States."):
            return _IntrinsicParser(text).parse()
        return parse_path(text)
    except PathSyntaxError as error:
        raise PathSyntaxError(f"{where}: {error}") from None


def _evaluate(node: Any, data: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(node, _Computed):
        return _value(node.expression, data, context, 0)
    if isinstance(node, dict):
        return {key: _evaluate(value, data, context) for key, value in node.items()}
    if isinstance(node, list):
        return [_evaluate(item, data, context) for item in node]
    return copy.deepcopy(node)


def _value(expression: Any, data: Any, context: Mapping[str, Any], depth: int) -> Any:
    if isinstance(expression, Path):
        return copy.deepcopy(expression.read(data, context))
    if isinstance(expression, _Call):
        args = [_value(arg, data, context, depth + 1) for arg in expression.args]
        return _call_intrinsic(expression.name, args)
    return expression


def _path_texts(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, _Computed):
        found.extend(_expression_paths(node.expression))
    elif isinstance(node, dict):
        for value in node.values():
            found.extend(_path_texts(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_path_texts(item))
    return found


def _expression_paths(expression: Any) -> list[str]:
    if isinstance(expression, Path):
        return [expression.text]
    if isinstance(expression, _Call):
        return [text for arg in expression.args for text in _expression_paths(arg)]
    return []


# --- intrinsic functions ----------------------------------------------------------------------


class _IntrinsicParser:
    """Recursive-descent parser of `States.Name(arg, ...)`."""

    def __init__(self, text: str) -> None:
        if len(text) > intrinsic_chars_max:
            raise PathSyntaxError(f"intrinsic function longer than {intrinsic_chars_max} characters")
        self.text = text
        self.position = 0

    def parse(self) -> _Call:
        call = self._call(0)
        self._skip_spaces()
        if self.position != len(self.text):
            raise PathSyntaxError(f"unexpected text after the call: {self.text[self.position :]!r}")
        return call

    def _call(self, depth: int) -> _Call:
        if depth > intrinsic_depth_max:
            raise PathSyntaxError(f"intrinsic calls nest deeper than {intrinsic_depth_max}")
        match = re.compile(r"States\.[A-Za-z]+").match(self.text, self.position)
        if match is None:
            raise PathSyntaxError(f"expected States.<Function>( at character {self.position}")
        name = match.group(0)
        if name not in INTRINSICS:
            raise PathSyntaxError(f"{name} is not supported; supported: {', '.join(sorted(INTRINSICS))}")
        self.position = match.end()
        self._expect("(")
        args: list[Any] = []
        self._skip_spaces()
        if not self._peek(")"):
            args.append(self._argument(depth))
            while self._peek(","):
                self.position += 1
                args.append(self._argument(depth))
        self._expect(")")
        arity_min, arity_max = INTRINSICS[name][1]
        if not arity_min <= len(args) <= arity_max:
            raise PathSyntaxError(f"{name} takes {arity_min}-{arity_max} arguments, got {len(args)}")
        return _Call(name, tuple(args))

    def _argument(self, depth: int) -> Any:
        self._skip_spaces()
        if self._peek("'"):
            return self._string()
        if self._peek("$"):
            return self._path()
        if self.text.startswith("States.", self.position):
            return self._call(depth + 1)
        return self._literal()

    def _string(self) -> str:
        self.position += 1
        chars: list[str] = []
        while self.position < len(self.text):
            char = self.text[self.position]
            if char == "\\" and self.position + 1 < len(self.text):
                escaped = self.text[self.position + 1]
                # \{ and \} stay escaped: States.Format tells a literal brace from a placeholder by them.
                chars.append("\\" + escaped if escaped in "{}" else escaped)
                self.position += 2
                continue
            if char == "'":
                self.position += 1
                return "".join(chars)
            chars.append(char)
            self.position += 1
        raise PathSyntaxError("unterminated string argument")

    def _path(self) -> Path:
        end = self.position
        depth = 0
        while end < len(self.text):
            char = self.text[end]
            if char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
            elif char in ",)" and depth == 0:
                break
            end += 1
        path = parse_path(self.text[self.position : end].strip())
        self.position = end
        return path

    def _literal(self) -> Any:
        match = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null").match(self.text, self.position)
        if match is None:
            raise PathSyntaxError(f"unexpected argument at character {self.position}")
        self.position = match.end()
        try:
            return jsonio.loads(match.group(0))
        except ValueError:  # a number beyond a float's range
            raise PathSyntaxError(f"number out of range at character {match.start()}") from None

    def _skip_spaces(self) -> None:
        while self.position < len(self.text) and self.text[self.position] == " ":
            self.position += 1

    def _peek(self, char: str) -> bool:
        self._skip_spaces()
        return self.text.startswith(char, self.position)

    def _expect(self, char: str) -> None:
        if not self._peek(char):
            raise PathSyntaxError(f"expected {char!r} at character {self.position}")
        self.position += 1


def _fail(message: str) -> StatesError:
    return StatesError(INTRINSIC_FAILURE, message)


def _format(args: list[Any]) -> str:
    template, values = args[0], list(args[1:])
    if not isinstance(template, str):
        raise _fail("States.Format: the first argument must be a string")
    pieces = re.split(r"(\\\{|\\\}|\{\})", template)
    out: list[str] = []
    for piece in pieces:
        if piece == "{}":
            if not values:
                raise _fail("States.Format: more {} than arguments")
            value = values.pop(0)
            out.append(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
        elif piece in ("\\{", "\\}"):
            out.append(piece[1])
        else:
            out.append(piece)
    if values:
        raise _fail("States.Format: more arguments than {}")
    return "".join(out)


def _string_to_json(args: list[Any]) -> Any:
    if not isinstance(args[0], str):
        raise _fail("States.StringToJson: the argument must be a string")
    try:
        return jsonio.loads(args[0])
    except ValueError:
        raise _fail("States.StringToJson: the string is not JSON") from None


def _array_get_item(args: list[Any]) -> Any:
    items, index = args
    if not isinstance(items, list) or not isinstance(index, int) or isinstance(index, bool):
        raise _fail("States.ArrayGetItem: needs an array and an integer index")
    if not 0 <= index < len(items):
        raise _fail(f"States.ArrayGetItem: index {index} out of range")
    return items[index]


def _array_length(args: list[Any]) -> int:
    if not isinstance(args[0], list):
        raise _fail("States.ArrayLength: the argument must be an array")
    return len(args[0])


def _array_contains(args: list[Any]) -> bool:
    if not isinstance(args[0], list):
        raise _fail("States.ArrayContains: the first argument must be an array")
    return args[1] in args[0]


def _math_add(args: list[Any]) -> int:
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise _fail("States.MathAdd: both arguments must be integers")
    return args[0] + args[1]


def _string_split(args: list[Any]) -> list[str]:
    text, separators = args
    if not isinstance(text, str) or not isinstance(separators, str) or not separators:
        raise _fail("States.StringSplit: needs a string and a non-empty separator string")
    parts = [part for part in re.split("|".join(map(re.escape, separators)), text) if part]
    if len(parts) > string_split_items_max:
        raise _fail(f"States.StringSplit: more than {string_split_items_max} items")
    return parts


INTRINSICS: dict[str, tuple[Callable[[list[Any]], Any], tuple[int, int]]] = {
    "States.Format": (_format, (1, 64)),
    "States.StringToJson": (_string_to_json, (1, 1)),
    "States.JsonToString": (lambda a: json.dumps(a[0], separators=(",", ":")), (1, 1)),
    "States.Array": (lambda a: list(a), (0, 64)),
    "States.ArrayGetItem": (_array_get_item, (2, 2)),
    "States.ArrayLength": (_array_length, (1, 1)),
    "States.ArrayContains": (_array_contains, (2, 2)),
    "States.MathAdd": (_math_add, (2, 2)),
    "States.StringSplit": (_string_split, (2, 2)),
}


def _call_intrinsic(name: str, args: list[Any]) -> Any:
    return INTRINSICS[name][0](args)
