"""Deployment artefacts derived from stack.yml: each target's manifests and faas-cli build contexts.

stack.yml is the single source of truth for the function list; each target adds its settings file
(infra/targets/<target>.yaml). OpenFaaS deploys stack.yml itself (a test checks it against its settings);
`finfaas build --knative` writes infra/knative/ (finfaas_dev.knative), and a test keeps the committed
files in sync.
A settings file with a missing or unknown key stops the build before anything is written.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from finfaas_dev import knative, targets
from finfaas_dev.image_requirements import check_stack


def load_stack(path: Path = Path("stack.yml")) -> dict:
    """stack.yml with faas-cli's ${NAME:-default} substitutions at their defaults."""
    from finfaas_dev.stackfile import with_defaults

    return yaml.safe_load(with_defaults(path.read_text(), path))


BUILD_DIR = Path("build")
HANDLER_OVERLAY = "function"  # where faas-cli puts the handler inside the template's context
SKIPPED_HANDLER_ENTRIES = frozenset({"build", "template", "__pycache__"})
# The project's index.py (harness/index.py) replaces the template's: upstream, Flask answers OPTIONS,
# TRACE and paths its converter rejects with text/html before the handler runs.
TEMPLATE_INDEX = Path(__file__).resolve().parent / "harness" / "index.py"
TEMPLATE_DIR = Path("template/python3-http")  # where `faas-cli template store pull python3-http` puts it


def overlay_template_index(folder: Path) -> Path:
    """Write the project's index.py into a template folder or a build context (next to Dockerfile)."""
    target = Path(folder) / "index.py"
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder} does not exist: pull the python3-http template first")
    shutil.copy2(TEMPLATE_INDEX, target)
    return target


def _copy(source: Path, destination: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def function_build_context(name: str, stack: dict, root: Path, build_dir: Path) -> Path:
    """The `function/` part of a faas-cli build context, laid out as faas-cli's CreateBuildContext does:
    the handler folder's files, then every `configuration.copy` path at the same relative place."""
    context = build_dir / name
    if context.exists():
        shutil.rmtree(context)
    handler_dst = context / HANDLER_OVERLAY
    handler_dst.mkdir(parents=True)
    handler_src = root / stack["functions"][name]["handler"]
    for entry in sorted(handler_src.iterdir()):
        if entry.name not in SKIPPED_HANDLER_ENTRIES:
            _copy(entry, handler_dst / entry.name)
    for extra in (stack.get("configuration") or {}).get("copy") or []:
        source = (root / extra).resolve()
        if not source.is_relative_to(root.resolve()) or source == root.resolve():
            raise ValueError(f"copy path {extra!r} must be a folder inside the project")
        _copy(source, handler_dst / Path(extra))
    overlay_template_index(context)
    return context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--knative", action="store_true",
        help="write infra/knative/base and infra/knative/overlays/<name> (infra/targets/knative.yaml)",
    )
    parser.add_argument(
        "--shrinkwrap", action="store_true",
        help="lay out build/<fn>/function as `faas-cli build --shrinkwrap` does (handler + runtime package)",
    )
    parser.add_argument(
        "--template", action="store_true",
        help=f"put the project's index.py into {TEMPLATE_DIR} (after faas-cli template store pull)",
    )
    parser.add_argument(
        "--report", action="store_true",
        help="print, per function, the installed size of its requirements and the files shipped from shared/ "
             "(JSON)",
    )
    parser.add_argument("--stack", type=Path, default=Path("stack.yml"))
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR)


class RequirementsIncomplete(RuntimeError):
    """A function's requirements.txt misses what it imports (or pins less than it installs)."""


def check_requirements(stack: dict, root: Path) -> None:
    """Refuse a stack whose functions' images would lack a module their code imports."""
    problems = [problem for result in check_stack(stack, root) for problem in result.problems]
    if problems:
        raise RequirementsIncomplete("\n".join(problems))


def _distribution_bytes(name: str) -> int:
    files = importlib.metadata.distribution(name).files or []
    return sum(f.size or 0 for f in files)


def image_report(stack: dict, root: Path) -> dict[str, dict]:
    """Per function: what its requirements install (sizes as this virtualenv's RECORD files say, which
    are those of the same pinned wheels) and what the build context ships from shared/."""
    report = {}
    checked = {result.name: result for result in check_stack(stack, root)}
    with tempfile.TemporaryDirectory(prefix="finfaas-report-") as scratch:
        for name in sorted(stack["functions"]):
            result = checked[name]
            own = result.installed - result.template
            context = function_build_context(name, stack, root, Path(scratch))
            shipped = [p for p in (context / HANDLER_OVERLAY / "shared").rglob("*") if p.is_file()]
            report[name] = {
                "distributions": len(own),
                "requirements_bytes": sum(map(_distribution_bytes, own)),
                "template_bytes": sum(map(_distribution_bytes, result.template)),
                "shared_files": len(shipped),
                "shared_bytes": sum(p.stat().st_size for p in shipped),
                "tooling_files": sum(1 for p in shipped if "finfaas_dev" in p.parts),
            }
    return report


def run(args: argparse.Namespace) -> int:
    stack = load_stack(args.stack)
    root = args.stack.resolve().parent
    try:  # every settings file is read and checked before anything is written
        knative_settings = targets.load_settings(targets.KNATIVE, root) if args.knative else None
    except targets.TargetSettingsError as error:
        print(f"finfaas build: {error}; nothing written", file=sys.stderr)
        return 2
    try:
        check_requirements(stack, root)
    except RequirementsIncomplete as error:
        print(f"finfaas build: refused, an image would miss what its function imports:\n{error}",
              file=sys.stderr)
        return 1
    if args.report:
        print(json.dumps(image_report(stack, root), indent=2, sort_keys=True))
    if knative_settings is not None:
        for path in knative.write_knative(stack, knative_settings, root / knative.KNATIVE_DIR):
            print(path)
    if args.template:
        print(overlay_template_index(args.stack.resolve().parent / TEMPLATE_DIR))
    if args.shrinkwrap:
        for name in sorted(stack["functions"]):
            print(function_build_context(name, stack, args.stack.resolve().parent, args.build_dir))
    return 0
