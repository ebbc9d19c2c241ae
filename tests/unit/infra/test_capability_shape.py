"""Each capability package keeps its layers: a store adapter reads a capability's model, ports and
errors, never its use cases or HTTP face; and a capability's model, errors and ports import neither."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ROOT / "shared" / "finfaas" / "services"
STORES = ROOT / "shared" / "finfaas" / "store"
CAPABILITY_LAYERS = ("model", "errors", "ports")
USE_CASE_LAYERS = ("service", "api")


def capability_imports(path: Path) -> Iterator[tuple[str, str]]:
    """(capability, layer) for every import of finfaas.services.<capability>[.<layer>] in the file."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["finfaas", "services"] and len(parts) > 2:
                yield parts[2], ".".join(parts[3:])


def layering_faults(stores: Path = STORES, services: Path = SERVICES) -> list[str]:
    faults = []
    for path in sorted(stores.glob("*.py")):
        for capability, layer in capability_imports(path):
            if layer not in CAPABILITY_LAYERS:
                faults.append(f"{path.name} imports {capability}.{layer or '(the package)'}")
    for package in sorted(p for p in services.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        for layer in CAPABILITY_LAYERS:
            path = package / f"{layer}.py"
            if not path.exists():
                continue
            for capability, imported in capability_imports(path):
                if imported in USE_CASE_LAYERS:
                    faults.append(f"{package.name}/{path.name} imports {capability}.{imported}")
    return faults


def test_stores_and_lower_layers_never_import_use_cases_or_the_http_face():
    assert len(list(STORES.glob("*_store.py"))) > 5  # the scan looks where the code is
    assert layering_faults() == []


def test_the_scan_finds_a_store_reaching_into_a_service(tmp_path):
    stores, services = tmp_path / "store", tmp_path / "services"
    (services / "risk").mkdir(parents=True)
    (services / "risk" / "__init__.py").write_text("")
    (services / "risk" / "model.py").write_text("from finfaas.services.risk.api import assessment_view\n")
    stores.mkdir()
    (stores / "risk_store.py").write_text("from finfaas.services.risk.service import RiskService\n")

    assert layering_faults(stores, services) == [
        "risk_store.py imports risk.service",
        "risk/model.py imports risk.api",
    ]
