"""Schedules: the local runtime ticks what stack.yml declares, as the cluster's CronJobs do."""

from __future__ import annotations

from pathlib import Path

import pytest
from finfaas.platform.schedule import ScheduleProof, sign_tick
from finfaas_dev import schedules, stackfile
from finfaas_dev.schedules import IN_PROCESS_LOCALLY, SCHEDULE_ANNOTATION, LocalTicker, local_jobs

ROOT = Path(__file__).resolve().parents[3]
STACK = stackfile.load_stack(ROOT / "stack.yml")
KEY = b"s" * 32
START = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class Tick:
    """What a function's ScheduleProof reads of the request."""

    def __init__(self, value: str) -> None:
        self.value = value

    def header(self, name: str) -> str:
        return self.value


def test_every_schedule_the_local_runtime_runs_is_declared_in_stack_yml():
    declared = {name for name, fn in STACK.functions.items() if SCHEDULE_ANNOTATION in fn.annotations}
    ticked = set(local_jobs({name: fn.annotations for name, fn in STACK.functions.items()}))
    assert ticked | IN_PROCESS_LOCALLY == declared
    assert ticked == {"ledger"}  # the relay's loop runs in-process


def test_ticks_are_signed_for_their_function_sent_once_per_period_and_accepted():
    # GIVEN the ledger scheduled every minute and a ticker on a fake clock
    clock, sent = Clock(), []

    def send(function, url, key, now, timeout_seconds):
        sent.append((function, url, sign_tick(key, function, now)))
        return 200, b"{}"

    ticker = LocalTicker({"ledger": 60.0}, "http://127.0.0.1:8080/", lambda: [KEY], send=send, clock=clock)
    # WHEN time passes: nothing at start (a cron's first run is a period away), one at 60 s, none at 90 s
    assert ticker.run_due() == 60.0 and sent == []
    clock.now += 60
    ticker.run_due()
    clock.now += 30
    assert ticker.run_due() == 30.0
    # THEN one tick went to the ledger through the gateway, and the ledger's proof accepts it
    [(function, url, header)] = sent
    assert (function, url) == ("ledger", "http://127.0.0.1:8080/function/ledger")
    ScheduleProof("ledger", [KEY], clock=clock).verify(Tick(header))
    assert list(ticker.sent) == [("ledger", 200)]


def test_a_failed_tick_is_reported_and_the_next_period_tries_again():
    clock, calls = Clock(), []

    def send(function, url, key, now, timeout_seconds):
        calls.append(now)
        raise ConnectionRefusedError("gateway not listening yet")

    ticker = LocalTicker({"ledger": 60.0}, "http://127.0.0.1:8080", lambda: [KEY], send=send, clock=clock)
    for _ in range(2):
        clock.now += 60
        ticker.run_due()
    assert calls == [START + 60, START + 120] and list(ticker.sent) == [("ledger", 0), ("ledger", 0)]


@pytest.mark.parametrize(("expression", "seconds"), [("* * * * *", 60.0), ("*/5 * * * *", 300.0)])
def test_the_local_runtime_runs_every_n_minutes(expression, seconds):
    assert schedules.cron_interval_seconds(expression) == seconds


def test_a_schedule_the_local_runtime_cannot_run_is_named():
    with pytest.raises(ValueError, match="0 3"):
        local_jobs({"ledger": {SCHEDULE_ANNOTATION: "0 3 * * *"}})
