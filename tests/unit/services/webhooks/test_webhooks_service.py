"""Webhooks on fakes: subscriptions, where deliveries may go, fan-out, and signed attempts with retries."""

from __future__ import annotations

import json

import pytest
from finfaas.platform.cursors import InvalidCursor
from finfaas.platform.events import QueueUnavailable
from finfaas.services.webhooks.api import Delivery
from finfaas.services.webhooks.errors import (
    DeliveryFailed,
    IdempotencyKeyReused,
    InvalidEventTypes,
    InvalidTarget,
    SubscriptionDeleted,
    SubscriptionLimitReached,
    SubscriptionNotFound,
)
from finfaas.services.webhooks.model import ID_HEADER, verify_signature
from finfaas.services.webhooks.service import (
    DeliveryOutcome,
    OutboundPolicy,
    TargetMode,
    subscriptions_per_owner_max,
)
from support.webhooks_testing import SENDER_NOW_S, URL, WebhooksWorld, transfer_created

NOW = SENDER_NOW_S
EVENT = transfer_created({"transfers": [{"transfer_id": "t-1", "amount_minor": "12500"}]})


class World(WebhooksWorld):
    """A subscription service, a fan-out and a sender sharing one fake store, on fixed clocks."""

    def __init__(self, statuses=(200,), delays=(5, 30)) -> None:
        super().__init__(statuses=statuses, delays_seconds=delays, fixed_clocks=True)

    def subscribe(self, owner="partner-1", key="k-1", types=("ledger.transfers.created",), url=URL):
        return self.service.create(owner, key, url, list(types))

    def queued_deliveries(self) -> list[Delivery]:
        return [Delivery.from_document(self.mac.open(m.body)) for m in self.queue.sent]


# --- subscriptions ----------------------------------------------------------------------------------


def test_creating_returns_the_secret_once_and_stores_it_sealed():
    world = World()
    created = world.subscribe()
    assert created.secret.startswith("whsec_") and not created.replayed
    stored = world.store.items[created.subscription.subscription_id]
    assert created.secret not in stored.sealed_secret
    assert world.box.open(stored) == created.secret


def test_a_retry_with_the_same_key_and_body_returns_the_same_subscription_and_secret():
    world = World()
    first, again = world.subscribe(), world.subscribe()
    assert again.replayed and again.subscription == first.subscription and again.secret == first.secret
    assert len(world.store.items) == 1


def test_the_same_key_with_another_body_is_refused():
    world = World()
    world.subscribe()
    with pytest.raises(IdempotencyKeyReused):
        world.subscribe(types=["*"])


def test_the_same_key_from_another_owner_is_another_subscription():
    world = World()
    mine, theirs = world.subscribe(owner="a"), world.subscribe(owner="b")
    assert mine.subscription.subscription_id != theirs.subscription.subscription_id


def test_owners_see_and_delete_only_their_own_subscriptions():
    world = World()
    subscription_id = world.subscribe(owner="a").subscription.subscription_id
    with pytest.raises(SubscriptionNotFound):
        world.service.get("b", subscription_id)
    with pytest.raises(SubscriptionNotFound):
        world.service.delete("b", subscription_id)
    world.service.delete("a", subscription_id)
    with pytest.raises(SubscriptionNotFound):
        world.service.get("a", subscription_id)
    with pytest.raises(SubscriptionDeleted):
        world.subscribe(owner="a")


def test_listing_pages_by_id():
    world = World()
    ids = sorted(world.subscribe(key=f"k-{i}").subscription.subscription_id for i in range(5))
    first = world.service.list("partner-1", 2)
    assert [s.subscription_id for s in first.subscriptions] == ids[:2] and first.has_more
    rest = world.service.list("partner-1", 10, starting_after=first.next_cursor)
    assert [s.subscription_id for s in rest.subscriptions] == ids[2:] and not rest.has_more
    assert rest.next_cursor is None


@pytest.mark.parametrize("owner, cursor", [("partner-2", "issued"), ("partner-1", "an-id"),
                                           ("partner-1", "edited")])
def test_a_cursor_from_another_owner_or_not_from_this_list_is_refused(owner, cursor):
    world = World()
    ids = sorted(world.subscribe(key=f"k-{i}").subscription.subscription_id for i in range(3))
    issued = world.service.list("partner-1", 1).next_cursor
    middle = len(issued) // 2
    edited = issued[:middle] + ("A" if issued[middle] != "A" else "B") + issued[middle + 1:]
    given = {"issued": issued, "an-id": ids[0], "edited": edited}

    with pytest.raises(InvalidCursor) as refused:
        world.service.list(owner, 10, starting_after=given[cursor])

    assert refused.value.status == 422 and [e.field for e in refused.value.errors] == ["starting_after"]


def test_an_owner_has_a_bounded_number_of_subscriptions():
    world = World()
    for i in range(subscriptions_per_owner_max):
        world.subscribe(key=f"k-{i}")
    with pytest.raises(SubscriptionLimitReached):
        world.subscribe(key="one-more")


@pytest.mark.parametrize("types", [[], ["ledger.nope"], ["transfer.*"]])
def test_unknown_event_types_are_refused(types):
    with pytest.raises(InvalidEventTypes):
        World().subscribe(types=types)


# --- outbound targets -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/x", "https://localhost/x", "http://[::1]:9/x",
                                 "http://127.9.9.9/x"])
def test_the_local_runtime_accepts_loopback_targets(url):
    OutboundPolicy(TargetMode.LOOPBACK).check_url(url)


@pytest.mark.parametrize("url", ["http://10.0.0.5/x", "https://example.com/x", "ftp://127.0.0.1/x",
                                 "http://user:pw@127.0.0.1/x", "file:///etc/passwd", "http://169.254.169.254/",
                                 "127.0.0.1:80", "http://127.0.0.1:99999/x", "http://" + "a" * 3000])
def test_the_local_runtime_refuses_anything_else(url):
    with pytest.raises(InvalidTarget):
        OutboundPolicy(TargetMode.LOOPBACK).check_url(url)


@pytest.mark.parametrize("url", ["http://example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/x",
                                 "https://[fd00::1]/x", "https://169.254.169.254/latest", "https://localhost/x"])
def test_deployed_deliveries_refuse_plain_http_and_private_addresses(url):
    with pytest.raises(InvalidTarget):
        OutboundPolicy(TargetMode.PUBLIC).check_url(url)


def test_deployed_deliveries_refuse_a_name_that_resolves_to_a_private_address():
    policy = OutboundPolicy(TargetMode.PUBLIC, resolve=lambda host, port: ["93.184.216.34", "10.0.0.7"])
    policy.check_url("https://hooks.example.com/x")
    with pytest.raises(InvalidTarget, match="10.0.0.7"):
        policy.check_connect("https://hooks.example.com/x")
    OutboundPolicy(TargetMode.PUBLIC, resolve=lambda h, p: ["93.184.216.34"]).check_connect("https://a.example/x")


def test_an_unresolvable_host_is_a_failed_attempt_not_a_refusal():
    def unresolvable(host, port):
        raise OSError("no such host")

    with pytest.raises(DeliveryFailed):
        OutboundPolicy(TargetMode.PUBLIC, resolve=unresolvable).check_connect("https://gone.example/x")


# --- fan-out ----------------------------------------------------------------------------------------


def test_an_event_is_queued_once_for_each_matching_subscription():
    world = World()
    matching = {world.subscribe(key="a").subscription.subscription_id,
                world.subscribe(key="b", types=["*"]).subscription.subscription_id}
    world.subscribe(key="c", types=["ledger.account.opened"])
    deleted = world.subscribe(key="d").subscription.subscription_id
    world.service.delete("partner-1", deleted)
    assert world.fanout.fan_out(EVENT) == 2
    deliveries = world.queued_deliveries()
    assert {d.subscription_id for d in deliveries} == matching
    assert all(d.event == EVENT.document() and d.attempt == 1 for d in deliveries)


def test_a_fan_out_that_could_not_queue_everything_fails_whole():
    world = World()
    world.subscribe()
    world.queue.failing = True
    with pytest.raises(QueueUnavailable):
        world.fanout.fan_out(EVENT)


# --- sending ----------------------------------------------------------------------------------------


def test_a_delivery_posts_the_event_signed_for_its_subscription():
    world = World()
    created = world.subscribe()
    outcome = world.sender.deliver(Delivery(created.subscription.subscription_id, EVENT.document()))
    assert outcome is DeliveryOutcome.DELIVERED
    [request] = world.poster.received
    assert request.url == URL and request.headers[ID_HEADER] == EVENT.id
    assert request.headers["content-type"] == "application/cloudevents+json"
    verify_signature(created.secret, request.headers, request.body, now=NOW)
    assert json.loads(request.body) == EVENT.document()


def test_every_attempt_sends_the_same_body_and_id_with_a_fresh_timestamp():
    world = World(statuses=[500, 200])
    created = world.subscribe()
    world.sender.deliver(Delivery(created.subscription.subscription_id, EVENT.document()))
    world.now += 5
    world.sender.deliver(world.queued_deliveries()[-1])
    first, second = world.poster.received
    assert first.body == second.body and first.headers[ID_HEADER] == second.headers[ID_HEADER]
    assert int(second.headers["webhook-timestamp"]) == int(first.headers["webhook-timestamp"]) + 5


def test_a_failed_attempt_is_queued_again_with_the_next_delay():
    world = World(statuses=[503], delays=(5, 30))
    subscription_id = world.subscribe().subscription.subscription_id
    outcome = world.sender.deliver(Delivery(subscription_id, EVENT.document()))
    assert outcome is DeliveryOutcome.RETRY_SCHEDULED
    [retry] = world.queue.sent
    assert retry.delay_seconds == 5
    assert world.queued_deliveries()[0] == Delivery(subscription_id, EVENT.document(), 2, NOW + 5)


def test_after_the_last_attempt_the_delivery_goes_to_the_dlq_with_the_reason():
    world = World(statuses=[500], delays=(5, 30))
    subscription_id = world.subscribe().subscription.subscription_id
    outcome = world.sender.deliver(Delivery(subscription_id, EVENT.document(), attempt=3))
    assert outcome is DeliveryOutcome.DEAD_LETTERED and world.queue.sent == []
    [dead] = [world.mac.open(m.body) for m in world.dlq.sent]
    assert dead["attempt"] == 3 and "HTTP 500" in dead["failure"]


def test_a_delivery_received_before_its_time_waits_again_without_posting():
    world = World()
    subscription_id = world.subscribe().subscription.subscription_id
    early = Delivery(subscription_id, EVENT.document(), attempt=7, not_before=NOW + 3600)
    assert world.sender.deliver(early) is DeliveryOutcome.WAITING
    assert world.poster.received == [] and world.queue.sent[0].delay_seconds == 900
    assert world.queued_deliveries() == [early]


def test_a_delivery_for_a_deleted_subscription_is_dropped():
    world = World()
    subscription_id = world.subscribe().subscription.subscription_id
    world.service.delete("partner-1", subscription_id)
    assert world.sender.deliver(Delivery(subscription_id, EVENT.document())) is DeliveryOutcome.DROPPED
    assert world.poster.received == []


def test_a_target_no_longer_allowed_goes_to_the_dlq_unsent():
    world = World()
    subscription_id = world.subscribe().subscription.subscription_id
    world.sender.policy = OutboundPolicy(TargetMode.PUBLIC)
    assert world.sender.deliver(Delivery(subscription_id, EVENT.document())) is DeliveryOutcome.DEAD_LETTERED
    assert world.poster.received == []


def test_when_the_retry_cannot_be_queued_the_attempt_fails_so_sqs_redelivers():
    world = World(statuses=[500])
    subscription_id = world.subscribe().subscription.subscription_id
    world.queue.failing = True
    with pytest.raises(QueueUnavailable):
        world.sender.deliver(Delivery(subscription_id, EVENT.document()))


def test_secrets_are_unsealed_once_per_subscription_not_per_attempt():
    world = World(statuses=[500, 500, 200], delays=(1, 1, 1))
    subscription_id = world.subscribe().subscription.subscription_id
    world.sender.deliver(Delivery(subscription_id, EVENT.document()))
    for _ in range(2):
        world.now += 1
        world.sender.deliver(world.queued_deliveries()[-1])
    assert len(world.poster.received) == 3 and world.keys.unwrapped == 1
