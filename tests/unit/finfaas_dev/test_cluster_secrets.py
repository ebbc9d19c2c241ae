"""`finfaas secrets create`: every secret a function mounts exists after it, ready to load into a cluster."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finfaas_dev import cluster_secrets, stackfile

ROOT = Path(__file__).resolve().parents[3]
STACK = stackfile.load_stack(ROOT / "stack.yml")


def _run(folder: Path, *words: str) -> int:
    parser = argparse.ArgumentParser()
    cluster_secrets.add_arguments(parser)
    return cluster_secrets.run(parser.parse_args(["--stack", str(ROOT / "stack.yml"), "--dir", str(folder),
                                                  *words]))


def test_every_secret_stack_yml_names_is_created_with_a_command_to_load_it(tmp_path, capsys):
    # WHEN an operator creates the secrets for a Knative namespace
    folder = tmp_path / "s"
    assert _run(folder, "--target", "knative", "--namespace", "finfaas-dev") == 0

    # THEN each secret a function mounts is a file, owner-only, with one load command each
    names = cluster_secrets.secret_names(STACK)
    assert {"auth-signing-keys", "events-hmac-key", "schedule-hmac-key", "transfers-client"} <= set(names)
    for name in names:
        path = folder / name
        assert path.is_file() and path.stat().st_mode & 0o077 == 0, name
    commands = capsys.readouterr().out.splitlines()
    assert commands == [f"kubectl create secret generic {n} -n finfaas-dev --from-file={n}={folder / n}"
                        for n in names]
    assert json.loads((folder / "auth-signing-keys").read_text())[0]["status"] == "active"


def test_running_it_again_keeps_every_existing_secret(tmp_path, capsys):
    assert _run(tmp_path, "--target", "openfaas") == 0
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert _run(tmp_path, "--target", "openfaas") == 0
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before
    assert "faas-cli secret create audit-hmac-key --from-file" in capsys.readouterr().out


def test_knative_needs_the_overlays_namespace(tmp_path, capsys):
    assert _run(tmp_path, "--target", "knative") == 2
    assert "--namespace" in capsys.readouterr().err
