"""Configuration from environment variables and OpenFaaS secret files, read once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

OPENFAAS_SECRETS_DIR = Path("/var/openfaas/secrets")
LOCAL_SECRETS_DIR_DEFAULT = Path(".finfaas/secrets")
DEFAULT_STAGE = "local"
DEFAULT_REGION = "us-east-1"
RESOURCE_PREFIX = "finfaas"
JWKS_URL_DEFAULT = "http://127.0.0.1:8080/function/auth/.well-known/jwks.json"
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


@dataclass(frozen=True)
class AuthSettings:
    jwks_url: str
    issuer: str
    audience: str


@lru_cache(maxsize=1)
def auth_settings() -> AuthSettings:
    """Where verifiers fetch the JWKS and which issuer and audience tokens must name."""
    return AuthSettings(
        jwks_url=os.environ.get("FINFAAS_JWKS_URL") or JWKS_URL_DEFAULT,
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
