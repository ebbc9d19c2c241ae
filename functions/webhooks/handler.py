"""The webhooks function: integrators' subscriptions, and the two queue-triggered delivery steps.

    POST/GET /subscriptions, GET/DELETE /subscriptions/{id}   integrators (webhooks:write / webhooks:read)
    POST /   binary-mode CloudEvents from the queue connector (stack.yml `topic: events,webhooks`):
             ce-type dev.finfaas.webhook.delivery -> one signed POST to a subscriber;
             any other type (an event from the outbox relay) -> one delivery per matching subscription.

Queue deliveries carry no bearer token (connectors send none): their bodies carry the events MAC
instead, so a forged POST / is refused (401) and can never make this function sign anything.
A 2xx acknowledges the message; 503 asks SQS to deliver it again.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finfaas.platform.events import (
    DATA_MEDIA_TYPE,
    STRUCTURED_MEDIA_TYPE,
    EventMac,
    delivery_type,
    envelope_from_document,
)
from finfaas.platform.http import FunctionApp, Request, Response
from finfaas.platform.idempotency import (
    IDEMPOTENCY_KEY_HEADER,
    REPLAYED_HEADER,
    IdempotencyKeyMissing,
    validate_key,
)
from finfaas.platform.queue_proof import QueueMessageProof
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.webhooks.api import (
    DELIVERY_TYPE,
    ERRORS,
    CreatedSubscriptionView,
    CreateSubscriptionBody,
    Delivery,
    PageQuery,
    SubscriptionList,
    SubscriptionView,
)
from finfaas.services.webhooks.service import SubscriptionService, TargetMode, WebhookFanout, WebhookSender

READ, WRITE = "webhooks:read", "webhooks:write"
TARGETS_ENV = "FINFAAS_WEBHOOK_TARGETS"


@dataclass
class WebhooksServices:
    """What the routes need; built from configuration on first use, or given by tests."""

    subscriptions: SubscriptionService
    fanout: WebhookFanout
    sender: WebhookSender
    mac: EventMac
    probe: Callable[[], None]


def target_mode() -> TargetMode:
    """FINFAAS_WEBHOOK_TARGETS: `public` (the default) or `loopback`, which only the local runtime sets:
    anywhere else this machine's own ports (sidecars, the watchdog) must be out of an integrator's reach."""
    return TargetMode(os.environ.get(TARGETS_ENV, TargetMode.PUBLIC.value).strip().lower())


def build_services() -> WebhooksServices:
    """Services on this stage's tables, queues and KMS key (imports AWS code: call lazily)."""
    from finfaas.platform.cursors import CursorCodec
    from finfaas.platform.events import SqsQueue, event_mac_from_config
    from finfaas.platform.pii import EnvelopeCipher, KmsDataKeys, pii_key_id
    from finfaas.services.webhooks.service import OutboundPolicy, PinnedPoster, SecretBox, SubscriptionCache
    from finfaas.store.subscriptions_store import SubscriptionsStore

    store = SubscriptionsStore()
    secrets_box = SecretBox(EnvelopeCipher(KmsDataKeys(pii_key_id())))
    policy = OutboundPolicy(target_mode())
    cache = SubscriptionCache(store)
    mac = event_mac_from_config()
    webhooks_queue = SqsQueue("webhooks")
    sender = WebhookSender(cache, secrets_box, PinnedPoster(), policy, webhooks_queue,
                           SqsQueue("webhooks-dlq"), mac)
    subscriptions = SubscriptionService(store, secrets_box, policy, cursors=CursorCodec.from_config())
    return WebhooksServices(subscriptions, WebhookFanout(cache, webhooks_queue, mac), sender, mac,
                            probe=lambda: store.get("readiness-probe"))


services = Lazy(build_services)
verifier = ReplaceableVerifier()
app = FunctionApp("webhooks", errors=ERRORS, verifier=verifier)


# --- subscriptions (integrators) ------------------------------------------------------------------


CREATE_OPENAPI = {
    "parameters": [{
        "name": IDEMPOTENCY_KEY_HEADER, "in": "header", "required": True,
        "description": "Unique per intended subscription; a retry with the same key and body returns the "
                       "same subscription and secret (Idempotency-Replayed: true), a different body 422.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    }],
}


@app.route("POST", "/subscriptions", scopes=[WRITE], body=CreateSubscriptionBody, status=201,
           response=CreatedSubscriptionView, openapi=CREATE_OPENAPI)
def create_subscription(req: Request, body: CreateSubscriptionBody) -> Response:
    """Subscribe a URL to event types; the signing secret is in this answer only."""
    raw_key = req.header(IDEMPOTENCY_KEY_HEADER.lower())
    if raw_key is None:
        raise IdempotencyKeyMissing(f"Send an {IDEMPOTENCY_KEY_HEADER} header, unique per subscription.")
    created = services.get().subscriptions.create(req.principal.sub, validate_key(raw_key), body.url,
                                                  body.event_types, body.description)
    view = CreatedSubscriptionView(**SubscriptionView.of(created.subscription).model_dump(),
                                   secret=created.secret)
    headers = {"Location": f"/subscriptions/{view.id}"}
    if created.replayed:
        headers[REPLAYED_HEADER] = "true"
    return Response(view.model_dump_json(), 201, headers)


@app.route("GET", "/subscriptions", scopes=[READ], query=PageQuery)
def list_subscriptions(req: Request, query: PageQuery) -> SubscriptionList:
    """The caller's subscriptions by id; cursor pagination."""
    page = services.get().subscriptions.list(req.principal.sub, query.limit, query.starting_after)
    views = [SubscriptionView.of(s) for s in page.subscriptions]
    return SubscriptionList(data=views, has_more=page.has_more, next_cursor=page.next_cursor)


@app.route("GET", "/subscriptions/{subscription_id}", scopes=[READ])
def get_subscription(req: Request, subscription_id: str) -> SubscriptionView:
    """One of the caller's subscriptions (404 for any other)."""
    return SubscriptionView.of(services.get().subscriptions.get(req.principal.sub, subscription_id))


@app.route("DELETE", "/subscriptions/{subscription_id}", scopes=[WRITE], status=204)
def delete_subscription(req: Request, subscription_id: str) -> None:
    """Stop deliveries to this subscription; deliveries already queued are dropped."""
    services.get().subscriptions.delete(req.principal.sub, subscription_id)


# --- queue deliveries (the connector) -------------------------------------------------------------


# The MAC is checked where a token would be (401 before anything runs); the route reads what it opened.
queue_proof = QueueMessageProof(lambda: services.get().mac)


@app.route("POST", "/", auth=False, media_types=(DATA_MEDIA_TYPE, STRUCTURED_MEDIA_TYPE), trigger=queue_proof)
def on_queue_message(req: Request) -> dict[str, Any]:
    """A message of the events or webhooks queue, as a binary-mode CloudEvent (MAC-authenticated)."""
    current = services.get()
    document = queue_proof.message(req)
    if delivery_type(req.headers) == DELIVERY_TYPE:
        outcome = current.sender.deliver(Delivery.from_document(document))
        return {"outcome": outcome.value}
    queued = current.fanout.fan_out(envelope_from_document(document))
    return {"outcome": "fanned_out", "deliveries": queued}


@app.readiness_check("subscriptions-table")
def subscriptions_reachable() -> None:
    services.get().probe()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
