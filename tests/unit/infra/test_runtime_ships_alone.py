"""What stack.yml copies into every function image (shared/finfaas and the handlers) stands alone:
it never imports the tooling package, and holds no fakes or test support."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RUNTIME = ROOT / "shared" / "finfaas"
TOOLING = "finfaas_dev"


def shipped_modules(root: Path = ROOT) -> list[Path]:
    """Every Python file an image receives: the runtime package and each function's folder."""
    return sorted([*(root / "shared" / "finfaas").rglob("*.py"), *(root / "functions").rglob("*.py")])


def imported_modules(source: str) -> Iterator[str]:
    """Every module named by an import anywhere in the file, lazy ones inside functions included,
    and by importlib.import_module / __import__ with a literal name."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            )
        ):
            yield node.args[0].value


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
