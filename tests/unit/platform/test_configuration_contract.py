"""The configuration contract: docs/deploy.md lists every environment variable the runtime code reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
# The suite's own prefixes; botocore's and of-watchdog's variables are listed too, but read by them.
VARIABLE = re.compile(r"^(FINFAAS|AWS|TRANSFERS|RAIL)_[A-Z0-9_]*$")
RUNTIME_SOURCES = [*(ROOT / "shared" / "finfaas").rglob("*.py"), *(ROOT / "functions").glob("*/handler.py")]


def variables_in_code() -> dict[str, str]:
    """Every string literal in the shipped code that names an environment variable -> a file using it."""
    found = {}
    for path in RUNTIME_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.match(node.value):
                found[node.value] = str(path.relative_to(ROOT))
    return found


def variables_in_table() -> set[str]:
    """The names in the first column of the contract table (each in backticks; `X_<NAME>` a family)."""
    text = DEPLOY_DOC.read_text()
    section = text[text.index("## The configuration contract"):]
    section = section[:section.index("\n## ", 1)]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_column = line.split("|")[1]
            names |= set(re.findall(r"`([^`]+)`", first_column))
    return names


def test_every_variable_the_code_reads_is_in_the_deploy_table():
    table = variables_in_table()
    listed = {name.removesuffix("<NAME>") for name in table}
    missing = {name: where for name, where in variables_in_code().items() if name not in listed}
    assert not missing, f"add to docs/deploy.md's configuration contract: {missing}"


def test_the_table_lists_the_addresses_of_functions_and_the_jwks():
    assert {"FINFAAS_GATEWAY_URL", "FINFAAS_FUNCTION_URL_<NAME>", "FINFAAS_JWKS_URL"} <= variables_in_table()
