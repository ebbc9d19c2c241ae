"""GET /transfers/{id}?wait=: one watcher per process follows every transfer its status requests wait on.

A waiting request parks its thread on an Event (no CPU, no DynamoDB call of its own after the read that
answered it first). One thread reads every watched order that is not final yet in one batch per tick
(TransferOrders.get_many: a BatchGetItem per 100 ids) and wakes the waiters of those now final; the
saga's last step, when this process runs it, wakes them at once with the order it saved. So reads grow
with ticks and watched transfers, never with waiters, and a transfer made final by another replica is
seen within a tick. The thread runs only while someone waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from finfaas.platform.logging import get_logger
from finfaas.services.transfers.model import TransferOrder

watch_tick_seconds = 0.5  # between two batch reads of the watched orders; a waiter hears of another
# replica's final step at most this late (of this process's own at once)

WATCHER_THREAD_NAME = "transfers-status-watcher"
_log = get_logger("transfers.watcher")

ReadMany = Callable[[Sequence[str]], Mapping[str, TransferOrder]]


@dataclass
class _Watch:
    """One transfer that requests wait on: its latest order, how many wait, and whether it is final."""

    order: TransferOrder
    waiters: int = 0
    final: threading.Event = field(default_factory=threading.Event)

    def saw(self, order: TransferOrder) -> None:
        if order.version >= self.order.version:
            self.order = order
        if self.order.status.terminal:
            self.final.set()


@dataclass(frozen=True)
class WatcherCounts:
    """What the watcher did so far in this process (the function's /_/ops/stats)."""

    waiting: int  # requests waiting right now
    watched: int  # transfers they wait on
    batch_reads: int  # get_many calls made by ticks
    orders_read: int  # ids those calls asked for
    refused: int  # requests that found every waiting slot taken


class StatusWatcher:
    """Waiting status requests of one process, at most `waiters_max` at once, and the thread that
    reads their orders once per tick. `run_thread=False` leaves the ticks to the caller (tests)."""

    def __init__(
        self,
        read_many: ReadMany,
        *,
        waiters_max: int,
        tick_seconds: float = watch_tick_seconds,
        run_thread: bool = True,
    ) -> None:
        if waiters_max < 0 or tick_seconds <= 0:
            raise ValueError("waiters_max must be >= 0 and tick_seconds > 0")
        self._read_many = read_many
        self._waiters_max = waiters_max
        self._tick_seconds = tick_seconds
        self._run_thread = run_thread
        self._lock = threading.Lock()
        self._watched: dict[str, _Watch] = {}
        self._waiting = 0
        self._thread: threading.Thread | None = None
        self._batch_reads = 0
        self._orders_read = 0
        self._refused = 0

    def wait(self, order: TransferOrder, seconds: float) -> TransferOrder | None:
        """The order once final, or as last read when `seconds` ran out; None at once, having waited for
        nothing, when `waiters_max` requests wait already."""
        watch = self._enter(order)
        if watch is None:
            return None
        try:
            watch.final.wait(max(seconds, 0.0))
            with self._lock:
                return watch.order
        finally:
            self._leave(order.transfer_id, watch)

    def finished(self, order: TransferOrder) -> None:
        """This process saved a final status: its waiters answer with it now, not at the next tick."""
        with self._lock:
            watch = self._watched.get(order.transfer_id)
            if watch is not None:
                watch.saw(order)

    def tick(self) -> None:
        """Read every watched order not final yet, in one get_many; wake the waiters of those now final."""
        with self._lock:
            pending = [tid for tid, watch in self._watched.items() if not watch.final.is_set()]
            if not pending:
                return
            self._batch_reads += 1
            self._orders_read += len(pending)
        orders = self._read_many(pending)
        with self._lock:
            for transfer_id, order in orders.items():
                watch = self._watched.get(transfer_id)
                if watch is not None:
                    watch.saw(order)

    def counts(self) -> WatcherCounts:
        with self._lock:
            return WatcherCounts(
                self._waiting, len(self._watched), self._batch_reads, self._orders_read, self._refused
            )

    def _enter(self, order: TransferOrder) -> _Watch | None:
        with self._lock:
            if self._waiting >= self._waiters_max:
                self._refused += 1
                return None
            self._waiting += 1
            watch = self._watched.setdefault(order.transfer_id, _Watch(order))
            watch.waiters += 1
            watch.saw(order)
            if self._run_thread and self._thread is None:
                self._thread = threading.Thread(target=self._run, name=WATCHER_THREAD_NAME, daemon=True)
                self._thread.start()
            return watch

    def _leave(self, transfer_id: str, watch: _Watch) -> None:
        with self._lock:
            self._waiting -= 1
            watch.waiters -= 1
            if watch.waiters == 0 and self._watched.get(transfer_id) is watch:
                del self._watched[transfer_id]

    def _run(self) -> None:
        # Ends when nobody waits; the next waiter starts another (both decided under the lock).
        while True:
            time.sleep(self._tick_seconds)
            with self._lock:
                if not self._watched:
                    self._thread = None
                    return
            try:
                self.tick()
            except Exception:  # the store unreachable: waiters answer with what they have when time is up
                _log.exception("status watcher could not read the watched orders")
