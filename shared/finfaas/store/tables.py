"""Physical names of the ledger's tables, and their creation where no CloudFormation deploys them."""

from __future__ import annotations

from dataclasses import dataclass

from finfaas.platform.config import resource_name


@dataclass(frozen=True, slots=True)
class LedgerTables:
    accounts: str
    transfers: str
    entries: str
    outbox: str

    @classmethod
    def for_stage(cls, stage: str) -> LedgerTables:
        logicals = ("accounts", "transfers", "entries", "outbox")
        return cls(*(f"finfaas-{stage}-{logical}" for logical in logicals))

    @classmethod
    def from_config(cls) -> LedgerTables:
        """finfaas-<stage>-<logical>, as infra/template.yaml names them."""
        return cls(resource_name("accounts"), resource_name("transfers"), resource_name("entries"),
                   resource_name("outbox"))


def _table(name: str, keys: list[tuple[str, str]], extra_attributes: tuple[str, ...] = ()) -> dict:
    attributes = [name_ for name_, _ in keys] + list(extra_attributes)
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in attributes],
        "KeySchema": [{"AttributeName": a, "KeyType": kind} for a, kind in keys],
    }


def table_definitions(tables: LedgerTables) -> list[dict]:
    """The same key schemas as infra/template.yaml, for create_table."""
    accounts = _table(tables.accounts, [("account_id", "HASH")], ("owner_id", "opened_at"))
    accounts["GlobalSecondaryIndexes"] = [{
        "IndexName": "by-owner",
        "KeySchema": [{"AttributeName": "owner_id", "KeyType": "HASH"},
                      {"AttributeName": "opened_at", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"},
    }]
    return [
        accounts,
        _table(tables.transfers, [("transfer_id", "HASH")]),
        _table(tables.entries, [("account_id", "HASH"), ("entry_key", "RANGE")]),
        _table(tables.outbox, [("partition", "HASH"), ("event_key", "RANGE")]),
    ]


def create_tables(client, tables: LedgerTables) -> None:
    """Creates the ledger tables with a botocore DynamoDB client (emulators and tests)."""
    for definition in table_definitions(tables):
        client.create_table(**definition)
    for definition in table_definitions(tables):
        client.get_waiter("table_exists").wait(TableName=definition["TableName"])
