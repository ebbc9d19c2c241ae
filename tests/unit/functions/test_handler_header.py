"""Every handler opens with the same block putting the image's copied shared package on sys.path."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HANDLERS = sorted((ROOT / "functions").glob("*/handler.py"))

# The one form of the block; change it here and in every handler together.
HEADER = """\
# The shared package on the path: in the function image stack.yml's `configuration.copy` puts it next
# to this file, outside site-packages; where finfaas is installed (.venv) the folder is absent and this
# changes nothing. Same text in every handler (tests/unit/functions/test_handler_header.py); the imports
# after it are exempt from E402 in pyproject.toml.
import sys
from pathlib import Path

_SHARED = Path(__file__).resolve().parent / "shared"
if _SHARED.is_dir() and str(_SHARED) not in sys.path:
    sys.path.insert(0, str(_SHARED))
"""


def test_every_function_has_a_handler():
    assert len(HANDLERS) >= 9


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda path: path.parent.name)
def test_the_shared_package_block_comes_right_after_the_docstring(handler):
    text = handler.read_text()
    docstring = ast.parse(text).body[0]
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)

    after_docstring = "".join(text.splitlines(keepends=True)[docstring.end_lineno :]).lstrip("\n")

    assert after_docstring.startswith(HEADER)


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda path: path.parent.name)
def test_no_handler_silences_e402_line_by_line(handler):
    assert "noqa: E402" not in handler.read_text()
