"""Structured logs: one JSON line per event on stdout, request context attached, PII redacted."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

ROOT_LOGGER_NAME = "finfaas"
REDACTED = "[REDACTED]"
# A key is sensitive when one of these appears as a whole word of it (customer_name, accessToken,
# X-Authorization, national_id...): redacting a harmless field costs less than leaking a real one.
SENSITIVE_KEY_WORDS = frozenset(
    {
        "name", "username", "password", "passwd", "passphrase", "token", "authorization", "phone",
        "mobile", "secret", "cookie", "email", "address", "national_id", "ssn", "tax_id",
        "date_of_birth", "dob", "iban", "card_number", "pan", "cvv", "pin", "credentials",
        "private_key", "signature",
    }
)
# Operational names that contain a sensitive word but never hold personal data.
SAFE_KEYS = frozenset(
    {
        "function_name", "table_name", "queue_name", "state_name", "event_name", "service_name",
        "rule_name", "route_name", "logger_name", "host_name", "hostname", "ip_address", "token_type",
    }
)
# Tokens and credentials that may hide inside free text (messages, exception strings).
SECRET_TEXT_PATTERNS = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), REDACTED),
    # key=value / "key": "value" pairs naming a credential or PII field.
    (
        re.compile(
            r"(?i)\b((?:client_)?secret|password|passwd|token|authorization|national_id|phone)"
            r"(\"?\s*[:=]\s*\"?)[^\s\",;&]+"
        ),
        r"\1\2" + REDACTED,
    ),
)
redaction_depth_max = 8
log_value_chars_max = 4096

_request_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "finfaas_request_context", default=None
)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def normalized_key(key: str) -> str:
    """customerName / Customer-Name / customer_name -> customer_name."""
    return _CAMEL_BOUNDARY.sub("_", key).replace("-", "_").lower()


def is_sensitive_key(key: str) -> bool:
    normalized = normalized_key(key)
    if normalized in SAFE_KEYS:
        return False
    padded = f"_{normalized}_"
    return any(f"_{word}_" in padded for word in SENSITIVE_KEY_WORDS)


def scrub_text(text: str) -> str:
    """Hide bearer tokens and JWTs inside free text; cap the length."""
    for pattern, replacement in SECRET_TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    if len(text) > log_value_chars_max:
        text = text[:log_value_chars_max] + "...[truncated]"
    return text


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of value with sensitive keys' values replaced, at any nesting depth."""
    if depth > redaction_depth_max:
        return REDACTED
    if isinstance(value, Mapping):
        return {
            str(key): REDACTED if is_sensitive_key(str(key)) else redact(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(item, depth + 1) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub_text(str(value))


class JsonLineFormatter(logging.Formatter):
    """Renders a record as one JSON object: ts, level, logger, msg, request context, fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub_text(record.getMessage()),
        }
        line.update(_request_context.get() or {})
        fields = getattr(record, "fields", None)
        if fields:
            line.update(redact(fields))
        if record.exc_info:
            line["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["stack"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(line, default=str, separators=(",", ":"))


def _iso_utc(epoch_seconds: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_seconds))
    return f"{seconds}.{int(epoch_seconds % 1 * 1000):03d}Z"


class StructuredLogger:
    """A logger taking keyword fields: log.info("transfer posted", transfer_id=...)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def debug(self, msg: str, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields)

    def exception(self, msg: str, **fields: Any) -> None:
        """An error with the current exception's stack trace (logs only, never responses)."""
        self._log(logging.ERROR, msg, fields, exc_info=True)

    def _log(self, level: int, msg: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, msg, extra={"fields": fields}, exc_info=exc_info)


def configure(stream: IO[str] | None = None, level: int = logging.INFO) -> None:
    """Send finfaas logs as JSON lines to stream (stdout by default); replaces an earlier setup."""
    root = logging.getLogger(ROOT_LOGGER_NAME)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or _CurrentStdout())
    handler.setFormatter(JsonLineFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


class _CurrentStdout:
    """Whatever sys.stdout is at write time (test runners and servers swap it)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def get_logger(component: str) -> StructuredLogger:
    root = logging.getLogger(ROOT_LOGGER_NAME)
    if not root.handlers:
        configure()
    return StructuredLogger(logging.getLogger(f"{ROOT_LOGGER_NAME}.{component}"))


@contextmanager
def request_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Attach fields (request_id, trace_id, sub...) to every log line written inside the block."""
    context = dict(fields)
    token = _request_context.set(context)
    try:
        yield context
    finally:
        _request_context.reset(token)
