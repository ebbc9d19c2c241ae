"""End to end on the emulators: ledger transfer -> outbox -> relay -> events queue -> fan-out ->
webhooks queue -> signed POST to a loopback receiver, retried once, verified as an integrator would.

Queue messages reach the webhooks function exactly as the queue connector maps them
(finfaas_dev.connector.cloud_event_request), through the function's python3-http entry point.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest
from finfaas.domain.ledger import AccountKind, Actor, NewAccount, NewTransfer
from finfaas.platform.events import SqsQueue
from finfaas.platform.pii import EnvelopeCipher, KmsDataKeys, pii_key_id
from finfaas.services.outbox_relay.service import OutboxRelay
from finfaas.services.webhooks.model import verify_signature
from finfaas.services.webhooks.service import OutboundPolicy, PinnedPoster, SecretBox, TargetMode
from finfaas.store.outbox_store import OutboxStore
from finfaas.store.subscriptions_store import SubscriptionsStore
from finfaas_dev.connector import cloud_event_request
from finfaas_dev.testing.platform import TokenMinter, call, loopback_http_server
from support.http_testing import QuietHandler
from support.webhooks_testing import WebhooksWorld

ROOT = Path(__file__).resolve().parents[3]
RETRY_DELAY_SECONDS = 1


class Receiver:
    """An integrator's endpoint: answers the given statuses in turn, keeping each request it got."""

    def __init__(self, statuses: list[int]) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.url = ""
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.answer(statuses[min(len(receiver.requests), len(statuses)) - 1], b"")

        self.handler = Handler


@pytest.fixture
def receiver():
    """The receiver on 127.0.0.1 (a free port), failing the first delivery."""
    endpoint = Receiver([500, 200])
    with loopback_http_server(endpoint.handler) as base_url:
        endpoint.url = f"{base_url}/hooks/finfaas"
        yield endpoint


def deliver_through_function(module, queue, expected: int) -> list[dict]:
    """Each message of the queue POSTed to the function as the connector would; their answers."""
    replies = []
    for message in queue.receive_all(expected):
        headers, body = cloud_event_request(message, queue.arn)
        reply = call(module.handle, "POST", "/", body=body, headers=headers)
        assert reply.status == 200, reply.body
        replies.append(reply.json())
    return replies


def test_a_transfer_reaches_the_subscriber_as_a_signed_webhook_after_one_retry(
        ledger, private_outbox, new_queue, clock, ids, receiver):
    # GIVEN the webhooks function on the emulators (KMS-sealed secrets, private queues)
    events_queue, webhooks_queue = new_queue("events"), new_queue("webhooks")
    dead_letters = new_queue("webhooks-dlq")
    tokens = TokenMinter.generate()
    world = WebhooksWorld(store=SubscriptionsStore(private_outbox),
                          box=SecretBox(EnvelopeCipher(KmsDataKeys(pii_key_id()))),
                          policy=OutboundPolicy(TargetMode.LOOPBACK), poster=PinnedPoster(),
                          queue=SqsQueue("webhooks", queue_name=webhooks_queue.name),
                          dead_letters=SqsQueue("webhooks-dlq", queue_name=dead_letters.name),
                          delays_seconds=(RETRY_DELAY_SECONDS,))
    module = world.function(tokens.verifier())
    # AND an integrator subscribed to transfers
    token = tokens.mint("partner-1", ["webhooks:write"])
    created = call(module.handle, "POST", "/subscriptions", token=token,
                   json_body={"url": receiver.url, "event_types": ["ledger.transfers.created"]},
                   headers={"Idempotency-Key": ids("subscribe")})
    assert created.status == 201
    secret = created.json()["secret"]
    # WHEN money moves in the ledger
    funding, alice = ids("funding"), ids("alice")
    ledger.open_account(NewAccount(funding, "system", "USD", AccountKind.FUNDING,
                                   debits_must_not_exceed_credits=False), clock())
    ledger.open_account(NewAccount(alice, "cust-alice", "USD"), clock())
    ledger.create_transfers([NewTransfer(ids("t1"), funding, alice, 12_500, "USD")], Actor.system(), clock())
    # AND the relay, the fan-out and the sender each take their turn
    events = SqsQueue("events", queue_name=events_queue.name)
    relay = OutboxRelay(OutboxStore(private_outbox), events, world.mac, "e2e")
    assert relay.relay_once().sent >= 3
    fanned = deliver_through_function(module, events_queue, expected=3)
    assert sum(r.get("deliveries", 0) for r in fanned) == 1  # only the transfer matches
    assert deliver_through_function(module, webhooks_queue, expected=1) == [{"outcome": "retry_scheduled"}]
    time.sleep(RETRY_DELAY_SECONDS + 0.2)  # the retry waits in SQS (DelaySeconds) first
    assert deliver_through_function(module, webhooks_queue, expected=1) == [{"outcome": "delivered"}]
    # THEN the receiver got the same event twice under one webhook-id, and the last one verifies
    assert len(receiver.requests) == 2
    (first_headers, first_body), (headers, body) = receiver.requests
    assert first_body == body and first_headers["webhook-id"] == headers["webhook-id"]
    verify_signature(secret, headers, body, tolerance_s=300)
    event = json.loads(body)
    assert event["type"] == "ledger.transfers.created" and event["subject"] == ids("t1")
    assert event["data"]["transfers"][0]["amount_minor"] == "12500"
    assert "finfaasmac" not in event and headers["webhook-id"] == event["id"]
    schema = json.loads((ROOT / "events" / "schemas" / "ledger.transfers.created.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(event)
    assert dead_letters.receive_all() == []
