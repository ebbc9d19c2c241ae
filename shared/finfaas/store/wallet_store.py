"""The wallet table (HASH pk, RANGE sk): top-ups and withdrawals.

Items: `move#<move id>` / `-`: the move as JSON text (`doc`), its `version` and `status`, and `owner_key`
(`<owner>#<kind>`) with `created_key` (`<creation time>#<id>`) for the by-owner index the lists read.
A move is created with `attribute_not_exists` and changed by a put conditional on the stored version; a
change that moves money is not written here: `move_put` hands the item and its condition to the
ledger's transaction (a withdrawal's creation rides with its hold the same way).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from finfaas.domain.creditor import SealedCreditor
from finfaas.domain.ledger import entry_key_prefix, micros
from finfaas.platform import jsonio
from finfaas.platform.config import resource_name, settings
from finfaas.services.wallet.errors import WalletStoreUnavailable
from finfaas.services.wallet.model import (
    MoveEvent,
    MoveKind,
    MoveLedgerStep,
    MovePage,
    MoveStatus,
    WalletMove,
)
from finfaas.store.binding import RETRY_ATTEMPTS_MAX, StoreMeta, bound
from finfaas.store.dynamo import any_condition_failed, conditional_write
from finfaas.store.models import OutboxRecord, format_time, parse_time
from finfaas.store.outbox_store import outbox_partition

WALLET_TABLE_LOGICAL_NAME = "wallet"
OUTBOX_TABLE_LOGICAL_NAME = "outbox"
EVENT_SOURCE = "finfaas/wallet"
OUTBOX_PRODUCER = "wallet"
NO_RANGE = "-"
BY_OWNER_INDEX = "by-owner"


class _WalletItem(Model):
    Meta = StoreMeta

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    doc = UnicodeAttribute()
    version = NumberAttribute()
    status = UnicodeAttribute()
    owner_key = UnicodeAttribute()
    created_key = UnicodeAttribute()


class _OutboxItem(OutboxRecord):
    Meta = StoreMeta


class _ByOwner(GlobalSecondaryIndex):
    class Meta:
        index_name = BY_OWNER_INDEX
        projection = AllProjection()

    owner_key = UnicodeAttribute(hash_key=True)
    created_key = UnicodeAttribute(range_key=True)


@lru_cache(maxsize=8)
def _model(table_name: str, region: str) -> Any:
    # pynamodb ties an index to the model class that declares it: the bound model declares its own.
    index = type(_ByOwner.__name__, (_ByOwner,), {"Meta": type("Meta", (_ByOwner.Meta,), {})})()
    meta = type("Meta", (StoreMeta,), {"table_name": table_name, "region": region})
    return type("WalletItem", (_WalletItem,), {"Meta": meta, "by_owner": index, "__module__": __name__})


def _key(move_id: str) -> tuple[str, str]:
    return f"move#{move_id}", NO_RANGE


def owner_key(owner_id: str, kind: MoveKind) -> str:
    return f"{owner_id}#{kind.value}"


def move_to_json(move: WalletMove) -> str:
    document = {
        "move_id": move.move_id, "kind": move.kind.value, "owner_id": move.owner_id,
        "account_id": move.account_id, "clearing_account_id": move.clearing_account_id,
        # Amounts as text: JSON numbers are floats to many readers.
        "amount_minor": str(move.amount_minor), "currency": move.currency,
        "bank_account": move.bank_account.to_json(), "created_at": format_time(move.created_at),
        "status": move.status.value,
        "ledger": [{"kind": s.kind, "transfer_id": s.transfer_id, "amount_minor": str(s.amount_minor)}
                   for s in move.ledger],
        "failure": move.failure,
        "updated_at": format_time(move.updated_at) if move.updated_at else None,
        "version": move.version, "write_id": move.write_id,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def move_from_json(text: str) -> WalletMove:
    raw: dict[str, Any] = jsonio.loads(text)
    return WalletMove(
        move_id=raw["move_id"], kind=MoveKind(raw["kind"]), owner_id=raw["owner_id"],
        account_id=raw["account_id"], clearing_account_id=raw["clearing_account_id"],
        amount_minor=int(raw["amount_minor"]), currency=raw["currency"],
        bank_account=SealedCreditor.from_json(raw["bank_account"]), created_at=parse_time(raw["created_at"]),
        status=MoveStatus(raw["status"]),
        ledger=tuple(MoveLedgerStep(s["kind"], s["transfer_id"], int(s["amount_minor"]))
                     for s in raw["ledger"]),
        failure=raw.get("failure", ""),
        updated_at=parse_time(raw["updated_at"]) if raw.get("updated_at") else None,
        version=int(raw["version"]), write_id=raw.get("write_id", ""),
    )


class WalletStore:
    """Top-ups and withdrawals on DynamoDB (pynamodb). Thread-safe; share one per process."""

    def __init__(self, table_name: str | None = None, outbox_table_name: str | None = None,
                 region: str | None = None) -> None:
        self.table_name = table_name or resource_name(WALLET_TABLE_LOGICAL_NAME)
        region = region or settings().region
        self._item = _model(self.table_name, region)
        outbox_table_name = outbox_table_name or resource_name(OUTBOX_TABLE_LOGICAL_NAME)
        self._outbox = bound(_OutboxItem, outbox_table_name, region)
        self._connection = Connection(region=region, max_retry_attempts=RETRY_ATTEMPTS_MAX)

    def create(self, move: WalletMove, event: MoveEvent) -> WalletMove:
        item, condition = self.move_put(move)
        written = self._transact(item, condition, move, event)
        if written.taken:
            return move
        if any_condition_failed(written.error):
            existing = self.get(move.move_id)
            if existing is not None:
                return existing
        raise WalletStoreUnavailable(f"create {move.move_id}: {written.code}") from written.error

    def get(self, move_id: str) -> WalletMove | None:
        try:
            item = self._item.get(*_key(move_id), consistent_read=True)
        except self._item.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise WalletStoreUnavailable(f"read {move_id}: {error}") from error
        return move_from_json(item.doc)

    def save(self, move: WalletMove, event: MoveEvent) -> bool:
        item, condition = self.move_put(move)
        written = self._transact(item, condition, move, event)
        if written.taken:
            return True
        if any_condition_failed(written.error):
            return False
        raise WalletStoreUnavailable(f"save {move.move_id}: {written.code}") from written.error

    def move_put(self, move: WalletMove) -> tuple[Any, Any]:
        item = self._item(*_key(move.move_id), doc=move_to_json(move), version=move.version,
                          status=move.status.value, owner_key=owner_key(move.owner_id, move.kind),
                          created_key=f"{format_time(move.created_at)}#{move.move_id}")
        if move.version == 1:
            return item, self._item.pk.does_not_exist()
        return item, self._item.version == move.version - 1

    def event_put(self, move: WalletMove, event: MoveEvent) -> tuple[Any, Any]:
        """The outbox record; its id names the move's version, so each change has one event."""
        now = move.updated_at or move.created_at
        event_id = f"{event.type}:{move.move_id}:{move.version}"
        record = self._outbox(
            outbox_partition(OUTBOX_PRODUCER, move.move_id), f"{entry_key_prefix(micros(now))}#{event_id}",
            event_id=event_id, type=event.type, source=EVENT_SOURCE, subject=move.move_id,
            time=format_time(now), data=json.dumps(dict(event.data), separators=(",", ":"), sort_keys=True))
        return record, None

    def move_from_raw(self, raw_item: dict[str, Any]) -> WalletMove:
        return move_from_json(self._item.from_raw_data(raw_item).doc)

    def page(self, owner_id: str, kind: MoveKind, limit: int, start: dict[str, str] | None) -> MovePage:
        try:
            results = self._item.by_owner.query(
                owner_key(owner_id, kind), scan_index_forward=False, limit=limit, page_size=limit,
                last_evaluated_key={k: {"S": v} for k, v in start.items()} if start else None)
            moves = [move_from_json(item.doc) for item in results]
        except PynamoDBException as error:
            raise WalletStoreUnavailable(f"list moves: {error}") from error
        last = results.last_evaluated_key
        return MovePage(moves, {k: v["S"] for k, v in last.items()} if last else None)

    def _transact(self, item: Any, condition: Any, move: WalletMove, event: MoveEvent) -> Any:
        outbox, _ = self.event_put(move, event)

        def transact() -> None:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(item, condition=condition)
                transaction.save(outbox)

        return conditional_write(transact)
