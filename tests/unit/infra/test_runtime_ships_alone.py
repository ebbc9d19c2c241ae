"""What stack.yml copies into every function image (shared/finfaas and the handlers) stands alone:
it never imports the tooling package, and holds no fakes or test support."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from finfaas_dev.image_requirements import imported_modules

ROOT = Path(__file__).resolve().parents[3]
RUNTIME = ROOT / "shared" / "finfaas"
TOOLING = "finfaas_dev"


def shipped_modules(root: Path = ROOT) -> list[Path]:
    """Every Python file an image receives: the runtime package and each function's folder."""
    return sorted([*(root / "shared" / "finfaas").rglob("*.py"), *(root / "functions").rglob("*.py")])


def tooling_imports(root: Path = ROOT) -> list[str]:
    found = []
    for path in shipped_modules(root):
        for module in imported_modules(path.read_text()):
            if module.split(".")[0] == TOOLING:
                found.append(f"{path.relative_to(root)}: {module}")
    return found


def test_no_shipped_module_imports_the_tooling_package():
    assert len(shipped_modules()) > 50  # the scan looks where the code is
    assert tooling_imports() == []


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from finfaas_dev.fakes.platform import InMemoryAuditStore\n", "finfaas_dev.fakes.platform"),
        ("def later():\n    import finfaas_dev.testing.workflow as w\n    return w\n",
         "finfaas_dev.testing.workflow"),
        ("import importlib\n\ndef later():\n    return importlib.import_module('finfaas_dev.gateway')\n",
         "finfaas_dev.gateway"),
    ],
)
def test_the_scan_finds_tooling_imports_at_top_level_and_inside_functions(source, module, tmp_path):
    sneaky = tmp_path / "shared" / "finfaas" / "platform" / "sneaky.py"
    sneaky.parent.mkdir(parents=True)
    sneaky.write_text(source)

    assert tooling_imports(tmp_path) == [f"shared/finfaas/platform/sneaky.py: {module}"]


def test_the_runtime_package_holds_no_fakes_or_test_support():
    leftovers = []
    for path in sorted(RUNTIME.rglob("*.py")):
        if path.stem in ("testing", "reference_model") or path.parent.name == "local":
            leftovers.append(str(path.relative_to(ROOT)))
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.startswith(("InMemory", "Fake")):
                leftovers.append(f"{path.relative_to(ROOT)}: {node.name}")

    assert leftovers == []
