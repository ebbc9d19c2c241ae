"""stack.yml (OpenFaaS format) parsed into typed function specs the local runtime can run.

Validation is strict where a mistake would silently change behaviour (misspelt keys, non-string
labels, unknown durations) and lenient where faas-cli itself is (unused deployment keys).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCALE_ZERO_LABEL = "com.openfaas.scale.zero"
SCALE_ZERO_DURATION_LABEL = "com.openfaas.scale.zero-duration"
TOPIC_ANNOTATION = "topic"
# OpenFaaS Pro's autoscaler idles a function after 15 minutes unless its label says otherwise.
IDLE_SECONDS_DEFAULT = 15 * 60.0
FUNCTION_NAME_LENGTH_MAX = 63  # a Kubernetes DNS-1123 label, as OpenFaaS requires
LOCAL_LANGS = ("python3-http", "python3-http-debian")
# of-watchdog's fprocess for the python3-http template (shown as envProcess by /system/functions).
PYTHON3_HTTP_FPROCESS = "python index.py"

# faas-cli substitutes ${NAME:-default} from its environment before parsing (drone/envsubst); the local
# runtime and the generated targets take the defaults, so what they make never depends on a shell.
_SUBSTITUTION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TOP_LEVEL_KEYS = {"version", "provider", "functions", "configuration"}
# Every key faas-cli knows for a function; the local runtime uses a subset and ignores the rest.
_FUNCTION_KEYS = {
    "lang",
    "handler",
    "image",
    "fprocess",
    "environment",
    "environment_file",
    "secrets",
    "skip_build",
    "constraints",
    "labels",
    "annotations",
    "limits",
    "requests",
    "readonly_root_filesystem",
    "build_options",
    "build_args",
    "platforms",
    "namespace",
}
_DURATION_UNITS_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


class StackError(ValueError):
    """stack.yml is missing, malformed, or describes something the local runtime cannot run."""


@dataclass(frozen=True)
class FunctionSpec:
    """One function of the stack, as the local runtime needs it."""

    name: str
    lang: str
    handler_dir: Path
    image: str
    environment: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    fprocess: str = PYTHON3_HTTP_FPROCESS

    @property
    def scales_to_zero(self) -> bool:
        return self.labels.get(SCALE_ZERO_LABEL, "false").lower() == "true"

    @property
    def idle_seconds_before_stop(self) -> float:
        raw = self.labels.get(SCALE_ZERO_DURATION_LABEL)
        return IDLE_SECONDS_DEFAULT if raw is None else parse_duration_seconds(raw)

    @property
    def topics(self) -> tuple[str, ...]:
        """Queue logical names this function subscribes to (comma-separated, as connectors accept)."""
        raw = self.annotations.get(TOPIC_ANNOTATION, "")
        return tuple(t.strip() for t in raw.split(",") if t.strip())

    def timeout_seconds(self, env_name: str) -> float | None:
        """A watchdog timeout from the environment (exec_timeout, read_timeout...), if set."""
        raw = self.environment.get(env_name)
        return None if raw is None else parse_duration_seconds(raw)


@dataclass(frozen=True)
class Stack:
    path: Path
    gateway_url: str
    functions: dict[str, FunctionSpec]


def parse_duration_seconds(raw: str) -> float:
    """A Go duration ("5m", "1h30m", "250ms") or whole seconds ("30"), as the watchdog accepts."""
    text = str(raw).strip()
    if text.isdigit():
        return float(text)
    if text == "0":
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise StackError(f"invalid duration {raw!r}: use a Go duration such as 30s, 5m or 1h30m")
    return sum(float(number) * _DURATION_UNITS_SECONDS[unit] for number, unit in parts)


def load_stack(path: Path) -> Stack:
    """Read and validate a stack file; handler folders resolve against the file's folder."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise StackError(f"cannot read stack file {path}: {error}") from error
    return parse_stack(text, Path(path))


def with_defaults(text: str, path: Path) -> str:
    """The stack text with each ${NAME:-default} at its default; a ${NAME} without one is an error."""
    def default(match: re.Match[str]) -> str:
        if match["default"] is None:
            raise StackError(f"{path}: ${{{match['name']}}} needs a default (${{{match['name']}:-value}})")
        return match["default"]

    return _SUBSTITUTION.sub(default, text)


def parse_stack(text: str, path: Path) -> Stack:
    text = with_defaults(text, path)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise StackError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise StackError(f"{path}: expected a mapping with 'provider' and 'functions'")
    _reject_unknown(document, _TOP_LEVEL_KEYS, f"{path}")
    provider = _mapping(document.get("provider"), f"{path}: provider")
    if provider.get("name") != "openfaas":
        raise StackError(f"{path}: provider.name must be 'openfaas', got {provider.get('name')!r}")
    functions = _mapping(document.get("functions"), f"{path}: functions")
    if not functions:
        raise StackError(f"{path}: 'functions' is empty")
    base_dir = Path(path).resolve().parent
    specs = {name: _function_spec(name, raw, base_dir, path) for name, raw in functions.items()}
    return Stack(path=Path(path), gateway_url=str(provider.get("gateway", "")), functions=specs)


def _function_spec(name: Any, raw: Any, base_dir: Path, path: Path) -> FunctionSpec:
    where = f"{path}: function {name!r}"
    if not isinstance(name, str) or len(name) > FUNCTION_NAME_LENGTH_MAX or not _NAME_PATTERN.match(name):
        raise StackError(f"{where}: name must be lowercase letters, digits and '-' (at most 63)")
    fn = _mapping(raw, where)
    _reject_unknown(fn, _FUNCTION_KEYS, where)
    lang = _required_string(fn, "lang", where)
    if lang not in LOCAL_LANGS:
        raise StackError(f"{where}: lang {lang!r} cannot run locally; supported: {', '.join(LOCAL_LANGS)}")
    handler_dir = (base_dir / _required_string(fn, "handler", where)).resolve()
    if not (handler_dir / "handler.py").is_file():
        raise StackError(f"{where}: {handler_dir}/handler.py not found")
    labels = _string_map(fn.get("labels"), f"{where}: labels", coerce=False)
    spec = FunctionSpec(
        name=name,
        lang=lang,
        handler_dir=handler_dir,
        image=str(fn.get("image") or f"{name}:latest"),
        environment=_string_map(fn.get("environment"), f"{where}: environment", coerce=True),
        labels=labels,
        annotations=_string_map(fn.get("annotations"), f"{where}: annotations", coerce=False),
        secrets=_string_list(fn.get("secrets"), f"{where}: secrets"),
        fprocess=str(fn.get("fprocess") or PYTHON3_HTTP_FPROCESS),
    )
    _validate_durations(spec, where)
    return spec


def _validate_durations(spec: FunctionSpec, where: str) -> None:
    try:
        spec.idle_seconds_before_stop  # noqa: B018 - parsed now so a typo fails at load, not at idle time
        for env_name in ("exec_timeout", "read_timeout", "write_timeout"):
            spec.timeout_seconds(env_name)
    except StackError as error:
        raise StackError(f"{where}: {error}") from error
    if spec.scales_to_zero and spec.idle_seconds_before_stop <= 0:
        raise StackError(f"{where}: {SCALE_ZERO_DURATION_LABEL} must be positive")


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StackError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _reject_unknown(mapping: dict, known: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in mapping if k not in known)
    if unknown:
        raise StackError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _required_string(fn: dict, key: str, where: str) -> str:
    value = fn.get(key)
    if not isinstance(value, str) or not value:
        raise StackError(f"{where}: '{key}' is required and must be a string")
    return value


def _string_map(value: Any, where: str, coerce: bool) -> dict[str, str]:
    """Labels and annotations must be quoted strings (as the OpenFaaS CRD demands); env scalars coerce."""
    result: dict[str, str] = {}
    for key, item in _mapping(value, where).items():
        if isinstance(item, str):
            result[str(key)] = item
        elif coerce and isinstance(item, bool):
            result[str(key)] = "true" if item else "false"
        elif coerce and isinstance(item, int | float):
            result[str(key)] = str(item)
        else:
            raise StackError(f"{where}: value of {key!r} must be a quoted string, got {item!r}")
    return result


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise StackError(f"{where}: expected a list of names")
    return tuple(value)
