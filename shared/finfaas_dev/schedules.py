"""Scheduled functions: stack.yml's cron-connector annotations, read by every target and the local runtime.

A scheduled function carries OpenFaaS's cron-connector convention (`topic: cron-function`,
`schedule: "<cron>"`): on OpenFaaS the cron-connector reads it as it is, `finfaas build --knative` makes a
PingSource of it, and `finfaas up` ticks it the way the cron-connector does (a plain POST through the
gateway). None of them signs: the function's route runs an unsigned tick at most once per period
(finfaas.platform.schedule).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping

CRON_TOPIC = "cron-function"  # the cron-connector's topic (the only one it reads in OpenFaaS CE)
SCHEDULE_ANNOTATION = "schedule"  # its cron expression
TOPIC_ANNOTATION = "topic"
SHARED_IN_IMAGE = "/home/app/function/shared"  # configuration.copy puts ./shared/finfaas in it


def schedule_of(annotations: Mapping[str, str]) -> str | None:
    """The function's cron expression when it subscribes to the cron-connector; else None."""
    topics = [t.strip() for t in str(annotations.get(TOPIC_ANNOTATION, "")).split(",")]
    if CRON_TOPIC not in topics:
        return None
    return str(annotations.get(SCHEDULE_ANNOTATION, "")).strip() or None


# --- the local runtime -------------------------------------------------------------------------------

# `finfaas up` runs the relay's loop in a thread (finfaas_dev.relay), so the local ticker leaves it out.
IN_PROCESS_LOCALLY = frozenset({"relay"})
_EVERY_MINUTES = re.compile(r"^(\*|\*/(?P<n>[1-9][0-9]?)) \* \* \* \*$")
GATEWAY_FUNCTION_URL = "{gateway}/function/{name}"
local_tick_timeout_seconds = 70.0  # the relay's 65 s exec_timeout, and some; a tick waits for its run
local_ticks_remembered_max = 64
local_tick_answer_bytes_max = 4096


def cron_interval_seconds(expression: str) -> int:
    """The period of `* * * * *` or `*/N * * * *`, the forms the suite schedules; ValueError otherwise."""
    match = _EVERY_MINUTES.match(expression.strip())
    if match is None:
        raise ValueError(f"schedule {expression!r}: the suite runs '* * * * *' or '*/N * * * *' only")
    return 60 * int(match["n"] or 1)


def local_jobs(annotations: Mapping[str, Mapping[str, str]]) -> dict[str, float]:
    """Function -> tick period, for every scheduled function the local runtime ticks over HTTP."""
    jobs = {}
    for name, notes in sorted(annotations.items()):
        expression = schedule_of(notes)
        if expression and name not in IN_PROCESS_LOCALLY:
            jobs[name] = float(cron_interval_seconds(expression))
    return jobs


def post_tick(url: str, timeout_seconds: float) -> tuple[int, bytes]:
    """What the cron-connector sends: a POST with an empty body, no token, no signature."""
    request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 - the local gateway
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as reply:  # noqa: S310
            return reply.status, reply.read(local_tick_answer_bytes_max)
    except urllib.error.HTTPError as error:
        return error.code, error.read(local_tick_answer_bytes_max)


class LocalTicker:
    """Ticks each scheduled function through the local gateway once per its period, as the cron-connector."""

    def __init__(self, jobs: Mapping[str, float], gateway_url: str,
                 *, send: Callable[[str, float], tuple[int, bytes]] = post_tick,
                 clock: Callable[[], float] = time.time) -> None:
        self._periods = dict(jobs)
        self._gateway_url = gateway_url.rstrip("/")
        self._send = send
        self._clock = clock
        now = clock()
        self._due = {name: now + period for name, period in self._periods.items()}  # a cron's first is later
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent: deque[tuple[str, int]] = deque(maxlen=local_ticks_remembered_max)  # (function, status)

    def run_due(self) -> float:
        """Send the ticks due now; the seconds until the next one is due."""
        now = self._clock()
        for name, due in sorted(self._due.items()):
            if due <= now:
                self._due[name] = now + self._periods[name]
                self._tick(name)
        return max(min(self._due.values(), default=now + 60.0) - self._clock(), 0.0)

    def _tick(self, name: str) -> None:
        url = GATEWAY_FUNCTION_URL.format(gateway=self._gateway_url, name=name)
        try:
            status, body = self._send(url, local_tick_timeout_seconds)
        except Exception as error:  # a refused connection: the next period tries again
            status, body = 0, f"{type(error).__name__}: {error}".encode()
        if not 200 <= status < 300:
            detail = body.decode("utf-8", "replace")[:200]
            print(f"finfaas up: schedule tick for {name} answered {status}: {detail}", flush=True)
        self.sent.append((name, status))

    def start(self) -> None:
        def loop() -> None:
            while not self._stopping.wait(self.run_due()):
                pass

        if self._periods:
            self._thread = threading.Thread(target=loop, name="schedule-ticker", daemon=True)
            self._thread.start()

    def stop(self, wait_seconds: float = local_tick_timeout_seconds) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(wait_seconds)
