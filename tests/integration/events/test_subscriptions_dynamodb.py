"""Webhook subscriptions on DynamoDB Local, with secrets sealed by the stage's KMS key (moto)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from finfaas.platform.pii import EnvelopeCipher, KmsDataKeys, PiiDecryptionFailed, pii_key_id
from finfaas.services.webhooks.model import (
    Subscription,
    SubscriptionStatus,
    new_webhook_secret,
    subscription_id_for,
)
from finfaas.services.webhooks.service import SecretBox
from finfaas.store.outbox_store import OutboxStore
from finfaas.store.subscriptions_store import SUBSCRIPTIONS_PARTITION, SubscriptionsStore
from support.events_fakes import T0


@pytest.fixture(scope="module")
def store(private_outbox) -> SubscriptionsStore:
    return SubscriptionsStore(private_outbox)


@pytest.fixture(scope="module")
def box(embedded_aws) -> SecretBox:
    return SecretBox(EnvelopeCipher(KmsDataKeys(pii_key_id())))


def subscription(ids, owner: str, key: str, box: SecretBox, secret: str = "") -> Subscription:
    subscription_id = subscription_id_for(ids(owner), key)
    sealed = box.seal(subscription_id, secret or new_webhook_secret())
    return Subscription(subscription_id, ids(owner), "http://127.0.0.1:9/x", ("ledger.transfers.created",),
                        "", T0, SubscriptionStatus.ACTIVE, "fp-1", sealed)


def test_create_is_a_conditional_put_that_returns_what_is_stored(store, box, ids):
    first = subscription(ids, "p1", "k", box)
    assert store.create(first) == first
    resealed = box.seal(first.subscription_id, new_webhook_secret())
    second = replace(first, fingerprint="fp-2", sealed_secret=resealed)
    assert store.create(second) == first
    assert store.get(first.subscription_id) == first
    assert store.get("sub_missing") is None


def test_lists_by_owner_and_active_ones_only(store, box, ids):
    mine = [subscription(ids, "p2", f"k-{i}", box) for i in range(3)]
    theirs = subscription(ids, "p3", "k", box)
    for item in [*mine, theirs]:
        store.create(item)
    listed = sorted(s.subscription_id for s in store.list_owner(ids("p2")))
    assert listed == sorted(s.subscription_id for s in mine)
    assert store.mark_deleted(mine[0].subscription_id, ids("p2"))
    assert not store.mark_deleted(mine[0].subscription_id, ids("p2"))  # already deleted
    assert not store.mark_deleted(theirs.subscription_id, ids("p2"))  # not the owner
    active = {s.subscription_id for s in store.list_active()}
    assert {mine[1].subscription_id, mine[2].subscription_id, theirs.subscription_id} <= active
    assert mine[0].subscription_id not in active
    assert store.get(mine[0].subscription_id).status is SubscriptionStatus.DELETED


def test_a_relay_pass_over_the_shared_table_leaves_subscriptions_alone(store, box, ids, private_outbox):
    from finfaas.platform.events import EventMac
    from finfaas.services.outbox_relay.service import OutboxRelay
    from support.events_fakes import FakeQueue

    created = store.create(subscription(ids, "p4", "k", box))
    queue = FakeQueue()
    OutboxRelay(OutboxStore(private_outbox), queue, EventMac.generate(), "relay-s").relay_once()
    assert store.get(created.subscription_id) == created
    assert SUBSCRIPTIONS_PARTITION not in OutboxStore(private_outbox).partitions()
    assert all(created.subscription_id not in m.body.decode() for m in queue.sent)


def test_the_sealed_secret_opens_with_kms_only_for_its_own_subscription(store, box, ids):
    secret = new_webhook_secret()
    stored = store.create(subscription(ids, "p5", "k", box, secret))
    assert secret not in stored.sealed_secret
    assert SecretBox(EnvelopeCipher(KmsDataKeys(pii_key_id()))).open(stored) == secret
    moved = replace(stored, subscription_id=subscription_id_for(ids("p5"), "other"))
    with pytest.raises(PiiDecryptionFailed):
        SecretBox(EnvelopeCipher(KmsDataKeys(pii_key_id()))).open(moved)
