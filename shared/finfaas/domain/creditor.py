"""A payee at another bank: named by a transfer to it and by the rail that carries the payment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Creditor:
    bank_code: str
    account_number: str
    name: str

    def key(self) -> str:
        return f"{self.bank_code}:{self.account_number}"

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, str]) -> Creditor:
        return cls(raw["bank_code"], raw["account_number"], raw["name"])
