"""The ledger function's online checks: `GET /_/ops/ledger-check` and `GET /_/ops/audit-verify` answer what
`finfaas ledger check` and `finfaas audit verify` find, name each problem, and stop at their budget."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from finfaas.platform.audit import AuditEvent, AuditKey, AuditLog, Outcome, key_id_of
from finfaas.services.ledger.api import LedgerChecks
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.ledger.service import LedgerService
from finfaas_dev.fakes.platform import InMemoryAuditStore
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler
from finfaas_dev.testing.reference_model import ReferenceLedger
from support.clocks import SteppingClock

SECRET = b"ledger-ops-checks-audit-key-0123456789"
KEY = AuditKey(key_id_of(SECRET), SECRET)

START = datetime(2026, 3, 1, tzinfo=UTC)
TICK = timedelta(milliseconds=1)  # every clock read is a later moment


@pytest.fixture(scope="module")
def minter() -> TokenMinter:
    return TokenMinter.generate()


@pytest.fixture
def world(minter):
    """A ledger with a deposit, a transfer and an open hold; two audit chains of two records each."""
    ledger = ReferenceLedger()
    counter = itertools.count(1)
    service = LedgerService(ledger, SteppingClock(START, TICK), lambda: f"id{next(counter)}")
    service.ensure_system_accounts("USD")
    for owner, account_id in (("u1", "alice"), ("u2", "bob")):
        service.open_account(owner_id=owner, currency="USD", account_id=account_id)
    service.deposit("alice", 1_000, "USD", transfer_id="dep1")
    service.transfer(TransferRequest("alice", "bob", 250, "USD", "t1"))
    service.transfer(TransferRequest("alice", "bob", 100, "USD", "h1", pending=True, timeout_seconds=60))
    audit = InMemoryAuditStore()
    for function in ("ledger", "transfers"):
        log = AuditLog(audit, function, key=KEY)
        for n in range(2):
            log.append(AuditEvent("operator-ada", "create_transfer", f"transfer:t{n}", Outcome.SUCCEEDED))
    handler = load_function_handler("ledger")
    handler.verifier.use(minter.verifier())
    handler.checks.use(LedgerChecks(ledger, audit, {KEY.key_id: SECRET}))
    return handler, ledger, audit


def ops_get(handler, minter, path: str, scopes=("ops",)):
    return call(handler.handle, "GET", path, token=minter.mint(sub="operator-rex", scopes=list(scopes),
                                                                kind="client"))


def test_a_consistent_ledger_and_audit_log_pass_with_their_counts_and_chains(world, minter):
    handler, _, _ = world

    ledger = ops_get(handler, minter, "/_/ops/ledger-check")
    audit = ops_get(handler, minter, "/_/ops/audit-verify")

    assert ledger.status == 200
    fields = ("status", "transfers", "entries", "trial_balance_minor", "problems")
    assert {k: ledger.json()[k] for k in fields} == {
        "status": "passed", "transfers": 3, "entries": 6, "trial_balance_minor": {"USD": 0}, "problems": []}
    assert audit.status == 200 and audit.json()["status"] == "passed"
    assert audit.json()["signatures_checked"] is True and audit.json()["records"] == 4
    assert [(c["chain"], c["records"], c["ok"]) for c in audit.json()["chains"]] == [
        ("ledger-0", 2, True), ("transfers-0", 2, True)]


def test_a_tampered_entry_fails_the_ledger_check_naming_its_account_and_transfer(world, minter):
    handler, ledger, _ = world
    # GIVEN bob's entry of t1 rewritten to credit 1 more than the transfer moved
    entries = ledger.entries["bob"]
    index = next(i for i, e in enumerate(entries) if e.transfer_id == "t1")
    entries[index] = replace(entries[index], credits_posted=entries[index].credits_posted + 1)

    answer = ops_get(handler, minter, "/_/ops/ledger-check").json()

    assert answer["status"] == "failed" and answer["problems_total"] == len(answer["problems"]) >= 2
    assert any(p.startswith("account bob: credits_posted") for p in answer["problems"])
    assert any(p.startswith("transfer t1: entries") for p in answer["problems"])


def test_a_rewritten_audit_record_fails_the_verification_naming_its_chain_and_seq(world, minter):
    handler, _, audit = world
    # GIVEN the first record of the transfers function's chain rewritten to another target
    chain = next(c for c in audit.chains() if c.startswith("transfers-"))
    first = next(iter(audit.records(chain)))
    audit.replace(replace(first, target="transfer:forged"))

    answer = ops_get(handler, minter, "/_/ops/audit-verify").json()

    assert answer["status"] == "failed" and answer["problems_total"] >= 1
    broken = {c["chain"]: c for c in answer["chains"]}
    assert broken[chain]["ok"] is False and broken[chain]["problems"][0]["seq"] == 1
    assert broken[chain]["problems"][0]["kind"] == "modified"
    assert all(c["ok"] for name, c in broken.items() if name != chain)


def test_past_its_budget_a_check_says_the_ledger_is_too_large_and_names_the_command(world, minter):
    handler, ledger, audit = world
    handler.checks.use(LedgerChecks(ledger, audit, {}, records_max=3))

    ledger_answer = ops_get(handler, minter, "/_/ops/ledger-check").json()
    audit_answer = ops_get(handler, minter, "/_/ops/audit-verify").json()

    assert ledger_answer["status"] == "too_large" and "finfaas ledger check" in ledger_answer["detail"]
    assert audit_answer["status"] == "too_large" and "finfaas audit verify" in audit_answer["detail"]
    assert ledger_answer["records_max"] == 3 and ledger_answer["problems"] == []


def test_the_checks_need_the_ops_scope(world, minter):
    handler, _, _ = world

    for path in ("/_/ops/ledger-check", "/_/ops/audit-verify"):
        assert ops_get(handler, minter, path, scopes=("ledger:read",)).status == 403
