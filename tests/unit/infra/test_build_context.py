"""Each function imports the shared package from its own build context, as in the image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from finfaas_dev.build import function_build_context, load_stack

ROOT = Path(__file__).resolve().parents[3]
STACK = load_stack(ROOT / "stack.yml")

# What the python3-http image does: WORKDIR /home/app, `function/` a package (the Dockerfile touches
# function/__init__.py before copying the handler over it), then index.py's `from function import handler`.
# The image has no tooling package and only what function/requirements.txt and the template (Flask,
# waitress) install, but this interpreter's virtualenv has everything: refuse the rest, as the image would.
IMAGE_IMPORT = """
import importlib.metadata, json, pathlib, sys

TEMPLATE_DISTRIBUTIONS = {"flask", "waitress", "werkzeug", "jinja2", "itsdangerous", "click", "markupsafe",
                          "blinker"}
wanted = {line.split("==")[0].strip().lower().replace("_", "-")
          for line in pathlib.Path("function/requirements.txt").read_text().splitlines() if "==" in line}
installed = {module: {d.lower().replace("_", "-") for d in dists}
             for module, dists in importlib.metadata.packages_distributions().items()}

class OnlyTheImage:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top == "finfaas_dev":
            raise ModuleNotFoundError(f"No module named {name!r} (not in a function image)")
        dists = installed.get(top)
        if top != "finfaas" and dists and not dists & (wanted | TEMPLATE_DISTRIBUTIONS):
            raise ModuleNotFoundError(f"No module named {name!r} (not in function/requirements.txt)")
        return None

sys.meta_path.insert(0, OnlyTheImage())
pathlib.Path("function/__init__.py").touch(exist_ok=True)
sys.path.insert(0, ".")
from function import handler
import finfaas

class Event:
    body = b""
    headers = {}
    method = "GET"
    query = {}
    path = "/_/health"

class Context:
    hostname = "probe"

reply = handler.handle(Event(), Context())
print(json.dumps({"finfaas": finfaas.__file__, "status": reply["statusCode"]}))
"""


IMAGE_WORKDIR = "/home/app"  # the python3-http image's WORKDIR, where the build context's files land


def _image_environment(name: str, context: Path) -> dict[str, str]:
    """This interpreter's environment with the function's stack.yml PYTHONPATH, read inside the context."""
    image_path = STACK["functions"][name]["environment"]["PYTHONPATH"]
    assert image_path.startswith(IMAGE_WORKDIR + "/")
    return {**os.environ, "PYTHONPATH": str(context / image_path.removeprefix(IMAGE_WORKDIR + "/"))}


def _locked_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.lower().replace("_", "-")] = version.strip()
    return pins


@pytest.mark.parametrize("name", sorted(STACK["functions"]))
def test_function_imports_shared_package_from_its_build_context(name, tmp_path):
    context = function_build_context(name, STACK, ROOT, tmp_path)

    assert (context / "function" / "shared" / "finfaas" / "__init__.py").is_file()
    assert not [path for path in context.rglob("finfaas_dev*")], "the tooling package reached the image"
    reply = subprocess.run(
        [sys.executable, "-c", IMAGE_IMPORT], cwd=context, env=_image_environment(name, context),
        capture_output=True, text=True, timeout=60,
    )

    assert reply.returncode == 0, reply.stderr
    seen = json.loads(reply.stdout.strip().splitlines()[-1])
    assert seen["status"] == 200
    assert Path(seen["finfaas"]).resolve().is_relative_to(context.resolve())


@pytest.mark.parametrize("name", sorted(STACK["functions"]))
def test_function_requirements_are_pinned_to_the_lock(name):
    pins = _locked_pins()
    requirements = ROOT / STACK["functions"][name]["handler"] / "requirements.txt"
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        package, _, version = line.partition("==")
        key = package.split("[", 1)[0].lower().replace("_", "-")
        assert version, f"{name}: {line!r} is not pinned"
        assert pins.get(key) == version, f"{name}: {line!r} differs from requirements.lock"


# The image's index.py, as the build context holds it, answering what upstream's Flask answers itself.
IMAGE_INDEX_PROBE = """
import json, pathlib, sys
pathlib.Path("function/__init__.py").touch(exist_ok=True)
sys.path.insert(0, ".")
import index

client = index.app.test_client()
answers = []
for method, path in (("OPTIONS", "/_/ops/stats"), ("TRACE", "/_/health"), ("GET", "/payments/a%0Ab")):
    reply = client.open(path, method=method)
    answers.append([reply.status_code, reply.headers.get("Content-Type"), reply.headers.get("Allow")])
print(json.dumps(answers))
"""


def test_build_context_carries_the_index_that_lets_the_handler_answer_every_request(tmp_path):
    context = function_build_context("rail", STACK, ROOT, tmp_path)

    reply = subprocess.run(
        [sys.executable, "-c", IMAGE_INDEX_PROBE], cwd=context, env=_image_environment("rail", context),
        capture_output=True, text=True, timeout=60,
    )

    assert reply.returncode == 0, reply.stderr
    problem = "application/problem+json"
    assert json.loads(reply.stdout.strip().splitlines()[-1]) == [
        [405, problem, "GET, HEAD"], [405, problem, "GET, HEAD"], [404, problem, None],
    ]
