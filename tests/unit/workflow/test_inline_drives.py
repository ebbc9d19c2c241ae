"""The orchestrator's in-process drives: bounded, and a failing drive gives its slot back."""

from __future__ import annotations

import threading

from finfaas.workflow.inline import ThreadDrives

WAIT_SECONDS_MAX = 5.0


def test_no_more_drives_than_the_bound_run_at_once_and_a_finished_one_frees_its_slot():
    # GIVEN two slots, both taken by drives that block until released
    drives = ThreadDrives(drives_max=2)
    release = threading.Event()
    started = [threading.Event(), threading.Event()]
    for event in started:
        slot = drives.reserve()
        assert slot is not None
        slot.run(lambda event=event: (event.set(), release.wait(WAIT_SECONDS_MAX)))
    assert all(event.wait(WAIT_SECONDS_MAX) for event in started)

    # WHEN a third asks THEN there is no room; once they finish there is again
    assert drives.reserve() is None
    release.set()
    assert _reserved_within(drives, WAIT_SECONDS_MAX)


def test_a_drive_that_raises_gives_its_slot_back():
    drives = ThreadDrives(drives_max=1)
    finished = threading.Event()

    def failing_drive():
        finished.set()
        raise RuntimeError("store unavailable")

    drives.reserve().run(failing_drive)

    assert finished.wait(WAIT_SECONDS_MAX)
    assert _reserved_within(drives, WAIT_SECONDS_MAX)


def test_a_slot_given_back_unused_is_free_again():
    drives = ThreadDrives(drives_max=1)
    drives.reserve().release()

    assert drives.reserve() is not None


def _reserved_within(drives: ThreadDrives, seconds: float) -> bool:
    deadline = threading.Event()
    timer = threading.Timer(seconds, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            slot = drives.reserve()
            if slot is not None:
                slot.release()
                return True
            deadline.wait(0.01)
        return False
    finally:
        timer.cancel()
