"""The webhooks and relay functions through their python3-http entry points, on fakes."""

from __future__ import annotations

import json

import pytest
from finfaas.platform.events import DATA_MEDIA_TYPE, EventMac
from finfaas.platform.schedule import SCHEDULE_HEADER, schedule_tick_age_seconds_max, sign_tick
from finfaas.services.outbox_relay.service import OutboxRelay
from finfaas.services.webhooks.api import DELIVERY_TYPE, Delivery
from finfaas.services.webhooks.model import verify_signature
from finfaas_dev.fakes.platform import InMemoryRateLimitStore
from finfaas_dev.testing.platform import call, load_function_handler
from support.events_fakes import FakeOutbox, FakeQueue, outbox_event
from support.webhooks_testing import URL, WebhooksWorld, transfer_created

WRITE, READ = ["webhooks:write"], ["webhooks:read"]
BODY = {"url": URL, "event_types": ["ledger.transfers.created"]}
EVENT = transfer_created()


@pytest.fixture
def webhooks(minter):
    """The webhooks handler with fake stores, queues and receiver; returns (module, world)."""
    world = WebhooksWorld()
    return world.function(minter.verifier()), world


def create(module, minter, key="k-1", body=BODY, sub="partner-1"):
    token = minter.mint(sub, WRITE, "client")
    return call(module.handle, "POST", "/subscriptions", json_body=body, token=token,
                headers={"Idempotency-Key": key})


def queue_post(module, body: bytes, ce_type: str):
    headers = {"ce-specversion": "1.0", "ce-id": "sqs-message-1", "ce-source": "arn:aws:sqs:us-east-1:0:q",
               "ce-type": ce_type, "Content-Type": DATA_MEDIA_TYPE}
    return call(module.handle, "POST", "/", body=body, headers=headers)


def test_creating_a_subscription_answers_201_with_the_secret_and_a_retry_replays_it(webhooks, minter):
    module, _ = webhooks
    first = create(module, minter)
    assert first.status == 201 and first.json()["secret"].startswith("whsec_")
    assert first.header("Location") == f"/subscriptions/{first.json()['id']}"
    again = create(module, minter)
    assert again.status == 201 and again.json() == first.json()
    assert again.header("Idempotency-Replayed") == "true"
    changed = create(module, minter, body={**BODY, "event_types": ["*"]})
    assert changed.status == 422 and changed.json()["code"] == "idempotency_key_reused"


def test_creating_needs_the_write_scope_an_idempotency_key_and_an_allowed_url(webhooks, minter):
    module, _ = webhooks
    no_scope = call(module.handle, "POST", "/subscriptions", json_body=BODY, token=minter.mint("p", READ),
                    headers={"Idempotency-Key": "k"})
    assert no_scope.status == 403
    no_key = call(module.handle, "POST", "/subscriptions", json_body=BODY, token=minter.mint("p", WRITE))
    assert no_key.status == 400 and no_key.json()["code"] == "idempotency_key_missing"
    bad_url = create(module, minter, body={**BODY, "url": "http://10.0.0.1/x"})
    assert bad_url.status == 422 and bad_url.json()["code"] == "invalid_webhook_url"
    unknown = create(module, minter, body={**BODY, "event_types": ["ledger.nope"]})
    assert unknown.status == 422 and unknown.json()["code"] == "invalid_event_types"
    assert call(module.handle, "POST", "/subscriptions", json_body=BODY).status == 401


def test_integrators_list_read_and_delete_only_their_own_subscriptions(webhooks, minter):
    module, _ = webhooks
    subscription_id = create(module, minter).json()["id"]
    mine, theirs = minter.mint("partner-1", READ + WRITE), minter.mint("partner-2", READ + WRITE)
    listed = call(module.handle, "GET", "/subscriptions", token=mine).json()
    assert [s["id"] for s in listed["data"]] == [subscription_id] and "secret" not in listed["data"][0]
    assert call(module.handle, "GET", "/subscriptions", token=theirs).json()["data"] == []
    assert call(module.handle, "GET", f"/subscriptions/{subscription_id}", token=theirs).status == 404
    assert call(module.handle, "DELETE", f"/subscriptions/{subscription_id}", token=theirs).status == 404
    assert call(module.handle, "DELETE", f"/subscriptions/{subscription_id}", token=mine).status == 204
    assert call(module.handle, "GET", f"/subscriptions/{subscription_id}", token=mine).status == 404


def test_a_queued_event_is_fanned_out_and_a_queued_delivery_is_sent_signed(webhooks, minter):
    module, world = webhooks
    created = create(module, minter).json()
    # WHEN the events queue delivers an event
    reply = queue_post(module, world.mac.seal(EVENT.document()), EVENT.type)
    assert reply.status == 200 and reply.json() == {"outcome": "fanned_out", "deliveries": 1}
    # AND the webhooks queue delivers the resulting message
    [message] = world.queue.sent
    sent = queue_post(module, message.body, message.attributes["ce-type"])
    # THEN the subscriber received the event, signed with its secret
    assert sent.status == 200 and sent.json() == {"outcome": "delivered"}
    [request] = world.poster.received
    verify_signature(created["secret"], request.headers, request.body)
    assert json.loads(request.body)["id"] == EVENT.id


def test_a_forged_queue_message_is_refused_and_nothing_is_sent(webhooks, minter):
    module, world = webhooks
    subscription_id = create(module, minter).json()["id"]
    forged = Delivery(subscription_id, {**EVENT.document(), "data": {"transfers": ["forged"]}})
    reply = queue_post(module, EventMac.generate().seal(forged.document()), DELIVERY_TYPE)
    assert reply.status == 401 and reply.json()["code"] == "event_mac_invalid"
    assert reply.header("Content-Type") == "application/problem+json"
    unsealed = queue_post(module, json.dumps(EVENT.document()).encode(), EVENT.type)
    assert unsealed.status == 401
    assert world.poster.received == [] and world.queue.sent == []


def test_a_fan_out_that_cannot_queue_answers_503_so_sqs_delivers_the_event_again(webhooks, minter):
    module, world = webhooks
    create(module, minter)
    world.queue.failing = True
    assert queue_post(module, world.mac.seal(EVENT.document()), EVENT.type).status == 503


SCHEDULE_KEY = b"k" * 32
NOW = 1_800_000_000.0


@pytest.fixture
def relay_function(monkeypatch):
    """The relay handler on a fake outbox and queue, checking ticks against SCHEDULE_KEY at NOW."""
    module = load_function_handler("relay")
    outbox, queue = FakeOutbox(["ledger-0"]), FakeQueue()
    outbox.add(*[outbox_event(n) for n in range(3)])
    module.relay.use(OutboxRelay(outbox, queue, EventMac.generate(), "relay-test"))
    module.schedule_proof.use([SCHEDULE_KEY], clock=lambda: NOW, claims=InMemoryRateLimitStore())
    monkeypatch.setenv("FINFAAS_RELAY_RUN_SECONDS", "0.3")
    return module, outbox, queue


def tick(key: bytes = SCHEDULE_KEY, function: str = "relay", at: float = NOW) -> dict[str, str]:
    return {SCHEDULE_HEADER: sign_tick(key, function, at)}


def test_the_relay_function_relays_for_a_bounded_time_and_reports(relay_function):
    module, outbox, queue = relay_function
    reply = call(module.handle, "POST", "/", headers=tick())
    assert reply.status == 200 and reply.json()["sent"] == 3 and reply.json()["status"] == "done"
    assert outbox.remaining() == [] and len(queue.sent) == 3


@pytest.mark.parametrize("headers", [
    tick(key=b"x" * 32),
    tick(function="webhooks"),
    tick(at=NOW - schedule_tick_age_seconds_max - 1),
    tick(at=NOW + 60),
    {SCHEDULE_HEADER: "t=1800000000,v1=forged"},
], ids=["other-key", "other-function", "stale", "future", "forged"])
def test_a_relay_run_with_a_bad_signature_is_401_and_relays_nothing(relay_function, headers):
    module, outbox, queue = relay_function
    reply = call(module.handle, "POST", "/", headers=headers)
    assert reply.status == 401 and reply.header("Content-Type") == "application/problem+json"
    assert reply.json()["code"] == "schedule_proof_invalid"
    assert reply.header("WWW-Authenticate").startswith("FinfaasSchedule")
    assert len(outbox.remaining()) == 3 and queue.sent == []


def test_a_tick_starts_one_run_only_a_replay_is_401(relay_function):
    module, outbox, _ = relay_function
    headers = tick()
    assert call(module.handle, "POST", "/", headers=headers).status == 200
    outbox.add(outbox_event(9))
    assert call(module.handle, "POST", "/", headers=headers).status == 401
    assert len(outbox.remaining()) == 1


def test_unsigned_ticks_start_one_relay_run_per_minute_whoever_sends_them(relay_function):
    # GIVEN the cron-connector's plain POST, then a caller's with a bearer token, in the same minute
    module, outbox, queue = relay_function
    first = call(module.handle, "POST", "/")
    outbox.add(outbox_event(9))
    second = call(module.handle, "POST", "/", headers={"Authorization": "Bearer anything"})
    # THEN only the first relayed; the second changed nothing
    assert first.status == 200 and first.json()["sent"] == 3
    assert second.status == 200 and second.json()["ran"] is False
    assert len(outbox.remaining()) == 1 and len(queue.sent) == 3
