"""Scheduled functions on a cluster: a Kubernetes CronJob per `com.finfaas.schedule` annotation.

A scheduled entry point (the relay's and the ledger's POST /) takes only a signed tick
(finfaas.platform.schedule), which neither OpenFaaS's cron-connector nor Knative's PingSource can make
(both send a fixed request): a CronJob runs the function's own image to sign and send it.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import yaml

SCHEDULE_ANNOTATION = "com.finfaas.schedule"  # a cron expression; not the cron-connector's `schedule`
OPENFAAS_DIR = Path("infra/openfaas")
SCHEDULE_KEY_SECRET = "schedule-hmac-key"  # noqa: S105 - the secret's name (platform.schedule's)
OPENFAAS_SCHEDULE_URL = "{gateway}/function/{name}"
KNATIVE_SCHEDULE_URL = "http://{name}.{namespace}.svc.cluster.local"  # the Service's cluster address
SECRETS_MOUNT = "/var/openfaas/secrets"  # where config.read_secret looks first
SHARED_IN_IMAGE = "/home/app/function/shared"  # configuration.copy puts ./shared/finfaas in it
tick_deadline_seconds = 120  # a tick waits for the run it starts (the relay's 50 s); then the Job gives up
starting_deadline_seconds = 30  # a missed minute is skipped, not made up in a burst


def schedule_of(fn: dict) -> str | None:
    """The function's cron expression, if it is scheduled."""
    return (fn.get("annotations") or {}).get(SCHEDULE_ANNOTATION) or None


def schedule_cronjob(name: str, fn: dict, url: str, namespace: str) -> dict | None:
    """The CronJob that ticks a scheduled function at `url`, or None if it has no schedule."""
    schedule = schedule_of(fn)
    if schedule is None:
        return None
    container = {
        "name": "tick",
        "image": fn["image"],
        "command": ["python", "-m", "finfaas.platform.schedule", name, url],
        "env": [{"name": "PYTHONPATH", "value": SHARED_IN_IMAGE}],
        "volumeMounts": [{"name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": True}],
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
    }
    pod = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "secrets", "secret": {"secretName": SCHEDULE_KEY_SECRET}}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": f"{name}-schedule",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "finfaas"},
        },
        "spec": {
            "schedule": schedule,
            # One tick at a time here; a second run elsewhere (a retry, a hand-sent tick) is safe too,
            # since every scheduled job is idempotent under concurrency.
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": starting_deadline_seconds,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {
                "backoffLimit": 0,  # the next tick is the retry
                "activeDeadlineSeconds": tick_deadline_seconds,
                "template": {"spec": pod},
            }},
        },
    }


def openfaas_schedule_manifests(stack: dict, gateway_url: str, namespace: str) -> dict[str, str]:
    """File name -> YAML text of each scheduled function's CronJob on OpenFaaS."""
    header = ("# Generated from stack.yml and infra/targets/openfaas.yaml by `finfaas build --schedules`;"
              " do not edit.\n")
    manifests = {}
    for name, fn in sorted(stack["functions"].items()):
        url = OPENFAAS_SCHEDULE_URL.format(gateway=gateway_url.rstrip("/"), name=name)
        cronjob = schedule_cronjob(name, fn, url, namespace)
        if cronjob is not None:
            manifests[f"{name}-schedule.yaml"] = header + yaml.safe_dump(cronjob, sort_keys=False)
    return manifests


# --- the local runtime -------------------------------------------------------------------------------

# `finfaas up` runs the relay's loop in a thread (finfaas_dev.relay), so the local ticker leaves it out.
IN_PROCESS_LOCALLY = frozenset({"relay"})
_EVERY_MINUTES = re.compile(r"^(\*|\*/(?P<n>[1-9][0-9]?)) \* \* \* \*$")
local_tick_timeout_seconds = 70.0  # the relay's 65 s exec_timeout, and some; a tick waits for its run
local_ticks_remembered_max = 64


def cron_interval_seconds(expression: str) -> float:
    """The period of `* * * * *` or `*/N * * * *`, the forms the local runtime runs; ValueError otherwise."""
    match = _EVERY_MINUTES.match(expression.strip())
    if match is None:
        raise ValueError(f"schedule {expression!r}: the local runtime runs '* * * * *' or '*/N * * * *' only")
    return 60.0 * int(match["n"] or 1)


def local_jobs(annotations: Mapping[str, Mapping[str, str]]) -> dict[str, float]:
    """Function -> tick period, for every scheduled function the local runtime ticks over HTTP."""
    jobs = {}
    for name, notes in sorted(annotations.items()):
        expression = notes.get(SCHEDULE_ANNOTATION)
        if expression and name not in IN_PROCESS_LOCALLY:
            jobs[name] = cron_interval_seconds(expression)
    return jobs


class LocalTicker:
    """Sends each scheduled function a signed tick through the local gateway, once per its period."""

    def __init__(self, jobs: Mapping[str, float], gateway_url: str, keys: Callable[[], Sequence[bytes]],
                 *, send: Callable[..., tuple[int, bytes]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        from finfaas.platform.schedule import send_tick

        self._periods = dict(jobs)
        self._gateway_url = gateway_url.rstrip("/")
        self._keys = keys
        self._send = send or send_tick
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
                self._tick(name, now)
        return max(min(self._due.values(), default=now + 60.0) - self._clock(), 0.0)

    def _tick(self, name: str, now: float) -> None:
        url = OPENFAAS_SCHEDULE_URL.format(gateway=self._gateway_url, name=name)
        try:
            status, body = self._send(name, url, self._keys()[0], now, local_tick_timeout_seconds)
        except Exception as error:  # a refused connection or a missing key: the next period tries again
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
