"""The relay's dead-letter routes: operators look with `ops`, redrive with `ops:act`, and the audit log names
who redrove what."""

from __future__ import annotations

import pytest
from finfaas.platform.audit import AuditLog
from finfaas.services.dead_letters.service import DeadLetterService
from finfaas_dev.fakes.dead_letters import InMemoryQueues
from finfaas_dev.fakes.platform import InMemoryAuditStore
from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler


@pytest.fixture(scope="module")
def minter() -> TokenMinter:
    return TokenMinter.generate()


@pytest.fixture
def relay(minter):
    handler = load_function_handler("relay")
    handler.verifier.use(minter.verifier())
    handler.queues = InMemoryQueues()
    handler.dead_letters.use(DeadLetterService(handler.queues))
    handler.audit_store = InMemoryAuditStore()
    handler.audit.use(AuditLog(handler.audit_store, "relay"))
    return handler


def test_a_reader_sees_the_queues_and_letters_but_is_refused_a_redrive(relay, minter):
    message_id = relay.queues.put("webhooks-dlq", '{"event_id": "ev_1"}')
    reader = minter.mint(sub="operator-rex", scopes=["ops"], kind="client")

    queues = call(relay.handle, "GET", "/_/ops/queues", token=reader)
    letters = call(relay.handle, "GET", "/_/ops/queues/webhooks/dead-letters", token=reader)
    redrive = call(relay.handle, "POST", "/_/ops/queues/webhooks/dead-letters/redrive",
                   json_body={"message_id": message_id}, token=reader)

    assert queues.status == 200 and {"webhooks", "events"} <= {q["queue"] for q in queues.json()["data"]}
    assert letters.status == 200 and letters.json()["data"][0]["body"] == {"event_id": "ev_1"}
    assert redrive.status == 403 and relay.queues.bodies("webhooks") == []


def test_an_actor_redrives_a_letter_and_the_audit_log_names_the_operator(relay, minter):
    message_id = relay.queues.put("webhooks-dlq", '{"event_id": "ev_1"}')
    actor = minter.mint(sub="operator-ada", scopes=["ops", "ops:act"], kind="client")

    reply = call(relay.handle, "POST", "/_/ops/queues/webhooks/dead-letters/redrive",
                 json_body={"message_id": message_id}, token=actor)

    assert reply.status == 200 and reply.json() == {"queue": "webhooks", "moved": [message_id], "failed": [],
                                                    "has_more": False}
    assert relay.queues.bodies("webhooks") == ['{"event_id": "ev_1"}']
    records = [r for chain in relay.audit_store.chains() for r in relay.audit_store.records(chain)]
    assert [(r.actor, r.target) for r in records] == [("operator-ada", f"queue:webhooks:{message_id}")]


def test_an_unknown_queue_or_letter_is_a_404_naming_the_field(relay, minter):
    actor = minter.mint(sub="operator-ada", scopes=["ops", "ops:act"], kind="client")

    queue = call(relay.handle, "GET", "/_/ops/queues/ledger/dead-letters", token=actor)
    letter = call(relay.handle, "POST", "/_/ops/queues/events/dead-letters/redrive",
                  json_body={"message_id": "m-404"}, token=actor)

    assert queue.status == 404 and queue.json()["code"] == "queue"
    assert letter.status == 404 and letter.json()["code"] == "message_id"
    assert letter.json()["errors"][0]["field"] == "message_id"
