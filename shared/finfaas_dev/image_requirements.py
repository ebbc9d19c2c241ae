"""What a function's image must install, derived from what its handler imports.

An image installs only the python3-http template's requirements and the function's own
requirements.txt (faas-cli's Dockerfile), while the dev virtualenv has everything: a module the
handler reaches (through the runtime package, lazy imports inside functions included) that no
listed distribution brings fails only in the image. So the imports are read from the source, each
third-party module is mapped to the distribution that provides it in this virtualenv, and the
function's requirements.txt must name it, and pin every distribution those depend on.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

RUNTIME_PACKAGE = "finfaas"
TOOLING_PACKAGE = "finfaas_dev"
# template/python3-http/requirements.txt upstream: installed before the function's own file.
TEMPLATE_REQUIREMENTS = ("flask", "waitress")
# Standard-library modules that read their data from a distribution where the OS has none: the
# python3-http image is Alpine, which has no time-zone database, so zoneinfo needs tzdata there.
STDLIB_DATA_MODULES = {"zoneinfo": "tzdata"}
HANDLER_FILE = "handler.py"
REQUIREMENTS_FILE = "requirements.txt"


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """ast.walk, but not into `if TYPE_CHECKING:` bodies, which never run (their else does)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if _is_type_checking(node):
            assert isinstance(node, ast.If)
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def imported_modules(source: str, submodules: bool = False) -> Iterator[str]:
    """Every module named by an absolute import anywhere in the file, lazy ones inside functions
    included (not those under `if TYPE_CHECKING:`), and by importlib.import_module / __import__ with
    a literal name. With submodules, also `a.b` for `from a import b`, since b may be a module."""
    for node in runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            if submodules:
                yield from (f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
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


@cache
def _imports_of(path: Path) -> tuple[str, ...]:
    return tuple(dict.fromkeys(imported_modules(path.read_text(), submodules=True)))


def _runtime_file(module: str, shared: Path) -> Path | None:
    """The file of a runtime module (a package's __init__.py), or None if it is not one."""
    base = shared.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(module: str) -> Iterator[str]:
    parts = module.split(".")
    for end in range(1, len(parts) + 1):
        yield ".".join(parts[:end])


def reached_files(handler: Path, shared: Path) -> list[Path]:
    """The handler and every runtime module it imports, directly or through others, lazily or not."""
    seen: dict[Path, None] = {}
    pending = [handler]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen[path] = None
        for module in _imports_of(path):
            if module.split(".")[0] == RUNTIME_PACKAGE:
                files = (_runtime_file(name, shared) for name in _with_parents(module))
                pending.extend(f for f in files if f is not None)
    return list(seen)


def external_imports(handler: Path, shared: Path) -> dict[str, set[str]]:
    """Third-party module (as imported) -> the files (relative names) that import it, over everything
    the handler reaches through the runtime package."""
    found: dict[str, set[str]] = {}
    stdlib = sys.stdlib_module_names
    for path in reached_files(handler, shared):
        where = path.name if path == handler else str(path.relative_to(shared))
        for module in _imports_of(path):
            top = module.split(".")[0]
            if top in STDLIB_DATA_MODULES:
                found.setdefault(STDLIB_DATA_MODULES[top], set()).add(where)
            if top != RUNTIME_PACKAGE and top not in stdlib and top != "__future__":
                found.setdefault(module, set()).add(where)
    return found


@cache
def _namespace_owners(top: str) -> dict[str, str]:
    """Module -> distribution within a namespace package several distributions share (opentelemetry),
    from the files each distribution installed."""
    owners = {}
    for distribution in _module_distributions().get(top, ()):
        for file in importlib.metadata.files(distribution) or []:
            if file.parts[0] == top and file.suffix == ".py":
                parts = file.with_suffix("").parts
                owners[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = distribution
    return owners


def _namespace_module(module: str) -> str | None:
    """The longest prefix of module that a file of the namespace's distributions is (`a.b` of the
    name `a.b.Class`); None for the bare namespace or names inside it that no file is."""
    owners = _namespace_owners(module.split(".")[0])
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        if ".".join(parts[:end]) in owners:
            return ".".join(parts[:end])
    return None


def _distributions_of(module: str) -> frozenset[str]:
    """The distributions that provide module (a top-level name, or a module of a shared namespace)."""
    if "." in module:
        return frozenset({_namespace_owners(module.split(".")[0])[module]})
    return _module_distributions().get(module, frozenset())


def distribution_key(name: str) -> str:
    return canonicalize_name(name)


@cache
def _module_distributions() -> dict[str, frozenset[str]]:
    return {module: frozenset(distribution_key(d) for d in dists)
            for module, dists in importlib.metadata.packages_distributions().items()}


def listed_requirements(path: Path) -> dict[str, Requirement]:
    """Distribution key -> its requirement, of a pip requirements file (comments ignored)."""
    listed = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            listed[distribution_key(requirement.name)] = requirement
    return listed


def dependencies(distribution: str, extras: Iterable[str] = ()) -> set[str]:
    """The distributions one installed distribution needs (its markers evaluated here, extras asked)."""
    needed = set()
    for text in importlib.metadata.requires(distribution) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in ("", *extras)):
            needed.add(distribution_key(requirement.name))
    return needed


def closure(distributions: Iterable[str], extras: dict[str, set[str]] | None = None) -> set[str]:
    """The distributions and everything they depend on, as pip would install them."""
    extras = extras or {}
    found: set[str] = set()
    pending = list(distributions)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        try:
            pending.extend(dependencies(name, extras.get(name, ())))
        except importlib.metadata.PackageNotFoundError:
            continue  # named but not installed here: the check reports what it can see
    return found


@dataclass
class FunctionRequirements:
    """What one function imports and what its requirements.txt installs, and what is wrong."""

    name: str
    imported: dict[str, set[str]]  # distribution -> the modules of it the function imports
    listed: dict[str, Requirement]
    template: set[str]
    problems: list[str] = field(default_factory=list)

    @property
    def extras(self) -> dict[str, set[str]]:
        return {key: set(requirement.extras) for key, requirement in self.listed.items()}

    @property
    def installed(self) -> set[str]:
        """Every distribution the image ends with: the template's, the listed ones and their needs."""
        return closure({*self.template, *self.listed}, self.extras)


def check_function(name: str, function_dir: Path, shared: Path) -> FunctionRequirements:
    """The function's imports against its requirements.txt; problems name the module and the file."""
    listed = listed_requirements(function_dir / REQUIREMENTS_FILE)
    template = closure(map(distribution_key, TEMPLATE_REQUIREMENTS))
    imported: dict[str, set[str]] = {}
    problems = []
    by_module: dict[str, set[str]] = {}
    for imported_name, files in external_imports(function_dir / HANDLER_FILE, shared).items():
        top = imported_name.split(".")[0]
        module: str | None = top
        if len(_module_distributions().get(top, ())) > 1:
            module = _namespace_module(imported_name)  # a namespace several distributions share
        if module is not None:
            by_module.setdefault(module, set()).update(files)
    for module, files in sorted(by_module.items()):
        where = ", ".join(sorted(files))
        if module == TOOLING_PACKAGE:
            problems.append(f"{name}: {where} imports {module}, the tooling package, which no image has")
            continue
        distributions = _distributions_of(module)
        if not distributions:
            problems.append(f"{name}: module {module!r} (imported by {where}) is provided by no installed "
                            "distribution")
            continue
        for distribution in distributions:
            imported.setdefault(distribution, set()).add(module)
        if not distributions & (set(listed) | template):
            needs = " or ".join(sorted(distributions))
            problems.append(f"{name}: module {module!r} (imported by {where}) needs {needs}, "
                            f"missing from functions/{name}/{REQUIREMENTS_FILE}")
    result = FunctionRequirements(name, imported, listed, template, problems)
    # Every distribution pip would add must be pinned too, or a rebuild may bring another version.
    for missing in sorted(closure(listed, result.extras) - set(listed) - template):
        problems.append(f"{name}: {missing} is installed by its requirements but not pinned in "
                        f"functions/{name}/{REQUIREMENTS_FILE}")
    # Extras count (PyJWT[crypto] for RS256): a library may import what they bring only when used.
    needed = closure(set(imported) - template, result.extras)
    for extra in sorted(set(listed) - needed - template):
        problems.append(f"{name}: '{listed[extra]}' in functions/{name}/{REQUIREMENTS_FILE} is imported by "
                        "nothing the function runs")
    return result


def check_stack(stack: dict, root: Path) -> list[FunctionRequirements]:
    """check_function for every function of stack.yml."""
    shared = root / "shared"
    functions = sorted(stack["functions"].items())
    return [check_function(name, root / fn["handler"], shared) for name, fn in functions]
