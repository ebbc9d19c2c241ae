"""Drives run on threads of the orchestrator's own process: after a start or a callback is
checkpointed, and for every wake-up the queue delivers (so no request thread is held by a drive).

The queue round trip before the first state (SQS delivery, the connector's poll) costs more than the
saga's steps themselves at low load. A start driven here creates its execution with its first
checkpoint (already holding the first task's lease), so a process that dies mid-drive leaves a lease
the sweeper re-drives. A callback's drive is backed by a delayed wake-up
(EngineLimits.inline_backup_wake_seconds); the execution's version and lease keep the two from both
acting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from finfaas.platform.logging import get_logger

_log = get_logger("workflow.inline")
# Concurrent in-process drives (threads waiting on I/O, nearly all the time); past that, starts and
# callbacks go through the queue at once and queue wake-ups are sent back to it, delayed.
INLINE_DRIVES_MAX = 16


class InlineSlot(Protocol):
    def run(self, drive: Callable[[], object]) -> bool:
        """Start drive in this process (once); False (and the slot given back) when it cannot start."""
        ...

    def release(self) -> None:
        """Give the slot back unused."""
        ...


class InlineDrives(Protocol):
    def reserve(self) -> InlineSlot | None:
        """A slot for one drive, or None when the process has no room (the queue takes the drive)."""
        ...


class ThreadDrives:
    """At most drives_max drives at once, each on a daemon thread (a dying process loses none: see above)."""

    def __init__(self, drives_max: int = INLINE_DRIVES_MAX) -> None:
        self._slots = threading.BoundedSemaphore(drives_max)

    def reserve(self) -> _ThreadSlot | None:
        return _ThreadSlot(self._slots) if self._slots.acquire(blocking=False) else None


class _ThreadSlot:
    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots = slots

    def run(self, drive: Callable[[], object]) -> bool:
        try:
            threading.Thread(target=self._run, args=(drive,), name="inline-drive", daemon=True).start()
        except RuntimeError:  # no new thread (interpreter shutting down): the queue takes the drive
            self.release()
            return False
        return True

    def release(self) -> None:
        self._slots.release()

    def _run(self, drive: Callable[[], object]) -> None:
        try:
            drive()
        except Exception:  # the delayed wake-up or the sweeper resumes the execution
            _log.exception("inline drive failed")
        finally:
            self.release()
