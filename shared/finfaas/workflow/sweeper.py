"""The sweeper: re-drives executions whose lease or next step is overdue.

Wake-ups and timers normally move every execution; the sweeper is the backstop for the ones a
crash or a lost message left behind (a start that crashed before its wake-up, a message moved to
the dead-letter queue, an attempt whose drive died). It runs:

* on a tick chain (every 2 s): each tick is a delayed message on the orchestrator queue. A tick first claims
  its turn in DynamoDB (so duplicate ticks sweep once), then schedules the next tick while any
  execution is RUNNING, then wakes each overdue execution (in the orchestrator: a drive of its own
  process, or a queued wake-up when every slot is taken). With nothing running the chain
  stops, and the orchestrator scales to zero; the next start re-arms it.
* on demand: POST /_/ops/sweep, with an `ops` token (a schedule of it needs a caller that holds one).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from finfaas.platform.logging import get_logger
from finfaas.workflow.store import ExecutionRepository
from finfaas.workflow.wakeups import SWEEP, WAKE, Waker, Wakeup, WakeupError

_log = get_logger("workflow.sweeper")
MS_PER_SECOND = 1000
# With the engine's 4 s leases, a drive that died is re-driven within 6 s (EngineLimits.lease_seconds).
# A tick costs one UpdateItem (the claim) and, on the sharded by-status index, one Query per shard of
# what is due (up to batch_max each, merged) plus one per shard at most to learn whether anything runs
# (it stops at the first shard holding one): at most 2 x 4 Queries, whatever the number of executions.
sweep_interval_seconds_default = 2
# A tick later than this past its planned time counts as lost, and the chain is re-armed.
tick_lost_after_intervals = 2
sweep_batch_max = 100
IDLE = 0  # the planned next sweep when the chain stopped for want of running executions


@dataclass(frozen=True)
class SweepReport:
    claimed: bool
    woken: int
    next_tick: bool


class Sweeper:
    """Finds overdue RUNNING executions and sends each a wake-up."""

    def __init__(
        self,
        store: ExecutionRepository,
        waker: Waker,
        *,
        clock: Callable[[], float] = time.time,
        interval_seconds: int = sweep_interval_seconds_default,
        batch_max: int = sweep_batch_max,
        drive: Callable[[str], object] | None = None,
    ) -> None:
        self._store = store
        self._waker = waker
        self._clock = clock
        self.interval_seconds = interval_seconds
        self._batch_max = batch_max
        # The orchestrator passes Engine.wake: an overdue execution is handed to a drive of this
        # process (or queued by it when every slot is taken), one queue round trip sooner.
        self._drive = drive
        self._armed_until_ms = 0

    def _now_ms(self) -> int:
        return int(self._clock() * MS_PER_SECOND)

    def tick(self) -> SweepReport:
        """A tick message: sweep once per interval, and keep the chain going while work remains."""
        now = self._now_ms()
        next_tick = self._store.any_running()
        planned = now + self.interval_seconds * MS_PER_SECOND if next_tick else IDLE
        if not self._store.claim_sweep(now, planned):
            return SweepReport(False, 0, False)
        if next_tick:
            self._send_tick()
        else:
            # The chain stops here: this process's next start must arm it again, not trust its check.
            self._armed_until_ms = 0
        return SweepReport(True, self.sweep(), next_tick)

    def sweep(self) -> int:
        """Wake every overdue execution (at most batch_max per sweep); returns how many."""
        woken = 0
        for execution_id in self._store.due(self._now_ms(), self._batch_max):
            if self._drove(execution_id):
                woken += 1
                continue
            try:
                self._waker.send(Wakeup(WAKE, execution_id, "sweep"))
            except WakeupError:
                _log.exception("sweep could not wake an execution", execution_id=execution_id)
                break
            woken += 1
        if woken:
            _log.info("sweep woke overdue executions", woken=woken)
        return woken

    def _drove(self, execution_id: str) -> bool:
        if self._drive is None:
            return False
        try:
            self._drive(execution_id)
        except Exception:  # the queue is the way that always works
            _log.exception("sweep could not drive an execution here", execution_id=execution_id)
            return False
        return True

    def ensure_armed(self) -> None:
        """Start the tick chain if it is not running (checked at most once per interval per process)."""
        now = self._now_ms()
        if now < self._armed_until_ms:
            return
        planned = self._store.next_sweep_ms()
        lost_after_ms = tick_lost_after_intervals * self.interval_seconds * MS_PER_SECOND
        if planned is None or planned == IDLE or planned + lost_after_ms < now:
            if self._store.claim_sweep(now, now + self.interval_seconds * MS_PER_SECOND):
                self._send_tick()
        self._armed_until_ms = now + self.interval_seconds * MS_PER_SECOND

    def _send_tick(self) -> None:
        try:
            self._waker.send(Wakeup(SWEEP, reason="sweep"), self.interval_seconds)
        except WakeupError:
            # The chain stops here; the next start (or POST /_/ops/sweep) re-arms it.
            _log.exception("sweep tick not sent")
