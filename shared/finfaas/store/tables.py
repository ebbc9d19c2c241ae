"""Physical names of the ledger's tables (infra/template.yaml creates them)."""

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
