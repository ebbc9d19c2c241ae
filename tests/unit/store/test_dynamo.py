"""The one DynamoDB vocabulary: how a conditional write's failure is named, and what a store does next."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError
from finfaas.store.dynamo import (
    WriteOutcome,
    any_condition_failed,
    cancellation_codes,
    condition_flags,
    conditional_write,
    transient,
)
from pynamodb.exceptions import (
    CancellationReason,
    DeleteError,
    PutError,
    TransactWriteError,
    UpdateError,
    VerboseClientError,
)


def client_error(code: str, reasons=()) -> VerboseClientError:
    return VerboseClientError({"Error": {"Code": code, "Message": code}}, "TransactWriteItems",
                              cancellation_reasons=reasons)


def cancelled(*codes: str | None) -> TransactWriteError:
    """A TransactWriteItems cancelled with one reason code per item (None: the item was fine)."""
    reasons = [None if code is None else CancellationReason(code=code) for code in codes]
    return TransactWriteError("cancelled", cause=client_error("TransactionCanceledException", reasons))


def failing(error: Exception):
    def write():
        raise error
    return write


class StoreDown(Exception):
    pass


@pytest.mark.parametrize("error_type", [PutError, UpdateError, DeleteError])
def test_a_single_item_write_refused_by_its_condition_is_condition_failed(error_type):
    refused = error_type("refused", cause=client_error("ConditionalCheckFailedException"))

    written = conditional_write(failing(refused))

    assert written.outcome is WriteOutcome.CONDITION_FAILED
    assert written.or_raise(lambda _: StoreDown()) is False


def test_a_write_that_happened_is_taken():
    calls = []

    written = conditional_write(lambda: calls.append("put"))

    assert written.outcome is WriteOutcome.TAKEN and written.or_raise(lambda _: StoreDown()) is True
    assert calls == ["put"]


def test_a_transaction_cancelled_by_conditions_only_is_condition_failed_with_the_failed_items():
    error = cancelled(None, "ConditionalCheckFailed", None)

    written = conditional_write(failing(error))

    assert written.outcome is WriteOutcome.CONDITION_FAILED
    assert condition_flags(error) == [False, True, False]
    assert cancellation_codes(error) == [None, "ConditionalCheckFailed", None]


def test_a_transaction_cancelled_by_a_conflict_is_unavailable_and_may_be_sent_again():
    error = cancelled("TransactionConflict", None)

    written = conditional_write(failing(error))

    assert written.outcome is WriteOutcome.UNAVAILABLE
    assert transient(error)
    assert condition_flags(error) is None


def test_a_condition_failure_beside_a_conflict_is_not_a_clean_condition_failure_but_is_a_lost_race():
    error = cancelled("ConditionalCheckFailed", "TransactionConflict")

    assert conditional_write(failing(error)).outcome is WriteOutcome.UNAVAILABLE
    assert any_condition_failed(error)


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException",
                                  "RequestLimitExceeded"])
def test_throttling_is_unavailable_and_transient(code):
    error = PutError("throttled", cause=client_error(code))

    written = conditional_write(failing(error))

    assert written.outcome is WriteOutcome.UNAVAILABLE and written.code == code
    assert transient(error)


def test_an_answer_that_leaves_the_write_unknown_is_not_transient():
    """An InternalServerError may hide a write that happened: sending it again would read as a lost race."""
    error = TransactWriteError("lost", cause=client_error("InternalServerError"))

    assert conditional_write(failing(error)).outcome is WriteOutcome.UNAVAILABLE
    assert not transient(error)


def test_no_answer_at_all_is_unavailable_and_raises_the_stores_error_with_the_cause():
    error = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    written = conditional_write(failing(error))

    assert written.outcome is WriteOutcome.UNAVAILABLE
    with pytest.raises(StoreDown) as raised:
        written.or_raise(lambda w: StoreDown(w.code))
    assert raised.value.__cause__ is error
    assert str(raised.value) == "EndpointConnectionError"


def test_an_error_that_is_not_dynamodbs_passes_through():
    with pytest.raises(ZeroDivisionError):
        conditional_write(lambda: 1 / 0)
