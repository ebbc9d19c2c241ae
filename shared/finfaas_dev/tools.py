"""`finfaas tools install`: Java, DynamoDB Local, the npm tools and Chromium, each skipped when already there.

Everything lands in .cache/ (git-ignored) so a fresh clone needs only Python, the machine's
package registries and root for apt-get when Java is missing.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("FINFAAS_CACHE_DIR", str(PROJECT_ROOT / ".cache")))
DYNAMODB_LOCAL_DIR = CACHE_DIR / "dynamodb-local"
DYNAMODB_LOCAL_JAR = "DynamoDBLocal.jar"
DYNAMODB_LOCAL_LIB = "DynamoDBLocal_lib"
NPM_TOOLS_DIR = CACHE_DIR / "npm-tools"
NPM_TOOLS_MANIFEST_DIR = PROJECT_ROOT / "infra" / "tools"
LAUNCHER_SOURCE = Path(__file__).resolve().parent / "java" / "LoopbackDynamoDBLocal.java"
LAUNCHER_CLASS = "LoopbackDynamoDBLocal"
LAUNCHER_DIR_NAME = "launcher"
LAUNCHER_DIGEST_CHARS = 12

# DynamoDB Local 1.25.1 ships inside this npm package (folder emulator/); the hash pins the tarball.
SIMULATOR_PACKAGE = "amplify-dynamodb-simulator"
SIMULATOR_VERSION = "2.9.30"
SIMULATOR_SHA256 = "3503ffac19f183407909fecdacf4db51ab1fdad1da7b2f177016670b2d80e4b9"
SIMULATOR_MEMBER_PREFIX = "package/emulator/"
JAVA_APT_PACKAGE = "openjdk-17-jre-headless"
# The console's browser tests drive Debian's Chromium through Playwright (never a browser of its own).
CHROMIUM_APT_PACKAGE = "chromium"
CHROMIUM_PATH = Path("/usr/bin/chromium")

APT_TIMEOUT_S = 900
NPM_TIMEOUT_S = 600
JAVAC_TIMEOUT_S = 120
HASH_CHUNK_BYTES = 1 << 20
SHARED_DIR_MODE = 0o755


class ToolsError(RuntimeError):
    """A tool could not be installed; the message says what to do."""


def dynamodb_local_jar(dynamodb_dir: Path = DYNAMODB_LOCAL_DIR) -> Path:
    return dynamodb_dir / DYNAMODB_LOCAL_JAR


def launcher_dir(dynamodb_dir: Path = DYNAMODB_LOCAL_DIR) -> Path:
    """Where the compiled launcher lives; named by its source's hash so an edit recompiles it."""
    digest = hashlib.sha256(LAUNCHER_SOURCE.read_bytes()).hexdigest()[:LAUNCHER_DIGEST_CHARS]
    return dynamodb_dir / f"{LAUNCHER_DIR_NAME}-{digest}"


def npm_tool_bin(name: str) -> Path:
    """Path of an installed npm tool's executable (e.g. asl-validator)."""
    return NPM_TOOLS_DIR / "node_modules" / ".bin" / name


def ensure_java() -> str:
    """Path of `java`, installing Debian's headless JRE when it is missing and we are root."""
    java = shutil.which("java")
    if java:
        return java
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ToolsError(f"java not found: install a Java 17 runtime (apt-get install {JAVA_APT_PACKAGE})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update"], timeout_s=APT_TIMEOUT_S, env=env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", JAVA_APT_PACKAGE],
         timeout_s=APT_TIMEOUT_S, env=env)
    java = shutil.which("java")
    if not java:
        raise ToolsError(f"apt-get installed {JAVA_APT_PACKAGE} but `java` is still not on PATH")
    return java


def ensure_chromium(chromium: Path = CHROMIUM_PATH, run: Any = None, is_root: bool | None = None,
                    which: Any = shutil.which) -> Path:
    """Debian's Chromium for the browser tests: apt-get as root, else through sudo, else a clear refusal."""
    if chromium.exists():
        return chromium
    run = run or _run
    root = os.geteuid() == 0 if is_root is None else is_root
    prefix = [] if root else (["sudo", "-n"] if which("sudo") else None)
    if prefix is None or not which("apt-get"):
        raise ToolsError(f"{chromium} not found: install Debian's chromium as root "
                         f"(apt-get install --no-install-recommends {CHROMIUM_APT_PACKAGE})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run([*prefix, "apt-get", "update"], timeout_s=APT_TIMEOUT_S, env=env)
    run([*prefix, "apt-get", "install", "-y", "--no-install-recommends", CHROMIUM_APT_PACKAGE],
        timeout_s=APT_TIMEOUT_S, env=env)
    if not chromium.exists():
        raise ToolsError(f"apt-get installed {CHROMIUM_APT_PACKAGE} but {chromium} is still missing")
    return chromium


def ensure_dynamodb_local(dynamodb_dir: Path = DYNAMODB_LOCAL_DIR) -> Path:
    """Fetch, verify and extract DynamoDB Local into dynamodb_dir; returns the jar path."""
    jar = dynamodb_local_jar(dynamodb_dir)
    if jar.is_file() and (dynamodb_dir / DYNAMODB_LOCAL_LIB).is_dir():
        return jar
    tarball = _fetch_simulator_tarball(dynamodb_dir.parent)
    _extract_emulator(tarball, dynamodb_dir)
    return jar


def _fetch_simulator_tarball(cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"{SIMULATOR_PACKAGE}-{SIMULATOR_VERSION}.tgz"
    if not (tarball.is_file() and _sha256(tarball) == SIMULATOR_SHA256):
        npm = _require_npm()
        _run([npm, "pack", f"{SIMULATOR_PACKAGE}@{SIMULATOR_VERSION}", "--pack-destination", str(cache_dir),
              "--silent"], timeout_s=NPM_TIMEOUT_S)
    digest = _sha256(tarball)
    if digest != SIMULATOR_SHA256:
        tarball.unlink(missing_ok=True)
        raise ToolsError(f"{tarball.name}: sha256 {digest} does not match the pinned {SIMULATOR_SHA256}")
    return tarball


def _extract_emulator(tarball: Path, dynamodb_dir: Path) -> None:
    # Extract beside the target and rename, so a concurrent or interrupted install never leaves
    # a half-written folder where the emulator looks for its jar.
    staging = Path(tempfile.mkdtemp(prefix=".dynamodb-local-", dir=dynamodb_dir.parent))
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(SIMULATOR_MEMBER_PREFIX)]
            for member in members:
                member.name = member.name[len(SIMULATOR_MEMBER_PREFIX):]
            archive.extractall(staging, members=[m for m in members if m.name], filter="data")
        if not (staging / DYNAMODB_LOCAL_JAR).is_file():
            raise ToolsError(f"{tarball.name} has no {SIMULATOR_MEMBER_PREFIX}{DYNAMODB_LOCAL_JAR}")
        if dynamodb_dir.is_dir() and not dynamodb_local_jar(dynamodb_dir).is_file():
            shutil.rmtree(dynamodb_dir)  # left by an interrupted install of an older layout
        staging.chmod(SHARED_DIR_MODE)  # mkdtemp made it private
        try:
            staging.rename(dynamodb_dir)
        except OSError:
            if not dynamodb_local_jar(dynamodb_dir).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_loopback_launcher(dynamodb_dir: Path = DYNAMODB_LOCAL_DIR) -> Path | None:
    """Compile the loopback launcher once; None when this Java cannot compile (no jdk.compiler)."""
    target = launcher_dir(dynamodb_dir)
    if (target / f"{LAUNCHER_CLASS}.class").is_file():
        return target
    java = shutil.which("java")
    if not java or not dynamodb_local_jar(dynamodb_dir).is_file():
        return None
    try:
        staging = Path(tempfile.mkdtemp(prefix=".launcher-", dir=dynamodb_dir))
    except OSError:
        return None  # a read-only install: run the stock entry point
    try:
        # javac runs from the runtime's own jdk.compiler module, present in Debian's headless JRE.
        result = subprocess.run(
            [java, "-m", "jdk.compiler/com.sun.tools.javac.Main", "-nowarn", "-cp",
             str(dynamodb_local_jar(dynamodb_dir)), "-d", str(staging), str(LAUNCHER_SOURCE)],
            capture_output=True, text=True, timeout=JAVAC_TIMEOUT_S, check=False,
        )
        if result.returncode != 0:
            return None
        staging.chmod(SHARED_DIR_MODE)
        try:
            staging.rename(target)
        except OSError:
            pass  # another process compiled it first
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target if (target / f"{LAUNCHER_CLASS}.class").is_file() else None


def ensure_npm_tools() -> Path:
    """Install the pinned npm tools (infra/tools/package-lock.json) into .cache/npm-tools."""
    lock = NPM_TOOLS_MANIFEST_DIR / "package-lock.json"
    installed_lock = NPM_TOOLS_DIR / "package-lock.json"
    if installed_lock.is_file() and filecmp.cmp(lock, installed_lock, shallow=False) \
            and (NPM_TOOLS_DIR / "node_modules").is_dir():
        return NPM_TOOLS_DIR
    npm = _require_npm()
    NPM_TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(NPM_TOOLS_MANIFEST_DIR / name, NPM_TOOLS_DIR / name)
    _run([npm, "ci", "--no-audit", "--no-fund", "--silent"], timeout_s=NPM_TIMEOUT_S, cwd=NPM_TOOLS_DIR)
    return NPM_TOOLS_DIR


def install_all(out=sys.stdout) -> None:
    """Every step, in order, reporting one line each."""
    print(f"java: {ensure_java()}", file=out)
    print(f"DynamoDB Local: {ensure_dynamodb_local()}", file=out)
    launcher = ensure_loopback_launcher()
    print(f"DynamoDB Local loopback launcher: {launcher or 'unavailable (listens on all interfaces)'}",
          file=out)
    print(f"npm tools: {ensure_npm_tools()}", file=out)
    print(f"chromium: {ensure_chromium()}", file=out)


def _require_npm() -> str:
    npm = shutil.which("npm")
    if not npm:
        raise ToolsError("npm not found: install Node.js 20 and npm (apt-get install nodejs npm)")
    return npm


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _run(cmd: list[str], timeout_s: float, cwd: Path | None = None, env: dict | None = None) -> None:
    try:
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as error:
        raise ToolsError(f"`{' '.join(cmd)}` took longer than {timeout_s:.0f} s") from error
    if result.returncode != 0:
        last_line = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise ToolsError(f"`{' '.join(cmd)}` failed ({result.returncode}): {last_line[0]}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Install Java, DynamoDB Local and the npm tools into .cache/, and Debian's "
                          "chromium (skips what is there).")


def run(args: argparse.Namespace) -> int:
    try:
        install_all()
    except ToolsError as error:
        print(f"finfaas tools install: {error}", file=sys.stderr)
        return 1
    return 0
