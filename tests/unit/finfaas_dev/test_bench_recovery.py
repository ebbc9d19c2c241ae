"""What `finfaas bench recovery` counts as a saga's recovery from a kill."""

from __future__ import annotations

from finfaas_dev.bench.recovery import recovery_seconds

KILL = 100.0


def test_a_saga_running_at_the_kill_recovers_at_its_next_event():
    events = [(98.0, "ExecutionStarted"), (99.5, "TaskScheduled"), (104.25, "TaskRedriven"), (105.0, "X")]

    assert recovery_seconds(events, KILL) == 4.25


def test_a_saga_finished_before_the_kill_or_started_after_it_was_not_hit():
    finished = [(97.0, "ExecutionStarted"), (99.0, "ExecutionSucceeded"), (101.0, "Late")]
    started_after = [(101.0, "ExecutionStarted"), (102.0, "ExecutionSucceeded")]

    assert recovery_seconds(finished, KILL) is None
    assert recovery_seconds(started_after, KILL) is None
