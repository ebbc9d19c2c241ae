"""The ledger's own use cases in process, for a capability whose write must commit with the money.

Payments, the wallet and loans call the ledger this way rather than through the ledger function: their
record (an intent, a move, a loan) rides in the money's one DynamoDB transaction as its TransactionExtra,
so the two are written together or not at all. Each capability's port adds the operations only it needs
(linked legs, partial posts, statements) on top of these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from finfaas.domain.errors import AccountNotFound
from finfaas.domain.ledger import Account, TransactionExtra, Transfer
from finfaas.services.ledger.model import TransferRequest
from finfaas.services.ledger.service import LedgerService

_T = TypeVar("_T")


class InProcessLedger:
    """Accounts, transfers, holds and voids over a LedgerService (its DynamoDB store, or the reference
    ledger in tests), each joined by the caller's TransactionExtra. In-memory fakes override
    `_in_transaction` to apply the extra's items with the operation, as the store's one transaction does."""

    def __init__(self, ledger: LedgerService) -> None:
        self.ledger = ledger

    def account(self, account_id: str) -> Account | None:
        try:
            return self.ledger.get_account(account_id)
        except AccountNotFound:
            return None

    def transfer(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
                 currency: str, extra: TransactionExtra) -> Transfer:
        request = TransferRequest(debit_account_id, credit_account_id, amount_minor, currency, transfer_id)
        return self._in_transaction(extra, lambda joined: self.ledger.transfer(request, extra=joined))

    def hold(self, transfer_id: str, debit_account_id: str, credit_account_id: str, amount_minor: int,
             currency: str, timeout_seconds: int, extra: TransactionExtra) -> Transfer:
        """A pending transfer; timeout_seconds 0 holds until it is posted or voided."""
        request = TransferRequest(debit_account_id, credit_account_id, amount_minor, currency, transfer_id,
                                  pending=True, timeout_seconds=timeout_seconds)
        return self._in_transaction(extra, lambda joined: self.ledger.transfer(request, extra=joined))

    def void(self, pending_id: str, transfer_id: str, extra: TransactionExtra) -> Transfer:
        return self._in_transaction(
            extra, lambda joined: self.ledger.void_pending(pending_id, transfer_id=transfer_id, extra=joined))

    def _linked(self, requests: list[TransferRequest], extra: TransactionExtra) -> list[Transfer]:
        return self._in_transaction(extra, lambda joined: self.ledger.transfer_linked(requests, extra=joined))

    def _posted(self, pending_id: str, transfer_id: str, amount_minor: int, currency: str,
                remainder_id: str | None, extra: TransactionExtra) -> Transfer:
        return self._in_transaction(extra, lambda joined: self.ledger.post_pending(
            pending_id, amount=amount_minor, currency=currency, transfer_id=transfer_id,
            remainder_id=remainder_id, extra=joined))

    def _in_transaction(self, extra: TransactionExtra,
                        operation: Callable[[TransactionExtra | None], _T]) -> _T:
        """Run a ledger operation with the caller's write in its transaction (here: the extra joins it)."""
        return operation(extra)
