"""The queue connector: SQS messages delivered to functions as binary-mode CloudEvents.

For every function whose stack.yml annotation says `topic: <logical queue name>` (as the
OpenFaaS SQS connector reads it; comma-separated for several), messages of the queue
finfaas-<stage>-<topic> are POSTed through the gateway to /function/<name>:

  ce-specversion 1.0, ce-id = SQS MessageId, ce-source = the queue ARN,
  ce-type / ce-subject / ce-time / ce-dataschema and any ce-<extension> from String message
  attributes of the same name (ce-type defaults to DEFAULT_EVENT_TYPE, ce-time to SentTimestamp),
  ce-finfaasreceivecount = ApproximateReceiveCount, Content-Type from a `content-type`
  attribute (else JSON when the body parses as JSON), X-Amzn-Trace-Id = AWSTraceHeader,
  body = the message body, byte for byte.

A 2xx answer deletes the message; anything else leaves it to reappear after the visibility
timeout, so the queue's redrive policy moves a poison message to its DLQ. While a delivery
runs, the message's visibility is extended so a slow function is not sent it twice at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from cloudevents.core.bindings.http import to_binary
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from finfaas.platform.tracing import SQS_TRACE_ATTRIBUTE, TRACE_HEADER, sqs_trace_header

from finfaas_dev.process_pool import log_event
from finfaas_dev.schedules import CRON_TOPIC
from finfaas_dev.stackfile import Stack

DEFAULT_EVENT_TYPE = "dev.finfaas.sqs.message"
RECEIVE_COUNT_EXTENSION = "finfaasreceivecount"
CE_ATTRIBUTE_PREFIX = "ce-"
CONTENT_TYPE_ATTRIBUTE = "content-type"
RECEIVE_BATCH_MESSAGES_MAX = 10  # SQS's own limit per ReceiveMessage
DELIVERIES_IN_FLIGHT_MAX = 8  # per queue
# moto's embedded server runs one request at a time, so a long poll would stall every other
# AWS call for its whole wait: poll without waiting and back off while the queue is empty.
# Against real SQS or LocalStack, a long poll (wait_seconds=20) is cheaper.
WAIT_SECONDS_DEFAULT = 0
IDLE_POLL_SECONDS_MIN = 0.1
IDLE_POLL_SECONDS_MAX = 1.0
QUEUE_RETRY_SECONDS_MAX = 10.0  # while a queue does not exist yet (infra not deployed)
DELIVERY_TIMEOUT_SECONDS = 120.0  # the gateway enforces the function's own exec_timeout first
VISIBILITY_SECONDS_FALLBACK = 30
STOP_DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class Subscription:
    """One queue and the functions every one of its messages goes to."""

    topic: str
    queue_name: str
    functions: tuple[str, ...]


# Topics served by other connectors, not queues: OpenFaaS's cron-connector reads `cron-function`.
NON_QUEUE_TOPICS = frozenset({CRON_TOPIC})


def subscriptions_for(stack: Stack, resource_name: Callable[[str], str]) -> list[Subscription]:
    by_topic: dict[str, list[str]] = {}
    for name, spec in stack.functions.items():
        for topic in spec.topics:
            if topic not in NON_QUEUE_TOPICS:
                by_topic.setdefault(topic, []).append(name)
    return [Subscription(t, resource_name(t), tuple(fns)) for t, fns in sorted(by_topic.items())]


def cloud_event_request(message: Mapping[str, Any], queue_arn: str) -> tuple[dict[str, str], bytes]:
    """HTTP headers and body of the binary-mode CloudEvent for one received SQS message."""
    body = message.get("Body", "")
    system = message.get("Attributes", {})
    custom = _string_attributes(message.get("MessageAttributes", {}))
    attributes: dict[str, Any] = {
        "id": message["MessageId"],
        "source": queue_arn,
        "type": custom.get(f"{CE_ATTRIBUTE_PREFIX}type") or DEFAULT_EVENT_TYPE,
        "time": _event_time(custom.get(f"{CE_ATTRIBUTE_PREFIX}time"), system.get("SentTimestamp")),
        "datacontenttype": custom.get(CONTENT_TYPE_ATTRIBUTE) or _sniffed_content_type(body),
        RECEIVE_COUNT_EXTENSION: str(system.get("ApproximateReceiveCount", "1")),
    }
    for name, value in custom.items():
        key = name[len(CE_ATTRIBUTE_PREFIX) :] if name.startswith(CE_ATTRIBUTE_PREFIX) else None
        if key and key not in attributes and key not in ("id", "source", "specversion"):
            attributes[key] = value
    event = _valid_event(attributes, body.encode())
    message_http = to_binary(event, JSONFormat())
    headers = dict(message_http.headers)
    trace_header = sqs_trace_header(message)
    if trace_header:
        headers[TRACE_HEADER] = trace_header
    return headers, message_http.body


def _valid_event(attributes: dict[str, Any], data: bytes) -> CloudEvent:
    """The event; a producer's malformed optional attribute is dropped rather than poisoning it."""
    try:
        return CloudEvent(attributes=dict(attributes), data=data)
    except BaseCloudEventException as error:
        log_event("connector_attributes_dropped", message_id=attributes["id"], error=str(error))
    kept = ("id", "source", "type", "time", "datacontenttype", RECEIVE_COUNT_EXTENSION)
    return CloudEvent(attributes={k: attributes[k] for k in kept}, data=data)


def _string_attributes(raw: Mapping[str, Any]) -> dict[str, str]:
    return {
        name.lower(): value["StringValue"]
        for name, value in raw.items()
        if value.get("DataType", "").startswith("String") and "StringValue" in value
    }


def _event_time(explicit: str | None, sent_timestamp_ms: str | None) -> datetime:
    if explicit:
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(explicit.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if sent_timestamp_ms and sent_timestamp_ms.isdigit():
        return datetime.fromtimestamp(int(sent_timestamp_ms) / 1000, tz=UTC)
    return datetime.now(UTC)


def _sniffed_content_type(body: str) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


def _default_sqs_client():
    from finfaas_dev.awsclients import client

    return client("sqs")


def _default_resource_name(logical: str) -> str:
    from finfaas.platform.config import resource_name

    return resource_name(logical)


class QueueConnector:
    """Polls each subscribed queue and delivers its messages through the gateway."""

    def __init__(
        self,
        subscriptions: list[Subscription],
        gateway_url: str,
        sqs_client_factory: Callable[[], Any] = _default_sqs_client,
        wait_seconds: int = WAIT_SECONDS_DEFAULT,
        deliveries_in_flight_max: int = DELIVERIES_IN_FLIGHT_MAX,
    ) -> None:
        self.subscriptions = subscriptions
        self.delivered_count = 0
        self.failed_count = 0
        self._gateway_url = gateway_url.rstrip("/")
        self._sqs_client_factory = sqs_client_factory
        self._wait_seconds = wait_seconds
        self._deliveries_in_flight_max = deliveries_in_flight_max
        # SQS calls block; they get their own threads so the gateway's loop never waits on them.
        self._executor = ThreadPoolExecutor(
            max_workers=2 * len(subscriptions) + 2, thread_name_prefix="sqs-connector"
        )
        self._sqs: Any = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._in_flight: set[asyncio.Task] = set()

    @classmethod
    def for_stack(cls, stack: Stack, gateway_url: str, **options: Any) -> QueueConnector:
        return cls(subscriptions_for(stack, _default_resource_name), gateway_url, **options)

    async def start(self) -> None:
        self._sqs = await self._call(self._sqs_client_factory)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_SECONDS))
        self._tasks = [asyncio.create_task(self._poll_forever(s)) for s in self.subscriptions]
        log_event("connector_started", queues=[s.queue_name for s in self.subscriptions])

    async def stop(self) -> None:
        """Stop polling; deliveries already running get a short while to finish."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._in_flight:
            _, unfinished = await asyncio.wait(self._in_flight, timeout=STOP_DRAIN_SECONDS)
            for task in unfinished:
                task.cancel()  # not deleted: SQS delivers it again after the visibility timeout
            await asyncio.gather(*unfinished, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
        log_event("connector_stopped", delivered=self.delivered_count, failed=self.failed_count)

    async def _call(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    async def _poll_forever(self, subscription: Subscription) -> None:
        queue_url, queue_arn, visibility_seconds = await self._resolve_queue(subscription)
        mine: set[asyncio.Task] = set()
        idle_seconds = IDLE_POLL_SECONDS_MIN
        while True:
            free = self._deliveries_in_flight_max - len(mine)
            if free <= 0:  # receive only what can be delivered now: the rest stays in the queue
                await asyncio.wait(mine, return_when=asyncio.FIRST_COMPLETED)
                continue
            messages = await self._receive(queue_url, min(free, RECEIVE_BATCH_MESSAGES_MAX))
            if not messages:
                if self._wait_seconds == 0:
                    await asyncio.sleep(idle_seconds)
                    idle_seconds = min(idle_seconds * 2, IDLE_POLL_SECONDS_MAX)
                continue
            idle_seconds = IDLE_POLL_SECONDS_MIN
            for message in messages:
                task = asyncio.create_task(
                    self._deliver(subscription, queue_url, queue_arn, visibility_seconds, message)
                )
                for tasks in (mine, self._in_flight):
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

    async def _resolve_queue(self, subscription: Subscription) -> tuple[str, str, int]:
        """Queue URL, ARN and visibility timeout; waits (with backoff) until the queue exists."""
        delay_seconds = IDLE_POLL_SECONDS_MAX
        while True:
            try:
                url = (await self._call(self._sqs.get_queue_url, QueueName=subscription.queue_name))[
                    "QueueUrl"
                ]
                attributes = (
                    await self._call(
                        self._sqs.get_queue_attributes,
                        QueueUrl=url,
                        AttributeNames=["QueueArn", "VisibilityTimeout"],
                    )
                )["Attributes"]
                visibility = int(attributes.get("VisibilityTimeout", VISIBILITY_SECONDS_FALLBACK))
                return url, attributes["QueueArn"], visibility
            except Exception as error:  # botocore raises many kinds; all mean "not yet"
                log_event("connector_queue_unavailable", queue=subscription.queue_name, error=repr(error))
                await asyncio.sleep(delay_seconds)
                delay_seconds = min(delay_seconds * 2, QUEUE_RETRY_SECONDS_MAX)

    async def _receive(self, queue_url: str, count: int) -> list[dict]:
        try:
            response = await self._call(
                self._sqs.receive_message,
                QueueUrl=queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self._wait_seconds,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["ApproximateReceiveCount", SQS_TRACE_ATTRIBUTE, "SentTimestamp"],
            )
        except Exception as error:  # the emulator may restart; keep polling
            log_event("connector_receive_failed", queue_url=queue_url, error=repr(error))
            await asyncio.sleep(IDLE_POLL_SECONDS_MAX)
            return []
        return response.get("Messages", [])

    async def _deliver(
        self,
        subscription: Subscription,
        queue_url: str,
        queue_arn: str,
        visibility_seconds: int,
        message: dict,
    ) -> None:
        headers, body = cloud_event_request(message, queue_arn)
        heartbeat = asyncio.create_task(self._keep_invisible(queue_url, message, visibility_seconds))
        began = time.monotonic()
        try:
            statuses = await asyncio.gather(*(self._post(fn, headers, body) for fn in subscription.functions))
        finally:
            heartbeat.cancel()
        delivered = all(200 <= status < 300 for status in statuses)
        log_event(
            "connector_delivery",
            queue=subscription.queue_name,
            message_id=message["MessageId"],
            functions=list(subscription.functions),
            statuses=statuses,
            receive_count=message.get("Attributes", {}).get("ApproximateReceiveCount"),
            duration_ms=round((time.monotonic() - began) * 1000, 1),
        )
        if not delivered:
            self.failed_count += 1
            return  # it reappears after the visibility timeout; the redrive policy bounds retries
        try:
            await self._call(
                self._sqs.delete_message, QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            self.delivered_count += 1
        except Exception as error:  # it will be delivered again; consumers are idempotent
            log_event("connector_delete_failed", message_id=message["MessageId"], error=repr(error))

    async def _post(self, function: str, headers: dict[str, str], body: bytes) -> int:
        url = f"{self._gateway_url}/function/{function}"
        try:
            async with self._session.post(url, headers=headers, data=body) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            log_event("connector_post_failed", function=function, error=repr(error))
            return 0

    async def _keep_invisible(self, queue_url: str, message: dict, visibility_seconds: int) -> None:
        """Extend the message's visibility while its delivery runs, at half the timeout."""
        interval_seconds = max(visibility_seconds / 2, 1)
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self._call(
                    self._sqs.change_message_visibility,
                    QueueUrl=queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=visibility_seconds,
                )
            except Exception as error:  # best effort: the worst case is a duplicate delivery
                log_event("connector_visibility_failed", message_id=message["MessageId"], error=repr(error))


def connector_wait_seconds(environ: Mapping[str, str] | None = None) -> int:
    """FINFAAS_CONNECTOR_WAIT_SECONDS (0-20), for a long poll against a real SQS."""
    raw = (os.environ if environ is None else environ).get("FINFAAS_CONNECTOR_WAIT_SECONDS", "")
    return min(max(int(raw), 0), 20) if raw.isdigit() else WAIT_SECONDS_DEFAULT
