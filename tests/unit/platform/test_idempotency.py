"""IdempotencyGuard over the in-memory store: what a client sees when it retries."""

from __future__ import annotations

import time

import pytest
from finfaas.platform.idempotency import (
    CLAIM_LEASE_SECONDS,
    IDEMPOTENCY_KEY_HEADER,
    RECORD_RETENTION_SECONDS,
    REPLAYED_HEADER,
    STORED_BODY_BYTES_MAX,
    Claim,
    IdempotencyGuard,
    IdempotencyKeyInUse,
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    IdempotencyStoreError,
    RecordStatus,
    StoredResponse,
    fingerprint,
    storage_key,
    validate_key,
)
from finfaas_dev.fakes.platform import InMemoryIdempotencyStore
from finfaas_dev.testing.workflow import FakeClock

START_S = 1_700_000_000.0
LEASE_SECONDS = 30


class CountingHandler:
    def __init__(self, response: StoredResponse) -> None:
        self.response = response
        self.calls = 0

    def __call__(self) -> StoredResponse:
        self.calls += 1
        return self.response


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START_S)


@pytest.fixture
def store() -> InMemoryIdempotencyStore:
    return InMemoryIdempotencyStore()


@pytest.fixture
def guard(store, clock) -> IdempotencyGuard:
    return IdempotencyGuard(store, "payments", clock=clock, lease_seconds=LEASE_SECONDS)


def scope(guard, body='{"amount":"10.00","to":"acc_2"}', key="key-1", principal="cus_1", path="/payments"):
    return guard.scope(principal=principal, route="POST /payments", key=key, method="POST", path=path,
                       body=body, required=True)


CREATED = StoredResponse(201, '{"id":"pay_1"}', {"Content-Type": "application/json", "X-Request-Id": "r1"})


@pytest.mark.parametrize("bad", ["", "x" * 256, "tab\there", "newline\n", "caf\u00e9", "\x7f"])
def test_invalid_keys_are_400_naming_the_header(bad):
    with pytest.raises(IdempotencyKeyInvalid) as raised:
        validate_key(bad)

    assert raised.value.status == 400
    assert IDEMPOTENCY_KEY_HEADER in raised.value.detail


@pytest.mark.parametrize("good", ["a", "x" * 255, "3f0c-uuid 42 ~!@#$%^&*()"])
def test_printable_keys_up_to_255_chars_are_accepted(good):
    assert validate_key(good) == good


def test_a_required_key_that_is_missing_is_400_naming_the_header(guard):
    with pytest.raises(IdempotencyKeyMissing) as raised:
        guard.scope(principal="cus_1", route="POST /payments", key=None, method="POST", path="/payments",
                    body="{}", required=True)

    assert raised.value.status == 400
    assert IDEMPOTENCY_KEY_HEADER in raised.value.detail


def test_an_optional_key_that_is_missing_means_no_idempotency(guard):
    assert guard.scope(principal="cus_1", route="POST /x", key=None, method="POST", path="/x",
                       body="{}") is None


def test_fingerprint_ignores_json_spacing_and_key_order_but_not_values():
    base = fingerprint("POST", "/payments", '{"a": 1, "b": [1, 2]}')

    assert fingerprint("post", "/payments", b'{"b":[1,2],"a":1}') == base
    assert fingerprint("POST", "/payments", '{"a": 2, "b": [1, 2]}') != base
    assert fingerprint("POST", "/payments", '{"a": 1, "b": [2, 1]}') != base
    assert fingerprint("PUT", "/payments", '{"a": 1, "b": [1, 2]}') != base
    assert fingerprint("POST", "/refunds", '{"a": 1, "b": [1, 2]}') != base
    assert fingerprint("POST", "/payments", '{"a": 1, "b": [1, 2]}', {"dry_run": "1"}) != base


def test_the_same_key_from_two_principals_or_routes_never_collides():
    assert storage_key("cus_1", "payments", "POST /payments", "k") != storage_key(
        "cus_2", "payments", "POST /payments", "k")
    assert storage_key("cus_1", "payments", "POST /payments", "k") != storage_key(
        "cus_1", "payments", "POST /refunds", "k")
    # A separator inside a value cannot forge another scope.
    assert storage_key("a", "f", "r:b", "k") != storage_key("a:r", "f", "b", "k")


def test_a_completed_request_is_replayed_not_rerun(guard):
    handler = CountingHandler(CREATED)

    first = guard.run(scope(guard), handler)
    second = guard.run(scope(guard, body='{"to": "acc_2", "amount": "10.00"}'), handler)

    assert handler.calls == 1
    assert first == CREATED
    assert (second.status_code, second.body) == (201, '{"id":"pay_1"}')
    assert second.headers == {"Content-Type": "application/json", REPLAYED_HEADER: "true"}


def test_the_same_key_with_a_different_body_is_422(guard):
    guard.run(scope(guard), CountingHandler(CREATED))
    handler = CountingHandler(CREATED)

    with pytest.raises(IdempotencyKeyReused) as raised:
        guard.run(scope(guard, body='{"amount":"99.00","to":"acc_2"}'), handler)

    assert raised.value.status == 422
    assert handler.calls == 0


def test_the_same_key_while_the_first_runs_is_409_with_retry_after(guard, clock):
    claim = guard.begin(scope(guard))
    clock.now += 10.5

    with pytest.raises(IdempotencyKeyInUse) as raised:
        guard.run(scope(guard), CountingHandler(CREATED))

    assert raised.value.status == 409
    assert raised.value.headers["Retry-After"] == "20"
    guard.finish(claim, CREATED)


def test_a_different_body_while_the_first_runs_is_422_not_409(guard):
    guard.begin(scope(guard))

    with pytest.raises(IdempotencyKeyReused):
        guard.run(scope(guard, body="{}"), CountingHandler(CREATED))


def test_a_crashed_attempt_is_taken_over_after_its_lease(guard, clock):
    guard.begin(scope(guard))  # never finished: the instance died
    clock.now += LEASE_SECONDS
    handler = CountingHandler(CREATED)

    assert guard.run(scope(guard), handler) == CREATED
    assert handler.calls == 1


def test_a_dead_claimants_key_is_free_to_the_same_request_within_seconds(store, clock):
    # GIVEN a claim whose process died (nothing renews it), under the default lease
    guard = IdempotencyGuard(store, "payments", clock=clock)
    guard.begin(scope(guard))

    # WHEN the client retries at once, then after the lease
    with pytest.raises(IdempotencyKeyInUse) as raised:
        guard.run(scope(guard), CountingHandler(CREATED))
    clock.now += CLAIM_LEASE_SECONDS
    handler = CountingHandler(CREATED)

    # THEN it was told to come back within the lease, and then the retry runs
    assert int(raised.value.headers["Retry-After"]) <= CLAIM_LEASE_SECONDS <= 10
    assert guard.run(scope(guard), handler) == CREATED
    assert handler.calls == 1


def test_a_running_handler_keeps_its_claim_past_the_first_lease(store, clock):
    # GIVEN a guard renewing claims often (real seconds) under a fake clock
    guard = IdempotencyGuard(store, "payments", clock=clock, lease_seconds=LEASE_SECONDS, renew_seconds=0.01)
    retry_answers: list[str] = []

    def slow_handler() -> StoredResponse:
        # WHEN the handler outlives its first lease and an equal retry arrives meanwhile
        first_end_ms = store.get(scope(guard).storage_key).lease_expires_at_ms
        clock.now += LEASE_SECONDS + 1
        for _ in range(500):  # bounded: up to 5 s for the renewal thread to write
            if store.get(scope(guard).storage_key).lease_expires_at_ms > first_end_ms:
                break
            time.sleep(0.01)
        try:
            guard.run(scope(guard), CountingHandler(StoredResponse(201, '{"by":"retry"}')))
            retry_answers.append("ran")
        except IdempotencyKeyInUse:
            retry_answers.append("409")
        return CREATED

    # THEN the retry is told the first still runs, and only the first's answer is stored
    assert guard.run(scope(guard), slow_handler) == CREATED
    assert retry_answers == ["409"]
    assert guard.run(scope(guard), CountingHandler(CREATED)).body == CREATED.body


def test_a_wedged_handler_stops_renewing_its_claim_after_held_seconds_max(store, clock):
    # GIVEN a guard renewing every 10 ms that holds a claim at most 100 ms
    guard = IdempotencyGuard(store, "payments", clock=clock, renew_seconds=0.01, held_seconds_max=0.1)
    claim = guard.begin(scope(guard))
    assert isinstance(claim, Claim)

    # WHEN the handler runs many times that long
    with guard.renewing(claim) as renewal:
        time.sleep(0.8)

    # THEN the renewals stopped at the bound (10 at most), so the claim lapses with its lease
    assert 1 <= renewal.renewals <= 10


def test_a_server_error_is_not_stored_so_the_retry_runs(guard):
    failing = CountingHandler(StoredResponse(503, '{"code":"service_unavailable"}'))
    guard.run(scope(guard), failing)
    handler = CountingHandler(CREATED)

    assert guard.run(scope(guard), handler) == CREATED
    assert handler.calls == 1


def test_a_handler_exception_releases_the_key(guard):
    def explode() -> StoredResponse:
        raise RuntimeError("dependency down")

    with pytest.raises(RuntimeError):
        guard.run(scope(guard), explode)

    assert guard.run(scope(guard), CountingHandler(CREATED)) == CREATED


def test_a_client_error_is_stored_and_replayed(guard):
    problem_json = {"Content-Type": "application/problem+json"}
    rejected = StoredResponse(422, '{"code":"insufficient_funds"}', problem_json)
    guard.run(scope(guard), CountingHandler(rejected))
    handler = CountingHandler(CREATED)

    replay = guard.run(scope(guard), handler)

    assert handler.calls == 0
    assert replay.status_code == 422 and replay.headers[REPLAYED_HEADER] == "true"


def test_a_rate_limited_answer_is_not_pinned_to_the_key(guard):
    guard.run(scope(guard), CountingHandler(StoredResponse(429, "{}")))

    assert guard.run(scope(guard), CountingHandler(CREATED)) == CREATED


def test_keys_are_kept_24_hours_then_treated_as_absent(guard, clock):
    guard.run(scope(guard), CountingHandler(CREATED))
    clock.now += RECORD_RETENTION_SECONDS - 1
    assert guard.run(scope(guard), CountingHandler(CREATED)).headers.get(REPLAYED_HEADER) == "true"

    clock.now += 1
    handler = CountingHandler(CREATED)
    guard.run(scope(guard, body="{}"), handler)

    assert handler.calls == 1


def test_retention_below_24_hours_is_refused(store):
    with pytest.raises(ValueError):
        IdempotencyGuard(store, "payments", retention_seconds=RECORD_RETENTION_SECONDS - 1)


def test_a_slow_attempt_that_lost_its_lease_cannot_overwrite_the_retry(guard, store, clock):
    # GIVEN a slow attempt whose lease lapsed while a retry took over and finished
    slow_claim = guard.begin(scope(guard))
    clock.now += LEASE_SECONDS
    guard.run(scope(guard), CountingHandler(StoredResponse(201, '{"by":"retry"}')))

    # WHEN the slow attempt finishes with its own response
    guard.finish(slow_claim, StoredResponse(201, '{"by":"slow"}'))

    # THEN retries keep replaying the response that was stored first
    assert guard.run(scope(guard), CountingHandler(CREATED)).body == '{"by":"retry"}'


def test_a_response_too_large_to_store_releases_the_key(guard):
    huge = StoredResponse(200, "x" * (STORED_BODY_BYTES_MAX + 1))
    guard.run(scope(guard), CountingHandler(huge))
    handler = CountingHandler(CREATED)

    guard.run(scope(guard), handler)

    assert handler.calls == 1


class BrokenStore(InMemoryIdempotencyStore):
    def complete(self, record):
        raise IdempotencyStoreError("table unreachable")


def test_a_store_failure_after_the_work_still_returns_the_response(clock):
    guard = IdempotencyGuard(BrokenStore(), "payments", clock=clock)

    assert guard.run(scope(guard), CountingHandler(CREATED)) == CREATED


def test_in_transaction_replay_after_conflict(guard, store):
    # GIVEN the ledger committed a transfer together with its completion record
    done = scope(guard)
    store.put_if_free(guard.completion_record(done, CREATED), int(START_S * 1000))

    replay = guard.replay_after_conflict(done)
    unrelated = guard.replay_after_conflict(scope(guard, key="never-used"))

    assert replay.body == CREATED.body and replay.headers[REPLAYED_HEADER] == "true"
    assert unrelated is None
    with pytest.raises(IdempotencyKeyReused):
        guard.replay_after_conflict(scope(guard, body="{}"))


def test_completion_record_keeps_only_replayable_headers(guard):
    record = guard.completion_record(scope(guard), CREATED)

    assert record.status is RecordStatus.COMPLETED
    assert record.lease_token is None
    assert record.response.headers == {"Content-Type": "application/json"}


def test_record_outcome_stores_a_final_4xx_and_defers_to_an_earlier_result(guard):
    rejected = StoredResponse(422, '{"code":"insufficient_funds"}')

    first = guard.record_outcome(scope(guard), rejected)
    second = guard.record_outcome(scope(guard), StoredResponse(422, '{"code":"other"}'))

    assert first == rejected
    assert second.body == rejected.body and second.headers[REPLAYED_HEADER] == "true"
