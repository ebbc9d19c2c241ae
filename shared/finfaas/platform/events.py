"""CloudEvents of the suite: the catalogue of types, structured JSON envelopes, queue messages.

Every event leaves the outbox as a structured CloudEvent (JSON) in the body of an SQS message:

    {"specversion": "1.0", "id": "<event id>", "source": "finfaas/ledger", "type": "ledger.transfers.created",
     "subject": "<account or transfer id>", "time": "...Z", "datacontenttype": "application/json",
     "dataschema": "urn:finfaas:schema:<type>", "data": {...}, "finfaasmac": "v1,<base64 HMAC-SHA256>"}

The `finfaasmac` extension authenticates the message between our own functions: a queue-triggered
function accepts POSTs without a bearer token (connectors send none), so the MAC, made with the
`events-hmac-key` secret over the canonical JSON of everything else, is what tells a queued event
from a forged request. It is removed before an event leaves the suite (webhooks).

The `cloudevents` package (2.x, `cloudevents.core`) checks the attributes (required ones, extension
names, timezone-aware time) and writes and reads the JSON format; the MAC and the SQS mapping are ours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from finfaas.platform import jsonio
from finfaas.platform.mac_keys import checked_mac_keys, mac_key_bytes_min, mac_keys_from_config

SPECVERSION = "1.0"
STRUCTURED_MEDIA_TYPE = "application/cloudevents+json"
DATA_MEDIA_TYPE = "application/json"
MAC_EXTENSION = "finfaasmac"
MAC_VERSION_PREFIX = "v1,"
SCHEMA_URN_PREFIX = "urn:finfaas:schema:"  # + type: the $id of events/schemas/<type>.json
EVENTS_MAC_KEY_SECRET_NAME = "events-hmac-key"  # noqa: S105 - the name of the secret file, not a secret
# SQS message attributes; the queue connector turns `ce-*` ones into CloudEvent headers.
TYPE_ATTRIBUTE = "ce-type"
SUBJECT_ATTRIBUTE = "ce-subject"
TIME_ATTRIBUTE = "ce-time"
EVENT_ID_ATTRIBUTE = "ce-finfaaseventid"
CONTENT_TYPE_ATTRIBUTE = "content-type"
event_body_bytes_max = 256 * 1024  # SQS's message size limit
event_id_chars_max = 256
sqs_batch_messages_max = 10  # SQS's own limit per SendMessageBatch
sqs_delay_seconds_max = 900  # SQS's own limit per message
sqs_connect_timeout_seconds = 2
sqs_read_timeout_seconds = 10
sqs_attempts_max = 3

LEDGER_SOURCE = "finfaas/ledger"
TRANSFERS_SOURCE = "finfaas/transfers"
LEDGER_EVENT_TYPES = (
    "ledger.account.opened",
    "ledger.account.status_changed",
    "ledger.transfers.created",
    "ledger.pending.posted",
    "ledger.pending.voided",
    "ledger.pending.expired",
    "ledger.transfer.reversed",
)
TRANSFER_EVENT_TYPES = ("transfer.accepted", "transfer.completed", "transfer.failed", "transfer.compensated")
PAYMENT_EVENT_TYPES = (
    "payment_intent.created",
    "payment_intent.requires_capture",
    "payment_intent.partially_captured",
    "payment_intent.succeeded",
    "payment_intent.canceled",
    "payment_intent.capture_expiring",
    "payment_intent.payment_failed",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "dispute.created",
    "dispute.updated",
    "dispute.closed",
    "payout.paid",
    "payout.created",
    "payout.failed",
)
WALLET_EVENT_TYPES = tuple(f"{kind}.{what}" for kind in ("topup", "withdrawal")
                           for what in ("created", "succeeded", "failed", "needs_attention"))
LOAN_EVENT_TYPES = ("loan.approved", "loan.declined", "loan.review_required", "loan.disbursement_started",
                    "loan.disbursed", "loan.disbursement_failed", "loan.repaid",
                    "loan.bucket_changed", "loan.closed", "loan.repayment_reversed", "loan.written_off",
                    "loan.auto_debited", "loan.auto_debit_failed", "loan.auto_debit_changed")
EVENT_TYPES = (LEDGER_EVENT_TYPES + TRANSFER_EVENT_TYPES + PAYMENT_EVENT_TYPES + WALLET_EVENT_TYPES
               + LOAN_EVENT_TYPES)


class EventRejected(Exception):
    """A message that is not an authentic, well-formed event of ours (never retried into success)."""


@dataclass(frozen=True)
class EventEnvelope:
    """One event as integrators see it; `data` is a JSON object."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_cloudevent(self) -> CloudEvent:
        attributes = {"specversion": SPECVERSION, "id": self.id, "source": self.source, "type": self.type,
                      "subject": self.subject, "time": self.time, "datacontenttype": DATA_MEDIA_TYPE,
                      "dataschema": f"{SCHEMA_URN_PREFIX}{self.type}"}
        try:
            return CloudEvent(attributes=attributes, data=dict(self.data))
        except BaseCloudEventException as error:
            raise EventRejected(f"not a valid CloudEvent: {error}") from None

    def document(self) -> dict[str, Any]:
        """The structured-mode JSON object (CloudEvents JSON format), without any MAC."""
        return json.loads(JSONFormat().write(self.to_cloudevent()))

    def canonical_json(self) -> bytes:
        """Stable bytes of the document: what a webhook body carries on every attempt."""
        return canonical_json(self.document())


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same object always gives the same bytes."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def envelope_from_document(document: Mapping[str, Any]) -> EventEnvelope:
    """The envelope of a structured-mode JSON object; EventRejected when it is not one of ours."""
    raw = {k: v for k, v in document.items() if k != MAC_EXTENSION}
    if "time" not in raw:  # the library would fill in the present moment
        raise EventRejected("an event needs a time")
    try:
        event = JSONFormat().read(CloudEvent, json.dumps(raw))
    except (BaseCloudEventException, ValueError, TypeError, AttributeError) as error:
        raise EventRejected(f"not a structured CloudEvent: {error}") from None
    data = event.get_data()
    subject, time = event.get_subject(), event.get_time()
    if not isinstance(data, dict) or not subject or time is None or len(event.get_id()) > event_id_chars_max:
        raise EventRejected("an event needs an object as data, a subject, a time and a short id")
    return EventEnvelope(event.get_id(), event.get_source(), event.get_type(), subject,
                         time.astimezone(UTC), data)


# --- the MAC between our own functions ---------------------------------------------------------------


class EventMac:
    """Seals JSON documents with an HMAC-SHA256 `finfaasmac` member and opens them again."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._keys = checked_mac_keys(EVENTS_MAC_KEY_SECRET_NAME, keys)

    @classmethod
    def generate(cls) -> EventMac:
        return cls([secrets.token_bytes(mac_key_bytes_min)])

    def seal(self, document: Mapping[str, Any]) -> bytes:
        """The document with its MAC, as canonical JSON bytes (an SQS message body)."""
        unsealed = {k: v for k, v in document.items() if k != MAC_EXTENSION}
        return canonical_json({**unsealed, MAC_EXTENSION: self._mac(self._keys[0], unsealed)})

    def open(self, body: bytes | str) -> dict[str, Any]:
        """The document without its MAC; EventRejected when unparsable, unsealed or forged."""
        if len(body) > event_body_bytes_max:
            raise EventRejected("the message is larger than any event")
        try:
            document = jsonio.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise EventRejected("the message is not JSON") from None
        if not isinstance(document, dict) or not isinstance(document.get(MAC_EXTENSION), str):
            raise EventRejected("the message carries no MAC")
        claimed = document.pop(MAC_EXTENSION)
        if not any(hmac.compare_digest(claimed, self._mac(key, document)) for key in self._keys):
            raise EventRejected("the MAC does not match")
        return document

    @staticmethod
    def _mac(key: bytes, document: Mapping[str, Any]) -> str:
        digest = hmac.new(key, canonical_json(document), hashlib.sha256).digest()
        return MAC_VERSION_PREFIX + base64.b64encode(digest).decode("ascii")


def event_mac_from_config() -> EventMac:
    """The MAC from the `events-hmac-key` secret; ConfigError when it is missing (never unsigned)."""
    return EventMac(mac_keys_from_config(EVENTS_MAC_KEY_SECRET_NAME))


# --- queue messages ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueMessage:
    """One message to send: `key` identifies it in the batch's answer."""

    key: str
    body: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    delay_seconds: int = 0


@dataclass
class BatchOutcome:
    """Which messages of a batch SQS accepted; a sender fault (too big, bad text) will never succeed."""

    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def all_sent(self) -> bool:
        return not self.failed and not self.refused


class QueueUnavailable(Exception):
    """SQS did not answer or the queue does not exist: retry later."""


class EventQueue(Protocol):
    """Where events are sent (SqsQueue; fakes in tests): the outbox relay's and webhooks' port."""

    def send_batch(self, messages: Sequence[QueueMessage]) -> BatchOutcome: ...

    def send(self, message: QueueMessage) -> None:
        """One message; QueueUnavailable unless the queue accepted it."""
        ...


def event_message(key: str, envelope: EventEnvelope, mac: EventMac) -> QueueMessage:
    """The SQS message of one event: sealed structured JSON, with the type and id as attributes."""
    document = envelope.document()
    return QueueMessage(key, mac.seal(document), {
        TYPE_ATTRIBUTE: envelope.type,
        SUBJECT_ATTRIBUTE: envelope.subject,
        TIME_ATTRIBUTE: document["time"],
        EVENT_ID_ATTRIBUTE: envelope.id,
        # Plain JSON, not application/cloudevents+json: the connector delivers the message in binary
        # mode, where that media type would read as a structured event of the connector's own.
        CONTENT_TYPE_ATTRIBUTE: DATA_MEDIA_TYPE,
    })


class SqsQueue:
    """One queue by logical name (finfaas-<stage>-<logical>); SendMessageBatch in chunks of ten."""

    def __init__(self, logical_name: str, client: Any = None, queue_name: str | None = None) -> None:
        from finfaas.platform.config import resource_name

        self.queue_name = queue_name or resource_name(logical_name)
        self._client = client
        self._url: str | None = None
        self._lock = threading.Lock()

    def send_batch(self, messages: Sequence[QueueMessage]) -> BatchOutcome:
        outcome = BatchOutcome()
        for start in range(0, len(messages), sqs_batch_messages_max):
            self._send_chunk(messages[start:start + sqs_batch_messages_max], outcome)
        return outcome

    def send(self, message: QueueMessage) -> None:
        """One message; QueueUnavailable unless SQS accepted it."""
        outcome = self.send_batch([message])
        if not outcome.all_sent:
            raise QueueUnavailable(f"{self.queue_name}: {outcome.failed or outcome.refused}")

    def _send_chunk(self, chunk: Sequence[QueueMessage], outcome: BatchOutcome) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        oversized = [m for m in chunk if len(m.body) > event_body_bytes_max]
        for message in oversized:
            outcome.refused[message.key] = f"{len(message.body)} bytes; SQS takes {event_body_bytes_max}"
        chunk = [m for m in chunk if len(m.body) <= event_body_bytes_max]
        if not chunk:
            return
        entries = [_batch_entry(str(i), m) for i, m in enumerate(chunk)]
        try:
            reply = self._sqs().send_message_batch(QueueUrl=self._queue_url(), Entries=entries)
        except (BotoCoreError, ClientError, QueueUnavailable) as error:
            outcome.failed.update({m.key: f"send failed: {type(error).__name__}" for m in chunk})
            return
        outcome.sent += [chunk[int(ok["Id"])].key for ok in reply.get("Successful", [])]
        for bad in reply.get("Failed", []):
            target = outcome.refused if bad.get("SenderFault") else outcome.failed
            target[chunk[int(bad["Id"])].key] = f"{bad.get('Code')}: {bad.get('Message', '')}"

    def _queue_url(self) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        with self._lock:
            if self._url is None:
                try:
                    self._url = self._sqs().get_queue_url(QueueName=self.queue_name)["QueueUrl"]
                except (BotoCoreError, ClientError) as error:
                    raise QueueUnavailable(f"{self.queue_name}: {type(error).__name__}") from None
            return self._url

    def _sqs(self) -> Any:
        if self._client is None:
            self._client = sqs_client()
        return self._client


def _batch_entry(entry_id: str, message: QueueMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "Id": entry_id,
        "MessageBody": message.body.decode("utf-8"),
        "MessageAttributes": {name: {"DataType": "String", "StringValue": value}
                              for name, value in message.attributes.items()},
    }
    if message.delay_seconds:
        entry["DelaySeconds"] = max(0, min(int(message.delay_seconds), sqs_delay_seconds_max))
    return entry


def sqs_client() -> Any:
    """A botocore SQS client (no boto3); botocore resolves the endpoint from AWS_ENDPOINT_URL*."""
    import botocore.session
    from botocore.config import Config

    from finfaas.platform.config import settings

    options = Config(connect_timeout=sqs_connect_timeout_seconds, read_timeout=sqs_read_timeout_seconds,
                     retries={"mode": "standard", "total_max_attempts": sqs_attempts_max})
    return botocore.session.get_session().create_client("sqs", region_name=settings().region, config=options)


# --- deliveries from the queue connector -------------------------------------------------------------


def delivery_type(headers: Mapping[str, str]) -> str | None:
    """The `ce-type` of a binary-mode CloudEvent delivery (header names in any case)."""
    for name, value in headers.items():
        if name.lower() == "ce-type":
            return value
    return None
