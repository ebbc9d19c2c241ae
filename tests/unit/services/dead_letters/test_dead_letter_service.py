"""Dead letters: what an operator reads of them, and a redrive that may duplicate a letter, never lose one."""

from __future__ import annotations

import json

import pytest
from finfaas.platform.logging import REDACTED
from finfaas.services.dead_letters.errors import DeadLetterNotFound, QueuesUnavailable, UnknownQueue
from finfaas.services.dead_letters.service import DeadLetterService, redrive_seconds_max
from finfaas_dev.fakes.dead_letters import InMemoryQueues


@pytest.fixture
def queues() -> InMemoryQueues:
    return InMemoryQueues()


def test_letters_show_attributes_and_body_with_personal_data_redacted(queues):
    # GIVEN a webhook delivery that failed, carrying a customer's national id and phone
    body = json.dumps({"event_id": "ev_1", "data": {"national_id": "AB123456", "phone": "+1 555 0100",
                                                     "amount_minor": 1250}})
    queues.put("webhooks-dlq", body, {"ce-type": {"DataType": "String", "StringValue": "transfer.completed"}},
               sent_at_ms=1_800_000_000_000)

    shown = DeadLetterService(queues).letters("webhooks")

    (letter,) = shown["data"]
    assert shown["dead_letter_queue"] == "webhooks-dlq"
    assert letter["attributes"] == {"ce-type": "transfer.completed"}
    assert letter["body"]["data"] == {"national_id": REDACTED, "phone": REDACTED, "amount_minor": 1250}
    assert letter["body"]["event_id"] == "ev_1" and letter["sent_at_ms"] == 1_800_000_000_000


def test_redrive_all_sends_each_letter_back_with_its_attributes_then_empties_the_dead_letter_queue(queues):
    attributes = {"ce-type": {"DataType": "String", "StringValue": "wake"}}
    for n in range(3):
        queues.put("orchestrator-dlq", f"wake-{n}", attributes)

    outcome = DeadLetterService(queues).redrive("orchestrator")

    assert len(outcome.moved) == 3 and not outcome.failed and not outcome.has_more
    assert queues.bodies("orchestrator") == ["wake-0", "wake-1", "wake-2"]
    assert queues.bodies("orchestrator-dlq") == []
    assert all(held.letter.attributes == attributes for held in queues.queues["orchestrator"])


def test_redrive_one_moves_only_that_letter_and_leaves_the_others_visible(queues):
    ids = [queues.put("rail-dlq", f"hand-off-{n}") for n in range(12)]

    outcome = DeadLetterService(queues).redrive("rail", ids[11])

    assert outcome.moved == [ids[11]]
    assert queues.bodies("rail") == ["hand-off-11"]
    assert queues.depth("rail-dlq", peek_oldest=False).visible == 11


def test_a_failure_between_send_and_delete_leaves_a_duplicate_never_a_loss(queues):
    # GIVEN SQS stops answering deletes once the letters were sent back
    queues.put("events-dlq", "event-1")
    queues.fail_deletes = True

    with pytest.raises(QueuesUnavailable):
        DeadLetterService(queues).redrive("events")

    # THEN the letter is on its queue and still in the dead-letter queue: a consumer drops the duplicate
    assert queues.bodies("events") == ["event-1"]
    assert queues.bodies("events-dlq") == ["event-1"]


def test_letters_the_source_queue_refuses_stay_in_the_dead_letter_queue_visible(queues):
    queues.put("reviews-dlq", "task-1")
    queues.refuse_sends.add("reviews")

    outcome = DeadLetterService(queues).redrive("reviews")

    assert outcome.moved == [] and len(outcome.failed) == 1 and outcome.has_more
    assert queues.depth("reviews-dlq", peek_oldest=False).visible == 1


def test_one_request_moves_at_most_its_bound_and_says_more_are_left(queues):
    for n in range(30):
        queues.put("events-dlq", f"event-{n}")

    outcome = DeadLetterService(queues, messages_max=25).redrive("events")

    assert len(outcome.moved) == 25 and outcome.has_more
    assert len(queues.bodies("events-dlq")) == 5


def test_an_unknown_queue_or_letter_is_refused_and_nothing_moves(queues):
    queues.put("events-dlq", "event-1")
    service = DeadLetterService(queues)

    with pytest.raises(UnknownQueue):
        service.redrive("events-dlq")
    with pytest.raises(DeadLetterNotFound):
        service.redrive("events", "m-999")

    assert queues.bodies("events") == [] and queues.depth("events-dlq", peek_oldest=False).visible == 1


def test_a_search_for_one_letter_stops_at_the_requests_time_bound_and_leaves_every_letter_visible(queues):
    # GIVEN a deep dead-letter queue, and SQS answering each receive in one second
    for n in range(150):
        queues.put("orchestrator-dlq", f"wake-{n}")
    takes = []
    take = queues.take

    def slow_take(queue, count_max, hidden_seconds):
        takes.append(queue)
        return take(queue, count_max, hidden_seconds)

    queues.take = slow_take  # type: ignore[method-assign]
    service = DeadLetterService(queues, clock=lambda: float(len(takes)))

    # WHEN an operator redrives a letter that is not there
    with pytest.raises(DeadLetterNotFound):
        service.redrive("orchestrator", "m-999")

    # THEN the search gave up within the request's bound, and nothing stays hidden or moved
    assert len(takes) <= redrive_seconds_max
    assert queues.depth("orchestrator-dlq", peek_oldest=False).visible == 150
    assert queues.bodies("orchestrator") == []


def test_the_overview_names_every_queue_with_its_dead_letters(queues):
    queues.put("webhooks-dlq", "delivery-1")
    queues.put("webhooks", "delivery-2")

    overview = {row["queue"]: row for row in DeadLetterService(queues).overview()}

    assert set(overview) == {"orchestrator", "events", "webhooks", "rail", "reviews", "loan-reviews"}
    assert overview["webhooks"]["depth"]["visible"] == 1
    assert overview["webhooks"]["dead_letters"]["visible"] == 1
    assert overview["events"]["dead_letters"] == {"visible": 0, "in_flight": 0, "delayed": 0,
                                                  "oldest_age_seconds": None}
