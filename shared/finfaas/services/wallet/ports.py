"""What the wallet service needs from outside: its table and the ledger in process."""

from __future__ import annotations

from typing import Any, Protocol

from finfaas.domain.ledger import Account, TransactionExtra, Transfer
from finfaas.services.wallet.model import MoveEvent, MoveKind, MovePage, WalletMove


class WalletMoves(Protocol):
    """Top-ups and withdrawals (DynamoDB: store/wallet_store.py; in memory: finfaas_dev/fakes/wallet.py).
    A change that moves money is not saved here: its put rides in the ledger's transaction."""

    def create(self, move: WalletMove, event: MoveEvent) -> WalletMove:
        """Write a new move with its event; the stored one when the id is taken (nothing written)."""
        ...

    def get(self, move_id: str) -> WalletMove | None: ...

    def save(self, move: WalletMove, event: MoveEvent) -> bool:
        """Write move and its event if the stored version is move.version - 1; False otherwise."""
        ...

    def move_put(self, move: WalletMove) -> tuple[Any, Any]:
        """(item, condition): a new move when move.version is 1, else a put over move.version - 1."""
        ...

    def event_put(self, move: WalletMove, event: MoveEvent) -> tuple[Any, Any]:
        """(item, None): the event's outbox item, for the ledger transaction carrying the change."""
        ...

    def move_from_raw(self, raw_item: dict[str, Any]) -> WalletMove: ...

    def page(self, owner_id: str, kind: MoveKind, limit: int, start: dict[str, str] | None) -> MovePage:
        """Up to limit of the owner's moves of one kind, newest first, after a previous page's key."""
        ...


class WalletLedger(Protocol):
    """The ledger's use cases in process (services/payments/service.py LedgerStoreAccounts), so a move's
    put joins the ledger's own transaction."""

    def account(self, account_id: str) -> Account | None: ...

    def hold(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
             currency: str, timeout_seconds: int, extra: TransactionExtra) -> Transfer: ...

    def transfer(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
                 currency: str, extra: TransactionExtra) -> Transfer: ...

    def post(self, pending_id: str, transfer_id: str, amount_minor: int, currency: str,
             remainder_id: str | None, extra: TransactionExtra) -> Transfer: ...

    def void(self, pending_id: str, transfer_id: str, extra: TransactionExtra) -> Transfer: ...
