"""The console's dead-letter pages and the health page's queues, breakers and rate-limit refusals, against a
fake suite: each figure from the function that holds it, with the operator's own token."""

from __future__ import annotations

import pytest
from finfaas.platform.wiring import Lazy
from finfaas.services.console.service import ConsoleService
from finfaas.services.console.session import SessionCodec
from finfaas.workflow.asl import definitions_dir
from finfaas_dev.testing.platform import call, load_function_handler
from unit.services.console.test_console_handler import (
    NOW,
    FakeSuite,
    cookie_of,
    csrf_of,
    get,
    post,
    sign_in,
    table_row,
)

EMPTY = {"visible": 0, "in_flight": 0, "delayed": 0, "oldest_age_seconds": None}
QUEUES = {"data": [
    {"queue": "webhooks", "depth": {**EMPTY, "visible": 7, "in_flight": 2},
     "dead_letter_queue": "webhooks-dlq", "dead_letters": {**EMPTY, "visible": 1, "oldest_age_seconds": 125}},
    {"queue": "events", "depth": EMPTY, "dead_letter_queue": "events-dlq", "dead_letters": EMPTY},
]}
LETTER = {"message_id": "m-1", "sent_at_ms": 1_800_000_000_000, "receive_count": 6,
          "attributes": {"ce-type": "transfer.completed"},
          "body": {"event_id": "ev_1", "data": {"national_id": "[REDACTED]", "amount_minor": 1250}}}
RESILIENCE = {"function": "transfers", "rate_limited": True, "rate_limit_rejections": {"money": 4},
              "breakers": [{"name": "risk", "state": "OPEN", "failures": 5, "failures_to_open": 5,
                            "retry_in_seconds": 12.5}]}


class QueuesSuite(FakeSuite):
    """The fake suite with a relay that serves its queues' figures and dead letters."""

    def call(self, function, method, path, token, body=None, headers=None):
        answer = super().call(function, method, path, token, body, headers)
        if function == "relay" and path == "/_/ops/queues":
            return 200, QUEUES
        if function == "relay" and path == "/_/ops/queues/webhooks/dead-letters":
            return 200, {"queue": "webhooks", "dead_letter_queue": "webhooks-dlq", "data": [LETTER]}
        if function == "relay" and path == "/_/ops/queues/webhooks/dead-letters/redrive":
            return 200, {"queue": "webhooks", "moved": [body.get("message_id", "m-1")], "failed": [],
                         "has_more": False}
        if path == "/_/ops/resilience":
            return 200, RESILIENCE
        return answer


@pytest.fixture
def console():
    handler = load_function_handler("console")
    suite = QueuesSuite()
    codec = SessionCodec("unit-test-session-key", lambda: NOW)
    service = ConsoleService(suite, codec, definitions_dir(), lambda: NOW)
    handler.console = Lazy.ready(handler.Console(service, codec, "/function/console"))
    return handler, suite


def test_health_shows_queue_depths_dead_letters_age_breakers_and_refusals(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    reply = get(handler, "/health", cookie)

    webhooks = table_row(reply.body, "queue", "webhooks")
    assert "<td data-visible>7</td>" in webhooks and "125 s" in webhooks
    transfers = table_row(reply.body, "resilience", "transfers")
    assert 'data-breaker="risk" data-state="OPEN"' in transfers and "next trial in 12.5 s" in transfers
    assert "money: 4" in transfers
    # Only the function with a replica running is asked: asking ledger would start it from zero
    asked = [c[0] for c in suite.calls if c[2] == "/_/ops/resilience"]
    assert asked == ["transfers"]
    assert ("relay", "GET", "/_/ops/queues", "token-of-op-rex", None) in suite.calls


def test_with_the_relay_down_health_names_it_and_still_lists_the_functions(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))
    suite.down.add("relay")

    reply = get(handler, "/health", cookie)
    letters = get(handler, "/dead-letters", cookie)

    assert reply.status == 200 and 'data-down="relay"' in reply.body
    assert '<tr data-function="transfers">' in reply.body and 'data-resilience="transfers"' in reply.body
    assert letters.status == 200 and 'data-down="relay"' in letters.body


def test_a_queues_dead_letters_show_their_attributes_and_redacted_body(console):
    handler, _ = console
    cookie = cookie_of(sign_in(handler, "op-rex"))

    overview = get(handler, "/dead-letters", cookie)
    letters = get(handler, "/dead-letters/webhooks", cookie)

    assert 'data-letters="1"' in overview.body and "125 s" in overview.body
    row = table_row(letters.body, "letter", "m-1")
    assert "transfer.completed" in row and "[REDACTED]" in row and "2027-01-15 08:00:00" in row
    assert "read-only" in row and "Redrive all" not in letters.body


def test_an_actor_redrives_one_letter_or_all_with_its_own_token(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-ada"))
    csrf = csrf_of(handler, cookie)

    one = post(handler, "/dead-letters/webhooks/redrive", cookie, {"csrf": csrf, "message_id": "m-1"})
    sent_one = suite.calls[-1]
    every = post(handler, "/dead-letters/webhooks/redrive", cookie, {"csrf": csrf})

    assert one.status == 303
    assert one.header("location") == "/function/console/dead-letters/webhooks?moved=1&more=0"
    assert sent_one == ("relay", "POST", "/_/ops/queues/webhooks/dead-letters/redrive", "token-of-op-ada",
                        {"message_id": "m-1"})
    assert every.status == 303 and suite.calls[-1][4] == {}
    shown = call(handler.handle, "GET", "/dead-letters/webhooks", headers={"Cookie": cookie},
                 query={"moved": "1", "more": "0"})
    assert "1 letter(s) sent back to the webhooks queue." in shown.body


def test_a_read_only_operator_is_refused_a_redrive_and_nothing_is_sent(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-rex"))
    csrf = csrf_of(handler, cookie)
    sent = len(suite.calls)

    reply = post(handler, "/dead-letters/webhooks/redrive", cookie, {"csrf": csrf, "message_id": "m-1"})

    assert reply.status == 403 and "ops:act" in reply.body and "Nothing was done" in reply.body
    assert len(suite.calls) == sent


def test_a_redrive_without_the_csrf_token_is_refused(console):
    handler, suite = console
    cookie = cookie_of(sign_in(handler, "op-ada"))
    sent = len(suite.calls)

    reply = post(handler, "/dead-letters/webhooks/redrive", cookie, {"message_id": "m-1"})

    assert reply.status == 403 and "CSRF" in reply.body and len(suite.calls) == sent


def test_the_console_bounds_a_message_id_as_the_relay_does():
    # Restated in the console (its policy derives from its imports): a page takes every id the relay takes.
    from finfaas.services.console import operations
    from finfaas.services.dead_letters import api

    assert operations.message_id_chars_max == api.message_id_chars_max
