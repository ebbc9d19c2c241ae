"""The engine on DynamoDB Local and moto's SQS, calling a real HTTP function (demo-bank, which honours
Idempotency-Key with the platform's guard) through the orchestrator's own HTTP task client."""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid

import pytest
import requests
from finfaas.platform.events import EventMac
from finfaas.store.executions_store import ExecutionsStore
from finfaas.store.ledger_store import DynamoCallMeter
from finfaas.workflow.asl import DefinitionRegistry, definitions_dir, load_definition_file, parse_definition
from finfaas.workflow.engine import Engine, EngineLimits
from finfaas.workflow.inline import ThreadDrives
from finfaas.workflow.model import Status
from finfaas.workflow.tasks import HttpTasks, ResourceRunner, SqsTasks
from finfaas.workflow.wakeups import SWEEP, SqsWaker, Wakeup
from support.workflow_testing import StaticTokens

pytestmark = pytest.mark.timeout(180)
CONNECTOR_SECONDS_MAX = 60
RECEIVE_VISIBILITY_SECONDS = 5


def _registry(*extra) -> DefinitionRegistry:
    repository = [load_definition_file(p) for p in sorted(definitions_dir().glob("*.asl.json"))]
    return DefinitionRegistry([*repository, *extra])


def _engine(fresh_tables, private_queue, demo_bank, definitions=None, **options) -> Engine:
    sqs, url = private_queue
    mac = EventMac.generate()
    waker = SqsWaker(client_factory=lambda: sqs, queue_name=url.rsplit("/", 1)[-1], mac=mac)
    runner = ResourceRunner(HttpTasks(demo_bank.url, StaticTokens(demo_bank.token)), SqsTasks(mac=mac))
    return Engine(definitions or _registry(), ExecutionsStore(*fresh_tables), runner, waker, **options)


def _connector(engine: Engine, private_queue, done, seconds_max: float = CONNECTOR_SECONDS_MAX) -> int:
    """Receive, drive, delete (a connector in miniature) until done(); returns the deliveries."""
    sqs, url = private_queue
    deliveries, deadline = 0, time.monotonic() + seconds_max
    while not done():
        assert time.monotonic() < deadline, "executions did not finish in time"
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
        ).get("Messages", [])
        if not messages:
            time.sleep(0.2)
            continue
        for message in messages:
            wakeup = Wakeup.from_json(message["Body"])
            if wakeup.kind != SWEEP:
                engine.drive(wakeup.execution_id, wakeup.reason, wakeup.due_at_ms)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            deliveries += 1
    return deliveries


def _effects(demo_bank) -> dict:
    return requests.get(f"{demo_bank.url}/function/demo-bank/effects", timeout=5).json()


def _all_stopped(engine: Engine, ids) -> bool:
    return all(engine.store.get(i).status.terminal for i in ids)


def test_sagas_end_right_through_dynamodb_sqs_and_http(fresh_tables, private_queue, demo_bank):
    engine = _engine(fresh_tables, private_queue, demo_bank)
    runs = {
        "credited": (
            {"from": "alice", "to": "bob", "amount_minor": 1250},
            Status.SUCCEEDED,
            {"debits": 1, "credits": 1},
        ),
        "refunded": (
            {"from": "alice", "to": "closed", "amount_minor": 700},
            Status.FAILED,
            {"debits": 1, "refunds": 1},
        ),
        "cooled-off": (
            {"from": "carol", "to": "bob", "amount_minor": 250_000},
            Status.SUCCEEDED,
            {"debits": 1, "credits": 1},
        ),
    }
    ids = {
        name: engine.start("demo-transfer", name, spec[0]).execution.execution_id
        for name, spec in runs.items()
    }

    _connector(engine, private_queue, lambda: _all_stopped(engine, ids.values()))

    applied = _effects(demo_bank)
    for name, (_, status, effects) in runs.items():
        assert engine.store.get(ids[name]).status is status, name
        assert applied["applied"][ids[name]] == effects, name
    assert applied["balance_total"] == 0
    cooled = [e.type for e in engine.store.history(ids["cooled-off"], 0, 100)]
    assert "WaitStarted" in cooled


def test_two_processes_racing_on_one_execution_apply_each_effect_once(fresh_tables, private_queue, demo_bank):
    # GIVEN one execution and two orchestrator processes that both drive it whenever they can
    first = _engine(fresh_tables, private_queue, demo_bank, owner="p1")
    second = _engine(fresh_tables, private_queue, demo_bank, owner="p2")
    execution_id = first.start(
        "demo-transfer", "race", {"from": "alice", "to": "bob", "amount_minor": 10}
    ).execution.execution_id
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def keep_driving(engine: Engine) -> None:
        start.wait()
        deadline = time.monotonic() + 30
        while not engine.store.get(execution_id).status.terminal and time.monotonic() < deadline:
            outcomes.append(engine.drive(execution_id))

    threads = [threading.Thread(target=keep_driving, args=(e,)) for e in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert first.store.get(execution_id).status is Status.SUCCEEDED
    assert _effects(demo_bank)["applied"][execution_id] == {"debits": 1, "credits": 1}
    assert "conflict" in outcomes or "not_due" in outcomes  # they did race


def test_in_process_drives_racing_their_own_wake_ups_apply_each_effect_once(
    fresh_tables, private_queue, demo_bank
):
    # GIVEN an orchestrator that drives starts on its own threads, whose backup wake-ups are not
    # delayed, so another process's connector drives the same executions at the same time
    starter = _engine(
        fresh_tables,
        private_queue,
        demo_bank,
        owner="starter",
        inline=ThreadDrives(),
        limits=EngineLimits(inline_backup_wake_seconds=0),
    )
    other = _engine(fresh_tables, private_queue, demo_bank, owner="other")
    runs = {
        f"inline-{n}": ({"from": "alice", "to": "bob" if n % 2 else "closed", "amount_minor": 10 + n})
        for n in range(6)
    }

    # WHEN every execution starts, and the other process delivers the wake-ups as they come
    ids = {
        name: starter.start("demo-transfer", name, spec).execution.execution_id for name, spec in runs.items()
    }
    _connector(other, private_queue, lambda: _all_stopped(starter, ids.values()))

    # THEN each saga ended right with each effect once
    applied = _effects(demo_bank)["applied"]
    for name, spec in runs.items():
        credited = spec["to"] == "bob"
        expected = {"debits": 1, "credits": 1} if credited else {"debits": 1, "refunds": 1}
        assert starter.store.get(ids[name]).status is (Status.SUCCEEDED if credited else Status.FAILED)
        assert applied[ids[name]] == expected, name


def test_a_slow_step_past_its_timeout_is_retried_with_its_key_and_applied_once(
    fresh_tables, private_queue, demo_bank
):
    # GIVEN a debit that takes 3 s under a 1 s TimeoutSeconds, retried on States.Timeout
    document = json.loads((definitions_dir() / "demo-transfer.asl.json").read_text())
    slow = copy.deepcopy(document)
    slow["States"]["Debit"]["TimeoutSeconds"] = 1
    slow["States"]["Debit"]["Retry"][0].update(IntervalSeconds=1, JitterStrategy="NONE")
    engine = _engine(
        fresh_tables,
        private_queue,
        demo_bank,
        definitions=_registry(parse_definition("slow-transfer", slow)),
        limits=EngineLimits(lease_grace_seconds=1),
    )

    # WHEN it runs: the first call times out, the retry finds the first still running (409), then the answer
    execution_id = engine.start(
        "slow-transfer", "s1", {"from": "slow", "to": "bob", "amount_minor": 5}
    ).execution.execution_id
    _connector(engine, private_queue, lambda: _all_stopped(engine, [execution_id]))

    # THEN the debit happened once and the saga went on
    assert engine.store.get(execution_id).status is Status.SUCCEEDED
    assert _effects(demo_bank)["applied"][execution_id] == {"debits": 1, "credits": 1}
    types = [e.type for e in engine.store.history(execution_id, 0, 100)]
    assert types.count("TaskFailed") == 1 and "TaskBusy" in types


def test_a_credit_refused_then_allowed_is_redriven_under_a_new_key_and_each_effect_applied_once(
    fresh_tables, private_queue, demo_bank
):
    # GIVEN a transfer without compensation whose credit demo-bank refused (422, kept under its key)
    document = json.loads((definitions_dir() / "demo-transfer.asl.json").read_text())
    bare = copy.deepcopy(document)
    del bare["States"]["Credit"]["Catch"]
    for compensation in ("Refund", "CreditRefused"):  # unreachable without that Catch
        del bare["States"][compensation]
    engine = _engine(fresh_tables, private_queue, demo_bank,
                     definitions=_registry(parse_definition("bare-transfer", bare)))
    execution_id = engine.start(
        "bare-transfer", "r1", {"from": "alice", "to": "closed", "amount_minor": 40}
    ).execution.execution_id
    _connector(engine, private_queue, lambda: _all_stopped(engine, [execution_id]))
    failed = engine.store.get(execution_id)
    assert (failed.status, failed.state) == (Status.FAILED, "Credit")
    assert failed.error == "States.Http.StatusCode.422"

    # WHEN the account is reopened and an operator redrives the execution
    demo_bank.module.bank.refused.discard("closed")
    engine.redrive(execution_id)
    _connector(engine, private_queue, lambda: _all_stopped(engine, [execution_id]))

    # THEN the credit is asked under a new key (the refusal is not replayed) and the debit is not re-run
    done = engine.store.get(execution_id)
    assert done.status is Status.SUCCEEDED and done.redrive_count == 1
    assert _effects(demo_bank)["applied"][execution_id] == {"debits": 1, "credits": 1}
    keys = [e.detail["idempotency_key"] for e in engine.store.history(execution_id, 0, 100)
            if e.type == "TaskScheduled"]
    assert keys == [f"{execution_id}#Debit#1", f"{execution_id}#Credit#1", f"{execution_id}#Credit#2"]


def test_per_transition_cost(fresh_tables, private_queue, demo_bank, capsys):
    """Measures DynamoDB and SQS calls and time per execution of a 2-task saga (Debit, Credit)."""
    executions_max = 20
    sqs, _ = private_queue
    sqs_calls: list[str] = []
    sqs.meta.events.register("before-call.sqs", lambda model, **_: sqs_calls.append(model.name))
    engine = _engine(fresh_tables, private_queue, demo_bank)
    meter = DynamoCallMeter()
    if not meter.start():
        pytest.skip("pynamodb signals need blinker")
    began = time.perf_counter()
    try:
        ids = [
            engine.start(
                "demo-transfer",
                f"cost-{uuid.uuid4().hex[:6]}",
                {"from": "alice", "to": "bob", "amount_minor": 1},
            ).execution.execution_id
            for _ in range(executions_max)
        ]
        drives_began = time.perf_counter()
        for execution_id in ids:  # the connector's receive/delete are not the engine's calls
            engine.drive(execution_id)
        drive_seconds = time.perf_counter() - drives_began
    finally:
        meter.stop()
    elapsed = time.perf_counter() - began
    calls = meter.snapshot()
    transitions = 4  # Debit, NeedsCoolingOff, Credit, Transferred
    figures = {
        "executions": executions_max,
        "dynamodb_calls_per_execution": {k: v / executions_max for k, v in calls.items()},
        "sqs_calls_per_execution": {name: sqs_calls.count(name) / executions_max for name in set(sqs_calls)},
        "ms_per_execution_start_to_end": round(elapsed * 1000 / executions_max, 1),
        "ms_per_drive": round(drive_seconds * 1000 / executions_max, 1),
        "ms_per_transition": round(drive_seconds * 1000 / executions_max / transitions, 1),
    }
    with capsys.disabled():
        print("\nworkflow cost", json.dumps(figures))
    assert all(engine.store.get(i).status is Status.SUCCEEDED for i in ids)
    # One GetItem to read the execution, one PutItem to create it and one UpdateItem per checkpoint
    # (before Debit, before Credit, and the end), the events riding in the execution item.
    # SQS: the start's wake-up only.
    assert calls == {
        f"PutItem {fresh_tables[0]}": executions_max,
        f"UpdateItem {fresh_tables[0]}": 3 * executions_max,
        f"GetItem {fresh_tables[0]}": executions_max,
    }
    assert sqs_calls.count("SendMessage") == executions_max
