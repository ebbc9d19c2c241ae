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

Operators (docs/console.md): the relay puts messages on the suite's queues, so it also serves their
figures and their dead letters; looking needs `ops`, a redrive `ops:act` as well (audited):
  GET  /_/ops/queues                                  each queue's depth, its dead letters' depth and age
  GET  /_/ops/queues/{queue}/dead-letters             the letters, personal data redacted
  POST /_/ops/queues/{queue}/dead-letters/redrive     one letter ({"message_id"}) or all, to the queue
"""

import os
import socket
import threading
import uuid
from typing import Any

from finfaas.platform.http import FunctionApp, Request, Response
from finfaas.platform.schedule import ScheduleProof, schedule_keys_from_config
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.dead_letters.api import ERRORS as DEAD_LETTER_ERRORS
from finfaas.services.dead_letters.api import LettersQuery, RedriveBody, redrive_view
from finfaas.services.dead_letters.model import DEAD_LETTER_QUEUES
from finfaas.services.dead_letters.service import DeadLetterService
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


def build_dead_letters() -> DeadLetterService:
    """The dead-letter use cases on this stage's queues (imports AWS code: call lazily)."""
    from finfaas.store.dead_letters_store import SqsDeadLetters

    return DeadLetterService(SqsDeadLetters())


def build_audit() -> Any:
    """The relay's audit chain: which operator redrove which dead letters."""
    from finfaas.platform import config
    from finfaas.platform.audit import AUDIT_KEY_SECRET_NAME, AuditLog, signing_key_from_text
    from finfaas.store.audit_store import AuditStore

    key = signing_key_from_text(config.read_secret(AUDIT_KEY_SECRET_NAME, required=False))
    return AuditLog(AuditStore(), "relay", key=key)


relay = Lazy(build_relay)
dead_letters = Lazy(build_dead_letters)
audit = Lazy(build_audit)
_running = threading.Lock()
verifier = ReplaceableVerifier()
app = FunctionApp("relay", errors={**ERRORS, **DEAD_LETTER_ERRORS}, verifier=verifier, audit=audit.get)
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


# --- operators: the queues and their dead letters ---------------------------------------------------


@app.route("GET", "/_/ops/queues", rate_limit=None)
def queues(req: Request) -> dict[str, Any]:
    """Each queue with a dead-letter queue: its depth, and its dead letters' depth and oldest age."""
    return {"data": dead_letters.get().overview()}


@app.route("GET", "/_/ops/queues/{queue}/dead-letters", query=LettersQuery, rate_limit=None)
def letters(req: Request, queue: str, query: LettersQuery) -> dict[str, Any]:
    """The queue's dead letters, oldest first, with their attributes and body (personal data redacted)."""
    return dead_letters.get().letters(queue, query.limit)


# An ops route that changes something: the platform requires ops:act beside ops (http/routes.py).
@app.route("POST", "/_/ops/queues/{queue}/dead-letters/redrive", body=RedriveBody, rate_limit=None)
def redrive(req: Request, queue: str, body: RedriveBody) -> dict[str, Any]:
    """Send one dead letter, or all (up to one request's bound), back to the queue, then delete them."""
    known = queue if queue in DEAD_LETTER_QUEUES else "unknown"
    req.audit_target = f"queue:{known}" + (f":{body.message_id}" if body.message_id else "")
    return redrive_view(dead_letters.get().redrive(queue, body.message_id))


@app.readiness_check("outbox-table")
def outbox_reachable() -> None:
    relay.get().outbox.oldest("readiness-probe", 1)


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
