"""An image installs only its function's requirements.txt: the file must name what the code imports."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from finfaas_dev import build
from finfaas_dev.image_requirements import check_function, check_stack

ROOT = Path(__file__).resolve().parents[3]
STACK = build.load_stack(ROOT / "stack.yml")


@pytest.mark.parametrize("result", check_stack(STACK, ROOT), ids=lambda r: r.name)
def test_each_function_requirements_name_what_it_imports_and_pin_what_they_install(result):
    assert result.problems == []
    assert "pydantic" in result.imported  # the scan reached the handler's imports


def _project(tmp_path: Path, requirements: str, shared_module: str) -> Path:
    """A project with one function `f` whose handler imports finfaas.platform.extra."""
    (tmp_path / "functions" / "f").mkdir(parents=True)
    (tmp_path / "functions" / "f" / "handler.py").write_text(
        "import json\nimport six\nfrom finfaas.platform import extra\n")
    (tmp_path / "functions" / "f" / "requirements.txt").write_text(requirements)
    platform = tmp_path / "shared" / "finfaas" / "platform"
    platform.mkdir(parents=True)
    (tmp_path / "shared" / "finfaas" / "__init__.py").write_text("")
    (platform / "__init__.py").write_text("")
    (platform / "extra.py").write_text(shared_module)
    stack = {"functions": {"f": {"lang": "python3-http", "handler": "./functions/f", "image": "f:1"}}}
    (tmp_path / "stack.yml").write_text(yaml.safe_dump(stack))
    return tmp_path


LAZY_YAML = "def later():\n    import yaml\n    return yaml\n"


def test_a_module_imported_lazily_through_the_runtime_package_must_be_in_the_requirements(tmp_path):
    # GIVEN a handler reaching a runtime module whose function imports yaml, which requirements.txt lacks
    root = _project(tmp_path, "six==1.17.0\n", LAZY_YAML)

    result = check_function("f", root / "functions" / "f", root / "shared")

    assert result.problems == [
        "f: module 'yaml' (imported by finfaas/platform/extra.py) needs pyyaml, "
        "missing from functions/f/requirements.txt"
    ]


def test_requirements_naming_every_import_pass(tmp_path):
    root = _project(tmp_path, "six==1.17.0\nPyYAML==6.0.4  # the runtime's lazy import\n", LAZY_YAML)

    assert check_function("f", root / "functions" / "f", root / "shared").problems == []


def test_zoneinfo_needs_tzdata_since_the_alpine_image_has_no_time_zone_database(tmp_path):
    # GIVEN a runtime module that reads a time zone, and requirements without tzdata, then with it
    root = _project(tmp_path, "six==1.17.0\n", "from zoneinfo import ZoneInfo\n")
    refused = check_function("f", root / "functions" / "f", root / "shared").problems
    (root / "functions" / "f" / "requirements.txt").write_text("six==1.17.0\ntzdata==2026.6\n")

    assert refused == ["f: module 'tzdata' (imported by finfaas/platform/extra.py) needs tzdata, "
                       "missing from functions/f/requirements.txt"]
    assert check_function("f", root / "functions" / "f", root / "shared").problems == []


def test_a_dependency_pip_would_add_unpinned_and_a_requirement_nothing_imports_are_named(tmp_path):
    root = _project(tmp_path, "python-dateutil==2.9.0.post0\n", "")

    problems = check_function("f", root / "functions" / "f", root / "shared").problems

    assert problems == [
        "f: module 'six' (imported by handler.py) needs six, missing from functions/f/requirements.txt",
        "f: six is installed by its requirements but not pinned in functions/f/requirements.txt",
        "f: 'python-dateutil==2.9.0.post0' in functions/f/requirements.txt is imported by nothing the "
        "function runs",
    ]


def test_the_tooling_package_is_refused_in_a_function(tmp_path):
    root = _project(tmp_path, "six==1.17.0\n", "import finfaas_dev.gateway\n")

    problems = check_function("f", root / "functions" / "f", root / "shared").problems

    assert problems == [
        "f: finfaas/platform/extra.py imports finfaas_dev, the tooling package, which no image has"]


def test_build_refuses_the_stack_naming_function_and_module_and_writes_nothing(tmp_path, capsys):
    root = _project(tmp_path, "six==1.17.0\n", LAZY_YAML)
    args = argparse.Namespace(
        stack=root / "stack.yml", build_dir=root / "build", knative=False, template=False,
        shrinkwrap=True, report=False)

    assert build.run(args) == 1

    assert "f: module 'yaml'" in capsys.readouterr().err
    assert not (root / "build").exists()


def test_report_gives_each_function_its_requirements_size_and_shipped_runtime_files():
    report = build.image_report(STACK, ROOT)

    assert set(report) == set(STACK["functions"])
    runtime_files = sum(1 for p in (ROOT / "shared" / "finfaas").rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts)
    for figures in report.values():
        assert figures["shared_files"] == runtime_files and figures["tooling_files"] == 0
        assert figures["requirements_bytes"] > figures["template_bytes"] > 0
    # auth alone hashes passwords: argon2 is in its image and no other
    assert report["auth"]["distributions"] > report["accounts"]["distributions"]
