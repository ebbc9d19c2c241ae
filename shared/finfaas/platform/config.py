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
