"""The outbox relay on in-memory fakes: every event published at least once and deleted only after."""

from __future__ import annotations

import json
import threading
import time

import pytest
from finfaas.platform.events import EVENT_ID_ATTRIBUTE, TYPE_ATTRIBUTE, EventMac, envelope_from_document
from finfaas.services.outbox_relay.service import OutboxRelay, RelayLoop
from support.events_fakes import FakeOutbox, FakeQueue, outbox_event


class Crash(Exception):
    """Stands for the process dying at that line."""


def relay_for(outbox: FakeOutbox, queue: FakeQueue, mac: EventMac, holder: str = "relay-a", **options):
    return OutboxRelay(outbox, queue, mac, holder, clock_ms=lambda: 1_000_000, **options)


def published_ids(queue: FakeQueue, mac: EventMac) -> list[str]:
    return [envelope_from_document(mac.open(m.body)).id for m in queue.sent]


def test_relay_publishes_every_event_oldest_first_and_empties_the_outbox():
    # GIVEN 25 events over two partitions
    outbox, queue, mac = FakeOutbox(), FakeQueue(), EventMac.generate()
    events = [outbox_event(n, partition=f"ledger-{n % 2}") for n in range(25)]
    outbox.add(*events)
    # WHEN one pass runs
    result = relay_for(outbox, queue, mac).relay_once()
    # THEN each event was sent once, in key order per partition, and nothing is left
    assert result.sent == 25 and result.failed == 0
    assert sorted(published_ids(queue, mac)) == sorted(e.event_id for e in events)
    per_partition = [i for i in published_ids(queue, mac) if int(i.rsplit(":", 1)[1]) % 2 == 0]
    assert per_partition == sorted(per_partition, key=lambda i: int(i.rsplit(":", 1)[1]))
    assert outbox.remaining() == []


def test_messages_carry_type_and_id_attributes_and_a_valid_mac():
    outbox, queue, mac = FakeOutbox(), FakeQueue(), EventMac.generate()
    event = outbox_event(7)
    outbox.add(event)
    relay_for(outbox, queue, mac).relay_once()
    [message] = queue.sent
    assert message.attributes[TYPE_ATTRIBUTE] == event.type
    assert message.attributes[EVENT_ID_ATTRIBUTE] == event.event_id
    envelope = envelope_from_document(mac.open(message.body))
    assert (envelope.subject, envelope.time, dict(envelope.data)) == (event.subject, event.time,
                                                                       json.loads(event.data))


def test_a_crash_between_send_and_delete_resends_the_same_events_and_loses_none():
    outbox, queue, mac = FakeOutbox(["ledger-0"]), FakeQueue(), EventMac.generate()
    events = [outbox_event(n) for n in range(12)]
    outbox.add(*events)

    def crash(sent):
        raise Crash()

    # WHEN a relay dies right after SQS accepted its first batch
    with pytest.raises(Crash):
        relay_for(outbox, queue, mac, after_send=crash).relay_once()
    first_batch = published_ids(queue, mac)
    assert len(first_batch) == 10 and len(outbox.remaining()) == 12
    # AND a fresh relay runs after the dead one's lease expired
    OutboxRelay(outbox, queue, mac, "relay-b", clock_ms=lambda: 10**12).relay_once()
    # THEN the first batch went out twice with the same ids, and every event went out
    ids = published_ids(queue, mac)
    assert ids[10:20] == first_batch
    assert sorted(set(ids)) == sorted(e.event_id for e in events)
    assert outbox.remaining() == []


def test_nothing_is_deleted_while_sqs_fails():
    outbox, queue, mac = FakeOutbox(["ledger-0"]), FakeQueue(failing=True), EventMac.generate()
    outbox.add(*[outbox_event(n) for n in range(3)])
    result = relay_for(outbox, queue, mac).relay_once()
    assert (result.sent, result.failed) == (0, 3)
    assert len(outbox.remaining()) == 3
    queue.failing = False
    assert relay_for(outbox, queue, mac).relay_once().sent == 3
    assert outbox.remaining() == []


def test_an_event_sqs_will_never_take_is_parked_and_does_not_block_its_partition():
    outbox, mac = FakeOutbox(["ledger-0"]), EventMac.generate()
    queue = FakeQueue(refuse=lambda m: m.key.endswith(":1"))
    outbox.add(*[outbox_event(n) for n in range(4)])
    outbox.add(outbox_event(9, data="not json"))
    result = relay_for(outbox, queue, mac).relay_once()
    assert (result.sent, result.parked) == (3, 2)
    assert sorted(e.event_id.rsplit(":", 1)[1] for e, _ in outbox.parked_events) == ["1", "9"]
    assert outbox.remaining() == []


def test_a_partition_leased_by_another_relay_is_left_alone_until_the_lease_runs_out():
    outbox, queue, mac = FakeOutbox(["ledger-0"]), FakeQueue(), EventMac.generate()
    outbox.add(outbox_event(1))
    assert outbox.acquire_lease("ledger-0", "relay-other", 1_000_000, 30_000)
    result = relay_for(outbox, queue, mac).relay_once()
    assert (result.sent, result.partitions_busy) == (0, 1)
    later = OutboxRelay(outbox, queue, mac, "relay-a", clock_ms=lambda: 1_000_000 + 30_001).relay_once()
    assert later.sent == 1


class SlowQueue(FakeQueue):
    """Takes a little while per batch, as SQS does, so two relays really overlap."""

    def send_batch(self, messages):
        time.sleep(0.002)
        return super().send_batch(messages)


def test_two_relays_at_once_lose_nothing():
    # GIVEN 300 events over four partitions and two relays racing with small batches
    outbox, queue, mac = FakeOutbox([f"ledger-{p}" for p in range(4)]), SlowQueue(), EventMac.generate()
    events = [outbox_event(n, partition=f"ledger-{n % 4}") for n in range(300)]
    outbox.add(*events)
    relays = [OutboxRelay(outbox, queue, mac, f"relay-{i}", batch_size=3, batches_per_lease=2)
              for i in range(2)]
    loops = [RelayLoop(r, idle_seconds_min=0.001, idle_seconds_max=0.002) for r in relays]
    threads = [threading.Thread(target=loop.run, kwargs={"deadline_seconds": 5.0}) for loop in loops]
    for thread in threads:
        thread.start()
    # WHEN both run until the outbox is empty
    for loop in loops:
        while outbox.remaining() and not loop.stopping.wait(0.01):
            pass
    for loop in loops:
        loop.stop()
    for thread in threads:
        thread.join(5)
    # THEN every event was published (duplicates allowed) and the work was shared
    assert outbox.remaining() == []
    assert set(published_ids(queue, mac)) == {e.event_id for e in events}
    assert all(loop.totals.sent > 0 for loop in loops)


def test_the_loop_backs_off_while_idle_and_stops_at_its_deadline():
    outbox, queue, mac = FakeOutbox(["ledger-0"]), FakeQueue(), EventMac.generate()
    sleeps: list[float] = []
    loop = RelayLoop(relay_for(outbox, queue, mac), sleep=sleeps.append, idle_seconds_min=0.1,
                     idle_seconds_max=0.8)
    loop.run(passes_max=6)
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]


def test_a_pass_stops_starting_batches_at_its_deadline_and_the_next_begins_where_it_stopped():
    # GIVEN 20 events on each of three partitions, one batch of 10 per send
    outbox, queue, mac = FakeOutbox(["ledger-0", "ledger-1", "ledger-2"]), FakeQueue(), EventMac.generate()
    outbox.add(*[outbox_event(n, partition=f"ledger-{n % 3}") for n in range(60)])
    relay = relay_for(outbox, queue, mac)
    # WHEN each pass must stop once it has sent 10 more events
    first = relay.relay_once(stop=lambda: len(queue.sent) >= 10)
    second = relay.relay_once(stop=lambda: len(queue.sent) >= 20)
    # THEN each sent one batch, the second from the partition the first did not reach
    assert (first.sent, second.sent) == (10, 10)
    assert [len([e for e in outbox.remaining() if e.partition == p]) for p in outbox.partitions()] == [
        10, 10, 20]
    # ... and a pass without a deadline drains everything left
    assert relay.relay_once().sent == 40 and outbox.remaining() == []


def test_a_run_with_a_backlog_ends_near_its_deadline_not_after_the_whole_pass():
    class SlowQueue(FakeQueue):
        def send_batch(self, messages):
            time.sleep(0.05)
            return super().send_batch(messages)

    # GIVEN 400 events (40 sends of 0.05 s: 2 s of sending) and a run of 0.1 s
    outbox, queue, mac = FakeOutbox(["ledger-0", "ledger-1"]), SlowQueue(), EventMac.generate()
    outbox.add(*[outbox_event(n, partition=f"ledger-{n % 2}") for n in range(400)])
    loop = RelayLoop(relay_for(outbox, queue, mac), sleep=lambda seconds: None)
    started = time.monotonic()
    totals = loop.run(deadline_seconds=0.1)
    # THEN the run stopped within a batch or so of its deadline, the rest left for the next run
    assert time.monotonic() - started < 1.0
    assert 0 < totals.sent < 400 and len(outbox.remaining()) == 400 - totals.sent


def test_the_loop_keeps_going_without_sleeping_while_there_is_work():
    outbox, queue, mac = FakeOutbox(["ledger-0"]), FakeQueue(), EventMac.generate()
    outbox.add(*[outbox_event(n) for n in range(30)])
    sleeps: list[float] = []
    relay = relay_for(outbox, queue, mac, batches_per_lease=1)
    totals = RelayLoop(relay, sleep=sleeps.append).run(passes_max=4)
    assert totals.sent == 30 and sleeps == [0.1]


def test_the_loop_survives_a_pass_that_fails_and_backs_off():
    class Flaky(FakeOutbox):
        calls = 0

        def oldest(self, partition, limit):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("connection reset")
            return super().oldest(partition, limit)

    outbox, queue, mac = Flaky(["ledger-0"]), FakeQueue(), EventMac.generate()
    outbox.add(outbox_event(1))
    sleeps: list[float] = []
    totals = RelayLoop(relay_for(outbox, queue, mac), sleep=sleeps.append).run(passes_max=3)
    assert totals.sent == 1 and sleeps[0] == 0.1 and outbox.remaining() == []
