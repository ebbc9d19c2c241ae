"""Deploy targets' settings files (infra/targets/<target>.yaml), validated before anything is written.

Every target is generated from stack.yml plus its settings file; a settings file names every key it
needs and nothing else, so a missing or misspelt key is an error naming it, never a silent default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

TARGETS_DIR = Path("infra/targets")
OPENFAAS, KNATIVE = "openfaas", "knative"

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
Stage = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,32}$")]  # as platform.config checks it
Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")]
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$")]
AccountId = Annotated[str, StringConstraints(pattern=r"^[0-9]{12}$")]
Registry = Annotated[str, StringConstraints(pattern=r"^[a-z0-9.:-]+(/[a-z0-9._-]+)*$")]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]
Header = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,64}$")]
HostPort = Annotated[str, StringConstraints(pattern=r"^[a-z0-9.-]+:[0-9]{1,5}$")]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenFaasSettings(_Settings):
    """What stack.yml's environment must say on OpenFaaS (stack.yml is this target's manifest)."""

    gateway_url: Url  # every call between functions goes through the gateway's /function/<name>
    client_ip_header: Header
    xray_daemon_address: HostPort


class KnativeOverlay(_Settings):
    """One deployment of the base: its namespace, stage, images and AWS account."""

    namespace: Name
    stage: Stage
    image_registry: Registry  # images are <image_registry>/<function>:<image_tag>
    image_tag: Tag
    aws_account_id: AccountId


class KnativeSettings(_Settings):
    """The kustomize base's defaults and each overlay's values."""

    base_namespace: Name
    aws_region: Region
    client_ip_header: Header
    xray_daemon_address: HostPort
    broker_class: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    sqs_service_account: Name  # IntegrationSources read SQS as this ServiceAccount (IRSA on EKS)
    delivery_retries: Annotated[int, Field(ge=0, le=20)]
    delivery_backoff_delay: Annotated[str, StringConstraints(pattern=r"^PT[0-9]+(\.[0-9]+)?S$")]
    overlays: Annotated[dict[Name, KnativeOverlay], Field(min_length=1)]


SETTINGS_MODELS: dict[str, type[_Settings]] = {OPENFAAS: OpenFaasSettings, KNATIVE: KnativeSettings}


class TargetSettingsError(ValueError):
    """A target's settings file is missing, unreadable, or has a missing, unknown or invalid key."""


def settings_path(target: str, root: Path = Path()) -> Path:
    return root / TARGETS_DIR / f"{target}.yaml"


def load_settings(target: str, root: Path = Path()) -> Any:
    """The validated settings of a target; TargetSettingsError naming each bad key."""
    path = settings_path(target, root)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise TargetSettingsError(f"{path}: {error}") from error
    return parse_settings(target, document, path)


def parse_settings(target: str, document: Any, path: Path) -> Any:
    model = SETTINGS_MODELS[target]
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(_problem(item) for item in error.errors())
        raise TargetSettingsError(f"{path}: {problems}") from None


def _problem(item: Any) -> str:
    key = ".".join(str(part) for part in item["loc"]) or "(top level)"
    kind = item["type"]
    if kind == "missing":
        return f"missing key {key}"
    if kind == "extra_forbidden":
        return f"unknown key {key}"
    message = re.sub(r"\s+", " ", item["msg"])
    return f"{key}: {message}"
