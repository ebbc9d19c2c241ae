"""Schedule ticks: a signed tick is accepted once while fresh; an unsigned one runs the job at most once
per period, whoever sends it."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from finfaas.platform.http import FunctionApp
from finfaas.platform.mac_keys import mac_keys_from_text
from finfaas.platform.ratelimit import RateLimitStoreError
from finfaas.platform.schedule import (
    SCHEDULE_HEADER,
    SCHEDULE_KEY_SECRET_NAME,
    ScheduleProof,
    ScheduleProofInvalid,
    schedule_ticks_remembered_max,
    send_tick,
    sign_tick,
)
from finfaas_dev.fakes.platform import InMemoryRateLimitStore
from finfaas_dev.testing.platform import call

KEY = b"s" * 32
NOW = 1_800_000_000.0  # a whole minute: a scheduled instant
PERIOD = 60
PING = {"ce-specversion": "1.0", "ce-id": "p-1", "ce-source": "/apis/v1/namespaces/finfaas/pingsources/relay",
        "ce-type": "dev.knative.sources.ping"}


def proof(keys=(KEY,), clock=lambda: NOW, claims=None) -> ScheduleProof:
    return ScheduleProof("relay", list(keys), claims or InMemoryRateLimitStore(), PERIOD, clock=clock)


class Tick:
    """The part of a request a ScheduleProof reads."""

    def __init__(self, value: str | None) -> None:
        self._value = value

    def header(self, name: str, default: str | None = None) -> str | None:
        return self._value if name == SCHEDULE_HEADER.lower() else default


def test_the_tick_the_scheduler_sends_is_accepted_by_the_route():
    seen: list[str] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            seen.append(self.headers[SCHEDULE_HEADER])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            return None

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        status, _ = send_tick("relay", f"http://127.0.0.1:{server.server_port}/", KEY, NOW, timeout_seconds=5)
    finally:
        thread.join(5)
        server.server_close()

    assert status == 200
    proof(clock=lambda: NOW + 1).verify(Tick(seen[0]))


def test_a_rotated_key_still_accepts_ticks_signed_with_the_older_one():
    older, newer = b"o" * 32, b"n" * 32
    proof(keys=[newer, older]).verify(Tick(sign_tick(older, "relay", NOW)))


def test_a_missing_key_refuses_every_tick():
    def missing() -> list[bytes]:
        raise FileNotFoundError("schedule-hmac-key")

    with pytest.raises(ScheduleProofInvalid):
        ScheduleProof("relay", missing, InMemoryRateLimitStore(), PERIOD, clock=lambda: NOW).verify(
            Tick(sign_tick(KEY, "relay", NOW)))


def test_once_the_memory_is_full_of_fresh_ticks_more_are_refused_not_forgotten():
    full = proof()
    for offset in range(schedule_ticks_remembered_max):
        full._remember(f"mac-{offset}", NOW + 60, NOW)  # noqa: SLF001 - filling the bound directly

    with pytest.raises(ScheduleProofInvalid):
        full.verify(Tick(sign_tick(KEY, "relay", NOW)))


@pytest.mark.parametrize("text", ["", "not base64!", "c2hvcnQ="])
def test_a_malformed_or_short_key_is_a_configuration_error(text):
    with pytest.raises(ValueError):
        mac_keys_from_text(SCHEDULE_KEY_SECRET_NAME, text)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class World:
    """A scheduled route on a FunctionApp, counting the runs of its job."""

    def __init__(self, claims=None) -> None:
        self.clock, self.runs = Clock(), 0
        self.claims = claims or InMemoryRateLimitStore()
        self.proof = proof(clock=self.clock, claims=self.claims)
        self.app = FunctionApp("relay")

        @self.app.route("POST", "/", auth=False, media_types=("application/json", "text/plain"),
                        trigger=self.proof)
        def run(req):
            """The job."""
            self.runs += 1
            return {"ran": True}

    def post(self, headers=None, body=b""):
        return call(self.app.handle, "POST", "/", body=body, headers=headers or {})


def test_two_unsigned_ticks_in_one_period_run_the_job_once():
    # GIVEN a scheduled route, and the cron-connector's plain POST at the top of a minute
    world = World()
    first = world.post()
    # WHEN another unsigned tick (a PingSource's CloudEvent, a caller's) arrives in the same minute
    world.clock.now += 20
    second = world.post(PING)
    # THEN the job ran once; the second says so with a 200 the scheduler need not retry
    assert first.status == 200 and first.json() == {"ran": True}
    assert second.status == 200
    assert second.json() == {"ran": False, "reason": "already_ran_this_period", "period_start": int(NOW)}
    assert world.runs == 1


def test_the_next_period_runs_again():
    world = World()
    assert world.post().json() == {"ran": True}
    world.clock.now += PERIOD
    assert world.post(PING).json() == {"ran": True}
    assert world.runs == 2


def test_a_tick_a_little_early_or_late_stands_for_its_own_scheduled_instant():
    # GIVEN a scheduler whose clock runs 2 s ahead of the function's, then a delivery 5 s late
    world = World()
    world.clock.now = NOW - 2
    assert world.post().json() == {"ran": True}
    world.clock.now = NOW + PERIOD + 5
    # THEN each tick claims the minute it was sent for, and both run
    assert world.post().json() == {"ran": True}
    assert world.runs == 2


def test_a_signed_tick_runs_whatever_the_period_claims_say():
    # GIVEN this minute's claim already taken by an unsigned tick
    world = World()
    world.post()
    # WHEN an operator sends a signed tick by hand
    reply = world.post({SCHEDULE_HEADER: sign_tick(KEY, "relay", world.clock.now)})
    # THEN it runs, and takes no claim of its own
    assert reply.json() == {"ran": True} and world.runs == 2
    world.clock.now += PERIOD
    assert world.post().json() == {"ran": True}


def test_a_bad_signature_is_401_not_an_unsigned_tick():
    world = World()
    reply = world.post({SCHEDULE_HEADER: "t=1800000000,v1=forged"})
    assert reply.status == 401 and reply.json()["code"] == "schedule_proof_invalid"
    assert world.runs == 0
    assert world.post().json() == {"ran": True}  # the minute's claim is still there for the scheduler


def test_a_malformed_unsigned_tick_never_takes_the_period_from_the_scheduler():
    # GIVEN a body in a media type the route refuses, sent first in the minute
    world = World()
    refused = world.post({"Content-Type": "application/xml"}, body=b"<tick/>")
    # THEN it is refused before any claim, and the scheduler's tick still runs the job
    assert refused.status == 415
    assert world.post().json() == {"ran": True} and world.runs == 1


class BrokenClaims:
    def take(self, bucket, tokens, capacity, expires_at_s):
        raise RateLimitStoreError("table unreachable")

    def count(self, bucket):
        raise RateLimitStoreError("table unreachable")


def test_an_unsigned_tick_without_its_claim_table_runs_nothing_and_is_503():
    world = World(claims=BrokenClaims())
    reply = world.post()
    assert reply.status == 503 and reply.header("Retry-After") == str(PERIOD)
    assert world.runs == 0
    # a signed tick does not need the table
    assert world.post({SCHEDULE_HEADER: sign_tick(KEY, "relay", NOW)}).json() == {"ran": True}



def test_the_openapi_document_declares_the_skipped_answer_beside_the_job_s_own():
    # GIVEN a scheduled route whose job answers with a model of its own
    from pydantic import BaseModel

    class Expired(BaseModel):
        count: int

    app = FunctionApp("ledger")

    @app.route("POST", "/", auth=False, trigger=proof(), response=Expired)
    def run(req):
        """The job."""
        return Expired(count=0)

    # THEN its 200 is either body, so a client (or a fuzzer) reading the document accepts both
    document = app.openapi()
    schema = document["paths"]["/"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"anyOf": [{"$ref": "#/components/schemas/Expired"},
                                {"$ref": "#/components/schemas/TickSkipped"}]}
    assert document["components"]["schemas"]["TickSkipped"]["properties"]["ran"]["const"] is False
