"""The relay function: publishes outbox events to the events queue, for a bounded time per call.

Deployed, a scheduler invokes it every minute and each call relays for FINFAAS_RELAY_RUN_SECONDS
(default 50 s, under the 65 s exec_timeout), so the outbox is drained continuously without any
request from a client: at most a few seconds of latency while a call runs, up to the gap if a call
dies early. Partition leases make overlapping calls (other replicas, a slow call) share the work.
The local runtime runs the same loop in-process (finfaas_dev.relay.start_relay).

POST / takes no bearer token: it takes a signed schedule tick (X-Finfaas-Schedule, platform/schedule.py,
secret `schedule-hmac-key`) and answers 401 problem+json, starting nothing, to any other caller.
The scheduler is a CronJob running `python -m finfaas.platform.schedule relay <url>` from this image:
OpenFaaS's cron-connector and Knative's PingSource send a fixed request and cannot sign (README).
"""

import os
import socket
import threading
import uuid
from typing import Any

from finfaas.platform.http import FunctionApp, Request, Response
from finfaas.platform.schedule import ScheduleProof, schedule_keys_from_config
from finfaas.platform.wiring import Lazy
from finfaas.services.outbox_relay.api import ERRORS
from finfaas.services.outbox_relay.service import OutboxRelay, RelayLoop

RUN_SECONDS_ENV = "FINFAAS_RELAY_RUN_SECONDS"
run_seconds_default = 50.0
run_seconds_max = 300.0

def run_seconds() -> float:
    """FINFAAS_RELAY_RUN_SECONDS, clamped to 0..run_seconds_max; keep it under exec_timeout."""
    raw = os.environ.get(RUN_SECONDS_ENV, "")
    try:
        return min(max(float(raw), 0.0), run_seconds_max) if raw else run_seconds_default
    except ValueError:
        return run_seconds_default


def relay_holder() -> str:
    """Names this replica in partition leases."""
    return f"relay-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def build_relay() -> OutboxRelay:
    """The relay on this stage's outbox table and events queue (imports AWS code: call lazily)."""
    from finfaas.platform.events import SqsQueue, event_mac_from_config
    from finfaas.store.outbox_store import OutboxStore

    return OutboxRelay(OutboxStore(), SqsQueue("events"), event_mac_from_config(), relay_holder())


relay = Lazy(build_relay)
_running = threading.Lock()
app = FunctionApp("relay", errors=ERRORS)
# The key is read on the first tick, so a cold start that answers /_/health reads no secret.
schedule_proof = ScheduleProof("relay", schedule_keys_from_config)


@app.route("POST", "/", auth=False, media_types=("application/json", "text/plain"), trigger=schedule_proof)
def run_relay(req: Request) -> Response:
    """Relay outbox events for up to FINFAAS_RELAY_RUN_SECONDS (a signed schedule tick); 202 if a run is
    already going here."""
    if not _running.acquire(blocking=False):
        return Response({"status": "already_running"}, 202)
    try:
        loop = RelayLoop(relay.get())
        totals = loop.run(deadline_seconds=run_seconds())
        return Response({"status": "done", "sent": totals.sent, "parked": totals.parked,
                         "failed": totals.failed, "passes": loop.passes})
    finally:
        _running.release()


@app.readiness_check("outbox-table")
def outbox_reachable() -> None:
    relay.get().outbox.oldest("readiness-probe", 1)


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
