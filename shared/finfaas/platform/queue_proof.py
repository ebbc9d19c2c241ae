"""Queue entry points: only messages our own functions sealed are taken.

A queue-triggered route (POST / of the orchestrator, rail, transfers, webhooks) takes no bearer token:
connectors send none, and neither OpenFaaS's sqs-connector nor a Knative source can add one. What
crosses every target unchanged is the message body, so the sender seals it with the `events-hmac-key`
secret (platform/events.py EventMac: a `finfaasmac` member over the canonical JSON of the rest) and
the route opens it before anything else runs: a POST from anyone else answers 401 and starts nothing.

    proof = QueueMessageProof(event_mac_from_config)        # the key is read on the first message
    @app.route("POST", "/", auth=False, trigger=proof)
    def on_message(req):
        document = proof.message(req)                       # the message without its MAC
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from finfaas.platform import jsonio
from finfaas.platform.errors import HttpError, ServiceUnavailable
from finfaas.platform.events import MAC_EXTENSION, EventMac, EventRejected, event_mac_from_config
from finfaas.platform.logging import get_logger
from finfaas.platform.problems import FieldError
from finfaas.platform.wiring import Lazy

_log = get_logger("queue_proof")


class QueueMessageInvalid(HttpError):
    """A queue entry point called with a body our functions did not seal; the detail never says why."""

    status, code, title = 401, "event_mac_invalid", "Event MAC invalid"

    def __init__(self) -> None:
        super().__init__(
            "This entry point takes only messages of its queue, sealed by the suite.",
            errors=(FieldError(MAC_EXTENSION, "missing, malformed or forged"),),
            headers={"WWW-Authenticate": f'FinfaasMac realm="finfaas", member="{MAC_EXTENSION}"'},
        )


class QueueMessageProof:
    """The trigger check of a queue route: the body opens with the events MAC."""

    def __init__(self, mac: EventMac | Callable[[], EventMac]) -> None:
        self._mac = lazy_event_mac(mac)

    def use(self, mac: EventMac) -> None:
        """Open with this MAC from now on (tests, or a key read another way)."""
        self._mac.use(mac)

    def verify(self, request: Any) -> None:
        request.opened_message = self.open(request.body)

    def admit(self, request: Any) -> None:
        """A sealed message always runs its handler (its own idempotency guards a redelivery)."""
        return None

    def message(self, request: Any) -> dict[str, Any]:
        """The message the trigger check opened (parsed and MAC-checked once per request)."""
        opened: dict[str, Any] | None = request.opened_message
        return opened if opened is not None else self.open(request.body)

    def open(self, body: bytes | str) -> dict[str, Any]:
        """The message without its MAC; QueueMessageInvalid (401) unless our functions sealed it."""
        try:
            return self._event_mac().open(body)
        except EventRejected:
            raise QueueMessageInvalid() from None

    def _event_mac(self) -> EventMac:
        try:
            return self._mac.get()
        except Exception as error:
            # Not the sender's fault: 503 leaves the message queued until the key is there.
            _log.error("events key unavailable", error_type=type(error).__name__)
            raise ServiceUnavailable("The events key is unavailable.") from None


def seal_body(mac: EventMac, body: str | bytes | Mapping[str, Any]) -> str:
    """A message body (a JSON object, as text or parsed) sealed for its queue route."""
    document = json.loads(body) if isinstance(body, (str, bytes)) else dict(body)
    if not isinstance(document, dict):
        raise ValueError("a queue message body is a JSON object")
    return mac.seal(document).decode("utf-8")


def lazy_event_mac(source: EventMac | Callable[[], EventMac] | None = None) -> Lazy[EventMac]:
    """The given MAC, or one built on first use (by default from its secret), so senders and proofs
    built at cold start read nothing."""
    if isinstance(source, EventMac):
        return Lazy.ready(source)
    return Lazy(source or event_mac_from_config)


class QueueOrScheduleProof:
    """The trigger check of a POST / fed both by a queue and by a schedule (a function with
    `topic: cron-function,<queue>`): a body carrying the events MAC member is a queue message and must
    open with it; anything else must be the schedule's tick."""

    def __init__(self, queue: QueueMessageProof, schedule: Any) -> None:
        self.queue = queue
        self.schedule = schedule  # platform/schedule.py ScheduleProof (not imported: it reads AWS lazily)

    def verify(self, request: Any) -> None:
        if carries_mac(request.body):
            self.queue.verify(request)
            return
        request.opened_message = None
        self.schedule.verify(request)

    def admit(self, request: Any) -> Any:
        """A queue message always runs; a tick is admitted as the schedule admits it (once a period)."""
        return None if self.is_message(request) else self.schedule.admit(request)

    @staticmethod
    def is_message(request: Any) -> bool:
        """True when the trigger check opened a queue message (the handler takes it, not a tick)."""
        return request.opened_message is not None


def carries_mac(body: bytes | str) -> bool:
    """True when the body is a JSON object naming the events MAC member (sealed or forged alike)."""
    try:
        document = jsonio.loads(body) if body else None  # depth-bounded: a hostile body cannot recurse
    except ValueError:
        return False
    return isinstance(document, dict) and MAC_EXTENSION in document
