"""Configuration from environment variables and OpenFaaS secret files, read once at start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

OPENFAAS_SECRETS_DIR = Path("/var/openfaas/secrets")
LOCAL_SECRETS_DIR_DEFAULT = Path(".finfaas/secrets")
DEFAULT_STAGE = "local"
DEFAULT_REGION = "us-east-1"
RESOURCE_PREFIX = "finfaas"
GATEWAY_URL_ENV = "FINFAAS_GATEWAY_URL"
GATEWAY_URL_DEFAULT = "http://127.0.0.1:8080"  # the local gateway
# A function's own address (Knative: its Service's cluster address); unset, calls go through the gateway.
FUNCTION_URL_ENV_PREFIX = "FINFAAS_FUNCTION_URL_"
JWKS_URL_ENV = "FINFAAS_JWKS_URL"
JWKS_PATH = "/.well-known/jwks.json"
JWT_ISSUER_DEFAULT = "finfaas-auth"
JWT_AUDIENCE_DEFAULT = "finfaas"
XRAY_DAEMON_ADDRESS_DEFAULT = "127.0.0.1:2000"
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y", "t"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", "f", ""})
# A function's own client credentials are the secret `<function>-client`.
SERVICE_CLIENT_SECRET_SUFFIX = "-client"  # noqa: S105 - part of a secret's name


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    stage: str
    region: str
    secrets_dir: Path

    def resource_name(self, logical: str) -> str:
        """Physical name of a table or queue: finfaas-<stage>-<logical>."""
        return f"{RESOURCE_PREFIX}-{self.stage}-{logical}"


def _validated_stage(raw: str) -> str:
    if not raw or not all(c.isalnum() or c == "-" for c in raw) or len(raw) > 32:
        raise ConfigError(f"FINFAAS_STAGE must be 1-32 letters, digits or '-', got {raw!r}")
    return raw


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings; validated on first use and then fixed."""
    return Settings(
        stage=_validated_stage(os.environ.get("FINFAAS_STAGE", DEFAULT_STAGE)),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        secrets_dir=Path(os.environ.get("FINFAAS_SECRETS_DIR", str(LOCAL_SECRETS_DIR_DEFAULT))),
    )


def resource_name(logical: str) -> str:
    return settings().resource_name(logical)


def read_secret(name: str, required: bool = True) -> str | None:
    """An OpenFaaS secret (/var/openfaas/secrets/<name>), else the local secrets folder."""
    for folder in (OPENFAAS_SECRETS_DIR, settings().secrets_dir):
        path = folder / name
        if path.is_file():
            return path.read_text().strip()
    if required:
        raise ConfigError(
            f"secret {name!r} not found in {OPENFAAS_SECRETS_DIR} or {settings().secrets_dir}"
        )
    return None


def env_flag(name: str, default: bool = False) -> bool:
    """A boolean environment variable; anything but a clear yes/no is a configuration error."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def env_int(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """An integer environment variable (decimal digits, an optional sign); anything else is a
    configuration error naming the variable. Ranges are the reader's to check."""
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or not raw.strip():
        return default
    text = raw.strip()
    if len(text) > int_setting_chars_max or not _INTEGER.fullmatch(text):
        raise ConfigError(f"{name} must be an integer, got {raw!r}")
    return int(text)


int_setting_chars_max = 20  # an int64 and its sign
_INTEGER = re.compile(r"[+-]?[0-9]+")
# /function/<name>/<route>: the gateway path of a suite function, as callers and ASL tasks name it.
_FUNCTION_PATH = re.compile(r"^/function/(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)(?P<route>[/?#].*)?$")


def function_url_env(function: str) -> str:
    """The variable holding a function's own address: FINFAAS_FUNCTION_URL_<NAME> (- becomes _)."""
    return FUNCTION_URL_ENV_PREFIX + function.upper().replace("-", "_")


@dataclass(frozen=True)
class FunctionAddresses:
    """Where each suite function answers: its own address if configured, else the gateway's route."""

    gateway_url: str
    own_urls: Mapping[str, str] = field(default_factory=dict)  # function -> base URL, no trailing /

    def url(self, function: str) -> str:
        """The base URL a function's routes hang from (no trailing slash)."""
        own = self.own_urls.get(function)
        return own if own else f"{self.gateway_url.rstrip('/')}/function/{function}"

    def route_path(self, function: str, route: str) -> str:
        """The path a client uses for one of a function's routes (a Location header): below the
        gateway's /function/<name>, or the route itself where the function has its own address."""
        return route if self.own_urls.get(function) else f"/function/{function}{route}"

    def resolve(self, path: str) -> str:
        """The URL of a gateway path /function/<name>/<route>; any other path is taken from the gateway."""
        match = _FUNCTION_PATH.match(path)
        if match is None:
            return self.gateway_url.rstrip("/") + path
        return self.url(match["name"]) + (match["route"] or "")


def addresses_of(where: str | FunctionAddresses) -> FunctionAddresses:
    """Addresses as given, or a bare gateway URL's (every function through that gateway)."""
    return where if isinstance(where, FunctionAddresses) else FunctionAddresses(where)


def function_addresses(environ: Mapping[str, str] | None = None) -> FunctionAddresses:
    """Addresses from FINFAAS_GATEWAY_URL and every FINFAAS_FUNCTION_URL_<NAME> set."""
    environ = os.environ if environ is None else environ
    own = {
        name[len(FUNCTION_URL_ENV_PREFIX):].lower().replace("_", "-"): value.strip().rstrip("/")
        for name, value in environ.items()
        if name.startswith(FUNCTION_URL_ENV_PREFIX) and value.strip()
    }
    return FunctionAddresses(environ.get(GATEWAY_URL_ENV) or GATEWAY_URL_DEFAULT, own)


@dataclass(frozen=True)
class AuthSettings:
    jwks_url: str
    issuer: str
    audience: str


@lru_cache(maxsize=1)
def auth_settings() -> AuthSettings:
    """Where verifiers fetch the JWKS and which issuer and audience tokens must name."""
    return AuthSettings(
        jwks_url=os.environ.get(JWKS_URL_ENV) or function_addresses().url("auth") + JWKS_PATH,
        issuer=os.environ.get("FINFAAS_JWT_ISSUER") or JWT_ISSUER_DEFAULT,
        audience=os.environ.get("FINFAAS_JWT_AUDIENCE") or JWT_AUDIENCE_DEFAULT,
    )


TRACING_XRAY, TRACING_OTEL, TRACING_OFF = "xray", "otel", "off"
TRACING_BACKENDS = (TRACING_XRAY, TRACING_OTEL, TRACING_OFF)


@dataclass(frozen=True)
class TracingSettings:
    enabled: bool
    daemon_address: str
    sample_all: bool = False
    # xray: aws-xray-sdk to the X-Ray daemon (UDP); otel: OpenTelemetry, OTLP/HTTP to a collector
    # (OTEL_EXPORTER_OTLP_ENDPOINT, e.g. the ADOT collector), X-Ray trace ids and header.
    backend: str = TRACING_XRAY


def tracing_settings() -> TracingSettings:
    """FINFAAS_TRACING=xray|otel|off; unset, X-Ray is opt-in: off unless AWS_XRAY_SDK_ENABLED says
    true (the SDK alone defaults to on)."""
    backend = os.environ.get("FINFAAS_TRACING", "").strip().lower()
    if backend and backend not in TRACING_BACKENDS:
        raise ConfigError(f"FINFAAS_TRACING must be one of {', '.join(TRACING_BACKENDS)}, got {backend!r}")
    if not backend:
        backend = TRACING_XRAY if env_flag("AWS_XRAY_SDK_ENABLED", default=False) else TRACING_OFF
    return TracingSettings(
        enabled=backend != TRACING_OFF,
        backend=backend if backend != TRACING_OFF else TRACING_XRAY,
        daemon_address=os.environ.get("AWS_XRAY_DAEMON_ADDRESS") or XRAY_DAEMON_ADDRESS_DEFAULT,
        # Local development traces every request; deployed functions use X-Ray's default rules.
        sample_all=env_flag("FINFAAS_XRAY_SAMPLE_ALL", default=False),
    )
