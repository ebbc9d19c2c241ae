"""The audit log against DynamoDB Local: store contract, racing appenders, `finfaas audit verify`."""

from __future__ import annotations

import threading
import uuid

import pytest
from finfaas.platform.audit import AuditEvent, AuditKey, AuditLog, Outcome, key_id_of, verify_chain
from finfaas.store.audit_store import AuditStore, audit_model
from finfaas_dev.cli import main as finfaas
from unit.platform.test_audit_contract import AuditStoreContract

pytestmark = pytest.mark.emulator

SECRET = b"integration-audit-key-0123456789abcdef"
KEY = AuditKey(key_id_of(SECRET), SECRET)
APPENDERS = 4
APPENDS_EACH = 10


@pytest.fixture
def store(table_names) -> AuditStore:
    return AuditStore(table_names["audit"])


class TestDynamoDBAuditStore(AuditStoreContract):
    """The same contract the in-memory fake passes."""


def event(action: str, actor: str = "cus_1") -> AuditEvent:
    return AuditEvent(actor=actor, action=action, target="account:acc_1", outcome=Outcome.SUCCEEDED,
                      source_ip="198.51.100.4", request_id=f"req-{action}")


def fresh_function() -> str:
    return f"fn-{uuid.uuid4().hex[:10]}"


def test_racing_instances_never_fork_a_chain(store):
    # GIVEN four instances of one function appending to the same chain at once
    function = fresh_function()
    logs = [AuditLog(store, function, key=KEY, shards=1) for _ in range(APPENDERS)]

    def append_many(log: AuditLog, index: int) -> None:
        for n in range(APPENDS_EACH):
            log.append(event(f"step.{index}.{n}"))

    threads = [threading.Thread(target=append_many, args=(log, i)) for i, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN every event is in the chain once, seqs are 1..n and the chain verifies
    chain = logs[0].chain_for("cus_1")
    records = list(store.records(chain))
    assert [r.seq for r in records] == list(range(1, APPENDERS * APPENDS_EACH + 1))
    assert len({r.action for r in records}) == APPENDERS * APPENDS_EACH
    assert verify_chain(chain, records, {KEY.key_id: SECRET}).ok


@pytest.fixture
def chain_of_five(store) -> str:
    log = AuditLog(store, fresh_function(), key=KEY, shards=1)
    for n in range(5):
        log.append(event(f"step.{n}"))
    return log.chain_for("cus_1")


@pytest.fixture
def verify(table_names, tmp_path, capsys):
    key_file = tmp_path / "audit-hmac-key"
    key_file.write_bytes(SECRET + b"\n")

    def run(*extra: str) -> tuple[int, str]:
        command = ["audit", "verify", "--table", table_names["audit"], "--key-file", str(key_file)]
        code = finfaas([*command, *extra])
        return code, capsys.readouterr().out

    return run


def item(table_names, chain: str, seq: int):
    return audit_model(table_names["audit"]).get(chain, seq, consistent_read=True)


def test_verify_passes_an_untouched_chain(chain_of_five, verify):
    code, out = verify("--chain", chain_of_five)

    assert code == 0
    assert f"chain {chain_of_five}: 5 record(s)" in out and ": ok" in out


def test_verify_names_a_modified_record(chain_of_five, verify, table_names):
    tampered = item(table_names, chain_of_five, 3)
    tampered.outcome = "denied"
    tampered.save()

    code, out = verify("--chain", chain_of_five)

    assert code == 1
    assert f"chain {chain_of_five} seq 3: modified" in out


def test_verify_names_a_deleted_record(chain_of_five, verify, table_names):
    item(table_names, chain_of_five, 2).delete()

    code, out = verify("--chain", chain_of_five)

    assert code == 1
    assert f"chain {chain_of_five} seq 2: missing" in out


def test_verify_names_reordered_records(chain_of_five, verify, table_names):
    # GIVEN the items at seq 2 and 4 swapped in the table
    second, fourth = item(table_names, chain_of_five, 2), item(table_names, chain_of_five, 4)
    second.seq, fourth.seq = 4, 2
    second.save()
    fourth.save()

    code, out = verify("--chain", chain_of_five)

    assert code == 1
    assert f"chain {chain_of_five} seq 2: reordered: the record here was written as seq 4" in out
    assert f"chain {chain_of_five} seq 4: reordered: the record here was written as seq 2" in out


def test_verify_catches_truncation_against_saved_anchors(chain_of_five, verify, table_names, tmp_path):
    anchors = tmp_path / "anchors.json"
    assert verify("--chain", chain_of_five, "--save-anchors", str(anchors))[0] == 0
    item(table_names, chain_of_five, 5).delete()

    code, out = verify("--chain", chain_of_five, "--anchors", str(anchors))

    assert code == 1
    assert f"chain {chain_of_five} seq 5: truncated" in out


def test_verify_without_the_key_reports_signed_records_as_unverifiable(chain_of_five, table_names, capsys):
    code = finfaas(["audit", "verify", "--table", table_names["audit"], "--chain", chain_of_five])

    assert code == 1
    assert "unknown key" in capsys.readouterr().out
