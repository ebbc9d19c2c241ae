"""A function's image without Docker: a fresh virtualenv holding only what its Dockerfile installs.

faas-cli's python3-http Dockerfile installs the template's requirements, then the function's
requirements.txt, then copies the build context. Here the same files are installed into a
virtualenv of its own (no system or dev site-packages), from a wheelhouse downloaded once with
pip's ordinary client; both are kept in .cache/ under a digest of the pins they hold, so functions
with the same requirements share one virtualenv and a rerun builds nothing. The context's index.py
then runs under it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from finfaas_dev.image_requirements import TEMPLATE_REQUIREMENTS, distribution_key
from finfaas_dev.schedules import SHARED_IN_IMAGE
from finfaas_dev.tools import PROJECT_ROOT

WHEELHOUSE_DIR = PROJECT_ROOT / ".cache" / "wheelhouse"
VENVS_DIR = PROJECT_ROOT / ".cache" / "image-venvs"
LOCK_FILE = PROJECT_ROOT / "requirements.lock"
TEMPLATE_REQUIREMENTS_FILE = "template-requirements.txt"
DIGEST_CHARS = 16
IMAGE_WORKDIR = PurePosixPath("/home/app")  # the python3-http image's WORKDIR: the build context lands here
PIP_DOWNLOAD_SECONDS_MAX = 300
VENV_CREATE_SECONDS_MAX = 60
PIP_INSTALL_SECONDS_MAX = 180
VENV_BUILD_WORKERS = 2  # the CI machine's cores


class ImageEnvError(RuntimeError):
    """The wheelhouse or a function's virtualenv could not be made."""


def template_requirements(lock: Path = LOCK_FILE) -> str:
    """The python3-http template's requirements (flask, waitress), pinned as the lock pins them."""
    wanted = {distribution_key(name) for name in TEMPLATE_REQUIREMENTS}
    lines = [line.strip() for line in lock.read_text().splitlines() if "==" in line]
    return "".join(f"{line}\n" for line in lines if distribution_key(line.split("==")[0]) in wanted)


def _requirement_lines(text: str) -> list[str]:
    return sorted({line.split("#", 1)[0].strip() for line in text.splitlines()} - {""})


def _digest(texts: Iterable[str]) -> str:
    lines = sorted({line for text in texts for line in _requirement_lines(text)})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:DIGEST_CHARS]


def _pip(*args: str, timeout: float) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    reply = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if reply.returncode != 0:
        raise ImageEnvError(f"pip {args[0]} failed: {reply.stderr.strip()[-2000:]}")


def wheelhouse(requirement_files: Iterable[Path], folder: Path = WHEELHOUSE_DIR) -> Path:
    """Wheels for every requirement file and the template's, downloaded once per set of pins."""
    texts = [template_requirements(), *(path.read_text() for path in requirement_files)]
    target = folder / _digest(texts)
    if target.is_dir():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text("".join(f"{line}\n" for text in texts for line in _requirement_lines(text)))
        wheels = Path(scratch) / "wheels"
        _pip("download", "--only-binary=:all:", "--dest", str(wheels), "-r", str(requirements),
             timeout=PIP_DOWNLOAD_SECONDS_MAX)
        try:
            wheels.rename(target)  # whole or not at all; a concurrent run may have won
        except OSError:
            if not target.is_dir():
                raise
    return target


def _venv_key(requirements: Path) -> str:
    return _digest([template_requirements(), requirements.read_text(), f"python=={sys.version}"])


def function_venv(requirements: Path, wheels: Path, folder: Path = VENVS_DIR) -> Path:
    """A virtualenv with the template's requirements and then the function's, from wheels only.
    Returns its interpreter; one per distinct set of requirements (and Python) under folder, made
    once: a folder appears whole (renamed when complete) and is never changed after."""
    template = template_requirements()
    target = folder / _venv_key(requirements)
    python = target / "bin" / "python"
    if python.is_file():
        return python
    scratch = folder / f".{target.name}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    # --without-pip: this interpreter's pip installs into it (pip --python), which saves seconds.
    venv = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(scratch)],
                          capture_output=True, text=True, timeout=VENV_CREATE_SECONDS_MAX, check=False)
    if venv.returncode != 0:
        raise ImageEnvError(f"venv failed: {venv.stderr.strip()}")
    template_file = scratch / TEMPLATE_REQUIREMENTS_FILE
    template_file.write_text(template)
    for step in (template_file, requirements):  # two steps, as the Dockerfile's two RUN pip install
        _pip("--python", str(scratch / "bin" / "python"), "install", "--no-index",
             "--find-links", str(wheels), "-r", str(step), timeout=PIP_INSTALL_SECONDS_MAX)
    try:
        scratch.rename(target)
    except OSError:  # a concurrent run finished the same one first
        shutil.rmtree(scratch, ignore_errors=True)
    return python


def function_venvs(requirements: Iterable[Path], wheels: Path, folder: Path = VENVS_DIR,
                   workers: int = VENV_BUILD_WORKERS) -> dict[Path, Path]:
    """function_venv for several requirement files at once (pip mostly waits on disk and unzip)."""
    files = list(dict.fromkeys(requirements))
    by_key = {_venv_key(path): path for path in files}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        built = dict(zip(by_key, pool.map(lambda path: function_venv(path, wheels, folder), by_key.values()),
                         strict=True))
    return {path: built[_venv_key(path)] for path in files}


def image_environment(function_env: dict[str, str], port: int, context: Path) -> dict[str, str]:
    """The environment of the image's process: the function's own settings, none of this shell's
    Python path, the template's listening port, and stack.yml's import path (an image path below
    /home/app) mapped into the build context where the image would have it."""
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    image_path = PurePosixPath(function_env.get("PYTHONPATH") or SHARED_IN_IMAGE)
    shared = context / image_path.relative_to(IMAGE_WORKDIR)
    return {**keep, **{k: str(v) for k, v in function_env.items()}, "PORT": str(port),
            "PYTHONPATH": str(shared)}
