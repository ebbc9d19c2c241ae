"""A queue route's trigger proof: only sealed messages get in, and each is opened once."""

from __future__ import annotations

from typing import Any

from finfaas.platform.events import EventMac
from finfaas.platform.http import FunctionApp, Request
from finfaas.platform.queue_proof import QueueMessageProof
from finfaas_dev.testing.platform import call


class CountingMac(EventMac):
    def __init__(self) -> None:
        super().__init__(EventMac.generate()._keys)
        self.opened = 0

    def open(self, body: bytes | str) -> dict[str, Any]:
        self.opened += 1
        return super().open(body)


def queue_app(mac: EventMac) -> tuple[FunctionApp, list[dict[str, Any]]]:
    proof = QueueMessageProof(mac)
    app = FunctionApp("queue-probe")
    received: list[dict[str, Any]] = []

    @app.route("POST", "/", auth=False, trigger=proof)
    def on_message(req: Request) -> dict[str, Any]:
        received.append(proof.message(req))
        return {"outcome": "taken"}

    return app, received


def test_a_sealed_message_is_opened_once_and_reaches_the_route_without_its_mac():
    mac = CountingMac()
    app, received = queue_app(mac)

    reply = call(app.handle, "POST", "/", body=mac.seal({"kind": "wake", "n": 1}),
                 headers={"Content-Type": "application/json"})

    assert reply.status == 200, reply.body
    assert received == [{"kind": "wake", "n": 1}]
    assert mac.opened == 1  # the trigger check's opening is what the route reads


def test_an_unsealed_message_is_refused_before_the_route_runs():
    mac = CountingMac()
    app, received = queue_app(mac)

    reply = call(app.handle, "POST", "/", json_body={"kind": "wake", "n": 1})

    assert reply.status == 401
    assert reply.json()["code"] == "event_mac_invalid"
    assert received == []


def queue_and_schedule_app(mac: EventMac) -> tuple[FunctionApp, list[str]]:
    """A POST / fed by a queue and by a schedule, as the loans function's (reviews and the nightly job)."""
    from finfaas.platform.queue_proof import QueueOrScheduleProof
    from finfaas.platform.schedule import ScheduleProof
    from finfaas_dev.fakes.platform import InMemoryRateLimitStore

    schedule = ScheduleProof("probe", [b"s" * 32], InMemoryRateLimitStore(), 60,
                             clock=lambda: 1_800_000_000.0)
    proof = QueueOrScheduleProof(QueueMessageProof(mac), schedule)
    app = FunctionApp("queue-and-schedule-probe")
    ran: list[str] = []

    @app.route("POST", "/", auth=False, media_types=("application/json", "text/plain"), trigger=proof)
    def on_trigger(req: Request) -> dict[str, Any]:
        ran.append(f"message {proof.queue.message(req)['n']}" if proof.is_message(req) else "tick")
        return {"outcome": "taken"}

    return app, ran


def test_a_route_fed_by_a_queue_and_a_schedule_takes_every_sealed_message_and_one_tick_a_period():
    mac = CountingMac()
    app, ran = queue_and_schedule_app(mac)

    json, text = {"Content-Type": "application/json"}, {"Content-Type": "text/plain"}
    first = call(app.handle, "POST", "/", body=mac.seal({"n": 1}), headers=json)
    tick = call(app.handle, "POST", "/", body="", headers=text)
    again = call(app.handle, "POST", "/", body=mac.seal({"n": 1}), headers=json)
    tick_again = call(app.handle, "POST", "/", body="", headers=text)
    forged = call(app.handle, "POST", "/", json_body={"n": 2, "finfaasmac": "forged"})

    assert [first.status, tick.status, again.status, tick_again.status] == [200, 200, 200, 200]
    assert ran == ["message 1", "tick", "message 1"]  # the second tick of the period ran nothing
    assert tick_again.json()["ran"] is False
    assert forged.status == 401 and forged.json()["code"] == "event_mac_invalid"
