"""The orchestrator function's HTTP contract, on in-memory services: statuses, problem codes, scopes,
the queue route, pagination."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from finfaas.platform.events import EventMac
from finfaas.workflow.interpreter import task_token
from finfaas.workflow.sweeper import Sweeper
from finfaas.workflow.tasks import TaskSubmitted
from finfaas_dev.testing.platform import call, load_function_handler
from support.workflow_testing import ScriptedTasks, ToyBank, World, registry

ALL_SCOPES = ["orchestrator:read", "orchestrator:start", "orchestrator:callback", "ops", "ops:act"]
TRANSFER = {"from": "alice", "to": "bob", "amount_minor": 1250}
CLOUDEVENT = {
    "ce-specversion": "1.0",
    "ce-id": "m-1",
    "ce-source": "sqs",
    "ce-type": "x",
    "Content-Type": "application/json",
}


QUEUE_MAC = EventMac.generate()


def sealed(document: dict) -> bytes:
    """A body as the waker queues it: sealed with the events key."""
    return QUEUE_MAC.seal(document)


@pytest.fixture
def orchestrator(minter):
    handler = load_function_handler("orchestrator")
    world = World(registry(repository=True), ToyBank(refuse_credits_to={"closed"}))
    handler.services.use(
        handler.OrchestratorServices(world.engine, Sweeper(world.store, world.waker, clock=world.clock))
    )
    handler.verifier.use(minter.verifier())
    handler.queue_proof.use(QUEUE_MAC)
    handler.world = world
    handler.token = minter.mint(sub="transfers", scopes=ALL_SCOPES, kind="client")
    return handler


def _post(handler, path, body, token=None):
    return call(handler.handle, "POST", path, json_body=body, token=token or handler.token)


def _get(handler, path, query=None):
    return call(handler.handle, "GET", path, query=query, token=handler.token)


def _deliver_queued(handler) -> list[dict]:
    """What the connector does: each queued wake-up POSTed as a binary CloudEvent to /."""
    answers = []
    while (queued := handler.world.waker.pop_visible()) is not None:
        body = sealed(json.loads(queued.wakeup.to_json()))
        reply = call(handler.handle, "POST", "/", body=body, headers=CLOUDEVENT)
        assert reply.status == 200, reply.body
        answers.append(reply.json())
    return answers


def test_start_then_the_queue_runs_it_and_describe_shows_the_result(orchestrator):
    started = _post(
        orchestrator, "/executions", {"state_machine": "demo-transfer", "name": "tr-9", "input": TRANSFER}
    )
    assert started.status == 201 and started.header("Location") == "/executions/demo-transfer:tr-9"
    assert started.json()["status"] == "RUNNING" and started.json()["current_state"] == "Debit"

    answers = _deliver_queued(orchestrator)

    assert any(a.get("outcome") == "stopped" for a in answers)
    described = _get(orchestrator, "/executions/demo-transfer:tr-9").json()
    assert described["status"] == "SUCCEEDED" and described["output"]["credit"] == {
        "credit_id": "c-demo-transfer:tr-9"
    }
    assert described["stopped_at"].endswith("Z") and described["current_state"] is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"state_machine": "nope", "name": "a", "input": {}}, 404, "state_machine_not_found"),
        ({"state_machine": "demo-transfer", "name": "bad name", "input": {}}, 422, "invalid_execution_name"),
        ({"state_machine": "demo-transfer", "name": "a", "input": {}, "extra": 1}, 422, "validation_failed"),
    ],
)
def test_bad_starts_are_problems_with_stable_codes(orchestrator, body, status, code):
    reply = _post(orchestrator, "/executions", body)

    assert (reply.status, reply.json()["code"]) == (status, code)


def test_a_restart_is_200_and_another_input_under_the_name_is_409(orchestrator):
    body = {"state_machine": "demo-transfer", "name": "tr-1", "input": TRANSFER}
    _post(orchestrator, "/executions", body)

    assert _post(orchestrator, "/executions", body).status == 200
    conflict = _post(orchestrator, "/executions", {**body, "input": {**TRANSFER, "amount_minor": 1}})
    assert (conflict.status, conflict.json()["code"]) == (409, "execution_already_exists")


def test_routes_need_their_scopes(orchestrator, minter):
    reader = minter.mint(sub="ops-ui", scopes=["orchestrator:read"], kind="client")

    denied = _post(orchestrator, "/executions", {"state_machine": "demo-transfer", "name": "x"}, token=reader)
    callback = _post(orchestrator, "/tasks/success", {"task_token": "t"}, token=reader)
    sweep = _post(orchestrator, "/_/ops/sweep", {}, token=reader)
    anonymous = call(orchestrator.handle, "GET", "/executions")

    assert (denied.status, callback.status, sweep.status, anonymous.status) == (403, 403, 403, 401)


def test_the_queue_route_takes_only_cloudevent_wake_ups(orchestrator):
    no_event = call(orchestrator.handle, "POST", "/", body=sealed({"kind": "wake", "execution_id": "x"}),
                    headers={"Content-Type": "application/json"})
    garbage = call(orchestrator.handle, "POST", "/", body=sealed({"kind": "launch"}), headers=CLOUDEVENT)
    unknown = call(
        orchestrator.handle,
        "POST",
        "/",
        body=sealed({"kind": "wake", "execution_id": "m:nope"}),
        headers=CLOUDEVENT,
    )

    assert (no_event.status, garbage.status) == (400, 400)  # left in the queue, to end in its DLQ
    assert unknown.status == 200 and unknown.json()["outcome"] == "nothing_to_do"


@pytest.mark.parametrize("body", [
    b'{"kind": "sweep", "reason": "sweep"}',
    EventMac.generate().seal({"kind": "sweep", "reason": "sweep"}),
    b'{"kind": "sweep", "reason": "sweep", "finfaasmac": "v1,forged"}',
], ids=["unsealed", "other-key", "forged"])
def test_a_wake_up_not_sealed_by_the_suite_is_401_and_starts_nothing(orchestrator, body):
    start = {"state_machine": "transfer", "name": "t-401", "input": TRANSFER}
    started = _post(orchestrator, "/executions", start)
    assert started.status == 201
    queued_before = len(orchestrator.world.waker.queued)

    reply = call(orchestrator.handle, "POST", "/", body=body, headers=CLOUDEVENT)

    assert reply.status == 401 and reply.header("Content-Type") == "application/problem+json"
    assert reply.json()["code"] == "event_mac_invalid"
    assert len(orchestrator.world.waker.queued) == queued_before  # no sweep ran, nothing was armed
    assert _get(orchestrator, "/executions/transfer:t-401").json()["history_events"] == (
        started.json()["history_events"])


def test_listing_pages_newest_first_and_history_pages_by_seq(orchestrator):
    for n in range(3):
        _post(
            orchestrator,
            "/executions",
            {"state_machine": "demo-transfer", "name": f"p{n}", "input": TRANSFER},
        )
        orchestrator.world.clock.sleep(1)
    _deliver_queued(orchestrator)

    first = _get(orchestrator, "/executions", {"status": "SUCCEEDED", "limit": "2"}).json()
    rest = _get(
        orchestrator,
        "/executions",
        {"status": "SUCCEEDED", "limit": "2", "starting_after": first["next_cursor"]},
    ).json()
    history = _get(orchestrator, "/executions/demo-transfer:p0/history", {"limit": "3"}).json()
    more = _get(
        orchestrator,
        "/executions/demo-transfer:p0/history",
        {"starting_after": str(history["data"][-1]["seq"])},
    ).json()

    assert [e["name"] for e in first["data"] + rest["data"]] == ["p2", "p1", "p0"]
    assert first["has_more"] and not rest["has_more"] and rest["next_cursor"] is None
    assert [e["seq"] for e in history["data"]] == [1, 2, 3] and history["has_more"]
    assert more["data"][0]["seq"] == 4 and more["data"][-1]["type"] == "ExecutionSucceeded"
    assert _get(orchestrator, "/executions/demo-transfer:none").status == 404


def test_callbacks_map_to_their_problems(orchestrator):
    world = World(registry(repository=True), ScriptedTasks(lambda c: TaskSubmitted()))
    orchestrator.services.use(
        orchestrator.OrchestratorServices(world.engine, Sweeper(world.store, world.waker))
    )
    orchestrator.world = world
    _post(
        orchestrator,
        "/executions",
        {"state_machine": "demo-approval", "name": "a1", "input": {"amount_minor": 1}},
    )
    _deliver_queued(orchestrator)
    token = task_token("demo-approval:a1", world.store.get("demo-approval:a1").task_token)

    heartbeat = _post(orchestrator, "/tasks/heartbeat", {"task_token": token})
    accepted = _post(orchestrator, "/tasks/success", {"task_token": token, "output": {"approved": False}})
    repeated = _post(orchestrator, "/tasks/success", {"task_token": token, "output": {"approved": False}})
    changed = _post(orchestrator, "/tasks/failure", {"task_token": token, "error": "No", "cause": "x"})
    malformed = _post(orchestrator, "/tasks/success", {"task_token": "not-a-token"})
    _deliver_queued(orchestrator)
    ended = _post(orchestrator, "/tasks/heartbeat", {"task_token": token})

    assert heartbeat.json() == {"status": "recorded"}
    assert (accepted.json(), repeated.json()) == ({"status": "accepted"}, {"status": "duplicate"})
    assert (changed.status, changed.json()["code"]) == (409, "task_token_used")
    assert (malformed.status, malformed.json()["code"]) == (400, "invalid_task_token")
    assert (ended.status, ended.json()["code"]) == (404, "task_not_found")
    assert world.store.get("demo-approval:a1").error == "Approval.Rejected"


@pytest.mark.parametrize("token", [
    "=.secret",  # an execution id that decodes to nothing
    task_token("demo-approval:" + "a" * 160, "secret"),
    task_token("no-separator", "secret"),
])
@pytest.mark.parametrize("path", ["/tasks/success", "/tasks/failure", "/tasks/heartbeat"])
def test_a_token_that_can_name_no_execution_is_malformed(orchestrator, path, token):
    # DynamoDB refuses an empty or oversized key as a failed call: such a token never reaches the store.
    reply = _post(orchestrator, path, {"task_token": token})

    assert (reply.status, reply.json()["code"]) == (400, "invalid_task_token")


def test_the_ops_sweep_wakes_overdue_executions(orchestrator):
    _post(orchestrator, "/executions", {"state_machine": "demo-transfer", "name": "lost", "input": TRANSFER})
    orchestrator.world.waker.queued.clear()  # the start's wake-up was lost
    orchestrator.world.clock.sleep(31)

    reply = _post(orchestrator, "/_/ops/sweep", {})
    _deliver_queued(orchestrator)

    assert reply.json() == {"woken": 1}
    assert json.loads(_get(orchestrator, "/executions/demo-transfer:lost").body)["status"] == "SUCCEEDED"


# --- operators: stop and redrive ------------------------------------------------------------------

COOLING_OFF = {"from": "alice", "to": "bob", "amount_minor": 150_000}  # waits in CoolingOff (no Catch)


def _cooling_off(handler, name="big") -> str:
    _post(handler, "/executions", {"state_machine": "demo-transfer", "name": name, "input": COOLING_OFF})
    _deliver_queued(handler)
    execution_id = f"demo-transfer:{name}"
    assert _get(handler, f"/executions/{execution_id}").json()["current_state"] == "CoolingOff"
    return execution_id


def test_an_operator_stops_an_execution_then_redrives_it_from_where_it_stopped(orchestrator):
    execution_id = _cooling_off(orchestrator)

    stopped = _post(orchestrator, f"/_/ops/executions/{execution_id}/stop", {"reason": "held by compliance"})
    again = _post(orchestrator, f"/_/ops/executions/{execution_id}/stop", {"reason": "again"})
    redriven = _post(orchestrator, f"/_/ops/executions/{execution_id}/redrive", {})
    twice = _post(orchestrator, f"/_/ops/executions/{execution_id}/redrive", {})

    assert stopped.status == 200
    assert stopped.json()["status"] == "ABORTED" and stopped.json()["error"] == "Execution.Stopped"
    assert stopped.json()["cause"] == "held by compliance"
    assert (again.status, again.json()["code"]) == (409, "execution_not_running")
    assert again.json()["errors"] == [{"field": "status", "message": "is ABORTED"}]
    assert redriven.status == 200 and redriven.json()["status"] == "RUNNING"
    assert redriven.json()["redrive_count"] == 1 and redriven.json()["input"] == COOLING_OFF
    assert (twice.status, twice.json()["code"]) == (409, "execution_not_redrivable")
    assert twice.json()["errors"] == [{"field": "status", "message": "is RUNNING"}]
    history = _get(orchestrator, f"/executions/{execution_id}/history", {"limit": "100"}).json()["data"]
    assert [e["detail"]["redrive_count"] for e in history if e["type"] == "ExecutionRedriven"] == [1]


def test_a_succeeded_execution_is_not_redriven_and_unknown_ones_are_404(orchestrator):
    _post(orchestrator, "/executions", {"state_machine": "demo-transfer", "name": "ok", "input": TRANSFER})
    _deliver_queued(orchestrator)

    succeeded = _post(orchestrator, "/_/ops/executions/demo-transfer:ok/redrive", {})
    finished = _post(orchestrator, "/_/ops/executions/demo-transfer:ok/stop", {"reason": "late"})
    unknown = _post(orchestrator, "/_/ops/executions/demo-transfer:nope/redrive", {})
    not_an_id = _post(orchestrator, "/_/ops/executions/nope/stop", {"reason": "x"})

    assert (succeeded.status, succeeded.json()["code"]) == (409, "execution_not_redrivable")
    assert "SUCCEEDED" in succeeded.json()["detail"]
    assert (finished.status, finished.json()["code"]) == (409, "execution_not_running")
    for reply in (unknown, not_an_id):
        assert (reply.status, reply.json()["code"]) == (404, "execution_not_found")
        assert reply.json()["errors"] == [{"field": "execution_id", "message": "no such execution"}]


def test_stop_and_redrive_need_the_ops_scope_and_a_reason(orchestrator, minter):
    execution_id = _cooling_off(orchestrator)
    starter = minter.mint(sub="transfers", scopes=["orchestrator:start", "orchestrator:read"], kind="client")

    denied = [
        _post(orchestrator, f"/_/ops/executions/{execution_id}/{action}", {"reason": "x"}, token=starter)
        for action in ("stop", "redrive")
    ]
    no_reason = _post(orchestrator, f"/_/ops/executions/{execution_id}/stop", {})

    assert [reply.status for reply in denied] == [403, 403]
    assert no_reason.status == 422 and no_reason.json()["errors"][0]["field"] == "reason"
    assert _get(orchestrator, f"/executions/{execution_id}").json()["status"] == "RUNNING"


def test_executions_are_listed_by_reference_and_start_time(orchestrator):
    # GIVEN two transfers' executions started a minute apart, one with its business reference
    _post(orchestrator, "/executions",
          {"state_machine": "demo-transfer", "name": "early", "input": TRANSFER, "reference": "tr-77"})
    started_at = _get(orchestrator, "/executions/demo-transfer:early").json()["started_at"]
    orchestrator.world.clock.sleep(60)
    _post(orchestrator, "/executions", {"state_machine": "demo-transfer", "name": "late", "input": TRANSFER})
    _deliver_queued(orchestrator)

    by_reference = _get(orchestrator, "/executions", {"reference": "tr-77"}).json()
    still_running = _get(orchestrator, "/executions", {"reference": "tr-77", "status": "RUNNING"}).json()
    half_way = (datetime.fromisoformat(started_at) + timedelta(seconds=30)).isoformat()
    after = _get(orchestrator, "/executions", {"status": "SUCCEEDED", "started_after": half_way})
    naive = _get(orchestrator, "/executions", {"started_after": "2026-01-01T00:00:00"})
    malformed = _get(orchestrator, "/executions", {"reference": "has space"})
    empty_range = _get(orchestrator, "/executions", {"reference": "tr-77", "started_after": half_way,
                                                     "started_before": "0012-01-15T04:09:01-02:00"})

    assert [(e["name"], e["reference"]) for e in by_reference["data"]] == [("early", "tr-77")]
    assert by_reference["data"][0]["status"] == "SUCCEEDED" and still_running["data"] == []
    assert [e["name"] for e in after.json()["data"]] == ["late"]
    assert naive.status == 422 and malformed.status == 422
    assert empty_range.status == 422 and empty_range.json()["errors"][0]["field"] == "started_before"
