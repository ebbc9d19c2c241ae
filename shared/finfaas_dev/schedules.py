"""Scheduled functions on a cluster: a Kubernetes CronJob per `com.finfaas.schedule` annotation.

A scheduled entry point (the relay's and the ledger's POST /) takes only a signed tick
(finfaas.platform.schedule), which neither OpenFaaS's cron-connector nor Knative's PingSource can make
(both send a fixed request): a CronJob runs the function's own image to sign and send it.
"""

from __future__ import annotations

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
