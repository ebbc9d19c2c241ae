"""Access control of subscriptions through the webhooks function (BOLA): integrator B can neither
read, change nor delete integrator A's subscription, and cannot tell it exists."""

from __future__ import annotations

import pytest
from finfaas.services.webhooks.model import SubscriptionStatus
from finfaas_dev.testing.platform import call
from support.webhooks_testing import URL, WebhooksWorld

SCOPES = ["webhooks:read", "webhooks:write"]
BODY = {"url": URL, "event_types": ["ledger.transfers.created"]}


@pytest.fixture
def world(minter):
    """The webhooks function on fakes, with one subscription of integrator A; returns (module, store, id)."""
    webhooks = WebhooksWorld()
    module = webhooks.function(minter.verifier())
    created = call(module.handle, "POST", "/subscriptions", json_body=BODY, token=minter.mint("a", SCOPES),
                   headers={"Idempotency-Key": "key-1"})
    assert created.status == 201
    return module, webhooks.store, created.json()["id"]


def test_another_integrator_gets_the_same_404_as_for_an_id_that_never_existed(world, minter):
    module, _, subscription_id = world
    intruder = minter.mint("b", SCOPES)
    for method in ("GET", "DELETE"):
        theirs = call(module.handle, method, f"/subscriptions/{subscription_id}", token=intruder)
        unknown = call(module.handle, method, "/subscriptions/sub_doesnotexist", token=intruder)
        assert theirs.status == unknown.status == 404
        assert theirs.json()["code"] == unknown.json()["code"] == "subscription_not_found"
        assert theirs.json()["detail"].replace(subscription_id, "X") == unknown.json()["detail"].replace(
            "sub_doesnotexist", "X")


def test_another_integrator_cannot_delete_change_or_take_over_a_subscription(world, minter):
    module, store, subscription_id = world
    intruder = minter.mint("b", SCOPES)
    # WHEN B tries to delete A's subscription, to change it, and to create one with A's Idempotency-Key
    assert call(module.handle, "DELETE", f"/subscriptions/{subscription_id}", token=intruder).status == 404
    for method in ("PUT", "PATCH", "POST"):
        changed = call(module.handle, method, f"/subscriptions/{subscription_id}", token=intruder,
                       json_body={**BODY, "url": "http://127.0.0.1:9001/theirs"})
        assert changed.status in (404, 405)
    theirs = call(module.handle, "POST", "/subscriptions", json_body={**BODY, "url": "http://127.0.0.1:9001/b"},
                  token=intruder, headers={"Idempotency-Key": "key-1"})
    # THEN B got a subscription of its own, without A's secret, and A's is unchanged and active
    assert theirs.status == 201 and theirs.json()["id"] != subscription_id
    mine = store.items[subscription_id]
    assert mine.owner == "a" and mine.url == BODY["url"] and mine.status is SubscriptionStatus.ACTIVE
    owner = minter.mint("a", SCOPES)
    owner_view = call(module.handle, "GET", f"/subscriptions/{subscription_id}", token=owner)
    assert owner_view.status == 200 and owner_view.json()["url"] == BODY["url"]
    listed = call(module.handle, "GET", "/subscriptions", token=intruder).json()["data"]
    assert [s["id"] for s in listed] == [theirs.json()["id"]]


def test_each_route_needs_its_scope(world, minter):
    module, _, subscription_id = world
    read_only, write_only = minter.mint("a", ["webhooks:read"]), minter.mint("a", ["webhooks:write"])
    other_scopes = minter.mint("a", ["accounts:read", "accounts:write", "ops"])
    assert call(module.handle, "DELETE", f"/subscriptions/{subscription_id}", token=read_only).status == 403
    assert call(module.handle, "GET", f"/subscriptions/{subscription_id}", token=write_only).status == 403
    assert call(module.handle, "GET", "/subscriptions", token=other_scopes).status == 403
    assert call(module.handle, "GET", f"/subscriptions/{subscription_id}", token=read_only).status == 200
