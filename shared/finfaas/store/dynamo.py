"""One DynamoDB vocabulary for every store: error codes, cancellation reasons, a conditional write.

DynamoDB names one idea twice: a single-item write whose condition failed raises
`ConditionalCheckFailedException`, while a TransactWriteItems cancelled by a failed condition raises
`TransactionCanceledException` with the reason code `ConditionalCheckFailed` at that item's position.
Distinct names below keep the two apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

# Error codes (an exception's cause_response_code).
CONDITIONAL_CHECK_FAILED_EXCEPTION = "ConditionalCheckFailedException"
TRANSACTION_CANCELED_EXCEPTION = "TransactionCanceledException"
TRANSACTION_CONFLICT_EXCEPTION = "TransactionConflictException"
# DynamoDB's answer when a write would take an item past 400 KB (among other refusals of a request).
VALIDATION_EXCEPTION = "ValidationException"

# Cancellation-reason codes (one per item of a cancelled TransactWriteItems).
REASON_CONDITION_FAILED = "ConditionalCheckFailed"
REASON_TRANSACTION_CONFLICT = "TransactionConflict"
# The items that did not cause the cancellation: botocore gives None, DynamoDB Local the text "None".
REASON_NONE = "None"

# Refusals that guarantee nothing was written (contention, throttling): any conditional write may be
# sent again as it is, a little later.
TRANSIENT_CODES = frozenset({
    REASON_TRANSACTION_CONFLICT,
    TRANSACTION_CONFLICT_EXCEPTION,
    "ThrottlingError",
    "ThrottlingException",
    "ProvisionedThroughputExceeded",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
})
# Answers that leave it unknown whether the write happened. Only a write whose second application is a
# replay of the first (the ledger's idempotency guard) may be sent again after one of these; any other
# would read its own earlier success as a lost race.
AMBIGUOUS_CODES = frozenset({"InternalServerError", "TransactionInProgressException"})


class WriteOutcome(Enum):
    TAKEN = "taken"  # the write happened
    CONDITION_FAILED = "condition failed"  # a condition refused it: nothing was written
    UNAVAILABLE = "unavailable"  # DynamoDB refused it for another reason or did not answer


@dataclass(frozen=True)
class Written:
    """The outcome of one conditional write, with the error behind it when it was not taken."""

    outcome: WriteOutcome
    error: Exception | None = None

    @property
    def taken(self) -> bool:
        return self.outcome is WriteOutcome.TAKEN

    @property
    def code(self) -> str:
        """DynamoDB's error code, or the exception's type when there is none (e.g. no connection)."""
        return error_code(self.error) if self.error is not None else ""

    def or_raise(self, unavailable: Callable[[Written], Exception]) -> bool:
        """True when taken, False when a condition failed; raises unavailable(self) otherwise."""
        if self.outcome is WriteOutcome.UNAVAILABLE:
            raise unavailable(self) from self.error
        return self.taken


def error_code(error: Exception) -> str:
    return getattr(error, "cause_response_code", None) or type(error).__name__


def cancellation_codes(error: Exception | None) -> list[str | None]:
    """The reason code of each item of a cancelled transaction, in order; [] when it was not cancelled."""
    if not isinstance(error, TransactWriteError):
        return []
    if error.cause_response_code != TRANSACTION_CANCELED_EXCEPTION:
        return []
    return [None if reason is None or reason.code == REASON_NONE else reason.code
            for reason in error.cancellation_reasons or []]


def condition_failures(error: Exception | None) -> list[int]:
    """Positions of the transaction's items whose condition failed."""
    return [i for i, code in enumerate(cancellation_codes(error)) if code == REASON_CONDITION_FAILED]


def cancelled_by_conditions(error: Exception | None) -> bool:
    """True when a transaction was cancelled by failed conditions only (no conflict, no throttling)."""
    codes = {code for code in cancellation_codes(error) if code is not None}
    return codes == {REASON_CONDITION_FAILED}


def any_condition_failed(error: Exception | None) -> bool:
    """A single write refused by its condition, or a transaction in which at least one condition failed
    (other items may have been cancelled for a conflict: the write could not have succeeded anyway)."""
    return bool(condition_failures(error)) or condition_failed(error)


def condition_flags(error: Exception | None) -> list[bool] | None:
    """Per item of a transaction cancelled by conditions only, whether its condition failed; else None."""
    if not cancelled_by_conditions(error):
        return None
    return [code == REASON_CONDITION_FAILED for code in cancellation_codes(error)]


def condition_failed(error: Exception | None) -> bool:
    """A single-item write refused by its condition, or a transaction cancelled by conditions only."""
    if isinstance(error, TransactWriteError):
        return cancelled_by_conditions(error)
    return getattr(error, "cause_response_code", None) == CONDITIONAL_CHECK_FAILED_EXCEPTION


def error_codes(error: Exception | None) -> set[str]:
    """The error's own code and the codes of its cancellation reasons, if any."""
    codes = {code for code in cancellation_codes(error) if code is not None}
    own = getattr(error, "cause_response_code", None)
    return codes | {own} if own else codes


def transient(error: Exception | None) -> bool:
    """Contention or throttling refused the write, so nothing was written: it may be sent again as is."""
    return bool(error_codes(error) & TRANSIENT_CODES)


def outcome_of(error: Exception) -> WriteOutcome:
    return WriteOutcome.CONDITION_FAILED if condition_failed(error) else WriteOutcome.UNAVAILABLE


def conditional_write(write: Callable[[], object]) -> Written:
    """Runs one conditional write (a save, update, delete or transaction) and says how it went."""
    try:
        write()
    except (PynamoDBException, BotoCoreError) as error:
        return Written(outcome_of(error), error)
    return Written(WriteOutcome.TAKEN)


Created = TypeVar("Created")


def create_with_event(connection: Any, item: Any, new: Any, event_item: Any, created: Created,
                      stored: Callable[[], Created | None],
                      unavailable: Callable[[Written], Exception]) -> Created:
    """Puts `item` if `new` holds, with its outbox event in the same transaction: `created` once written,
    the stored object when it already existed (a retry of the same create), `unavailable` otherwise."""
    def transact() -> None:
        with TransactWrite(connection=connection) as transaction:
            transaction.save(item, condition=new)
            transaction.save(event_item)

    written = conditional_write(transact)
    if written.taken:
        return created
    if any_condition_failed(written.error):
        existing = stored()
        if existing is not None:
            return existing
    raise unavailable(written) from written.error


def consistent_get(
    model: Any,
    key: Sequence[Any],
    unavailable: Callable[[Exception], Exception],
    *,
    attributes_to_get: Sequence[str] | None = None,
    failures: tuple[type[Exception], ...] = (PynamoDBException,),
) -> Any | None:
    """The item under key, read consistently, or None when there is none; a read the table does not
    answer (one of `failures`) raises the store's own error, unavailable(error), chained to it."""
    try:
        return model.get(*key, consistent_read=True, attributes_to_get=attributes_to_get)
    except DoesNotExist:
        return None
    except failures as error:
        raise unavailable(error) from error


# DynamoDB may leave keys of a BatchGetItem unprocessed under throttling: ask again for them, a bounded
# number of times.
unprocessed_rounds_max = 4
unprocessed_backoff_seconds = 0.05


def batch_get_tables(
    connection: Any,
    requests: dict[str, Any],
    unavailable: Callable[[str, Exception | None], Exception],
    sleep: Callable[[float], None],
) -> dict[str, list[dict[str, Any]]]:
    """The raw items one BatchGetItem finds across tables (requests: its RequestItems), by table; keys left
    unprocessed are asked for again with backoff. A read the tables do not answer, or keys still left after
    the last round, raise the store's own error, unavailable(why, cause)."""
    found: dict[str, list[dict[str, Any]]] = {}
    pending = requests
    for round_ in range(unprocessed_rounds_max):
        try:
            answer = connection.dispatch("BatchGetItem", {"RequestItems": pending})
        except (PynamoDBException, BotoCoreError) as error:
            raise unavailable(str(error), error) from error
        for table, items in answer.get("Responses", {}).items():
            found.setdefault(table, []).extend(items)
        pending = answer.get("UnprocessedKeys") or {}
        if not pending:
            return found
        sleep(unprocessed_backoff_seconds * 2**round_)
    raise unavailable("keys left unprocessed", None)


def consistent_keys(keys: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A table's part of a consistent BatchGetItem on (pk, sk) string keys."""
    return {"Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys], "ConsistentRead": True}
