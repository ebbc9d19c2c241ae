"""Wake-up messages on the orchestrator queue: start, timer, callback, continue and sweep ticks.

A wake-up is only a hint: the execution's state lives in DynamoDB, the engine re-reads it and does
nothing unless something is due, so a duplicate or late message does no harm. Bodies are sealed
with the events key (platform/queue_proof.py), so the orchestrator's POST / refuses anyone else's.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from finfaas.platform import jsonio

ORCHESTRATOR_QUEUE = "orchestrator"
WAKE_EVENT_TYPE = "dev.finfaas.orchestrator.wake"
SWEEP_EVENT_TYPE = "dev.finfaas.orchestrator.sweep"
WAKE = "wake"
SWEEP = "sweep"
KINDS = (WAKE, SWEEP)
REASONS = ("start", "timer", "callback", "continue", "sweep", "redrive")
SQS_DELAY_SECONDS_MAX = 900  # SendMessage's DelaySeconds limit; longer timers hop
message_bytes_max = 4096
execution_id_chars_max = 160  # <state machine, at most 63>:<name, at most 80>, with room to spare


class WakeupError(RuntimeError):
    """A wake-up could not be sent; the sweeper will find the execution anyway."""


@dataclass(frozen=True)
class Wakeup:
    kind: str
    execution_id: str | None = None
    reason: str = "start"
    due_at_ms: int | None = None  # timers: the due time this message was sent for

    def to_json(self) -> str:
        body: dict[str, Any] = {"kind": self.kind, "reason": self.reason}
        if self.execution_id is not None:
            body["execution_id"] = self.execution_id
        if self.due_at_ms is not None:
            body["due_at_ms"] = self.due_at_ms
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Wakeup:
        """Parse a message body; ValueError when it is not a wake-up."""
        if len(raw) > message_bytes_max:
            raise ValueError("wake-up message too large")
        body = jsonio.loads(raw)
        if not isinstance(body, dict) or body.get("kind") not in KINDS:
            raise ValueError("not a wake-up message")
        execution_id = body.get("execution_id")
        if body["kind"] == WAKE and (
            not isinstance(execution_id, str) or not 0 < len(execution_id) <= execution_id_chars_max
        ):
            raise ValueError(f"a wake-up names its execution_id (1-{execution_id_chars_max} characters)")
        due = body.get("due_at_ms")
        reason = str(body["reason"]) if body.get("reason") in REASONS else "start"
        return cls(body["kind"], execution_id, reason, due if isinstance(due, int) else None)


def delay_seconds(due_at_ms: int, now_ms: int) -> int:
    """Whole seconds to delay a message so it arrives at or after due_at_ms (capped by SQS)."""
    return max(0, min(SQS_DELAY_SECONDS_MAX, math.ceil((due_at_ms - now_ms) / 1000)))


class Waker(Protocol):
    def send(self, wakeup: Wakeup, delay_seconds: int = 0) -> None:
        """Enqueue a wake-up; raises WakeupError when the queue cannot be reached."""
        ...


class SqsWaker:
    """Wake-ups on finfaas-<stage>-orchestrator, as binary CloudEvents once the connector delivers them."""

    def __init__(
        self, client_factory: Callable[[], Any] | None = None, queue_name: str | None = None,
        mac: Any = None,
    ) -> None:
        from finfaas.platform.queue_proof import lazy_event_mac

        self._client_factory = client_factory or _default_client
        self._queue_name = queue_name
        # Sealed, so the orchestrator's POST / can tell its queue's messages from anyone's POST.
        self._mac = lazy_event_mac(mac)
        self._client: Any = None
        self._url: str | None = None
        self._lock = threading.Lock()

    def send(self, wakeup: Wakeup, delay_seconds: int = 0) -> None:
        from finfaas.platform import tracing

        event_type = SWEEP_EVENT_TYPE if wakeup.kind == SWEEP else WAKE_EVENT_TYPE
        attributes = {"ce-type": {"DataType": "String", "StringValue": event_type}}
        if wakeup.execution_id:
            attributes["ce-subject"] = {"DataType": "String", "StringValue": wakeup.execution_id}
        try:
            from finfaas.platform.queue_proof import seal_body

            body = seal_body(self._mac.get(), wakeup.to_json())
            client, url = self._queue()
            client.send_message(
                QueueUrl=url,
                MessageBody=body,
                DelaySeconds=delay_seconds,
                MessageAttributes=attributes,
                MessageSystemAttributes=tracing.sqs_message_system_attributes(),
            )
        except Exception as error:  # botocore raises many kinds; the sweeper is the fallback
            raise WakeupError(f"wake-up not sent: {error}") from error

    def _queue(self) -> tuple[Any, str]:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            if self._url is None:
                from finfaas.platform.config import resource_name

                name = self._queue_name or resource_name(ORCHESTRATOR_QUEUE)
                self._url = self._client.get_queue_url(QueueName=name)["QueueUrl"]
            return self._client, self._url


def _default_client() -> Any:
    # botocore alone: boto3 adds about 0.3 s of imports to a cold start and nothing used here.
    import botocore.session
    from botocore.config import Config

    from finfaas.platform.config import settings

    config = Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 3})
    return botocore.session.get_session().create_client("sqs", region_name=settings().region, config=config)
