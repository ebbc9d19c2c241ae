"""Handlers import finfaas as any module does: the image's import path is stack.yml's, not theirs."""

from __future__ import annotations

import ast
from pathlib import Path, PurePosixPath

import pytest
from finfaas_dev.build import load_stack

ROOT = Path(__file__).resolve().parents[3]
HANDLERS = sorted((ROOT / "functions").glob("*/handler.py"))
STACK = load_stack(ROOT / "stack.yml")
IMAGE_FUNCTION_DIR = PurePosixPath("/home/app/function")  # the python3-http image's handler folder


def test_every_function_has_a_handler():
    assert len(HANDLERS) >= 9


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda path: path.parent.name)
def test_no_handler_edits_the_import_path(handler):
    tree = ast.parse(handler.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}

    assert "sys" not in imported
    assert "noqa: E402" not in handler.read_text()


@pytest.mark.parametrize("name", sorted(STACK["functions"]))
def test_the_image_import_path_is_where_the_stack_copies_the_runtime(name):
    copied = STACK["configuration"]["copy"]
    runtime = next(PurePosixPath(path) for path in copied if PurePosixPath(path).name == "finfaas")

    image_path = PurePosixPath(STACK["functions"][name]["environment"]["PYTHONPATH"])

    assert image_path == IMAGE_FUNCTION_DIR / runtime.parent
