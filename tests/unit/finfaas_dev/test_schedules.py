"""Schedules: the local runtime ticks what stack.yml declares, as the cron-connector does on a cluster."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from finfaas_dev import schedules, stackfile
from finfaas_dev.fakes.platform import InMemoryRateLimitStore
from finfaas_dev.schedules import IN_PROCESS_LOCALLY, SCHEDULE_ANNOTATION, LocalTicker, local_jobs
from finfaas_dev.testing.platform import call, load_function_handler

ROOT = Path(__file__).resolve().parents[3]
STACK = stackfile.load_stack(ROOT / "stack.yml")
START = 1_800_000_000.0
CRON = {"topic": "cron-function"}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def test_every_schedule_the_local_runtime_runs_is_declared_in_stack_yml():
    declared = {name for name, fn in STACK.functions.items() if schedules.schedule_of(fn.annotations)}
    ticked = set(local_jobs({name: fn.annotations for name, fn in STACK.functions.items()}))
    assert ticked | IN_PROCESS_LOCALLY == declared
    assert ticked == {"ledger", "payments", "wealth", "loans"}  # the relay's loop runs in-process


def test_a_schedule_counts_only_with_the_cron_connector_topic():
    assert schedules.schedule_of({**CRON, SCHEDULE_ANNOTATION: "* * * * *"}) == "* * * * *"
    assert schedules.schedule_of({SCHEDULE_ANNOTATION: "* * * * *"}) is None  # the cron-connector ignores it
    assert schedules.schedule_of({"topic": "events"}) is None


@pytest.mark.parametrize(("name", "period"), [("ledger", "HOLD_EXPIRY_PERIOD_SECONDS"),
                                              ("payments", "CAPTURE_EXPIRY_PERIOD_SECONDS"),
                                              ("loans", "NIGHTLY_PERIOD_SECONDS"),
                                              ("relay", "RELAY_PERIOD_SECONDS"),
                                              ("wealth", "BATCH_TICK_PERIOD_SECONDS")])
def test_each_scheduled_route_claims_the_period_its_schedule_ticks_at(name, period):
    # An unsigned tick runs at most once per the handler's period: shorter than the schedule, and anyone
    # could run the job more often than the scheduler; longer, and the scheduler's own ticks are skipped.
    module = load_function_handler(name)
    expression = schedules.schedule_of(STACK.functions[name].annotations)
    assert expression is not None
    assert module.schedule_proof.period_seconds == getattr(module, period)
    assert module.schedule_proof.period_seconds == schedules.cron_interval_seconds(expression)


def test_ticks_are_plain_posts_through_the_gateway_once_per_period():
    # GIVEN the ledger scheduled every minute and a ticker on a fake clock
    clock, sent = Clock(), []

    def send(url, timeout_seconds):
        sent.append(url)
        return 200, b"{}"

    ticker = LocalTicker({"ledger": 60.0}, "http://127.0.0.1:8080/", send=send, clock=clock)
    # WHEN time passes: nothing at start (a cron's first run is a period away), one at 60 s, none at 90 s
    assert ticker.run_due() == 60.0 and sent == []
    clock.now += 60
    ticker.run_due()
    clock.now += 30
    assert ticker.run_due() == 30.0
    # THEN one tick went to the ledger through the gateway
    assert sent == ["http://127.0.0.1:8080/function/ledger"]
    assert list(ticker.sent) == [("ledger", 200)]


class ExpiryApi:
    """The part of the ledger's api its scheduled route calls, counting the runs."""

    def __init__(self) -> None:
        self.runs = 0

    def expire_holds(self, limit: int) -> dict:
        self.runs += 1
        return {"transfers": []}


def test_the_local_tick_runs_the_ledger_s_scheduled_route_once_a_minute():
    # GIVEN the ledger's handler, and what the ticker sends (an unsigned POST) twice in one minute
    module = load_function_handler("ledger")
    api = ExpiryApi()
    module.services.use(SimpleNamespace(api=api))
    module.schedule_proof.use(clock=lambda: START, claims=InMemoryRateLimitStore())
    first = call(module.handle, "POST", "/")
    second = call(module.handle, "POST", "/")
    # THEN the first expires holds, the second is told the minute already ran
    assert first.status == 200 and first.json() == {"transfers": []}
    assert second.status == 200 and second.json()["ran"] is False
    assert api.runs == 1


def test_a_failed_tick_is_reported_and_the_next_period_tries_again():
    clock, calls = Clock(), []

    def send(url, timeout_seconds):
        calls.append(clock.now)
        raise ConnectionRefusedError("gateway not listening yet")

    ticker = LocalTicker({"ledger": 60.0}, "http://127.0.0.1:8080", send=send, clock=clock)
    for _ in range(2):
        clock.now += 60
        ticker.run_due()
    assert calls == [START + 60, START + 120] and list(ticker.sent) == [("ledger", 0), ("ledger", 0)]


@pytest.mark.parametrize(("expression", "seconds"), [("* * * * *", 60), ("*/5 * * * *", 300)])
def test_the_local_runtime_runs_every_n_minutes(expression, seconds):
    assert schedules.cron_interval_seconds(expression) == seconds


def test_a_schedule_the_local_runtime_cannot_run_is_named():
    with pytest.raises(ValueError, match="0 3"):
        local_jobs({"ledger": {**CRON, SCHEDULE_ANNOTATION: "0 3 * * *"}})
