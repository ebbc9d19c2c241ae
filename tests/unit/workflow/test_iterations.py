"""Map and Parallel states: Step Functions' semantics (results in order, ItemSelector, tolerated
failures, Retry and Catch on the state, branch failures), keys that extend the state's key with the
item's index, bounded history, and crashes anywhere during the iterations."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from finfaas.workflow.engine import EngineLimits
from finfaas.workflow.iterations import IterationLimits
from finfaas.workflow.model import Status
from finfaas.workflow.tasks import TaskCall, TaskFailed, TaskSucceeded
from support.workflow_testing import CrashAt, World, crash_case_ids, crash_cases, registry

HTTP = "arn:aws:states:::http:invoke"


def http(route: str, body: Any = None, **fields: Any) -> dict[str, Any]:
    state = {
        "Type": "Task",
        "Resource": HTTP,
        "Parameters": {
            "ApiEndpoint": f"https://gateway.finfaas/function/bank/{route}",
            "Method": "POST",
            "RequestBody": body if body is not None else {"item.$": "$"},
        },
    }
    return {**state, **({"End": True} if "Next" not in fields else {}), **fields}


def map_state(processor: dict[str, Any], **fields: Any) -> dict[str, Any]:
    ending = {} if "Next" in fields else {"End": True}
    return {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": processor, **ending, **fields}


def one_task(route: str = "pay") -> dict[str, Any]:
    return {"StartAt": "Pay", "States": {"Pay": http(route)}}


@dataclass
class ItemBank:
    """Applies each call's effect once per Idempotency-Key and replays its answer, as suite functions do;
    refuses some items (a 422 it keeps) and answers 503 (no effect, not kept) for others a few times."""

    refuse: set[Any] = field(default_factory=set)
    unavailable: Counter = field(default_factory=Counter)
    answers: dict[str, TaskSucceeded | TaskFailed] = field(default_factory=dict)
    applied: Counter = field(default_factory=Counter)
    calls: list[TaskCall] = field(default_factory=list)
    in_flight: int = 0
    in_flight_max: int = 0
    call_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, call: TaskCall) -> TaskSucceeded | TaskFailed:
        route = call.parameters["ApiEndpoint"].rsplit("/", 1)[-1]
        item = json.dumps(call.parameters["RequestBody"]["item"], sort_keys=True)
        with self._lock:
            self.calls.append(call)
            self.in_flight += 1
            self.in_flight_max = max(self.in_flight_max, self.in_flight)
        time.sleep(self.call_seconds)
        with self._lock:
            self.in_flight -= 1
            if self.unavailable[item] > 0:
                self.unavailable[item] -= 1
                return TaskFailed("States.Http.StatusCode.503", '{"StatusCode":503}')
            if call.idempotency_key not in self.answers:
                self.answers[call.idempotency_key] = self._apply(route, item)
            return self.answers[call.idempotency_key]

    def _apply(self, route: str, item: str) -> TaskSucceeded | TaskFailed:
        if item in {json.dumps(refused, sort_keys=True) for refused in self.refuse}:
            return TaskFailed("States.Http.StatusCode.422", json.dumps({"StatusCode": 422, "item": item}))
        self.applied[(route, item)] += 1
        return TaskSucceeded({"ResponseBody": {"done": json.loads(item)}})

    def effects(self, route: str = "pay") -> dict[Any, int]:
        """Effects applied per item (an object item by its JSON text)."""
        found = {}
        for (applied_route, item), count in self.applied.items():
            value = json.loads(item)
            if applied_route == route:
                found[item if isinstance(value, dict | list) else value] = count
        return found


def _run(document: dict[str, Any], input_value: Any, bank: ItemBank | None = None, **options: Any):
    bank = bank or ItemBank()
    world = World(registry(("batch", document)), bank, **options)
    started = world.start("batch", "b-1", input_value)
    world.run()
    return world, bank, world.store.get(started.execution.execution_id)


# --- Map --------------------------------------------------------------------------------------


def test_a_map_runs_its_processor_per_item_and_gathers_results_in_item_order():
    document = {
        "StartAt": "Each",
        "States": {
            "Each": map_state(
                {
                    "StartAt": "Pay",
                    "States": {
                        "Pay": http(
                            "pay", {"item.$": "$.item"}, ResultSelector={"done.$": "$.ResponseBody.done"}
                        )
                    },
                },
                ItemSelector={
                    "item": {
                        "index.$": "$$.Map.Item.Index",
                        "value.$": "$$.Map.Item.Value",
                        "batch.$": "$.batch",
                    }
                },
                MaxConcurrency=3,
                ResultPath="$.paid",
                OutputPath="$.paid",
            )
        },
    }
    items = ["a", "b", "c", "d", "e", "f", "g"]

    world, bank, execution = _run(document, {"batch": "B7", "items": items})

    assert execution.status is Status.SUCCEEDED
    assert execution.output == [
        {"done": {"index": i, "value": v, "batch": "B7"}} for i, v in enumerate(items)
    ]
    # Each task's key is the Map's own key extended by the item's index, then the inner state and visit.
    assert sorted(call.idempotency_key for call in bank.calls) == sorted(
        f"batch:b-1#Each#1#{i}#Pay#1" for i in range(len(items))
    )
    assert sum(bank.effects().values()) == len(items)


def test_a_map_runs_at_most_max_concurrency_iterations_at_once():
    document = {"StartAt": "Each", "States": {"Each": map_state(one_task(), MaxConcurrency=3)}}
    bank = ItemBank(call_seconds=0.02)

    _, bank, execution = _run(document, {"items": list(range(12))}, bank)

    assert execution.status is Status.SUCCEEDED
    assert 1 < bank.in_flight_max <= 3


def test_without_a_tolerated_threshold_the_first_failed_item_fails_the_map_with_its_own_error():
    document = {
        "StartAt": "Each",
        "States": {
            "Each": map_state(
                one_task(),
                MaxConcurrency=1,
                Catch=[
                    {
                        "ErrorEquals": ["States.Http.StatusCode.422"],
                        "ResultPath": "$.failure",
                        "Next": "Refused",
                    }
                ],
            ),
            "Refused": {"Type": "Pass", "End": True},
        },
    }

    world, bank, execution = _run(document, {"items": [1, 2, 3, 4]}, ItemBank(refuse={2}))

    assert execution.status is Status.SUCCEEDED
    assert execution.output["failure"]["Error"] == "States.Http.StatusCode.422"
    assert world.path(execution.execution_id) == ["Each", "Refused"]
    # Sequentially, nothing after the failed item started.
    assert bank.effects() == {1: 1}


def test_tolerated_failures_leave_their_error_in_the_results_and_more_fail_the_map_past_the_threshold():
    processor = one_task()
    tolerant = {"StartAt": "Each", "States": {"Each": map_state(processor, ToleratedFailureCount=1)}}

    _, _, passed = _run(tolerant, {"items": [1, 2, 3, 4]}, ItemBank(refuse={3}))
    _, _, failed = _run(tolerant, {"items": [1, 2, 3, 4]}, ItemBank(refuse={2, 3}))

    assert passed.status is Status.SUCCEEDED
    assert passed.output[2]["Error"] == "States.Http.StatusCode.422"
    assert [r["ResponseBody"]["done"] for i, r in enumerate(passed.output) if i != 2] == [1, 2, 4]
    assert failed.status is Status.FAILED
    assert failed.error == "States.ExceedToleratedFailureThreshold"
    assert "2 of 4" in failed.cause


def test_a_tolerated_failure_percentage_counts_against_all_items():
    document = {"StartAt": "Each", "States": {"Each": map_state(one_task(), ToleratedFailurePercentage=25)}}

    _, _, within = _run(document, {"items": [1, 2, 3, 4]}, ItemBank(refuse={1}))
    _, _, beyond = _run(document, {"items": [1, 2, 3, 4]}, ItemBank(refuse={1, 4}))

    assert within.status is Status.SUCCEEDED
    assert beyond.error == "States.ExceedToleratedFailureThreshold"


def test_a_retry_on_the_map_runs_it_again_and_items_that_succeeded_replay_instead_of_repeating():
    document = {
        "StartAt": "Each",
        "States": {
            "Each": map_state(
                one_task(),
                MaxConcurrency=1,
                Retry=[
                    {"ErrorEquals": ["States.Http.StatusCode.503"], "IntervalSeconds": 5, "MaxAttempts": 2}
                ],
            )
        },
    }
    bank = ItemBank(unavailable=Counter({"3": 1}))

    world, bank, execution = _run(document, {"items": [1, 2, 3, 4]}, bank)

    assert execution.status is Status.SUCCEEDED
    assert bank.effects() == {1: 1, 2: 1, 3: 1, 4: 1}
    kinds = [e.type for e in world.store.history(execution.execution_id, 0, 100)]
    assert kinds.count("MapStateStarted") == 2
    assert "MapStateFailed" in kinds and "TaskRetryScheduled" in kinds


def test_a_result_dropped_by_result_path_null_is_not_gathered_and_the_input_goes_on():
    document = {"StartAt": "Each", "States": {"Each": map_state(one_task(), ResultPath=None)}}

    _, _, execution = _run(document, {"items": [1, 2], "kept": True})

    assert execution.output == {"items": [1, 2], "kept": True}


def test_items_path_naming_no_array_fails_the_map_for_its_catch():
    document = {
        "StartAt": "Each",
        "States": {
            "Each": map_state(one_task(), Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Bad"}]),
            "Bad": {"Type": "Fail", "Error": "NoItems"},
        },
    }

    _, _, execution = _run(document, {"items": "not a list"})

    # States.Runtime is never caught, as in Step Functions: the execution fails.
    assert (execution.status, execution.error) == (Status.FAILED, "States.Runtime")


def test_a_long_map_keeps_the_execution_small_and_records_results_in_a_few_chunks():
    document = {
        "StartAt": "Each",
        "States": {"Each": map_state(one_task(), ResultSelector={"n.$": "States.ArrayLength($)"})},
    }
    items = list(range(2_000))

    world, bank, execution = _run(document, {"items": items})

    assert execution.output == {"n": 2_000}
    assert sum(bank.effects().values()) == 2_000
    history = world.store.history(execution.execution_id, 0, 1_000)
    assert len(history) < 10  # whatever the number of items
    # 2,000 results at 250 a chunk: 8 records; the execution itself is written a few times only.
    assert world.store.calls["record_iterations"] == 8
    assert world.store.calls["save"] + world.store.calls["create"] <= 4


def test_a_map_longer_than_one_drive_continues_from_the_queue_where_its_chunks_end():
    document = {"StartAt": "Each", "States": {"Each": map_state(one_task(), MaxConcurrency=1)}}
    world_box: list[World] = []
    bank = ItemBank()
    run = bank.run

    def slow(call: TaskCall):
        world_box[0].clock.sleep(1.0)  # each call takes a second of the drive's budget
        return run(call)

    bank.run = slow  # type: ignore[method-assign]
    world = World(
        registry(("batch", document)),
        bank,
        limits=EngineLimits(drive_seconds_max=5.0),
        iteration_limits=IterationLimits(chunk_items_max=2),
    )
    world_box.append(world)
    execution_id = world.start("batch", "b-1", {"items": list(range(12))}).execution.execution_id

    world.run()

    assert world.status(execution_id) is Status.SUCCEEDED
    assert bank.effects() == {i: 1 for i in range(12)}
    assert len(bank.calls) == 12  # no item ran twice: each drive resumed after the last chunk


def test_a_redriven_map_keeps_its_keys_so_items_that_succeeded_are_not_applied_again():
    document = {"StartAt": "Each", "States": {"Each": map_state(one_task(), MaxConcurrency=1)}}
    bank = ItemBank(unavailable=Counter({"3": 1}))
    world, bank, failed = _run(document, {"items": [1, 2, 3, 4]}, bank)
    assert failed.error == "States.Http.StatusCode.503"

    world.engine.redrive(failed.execution_id)
    world.run()

    assert world.status(failed.execution_id) is Status.SUCCEEDED
    assert bank.effects() == {1: 1, 2: 1, 3: 1, 4: 1}


def test_stopping_an_execution_during_its_map_aborts_it_and_its_drive_records_nothing_more():
    document = {"StartAt": "Each", "States": {"Each": map_state(one_task(), MaxConcurrency=1)}}
    world_box: list[World] = []
    bank = ItemBank()
    run = bank.run

    def stopping(call: TaskCall):
        if len(bank.calls) == 2:
            world_box[0].engine.stop(call.execution_id, "operator")
        return run(call)

    bank.run = stopping  # type: ignore[method-assign]
    world = World(registry(("batch", document)), bank, iteration_limits=IterationLimits(chunk_items_max=1))
    world_box.append(world)
    execution_id = world.start("batch", "b-1", {"items": list(range(6))}).execution.execution_id

    world.run()

    assert world.status(execution_id) is Status.ABORTED
    # The call in flight at the stop finished, its record was refused, and no later item started.
    assert len(bank.calls) == 3
    recorded = [json.loads(chunk)[0][0] for chunk in world.store.iteration_chunks("batch:b-1#Each#1#0.1")]
    assert recorded == [0, 1]


# --- Parallel ---------------------------------------------------------------------------------


def test_a_parallel_runs_every_branch_on_its_input_and_gathers_results_in_branch_order():
    document = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Parameters": {"item.$": "$.order"},
                "Branches": [
                    {
                        "StartAt": "Charge",
                        "States": {
                            "Charge": http(
                                "charge", {"item.$": "$.item"}, ResultSelector={"c.$": "$.ResponseBody"}
                            )
                        },
                    },
                    {
                        "StartAt": "Label",
                        "States": {"Label": {"Type": "Pass", "Result": "labelled", "End": True}},
                    },
                ],
                "ResultPath": "$.results",
                "End": True,
            }
        },
    }

    _, bank, execution = _run(document, {"order": "o-1"})

    assert execution.output == {"order": "o-1", "results": [{"c": {"done": "o-1"}}, "labelled"]}
    assert [call.idempotency_key for call in bank.calls] == ["batch:b-1#Both#1#0#Charge#1"]


def test_a_failed_branch_fails_the_parallel_with_its_error_for_the_parallels_catch():
    document = {
        "StartAt": "Both",
        "States": {
            "Both": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "Charge", "States": {"Charge": http("charge", {"item": "x"})}},
                    {
                        "StartAt": "Check",
                        "States": {"Check": {"Type": "Fail", "Error": "Risky", "Cause": "score"}},
                    },
                ],
                "Catch": [{"ErrorEquals": ["Risky"], "ResultPath": "$.why", "Next": "Undo"}],
                "Next": "Done",
            },
            "Undo": http("refund", {"item": "x"}, Next="Done"),
            "Done": {"Type": "Succeed"},
        },
    }

    world, bank, execution = _run(document, {})

    assert execution.status is Status.SUCCEEDED
    assert world.path(execution.execution_id) == ["Both", "Undo", "Done"]
    assert bank.effects("refund") == {"x": 1}


# --- crashes ----------------------------------------------------------------------------------

CRASH_DOCUMENTS = {
    "map": (
        {
            "StartAt": "Each",
            "States": {
                "Each": map_state(
                    {
                        "StartAt": "Reserve",
                        "States": {
                            "Reserve": http("reserve", Next="Pay"),
                            "Pay": http("pay", {"item.$": "$.ResponseBody.done"}),
                        },
                    },
                    MaxConcurrency=1,
                    ResultSelector={"n.$": "States.ArrayLength($)"},
                    Next="Settle",
                ),
                "Settle": http("settle", {"item": "all"}),
            },
        },
        {"items": [1, 2, 3, 4, 5]},
        {"reserve": {i: 1 for i in range(1, 6)}, "pay": {i: 1 for i in range(1, 6)}, "settle": {"all": 1}},
    ),
    "parallel": (
        {
            "StartAt": "Both",
            "States": {
                "Both": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "Charge",
                            "States": {
                                "Charge": http("charge", {"item": "c"}, Next="Notify"),
                                "Notify": http("notify", {"item": "c"}),
                            },
                        },
                        {"StartAt": "Reserve", "States": {"Reserve": http("reserve", {"item": "r"})}},
                    ],
                    "Next": "Settle",
                },
                "Settle": http("settle", {"item": "all"}),
            },
        },
        {},
        {"charge": {"c": 1}, "notify": {"c": 1}, "reserve": {"r": 1}, "settle": {"all": 1}},
    ),
}
# One iteration at a time and small chunks: the crash points of a clean run come in one order.
SEQUENTIAL = IterationLimits(concurrency_max=1, chunk_items_max=2)


def _crash_run(scenario: str, crash: CrashAt | None = None, limits: IterationLimits = SEQUENTIAL, **options):
    document, input_value, _ = CRASH_DOCUMENTS[scenario]
    return _run(document, input_value, crash=crash, iteration_limits=limits, **options)


def _effects(bank: ItemBank) -> dict[str, dict[Any, int]]:
    routes = {route for route, _ in bank.applied}
    return {route: bank.effects(route) for route in routes}


def _points(scenario: str) -> list[str]:
    world, _, _ = _crash_run(scenario)
    return world.crash.points


CASES = crash_cases(CRASH_DOCUMENTS, _points)


def test_the_clean_runs_record_iterations_between_task_calls():
    points = {point for scenario, _, point in CASES if scenario == "map"}

    assert {"iterations:before_record", "iterations:after_record", "task:after_call"} <= points


@pytest.mark.parametrize(("scenario", "index", "point"), CASES, ids=crash_case_ids(CASES))
def test_a_crash_at_any_point_of_a_map_or_parallel_ends_right_with_each_effect_once(
    scenario: str, index: int, point: str
):
    crash = CrashAt(index)

    world, bank, execution = _crash_run(scenario, crash)

    assert crash.crashed_at == point
    assert execution.status is Status.SUCCEEDED
    assert _effects(bank) == CRASH_DOCUMENTS[scenario][2]


@pytest.mark.parametrize("index", [5, 17, 33])
def test_a_crash_while_iterations_run_concurrently_ends_right_with_each_effect_once(index: int):
    crash = CrashAt(index)
    limits = IterationLimits(concurrency_max=4, chunk_items_max=2)

    world, bank, execution = _crash_run("map", crash, limits)

    assert crash.crashed_at is not None
    assert execution.status is Status.SUCCEEDED
    assert _effects(bank) == CRASH_DOCUMENTS["map"][2]


def test_every_message_delivered_twice_changes_nothing():
    world, bank, execution = _crash_run("map", duplicate_deliveries=True, inline=True)

    assert execution.status is Status.SUCCEEDED
    assert _effects(bank) == CRASH_DOCUMENTS["map"][2]


def test_a_map_redriven_after_a_kept_refusal_keeps_its_keys_so_no_item_is_applied_twice():
    # GIVEN a Map that failed on an item the function refused (a 422 it keeps under the key)
    document = {"StartAt": "Each", "States": {"Each": map_state(one_task(), MaxConcurrency=1)}}
    world, bank, failed = _run(document, {"items": [1, 2, 3, 4]}, ItemBank(refuse={3}))
    assert failed.error == "States.Http.StatusCode.422"
    bank.refuse.clear()

    # WHEN an operator redrives it
    world.engine.redrive(failed.execution_id)
    world.run()

    # THEN the items that succeeded are replayed, not applied again, and the refusal is replayed too
    assert bank.effects() == {1: 1, 2: 1}
    assert world.status(failed.execution_id) is Status.FAILED


def test_the_map_and_parallel_shapes_run_here_are_asl_that_the_validator_accepts(tmp_path):
    from finfaas_dev.tools import npm_tool_bin
    from unit.workflow.test_definitions import VALIDATOR_SECONDS_MAX

    paths = []
    for scenario, (document, _, _) in sorted(CRASH_DOCUMENTS.items()):
        paths.append(tmp_path / f"{scenario}.asl.json")
        paths[-1].write_text(json.dumps(document))
    arguments = [argument for path in paths for argument in ("--json-path", str(path))]

    # One validator run for both: node's start is most of its cost.
    result = subprocess.run(
        [str(npm_tool_bin("asl-validator")), *arguments],
        capture_output=True, text=True, timeout=VALIDATOR_SECONDS_MAX, check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("is valid") == len(paths)
