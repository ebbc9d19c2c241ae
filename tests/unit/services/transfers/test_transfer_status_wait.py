"""GET /transfers/{id}?wait=: waiting requests park on one status watcher per process.

A waiting request reads its order once; the watcher reads every watched order in one batch per tick
and wakes the waiters of those now final, or the saga's last step in this process wakes them at once.
At most `waiters_max` wait; any other answers at once, with Retry-After. These tests drive the watcher
and TransfersService from threads on the in-memory order store; ticks are the test's own
(run_thread=False) except where the watcher's thread itself is under test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from finfaas.platform.idempotency import IdempotencyGuard
from finfaas.services.transfers.api import WaitQuery
from finfaas.services.transfers.errors import TransferStoreUnavailable
from finfaas.services.transfers.model import OrderEvent, TransferOrder, TransferStatus
from finfaas.services.transfers.service import TransfersService, TransfersSettings
from finfaas.services.transfers.watcher import WATCHER_THREAD_NAME, StatusWatcher
from finfaas_dev.fakes.platform import InMemoryIdempotencyStore
from finfaas_dev.fakes.transfers import InMemoryTransferOrders
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler
from pydantic import ValidationError

OWNER = "cust-1"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
WAIT_SECONDS = 30.0
THREAD_SECONDS_MAX = 10.0  # a waiter the test lets go ends well within this
IMMEDIATE_SECONDS_MAX = 1.0  # an answer that did not wait (a wait would last WAIT_SECONDS)
SHORT_WAIT_SECONDS = 0.05
FAST_TICK_SECONDS = 0.01


class CountingOrders(InMemoryTransferOrders):
    """Orders that count the batch reads, and fail them while `failing` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.failing = False

    def get_many(self, transfer_ids: Sequence[str]) -> dict[str, TransferOrder]:
        if self.failing:
            raise TransferStoreUnavailable("the orders table is unreachable")
        self.batches.append(list(transfer_ids))
        return super().get_many(transfer_ids)


class Unused:
    """Accounts, risk and orchestrator: a status request of a PROCESSING order calls none of them."""

    def __getattr__(self, name: str):
        raise AssertionError(f"a status request called {name}")


class Waiter(threading.Thread):
    """One waiting request in its own request thread."""

    def __init__(self, wait) -> None:
        super().__init__(daemon=True)
        self._wait = wait
        self.result = None

    def run(self) -> None:
        self.result = self._wait()

    def finished(self) -> Waiter:
        self.join(THREAD_SECONDS_MAX)
        assert not self.is_alive(), "the waiter never returned"
        return self


def until(condition, seconds: float = THREAD_SECONDS_MAX) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.002)


def processing(orders: InMemoryTransferOrders, transfer_id: str) -> TransferOrder:
    order = TransferOrder(
        transfer_id, OWNER, "acc-a", "acc-b", 2_500, "USD", NOW, status=TransferStatus.PROCESSING
    )
    orders.create(order, OrderEvent("transfer.accepted", {"transfer_id": transfer_id}))
    return order


def changed(orders: InMemoryTransferOrders, transfer_id: str, status: TransferStatus) -> TransferOrder:
    order = orders.get(transfer_id)
    assert order is not None
    after = order.changed(NOW, status=status)
    assert orders.save(after)
    return after


def waiting_on(watcher: StatusWatcher, orders: InMemoryTransferOrders, transfer_ids, per_transfer: int):
    """Started waiters, `per_transfer` on each transfer, all parked on the watcher."""
    waiters = [
        Waiter(lambda tid=tid: watcher.wait(orders.get(tid), WAIT_SECONDS))
        for tid in transfer_ids
        for _ in range(per_transfer)
    ]
    for waiter in waiters:
        waiter.start()
    until(lambda: watcher.counts().waiting == len(waiters))
    return waiters


# --- the watcher -------------------------------------------------------------------------------------


def test_one_tick_reads_every_watched_order_in_one_batch_whatever_the_number_of_waiters():
    # GIVEN 50 requests waiting on 5 transfers, the watcher's ticks left to the test
    orders = CountingOrders()
    ids = [f"tr_{n}" for n in range(5)]
    for transfer_id in ids:
        processing(orders, transfer_id)
    watcher = StatusWatcher(orders.get_many, waiters_max=50, run_thread=False)
    waiters = waiting_on(watcher, orders, ids, per_transfer=10)

    # WHEN another replica completes three of them and the watcher ticks
    for transfer_id in ids[:3]:
        changed(orders, transfer_id, TransferStatus.COMPLETED)
    watcher.tick()

    # THEN one read of the five ids woke the 30 waiters of the completed three with the final order
    assert orders.batches == [ids]
    woken = [w.finished() for w in waiters[:30]]
    assert {w.result.status for w in woken} == {TransferStatus.COMPLETED}
    assert all(w.is_alive() for w in waiters[30:])

    # AND the next tick reads only the two still open
    watcher.tick()
    assert orders.batches[-1] == ids[3:]
    for transfer_id in ids[3:]:
        watcher.finished(changed(orders, transfer_id, TransferStatus.FAILED))
    assert {w.finished().result.status for w in waiters[30:]} == {TransferStatus.FAILED}
    assert watcher.counts().waiting == watcher.counts().watched == 0


def test_the_final_step_saved_in_this_process_wakes_its_waiters_without_a_read():
    orders = CountingOrders()
    processing(orders, "tr_a")
    watcher = StatusWatcher(orders.get_many, waiters_max=3, run_thread=False)
    waiters = waiting_on(watcher, orders, ["tr_a"], per_transfer=3)

    watcher.finished(changed(orders, "tr_a", TransferStatus.COMPLETED))

    assert {w.finished().result.status for w in waiters} == {TransferStatus.COMPLETED}
    assert orders.batches == []


def test_past_waiters_max_a_request_waits_for_nothing_and_a_returned_waiter_frees_its_slot():
    # GIVEN two slots, both taken
    orders = CountingOrders()
    processing(orders, "tr_a")
    watcher = StatusWatcher(orders.get_many, waiters_max=2, run_thread=False)
    first = waiting_on(watcher, orders, ["tr_a"], per_transfer=2)

    # WHEN a third request asks to wait
    asked = time.monotonic()
    refused = watcher.wait(orders.get("tr_a"), WAIT_SECONDS)

    # THEN it is refused at once (counted), and once the first return, a request waits again
    assert refused is None
    assert time.monotonic() - asked < IMMEDIATE_SECONDS_MAX
    assert watcher.counts().refused == 1
    watcher.finished(changed(orders, "tr_a", TransferStatus.COMPLETED))
    assert all(w.finished().result.status is TransferStatus.COMPLETED for w in first)
    processing(orders, "tr_b")
    later = waiting_on(watcher, orders, ["tr_b"], per_transfer=1)
    watcher.finished(changed(orders, "tr_b", TransferStatus.COMPLETED))
    assert later[0].finished().result.status is TransferStatus.COMPLETED


def test_a_wait_that_runs_out_answers_with_the_latest_order_the_watcher_read():
    # GIVEN a request waiting briefly on a transfer that a tick has seen go to AWAITING_REVIEW
    orders = CountingOrders()
    processing(orders, "tr_a")
    watcher = StatusWatcher(orders.get_many, waiters_max=1, run_thread=False)
    waiter = Waiter(lambda: watcher.wait(orders.get("tr_a"), 1.0))
    waiter.start()
    until(lambda: watcher.counts().waiting == 1)
    changed(orders, "tr_a", TransferStatus.AWAITING_REVIEW)
    watcher.tick()

    # THEN when its time is up it answers AWAITING_REVIEW, read by the tick, not by itself
    assert waiter.finished().result.status is TransferStatus.AWAITING_REVIEW
    assert len(orders.batches) == 1


def test_the_watchers_thread_reads_per_tick_survives_a_failing_store_and_ends_when_nobody_waits():
    # GIVEN the watcher's own thread ticking every 10 ms, and a store that fails for a while
    orders = CountingOrders()
    processing(orders, "tr_a")
    watcher = StatusWatcher(orders.get_many, waiters_max=4, tick_seconds=FAST_TICK_SECONDS)
    orders.failing = True
    waiters = waiting_on(watcher, orders, ["tr_a"], per_transfer=4)
    time.sleep(5 * FAST_TICK_SECONDS)  # ticks fail meanwhile

    # WHEN the store answers again and the transfer was completed elsewhere
    changed(orders, "tr_a", TransferStatus.COMPLETED)
    orders.failing = False

    # THEN a tick of the thread wakes every waiter, and the thread is gone once nobody waits
    assert {w.finished().result.status for w in waiters} == {TransferStatus.COMPLETED}
    until(lambda: not any(t.name == WATCHER_THREAD_NAME for t in threading.enumerate()))
    assert all(batch == ["tr_a"] for batch in orders.batches)


def test_a_watcher_with_a_tick_of_zero_or_negative_slots_is_refused():
    with pytest.raises(ValueError):
        StatusWatcher(dict, waiters_max=1, tick_seconds=0)
    with pytest.raises(ValueError):
        TransfersSettings(waiters_max=-1)


# --- the service and the function ----------------------------------------------------------------------


def service_with(orders: InMemoryTransferOrders, waiters_max: int) -> TransfersService:
    watcher = StatusWatcher(orders.get_many, waiters_max=waiters_max, run_thread=False)
    return TransfersService(
        orders, Unused(), Unused(), Unused(), settings=TransfersSettings(waiters_max=waiters_max),
        clock=lambda: NOW, watcher=watcher,
    )


def test_the_saga_completing_in_this_process_answers_its_waiter_after_one_read_of_its_own():
    # GIVEN a request waiting 30 s on a PROCESSING transfer
    orders = CountingOrders()
    processing(orders, "tr_a")
    service = service_with(orders, waiters_max=1)
    waiter = Waiter(lambda: service.follow("tr_a", OWNER, WAIT_SECONDS))
    waiter.start()
    until(lambda: service.status_watch().waiting == 1)

    # WHEN the saga's last step completes it in this process
    completing = time.monotonic()
    service.complete("tr_a")

    # THEN the waiter answers COMPLETED at once, having read the order only when it arrived
    answer = waiter.finished().result
    assert answer.order.status is TransferStatus.COMPLETED and not answer.busy
    assert time.monotonic() - completing < IMMEDIATE_SECONDS_MAX
    assert service.status_reads() == 1
    assert orders.batches == []


def test_a_request_finding_every_slot_taken_is_answered_busy_and_a_final_order_never_waits():
    orders = CountingOrders()
    processing(orders, "tr_a")
    service = service_with(orders, waiters_max=0)

    busy = service.follow("tr_a", OWNER, WAIT_SECONDS)
    changed(orders, "tr_a", TransferStatus.COMPLETED)
    final = service.follow("tr_a", OWNER, WAIT_SECONDS)

    assert busy.busy and busy.order.status is TransferStatus.PROCESSING
    assert not final.busy and final.order.status is TransferStatus.COMPLETED
    assert service.status_watch().refused == 1  # the final one asked for no slot


def test_a_wait_of_30_seconds_is_taken_and_a_longer_one_refused():
    assert WaitQuery(wait=30).wait == 30
    with pytest.raises(ValidationError):
        WaitQuery(wait=30.5)


@pytest.fixture
def transfers_function():
    """The transfers function on the in-memory store, no waiting slot; (module, orders, customer token)."""
    module = load_function_handler("transfers")
    minter = TokenMinter.generate()
    module.verifier.use(minter.verifier())
    orders = CountingOrders()
    module.services.use(module.TransfersServices(
        transfers=service_with(orders, waiters_max=0),
        guard=IdempotencyGuard(InMemoryIdempotencyStore(), "transfers"),
        limiter=None,
        probe=lambda: None,
    ))
    return module, orders, minter.mint(OWNER, ["transfers:read"], kind="customer")


def test_a_status_request_refused_a_waiting_slot_says_when_to_come_back(transfers_function):
    module, orders, token = transfers_function
    processing(orders, "tr_a")

    waiting = call(module.handle, "GET", "/transfers/tr_a", query={"wait": "30"}, token=token)
    plain = call(module.handle, "GET", "/transfers/tr_a", token=token)

    assert waiting.status == 200 and waiting.json()["status"] == "PROCESSING"
    assert waiting.header("Retry-After") == str(module.BUSY_RETRY_AFTER_SECONDS)
    assert plain.status == 200 and plain.header("Retry-After") is None


@pytest.mark.parametrize(("environ", "waiters"), [({}, 256), ({"TRANSFERS_WAITERS_MAX": "6"}, 6)])
def test_the_function_sizes_its_server_for_its_waiting_slots_from_its_environment(environ, waiters):
    handler = load_function_handler("transfers")
    settings = handler.settings_from_env(environ)

    assert settings.waiters_max == waiters
    # One parked thread and one connection per waiting request, on top of the template's 4 and 100.
    assert handler.server_options(settings) == {"threads": 4 + waiters, "connection_limit": 100 + waiters}
