"""GET /transfers/{id}?wait=: a bounded number of requests wait at once, the rest answer at once.

The saga's steps reach the transfers function through the same few request threads as the apps'
status requests, so waiting requests must never hold them all. These tests drive TransfersService.get
from threads, with an injected sleep the test opens and closes, on the in-memory order store.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from finfaas.services.transfers.errors import TransferStoreUnavailable
from finfaas.services.transfers.model import OrderEvent, TransferOrder, TransferStatus
from finfaas.services.transfers.service import TransfersService, TransfersSettings
from finfaas_dev.fakes.transfers import InMemoryTransferOrders
from finfaas_dev.testing.platform import load_function_handler

OWNER = "cust-1"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
WAIT_SECONDS = 5.0
THREAD_SECONDS_MAX = 10.0  # a waiter the test lets go ends well within this
IMMEDIATE_SECONDS_MAX = 1.0  # an answer that did not wait (a wait would take until the gate opens)


class GatedSleep:
    """An injected sleep that holds its caller until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._gate = threading.Event()
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.calls += 1
        self.entered.set()
        self._gate.wait(THREAD_SECONDS_MAX)

    def open(self) -> None:
        self._gate.set()

    def close(self) -> None:
        self._gate.clear()
        self.entered.clear()


class FailingOrders(InMemoryTransferOrders):
    """Orders whose reads fail (the table unreachable) while `failing` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def get(self, transfer_id: str) -> TransferOrder | None:
        if self.failing:
            raise TransferStoreUnavailable("the orders table is unreachable")
        return super().get(transfer_id)


class Unused:
    """Accounts, risk and orchestrator: a status request of a PROCESSING order calls none of them."""

    def __getattr__(self, name: str):
        raise AssertionError(f"a status request called {name}")


class Waiter(threading.Thread):
    """One GET /transfers/{id}?wait= in its own request thread."""

    def __init__(self, service: TransfersService, transfer_id: str) -> None:
        super().__init__(daemon=True)
        self._call = lambda: service.get(transfer_id, OWNER, WAIT_SECONDS)
        self.result: TransferOrder | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.result = self._call()
        except Exception as error:  # the test looks at it
            self.error = error

    def finished(self) -> Waiter:
        self.join(THREAD_SECONDS_MAX)
        assert not self.is_alive(), "the waiter never returned"
        return self


def processing(orders: InMemoryTransferOrders, transfer_id: str) -> TransferOrder:
    order = TransferOrder(
        transfer_id, OWNER, "acc-a", "acc-b", 2_500, "USD", NOW, status=TransferStatus.PROCESSING
    )
    orders.create(order, OrderEvent("transfer.accepted", {"transfer_id": transfer_id}))
    return order


def completed(orders: InMemoryTransferOrders, transfer_id: str) -> None:
    order = orders.get(transfer_id)
    assert order is not None
    assert orders.save(order.changed(NOW, status=TransferStatus.COMPLETED))


def service_with(orders: InMemoryTransferOrders, sleep: GatedSleep, waiters_max: int) -> TransfersService:
    return TransfersService(
        orders,
        Unused(),
        Unused(),
        Unused(),
        settings=TransfersSettings(waiters_max=waiters_max),
        clock=lambda: NOW,
        sleep=sleep,
    )


def waiting(service: TransfersService, sleep: GatedSleep, transfer_id: str) -> Waiter:
    """A waiter that has taken a slot and sleeps at the closed gate."""
    waiter = Waiter(service, transfer_id)
    waiter.start()
    assert sleep.entered.wait(THREAD_SECONDS_MAX), "the waiter never started waiting"
    return waiter


def assert_a_new_request_waits_until_final(service: TransfersService, orders: InMemoryTransferOrders,
                                           sleep: GatedSleep, transfer_id: str) -> None:
    """A request asking to wait gets a slot: it reaches the (closed) sleep and returns once the transfer
    is final."""
    sleep.close()
    later = waiting(service, sleep, transfer_id)
    completed(orders, transfer_id)
    sleep.open()
    assert later.finished().result.status is TransferStatus.COMPLETED


def test_with_every_slot_taken_a_request_answers_at_once_with_the_current_status():
    # GIVEN one waiting slot, taken by a request waiting on a transfer that is still PROCESSING
    orders, sleep = InMemoryTransferOrders(), GatedSleep()
    processing(orders, "tr_a")
    service = service_with(orders, sleep, waiters_max=1)
    first = waiting(service, sleep, "tr_a")

    # WHEN a second request asks to wait 5 seconds for the same transfer
    asked = time.monotonic()
    second = service.get("tr_a", OWNER, WAIT_SECONDS)

    # THEN it answers at once, without sleeping, with the status as it is
    assert time.monotonic() - asked < IMMEDIATE_SECONDS_MAX
    assert second.status is TransferStatus.PROCESSING
    assert sleep.calls == 1
    # AND the first still waits and sees the final status once the saga records it
    assert first.is_alive()
    completed(orders, "tr_a")
    sleep.open()
    assert first.finished().result is not None
    assert first.result.status is TransferStatus.COMPLETED


def test_a_slot_is_free_again_after_its_waiter_returns():
    # GIVEN a waiter that held the only slot and returned with the final status
    orders, sleep = InMemoryTransferOrders(), GatedSleep()
    processing(orders, "tr_a")
    processing(orders, "tr_b")
    service = service_with(orders, sleep, waiters_max=1)
    first = waiting(service, sleep, "tr_a")
    completed(orders, "tr_a")
    sleep.open()
    assert first.finished().result.status is TransferStatus.COMPLETED

    # WHEN a later request asks to wait on another transfer
    # THEN it waits (it reached the sleep), and returns once the transfer is final
    assert_a_new_request_waits_until_final(service, orders, sleep, "tr_b")


def test_a_slot_is_free_again_after_its_waiter_failed_reading_the_order():
    # GIVEN a waiter holding the only slot whose next read fails
    orders, sleep = FailingOrders(), GatedSleep()
    processing(orders, "tr_a")
    service = service_with(orders, sleep, waiters_max=1)
    first = waiting(service, sleep, "tr_a")
    orders.failing = True
    sleep.open()
    assert isinstance(first.finished().error, TransferStoreUnavailable)

    # WHEN the table answers again and a later request asks to wait
    orders.failing = False
    # THEN it waits again
    assert_a_new_request_waits_until_final(service, orders, sleep, "tr_a")


def test_a_waiter_gives_up_after_its_wait_and_every_read_is_counted():
    # GIVEN a transfer that stays PROCESSING and a sleep that does not hold anyone
    orders, sleep = InMemoryTransferOrders(), GatedSleep()
    sleep.open()
    processing(orders, "tr_a")
    service = service_with(orders, sleep, waiters_max=1)

    # WHEN a request waits 0.3 s (three polls of 0.1 s)
    order = service.get("tr_a", OWNER, 0.3)

    # THEN it answers with the current status after at most three polls, each read counted
    assert order.status is TransferStatus.PROCESSING
    assert 1 <= sleep.calls <= 3
    assert service.status_reads() == 1 + sleep.calls


def test_no_waiting_slots_means_every_request_answers_at_once():
    orders, sleep = InMemoryTransferOrders(), GatedSleep()
    processing(orders, "tr_a")
    service = service_with(orders, sleep, waiters_max=0)

    assert service.get("tr_a", OWNER, WAIT_SECONDS).status is TransferStatus.PROCESSING
    assert sleep.calls == 0


@pytest.mark.parametrize(("environ", "waiters"), [({}, 2), ({"TRANSFERS_WAITERS_MAX": "6"}, 6)])
def test_the_function_reads_its_waiting_slots_from_its_environment(environ, waiters):
    handler = load_function_handler("transfers")

    assert handler.settings_from_env(environ).waiters_max == waiters


def test_a_negative_number_of_waiting_slots_is_refused():
    with pytest.raises(ValueError):
        TransfersSettings(waiters_max=-1)


def until(condition, seconds: float = THREAD_SECONDS_MAX) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


def waiting_on_notice(poll_seconds: float) -> tuple[InMemoryTransferOrders, TransfersService, Waiter]:
    """A PROCESSING transfer and a request waiting on it on the final notice (no injected sleep),
    reading the order every `poll_seconds`."""
    orders = InMemoryTransferOrders()
    processing(orders, "tr_a")
    service = TransfersService(
        orders,
        Unused(),
        Unused(),
        Unused(),
        settings=TransfersSettings(waiters_max=1, wait_poll_seconds=poll_seconds),
        clock=lambda: NOW,
    )
    waiter = Waiter(service, "tr_a")
    waiter.start()
    until(lambda: service.status_waiting() == 1)
    return orders, service, waiter


def test_a_waiter_hears_at_once_when_this_process_makes_the_transfer_final():
    # GIVEN a request waiting on a PROCESSING transfer, polling the order only every 4 seconds
    _, service, waiter = waiting_on_notice(poll_seconds=4.0)

    # WHEN the saga's last step completes it in this process
    completing = time.monotonic()
    service.complete("tr_a")

    # THEN the waiter answers COMPLETED long before its next poll, with one more read, and is gone
    assert waiter.finished().result.status is TransferStatus.COMPLETED
    assert time.monotonic() - completing < IMMEDIATE_SECONDS_MAX
    assert service.status_reads() == 2
    assert service.status_waiting() == 0


def test_a_transfer_final_elsewhere_is_seen_at_the_next_poll():
    # GIVEN a request waiting on the final notice, polling every 0.2 s
    orders, service, waiter = waiting_on_notice(poll_seconds=0.2)

    # WHEN another replica completes the transfer (the order changes, no notice here)
    completed(orders, "tr_a")

    # THEN the waiter still answers COMPLETED, from its poll
    assert waiter.finished().result.status is TransferStatus.COMPLETED
    assert service.status_waiting() == 0
