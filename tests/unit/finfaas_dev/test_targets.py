"""Target settings files: a missing or unknown key is an error naming it, and nothing is written."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import yaml
from finfaas_dev import build, targets

ROOT = Path(__file__).resolve().parents[3]


def _project(tmp_path: Path, target: str, change) -> Path:
    """A copy of stack.yml, the functions and the runtime (a build checks their requirements first), the
    target's settings, the settings changed by `change`."""
    shutil.copy(ROOT / "stack.yml", tmp_path / "stack.yml")
    for folder in ("functions", "shared/finfaas"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    settings = yaml.safe_load(targets.settings_path(target, ROOT).read_text())
    change(settings)
    path = targets.settings_path(target, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(settings))
    return tmp_path / "stack.yml"


def _build(stack: Path, **flags) -> int:
    parser = argparse.ArgumentParser()
    build.add_arguments(parser)
    args = parser.parse_args(["--stack", str(stack), *(f"--{flag}" for flag in flags)])
    return build.run(args)


def _drop(key: str):
    return lambda settings: settings.pop(key)


def _add(key: str):
    return lambda settings: settings.update({key: "x"})


def _drop_in_overlay(key: str):
    return lambda settings: settings["overlays"]["dev"].pop(key)


@pytest.mark.parametrize(("target", "flag", "change", "said"), [
    ("knative", "knative", _drop("aws_region"), "missing key aws_region"),
    ("knative", "knative", _add("aws_regoin"), "unknown key aws_regoin"),
    ("knative", "knative", _drop_in_overlay("image_tag"), "missing key overlays.dev.image_tag"),
])
def test_a_bad_settings_file_names_the_key_and_writes_nothing(tmp_path, capsys, target, flag, change, said):
    # GIVEN a target settings file with a key missing or unknown
    stack = _project(tmp_path, target, change)
    # WHEN the target is built
    code = _build(stack, **{flag: True})
    # THEN the build refuses, naming the key, and writes no file
    assert code == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "infra" / "knative").exists()


@pytest.mark.parametrize(("change", "said"), [
    (_drop("gateway_url"), "missing key gateway_url"),
    (_add("function_namespace"), "unknown key function_namespace"),
])
def test_a_bad_openfaas_settings_file_names_the_key(change, said):
    # stack.yml is the OpenFaaS target itself: its settings are read to check it (tests/unit/infra)
    document = yaml.safe_load(targets.settings_path(targets.OPENFAAS, ROOT).read_text())
    change(document)
    with pytest.raises(targets.TargetSettingsError, match=said):
        targets.parse_settings(targets.OPENFAAS, document, Path("openfaas.yaml"))


def test_an_invalid_value_names_its_key():
    document = yaml.safe_load(targets.settings_path(targets.KNATIVE, ROOT).read_text())
    document["overlays"]["prod"]["namespace"] = "Not A Namespace"
    with pytest.raises(targets.TargetSettingsError, match="overlays.prod.namespace"):
        targets.parse_settings(targets.KNATIVE, document, Path("knative.yaml"))


def test_the_committed_settings_build_every_target(tmp_path):
    # GIVEN the repository's own settings
    stack = _project(tmp_path, "knative", lambda settings: None)
    shutil.copytree(ROOT / "infra" / "targets", tmp_path / "infra" / "targets", dirs_exist_ok=True)
    # THEN the Knative target builds, and a file no longer generated is removed
    stale = tmp_path / "infra" / "knative" / "base" / "gone.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("kind: Stale\n")
    assert _build(stack, knative=True) == 0
    assert (tmp_path / "infra" / "knative" / "overlays" / "prod" / "kustomization.yaml").is_file()
    assert (tmp_path / "infra" / "knative" / "base" / "relay-schedule.yaml").is_file()
    assert not stale.exists()
