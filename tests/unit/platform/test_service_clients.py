"""Service clients (keys.ensure_service_clients): the orchestrator's credentials for calling functions."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from argon2 import PasswordHasher
from finfaas.platform.keys import CLIENTS_SECRET, SERVICE_CLIENTS, ensure_service_clients, write_dev_secrets
from finfaas.platform.tokens import ClientRegistry

SCOPES = {"orchestrator": ("ledger:write", "transfers:write")}


def _entries(folder: Path) -> dict[str, dict]:
    return {entry["client_id"]: entry for entry in json.loads((folder / CLIENTS_SECRET).read_text())}


def test_a_fresh_machine_gets_a_private_secret_the_auth_function_accepts(tmp_path: Path):
    folder = tmp_path / "secrets"
    write_dev_secrets(folder, out=lambda _: None)

    written = ensure_service_clients(folder, SCOPES, out=lambda _: None)

    assert written == ("orchestrator",)
    secret_file = folder / "orchestrator-client"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    credentials = json.loads(secret_file.read_text())
    registry = ClientRegistry.from_secret(lambda name: (folder / name).read_text())
    client = registry.authenticate(credentials["client_id"], credentials["client_secret"])
    assert client is not None and client.scopes == frozenset(SCOPES["orchestrator"])
    # AND the demo client is still there, untouched
    assert set(_entries(folder)) == {"demo-app", "orchestrator"}


def test_a_second_run_changes_nothing(tmp_path: Path):
    folder = tmp_path / "secrets"
    write_dev_secrets(folder, out=lambda _: None)
    ensure_service_clients(folder, SCOPES, out=lambda _: None)
    before = {name: (folder / name).read_text() for name in (CLIENTS_SECRET, "orchestrator-client")}

    assert ensure_service_clients(folder, SCOPES, out=lambda _: None) == ()

    assert before == {name: (folder / name).read_text() for name in before}


def test_changed_scopes_are_updated_and_the_secret_kept(tmp_path: Path):
    folder = tmp_path / "secrets"
    write_dev_secrets(folder, out=lambda _: None)
    ensure_service_clients(folder, SCOPES, out=lambda _: None)
    secret_before = (folder / "orchestrator-client").read_text()

    ensure_service_clients(folder, {"orchestrator": ("ledger:write",)}, out=lambda _: None)

    assert _entries(folder)["orchestrator"]["scopes"] == ["ledger:write"]
    assert (folder / "orchestrator-client").read_text() == secret_before


def test_a_lost_secret_file_gets_a_new_secret_and_the_old_one_stops_working(tmp_path: Path):
    folder = tmp_path / "secrets"
    write_dev_secrets(folder, out=lambda _: None)
    ensure_service_clients(folder, SCOPES, out=lambda _: None)
    old_secret = json.loads((folder / "orchestrator-client").read_text())["client_secret"]
    (folder / "orchestrator-client").unlink()

    ensure_service_clients(folder, SCOPES, out=lambda _: None)

    new_secret = json.loads((folder / "orchestrator-client").read_text())["client_secret"]
    stored_hash = _entries(folder)["orchestrator"]["secret_hash"]
    assert new_secret != old_secret
    assert PasswordHasher().verify(stored_hash, new_secret)
    assert (
        len(
            [e for e in json.loads((folder / CLIENTS_SECRET).read_text()) if e["client_id"] == "orchestrator"]
        )
        == 1
    )


def test_the_orchestrator_is_a_registered_service_client():
    assert "orchestrator" in SERVICE_CLIENTS and "transfers:write" in SERVICE_CLIENTS["orchestrator"]
