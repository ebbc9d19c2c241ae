"""`finfaas ledger check` against DynamoDB Local: clean ledgers pass, broken ones are named."""

from __future__ import annotations

import uuid

import boto3
import pytest
from finfaas.domain.ledger import AccountKind, Actor, NewAccount, NewTransfer
from finfaas.store.ledger_store import DynamoLedgerStore
from finfaas.store.tables import LedgerTables
from finfaas_dev.cli import main
from finfaas_dev.infra import deploy
from finfaas_dev.net import free_port


@pytest.fixture
def scratch_ledger(embedded_aws, clock):
    """A ledger under its own stage, so breaking it on purpose spoils no other test."""
    stage = f"x{uuid.uuid4().hex[:8]}"
    tables = LedgerTables.for_stage(stage)
    deploy(stage, "embedded")  # the template's tables under the scratch stage
    client = boto3.client("dynamodb")
    store = DynamoLedgerStore(tables, client.meta.region_name)
    funding = NewAccount("fund", "system", "EUR", AccountKind.FUNDING, debits_must_not_exceed_credits=False)
    store.open_account(funding, clock())
    store.open_account(NewAccount("alice", "u1", "EUR"), clock())
    store.create_transfers([NewTransfer("t1", "fund", "alice", 500, "EUR")], Actor.system(), clock())
    store.create_transfers([NewTransfer("h1", "alice", "fund", 200, "EUR", pending=True, timeout_seconds=60)],
                           Actor.system(), clock())
    return stage, tables, client


def test_a_consistent_ledger_passes_with_a_summary(scratch_ledger, capsys):
    stage, _, _ = scratch_ledger
    assert main(["ledger", "check", "--stage", stage]) == 0
    out = capsys.readouterr().out
    assert "2 accounts, 2 transfers, 4 entries" in out
    assert "EUR 0" in out and out.strip().endswith("OK")


def test_a_balance_that_disagrees_with_its_entries_is_named(scratch_ledger, capsys):
    stage, tables, client = scratch_ledger
    # GIVEN money appeared on an account without any entry or transfer
    client.update_item(TableName=tables.accounts, Key={"account_id": {"S": "alice"}},
                       UpdateExpression="ADD credits_posted :x", ExpressionAttributeValues={":x": {"N": "7"}})
    # WHEN the ledger is checked THEN it fails and says where
    assert main(["ledger", "check", "--stage", stage]) == 1
    out = capsys.readouterr().out
    assert "account alice: credits_posted 507 != sum of entries 500" in out
    assert "trial balance EUR: posted balances sum to 7, not 0" in out


def test_a_transfer_applied_twice_is_named(scratch_ledger, capsys):
    stage, tables, client = scratch_ledger
    entries = client.query(TableName=tables.entries, KeyConditionExpression="account_id = :a",
                           ExpressionAttributeValues={":a": {"S": "alice"}})["Items"]
    duplicate = dict(next(e for e in entries if e["transfer_id"]["S"] == "t1"))
    duplicate["entry_key"] = {"S": duplicate["entry_key"]["S"] + "-copy"}
    client.put_item(TableName=tables.entries, Item=duplicate)
    assert main(["ledger", "check", "--stage", stage]) == 1
    assert "transfer t1: 3 entries, expected 2 (applied twice)" in capsys.readouterr().out


def test_an_unreachable_endpoint_is_one_line_naming_it(monkeypatch, capsys):
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
    assert main(["ledger", "check", "--stage", f"y{uuid.uuid4().hex[:8]}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and endpoint in err


def test_a_record_that_cannot_be_read_is_named_and_the_rest_still_checked(scratch_ledger, capsys):
    stage, tables, client = scratch_ledger
    # GIVEN an item in the accounts table that is no ledger account (no kind, no currency)
    client.put_item(TableName=tables.accounts, Item={"account_id": {"S": "stray"}, "balance": {"N": "1"}})
    # WHEN the ledger is checked THEN it fails, names the stray item, and still reconciles the others
    assert main(["ledger", "check", "--stage", stage]) == 1
    out = capsys.readouterr().out
    assert "account stray: malformed record" in out
    assert "2 accounts, 2 transfers, 4 entries" in out
