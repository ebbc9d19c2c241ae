"""Every state machine in infra/statemachines passes the real ASL validator and the engine's loader."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from finfaas.workflow.asl import DEFINITION_SUFFIX, definitions_dir, load_definition_file
from finfaas_dev.tools import npm_tool_bin

VALIDATOR_SECONDS_MAX = 60
DEFINITIONS = sorted(definitions_dir().glob(f"*{DEFINITION_SUFFIX}"))


def _validate(path: Path) -> subprocess.CompletedProcess:
    validator = npm_tool_bin("asl-validator")
    if not validator.exists():
        pytest.fail(f"{validator} is missing: run `finfaas tools install` (make tools)")
    return subprocess.run(
        [str(validator), "--json-path", str(path)],
        capture_output=True,
        text=True,
        timeout=VALIDATOR_SECONDS_MAX,
        check=False,
    )


def test_the_repository_has_definitions():
    assert DEFINITIONS, f"no *{DEFINITION_SUFFIX} in {definitions_dir()}"


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_asl_validator_accepts_the_definition(path: Path):
    result = _validate(path)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.name)
def test_the_engine_loads_the_definition(path: Path):
    definition = load_definition_file(path)

    assert definition.name == path.name[: -len(DEFINITION_SUFFIX)]


def test_the_validator_refuses_a_task_that_names_a_bare_function(tmp_path: Path):
    # The check above can fail: a Resource that Step Functions would not accept is refused.
    bad = tmp_path / "bare.asl.json"
    bad.write_text(
        json.dumps(
            {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "function:transfers", "End": True}}}
        )
    )

    assert _validate(bad).returncode != 0
