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
