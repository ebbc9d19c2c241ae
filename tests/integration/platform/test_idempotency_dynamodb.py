"""Idempotency keys against DynamoDB Local: the store contract, races, replays and transactions."""

from __future__ import annotations

import threading
import uuid

import pytest
from finfaas.platform.idempotency import (
    REPLAYED_HEADER,
    IdempotencyGuard,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    RecordStatus,
    StoredResponse,
)
from finfaas.store.idempotency_store import IdempotencyStore
from finfaas_dev.testing.workflow import FakeClock
from pynamodb.attributes import UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite
from unit.platform.test_idempotency_contract import IdempotencyStoreContract

pytestmark = pytest.mark.emulator

START_S = 1_700_000_000.0
LEASE_SECONDS = 30
BARRIER_TIMEOUT_SECONDS = 10


@pytest.fixture
def store(table_names) -> IdempotencyStore:
    return IdempotencyStore(table_names["idempotency"])


class TestDynamoDBIdempotencyStore(IdempotencyStoreContract):
    """The same contract the in-memory fake passes."""


def guard_for(store: IdempotencyStore, clock: FakeClock) -> IdempotencyGuard:
    return IdempotencyGuard(store, "transfers", clock=clock, lease_seconds=LEASE_SECONDS)


def scope_of(guard: IdempotencyGuard, key: str, body: str):
    return guard.scope(principal="cus_1", route="POST /transfers", key=key, method="POST",
                       path="/transfers", body=body, required=True)


def test_two_concurrent_claims_of_one_key_run_the_handler_once(store):
    # GIVEN two instances (two guards) receiving the same request at the same moment
    clock = FakeClock(START_S)
    guards = [guard_for(store, clock), guard_for(store, clock)]
    key = uuid.uuid4().hex
    both_tried = threading.Barrier(2, timeout=BARRIER_TIMEOUT_SECONDS)
    runs: list[int] = []
    outcomes: dict[int, object] = {}

    def handler(index: int):
        runs.append(index)
        return StoredResponse(201, '{"id":"tr_1"}')

    def attempt(index: int) -> None:
        guard = guards[index]
        scope = scope_of(guard, key, '{"amount":"10.00"}')
        outcome = guard.begin(scope)
        both_tried.wait()  # the winner keeps its claim open until the loser has tried
        if isinstance(outcome, StoredResponse):
            outcomes[index] = outcome
            return
        guard.finish(outcome, handler(index))
        outcomes[index] = "ran"

    errors: dict[int, BaseException] = {}

    def run(index: int) -> None:
        try:
            attempt(index)
        except IdempotencyKeyInUse as error:
            errors[index] = error
            both_tried.wait()

    threads = [threading.Thread(target=run, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN exactly one ran and the other was told 409
    assert len(runs) == 1
    assert list(outcomes.values()) == ["ran"]
    assert len(errors) == 1
    assert next(iter(errors.values())).status == 409


def test_a_retry_after_completion_replays_without_running(store):
    guard = guard_for(store, FakeClock(START_S))
    key = uuid.uuid4().hex
    calls: list[str] = []

    def handler() -> StoredResponse:
        calls.append("ran")
        return StoredResponse(201, '{"id":"tr_9"}', {"Content-Type": "application/json"})

    first = guard.run(scope_of(guard, key, '{"amount": "1.00", "to": "b"}'), handler)
    # The same JSON with other spacing and key order is the same request.
    second = guard.run(scope_of(guard, key, '{"to":"b","amount":"1.00"}'), handler)

    assert calls == ["ran"]
    assert second.body == first.body and second.status_code == 201
    assert second.headers[REPLAYED_HEADER] == "true"
    assert second.headers["Content-Type"] == "application/json"


def test_a_different_body_under_a_used_key_is_422(store):
    guard = guard_for(store, FakeClock(START_S))
    key = uuid.uuid4().hex
    guard.run(scope_of(guard, key, '{"amount":"1.00"}'), lambda: StoredResponse(201, "{}"))

    with pytest.raises(IdempotencyKeyReused) as raised:
        guard.run(scope_of(guard, key, '{"amount":"2.00"}'), lambda: StoredResponse(201, "{}"))

    assert raised.value.status == 422


def test_a_crashed_claim_is_taken_over_once_its_lease_expires(store):
    # GIVEN an instance that claimed the key and died without completing or releasing
    clock = FakeClock(START_S)
    crashed = guard_for(store, clock)
    key = uuid.uuid4().hex
    assert not isinstance(crashed.begin(scope_of(crashed, key, "{}")), StoredResponse)
    retrying = guard_for(store, clock)

    # WHEN the client retries inside the lease, and again after it
    with pytest.raises(IdempotencyKeyInUse):
        retrying.run(scope_of(retrying, key, "{}"), lambda: StoredResponse(201, "{}"))
    clock.now += LEASE_SECONDS
    response = retrying.run(scope_of(retrying, key, "{}"), lambda: StoredResponse(201, '{"ok":true}'))

    # THEN the retry runs and its result is what later retries replay
    assert response.body == '{"ok":true}'
    assert store.get(scope_of(retrying, key, "{}").storage_key).status is RecordStatus.COMPLETED


class LedgerRow(Model):
    """Stands in for a ledger item written in the same transaction (the ratelimits table's key)."""

    class Meta:
        table_name = "unbound"

    bucket = UnicodeAttribute(hash_key=True)


@pytest.fixture
def ledger_row(table_names):
    meta = type("Meta", (), {"table_name": table_names["ratelimits"]})
    return type("BoundLedgerRow", (LedgerRow,), {"Meta": meta})


def transfer_in_one_transaction(store, row_model, row_id, record) -> None:
    with TransactWrite(connection=Connection()) as transaction:
        transaction.save(row_model(row_id), condition=row_model.bucket.does_not_exist())
        store.add_completion_to(transaction, record)


def test_the_key_is_recorded_inside_the_callers_transaction(store, ledger_row):
    guard = guard_for(store, FakeClock(START_S))
    key, row_id = uuid.uuid4().hex, f"row-{uuid.uuid4().hex}"
    scope = scope_of(guard, key, '{"amount":"5.00"}')
    response = StoredResponse(201, '{"id":"tr_5"}')

    # WHEN the first attempt commits and a retry sends the same transaction again
    transfer_in_one_transaction(store, ledger_row, row_id, guard.completion_record(scope, response))
    with pytest.raises(TransactWriteError):
        transfer_in_one_transaction(store, ledger_row, row_id, guard.completion_record(scope, response))

    # THEN the retry's cancellation resolves to a replay of the first response
    replay = guard.replay_after_conflict(scope)
    assert replay.body == '{"id":"tr_5"}' and replay.headers[REPLAYED_HEADER] == "true"


def test_a_cancellation_for_another_reason_is_not_taken_for_a_replay(store, ledger_row):
    guard = guard_for(store, FakeClock(START_S))
    row_id = f"row-{uuid.uuid4().hex}"
    ledger_row(row_id).save()  # the ledger's own condition will fail (think: overdraft)
    scope = scope_of(guard, uuid.uuid4().hex, "{}")

    with pytest.raises(TransactWriteError):
        transfer_in_one_transaction(store, ledger_row, row_id,
                                    guard.completion_record(scope, StoredResponse(201, "{}")))

    assert guard.replay_after_conflict(scope) is None
    assert store.get(scope.storage_key) is None


def test_a_claim_lost_to_a_takeover_cannot_commit_the_transaction(store, ledger_row):
    # GIVEN a slow attempt whose lease lapsed and a retry that took the key over
    clock = FakeClock(START_S)
    slow, retry = guard_for(store, clock), guard_for(store, clock)
    scope = scope_of(slow, uuid.uuid4().hex, "{}")
    slow_claim = slow.begin(scope)
    clock.now += LEASE_SECONDS
    retry.begin(scope)

    # WHEN the slow attempt finally commits its money movement with its own claim
    record = slow.completion_record(scope, StoredResponse(201, "{}"), slow_claim)
    with pytest.raises(TransactWriteError):
        transfer_in_one_transaction(store, ledger_row, f"row-{uuid.uuid4().hex}", record)

    # THEN nothing was written by it: the retry still holds the key
    assert store.get(scope.storage_key).status is RecordStatus.IN_PROGRESS


def test_a_ledger_style_transaction_replays_from_the_cancellation_reason_without_a_read(store, ledger_row):
    # GIVEN a store that builds its own TransactWriteItems and asks for ALL_OLD on failure (the ledger)
    guard = guard_for(store, FakeClock(START_S))
    scope = scope_of(guard, uuid.uuid4().hex, '{"amount":"7.00"}')
    connection = Connection()

    def commit(row_id: str) -> None:
        item, condition = store.completion_put(guard.completion_record(scope, StoredResponse(201, '{"n":7}')))
        row = ledger_row(row_id)
        connection.transact_write_items(
            condition_check_items=[], delete_items=[], update_items=[],
            put_items=[
                row.get_save_kwargs_from_instance(condition=ledger_row.bucket.does_not_exist()),
                item.get_save_kwargs_from_instance(condition=condition,
                                                   return_values_on_condition_failure="ALL_OLD"),
            ],
        )

    commit(f"row-{uuid.uuid4().hex}")

    # WHEN a retry's transaction is cancelled by the idempotency condition
    with pytest.raises(TransactWriteError) as raised:
        commit(f"row-{uuid.uuid4().hex}")
    reason = raised.value.cancellation_reasons[1]

    # THEN the returned item alone answers with the replay
    replay = guard.answer_for(scope, store.record_from_raw(reason.raw_item))
    assert replay.body == '{"n":7}' and replay.headers[REPLAYED_HEADER] == "true"
