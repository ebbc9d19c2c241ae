"""The relay function: publishes outbox events to the events queue, for a bounded time per call.

Deployed, a scheduler invokes it every minute and each call relays for FINFAAS_RELAY_RUN_SECONDS
(default 50 s, under the 65 s exec_timeout), so the outbox is drained continuously without any
request from a client: at most a few seconds of latency while a call runs, up to the gap if a call
dies early. Partition leases make overlapping calls (other replicas, a slow call) share the work.
The local runtime runs the same loop in-process (finfaas_dev.relay.start_relay).

POST / takes no bearer token: it takes a schedule tick (platform/schedule.py). The stock schedulers'
unsigned ticks (OpenFaaS's cron-connector, Knative's PingSource) run it at most once per
RELAY_PERIOD_SECONDS whoever sends them; a signed tick (X-Finfaas-Schedule, secret
`schedule-hmac-key`) always runs it, and a bad signature is 401.
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
# stack.yml's `schedule` of this function: a test keeps them equal, since an unsigned tick starts a run
# at most once per this period.
RELAY_PERIOD_SECONDS = 60


def schedule_claims() -> Any:
    """Where unsigned ticks claim their period: the rate-limit table (imports AWS code: call lazily)."""
    from finfaas.store.ratelimit_store import RateLimitStore

    return RateLimitStore()


# Key and table are read on the first tick, so a cold start that answers /_/health reads neither.
schedule_proof = ScheduleProof("relay", schedule_keys_from_config, schedule_claims, RELAY_PERIOD_SECONDS)


@app.route("POST", "/", auth=False, media_types=("application/json", "text/plain"), trigger=schedule_proof)
def run_relay(req: Request) -> Response:
    """Relay outbox events for up to FINFAAS_RELAY_RUN_SECONDS (a schedule tick); 202 if a run is already
    going here."""
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
