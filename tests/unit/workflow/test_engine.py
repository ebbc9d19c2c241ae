"""Engine semantics: start, Retry/Catch, Choice, Wait, callbacks, busy resources, limits, sweeping."""

from __future__ import annotations

import json
import time

import pytest
from finfaas.workflow import engine
from finfaas.workflow.asl import HTTP_INVOKE, SQS_SEND_WAIT
from finfaas.workflow.model import Phase, Status, TaskResult
from finfaas.workflow.tasks import TaskBusy, TaskFailed, TaskSubmitted, TaskSucceeded
from support.workflow_testing import CrashAt, ScriptedTasks, SimulatedCrash, World, registry

ENDPOINT = "https://gateway.finfaas/function/demo-bank/ops"


def task(next_state: str | None = None, **fields) -> dict:
    flow = {"Next": next_state} if next_state else {"End": True}
    return {
        "Type": "Task",
        "Resource": HTTP_INVOKE,
        **flow,
        "Parameters": {"ApiEndpoint": ENDPOINT, "Method": "POST", "RequestBody.$": "$"},
        **fields,
    }


def retrier(error: str, **policy) -> dict:
    """One entry of a Task's Retry: the error it matches and how it retries (ASL's field names)."""
    return {"ErrorEquals": [error], **policy}


def machine(**states) -> dict:
    return {"StartAt": next(iter(states)), "States": states}


def ok(body) -> TaskSucceeded:
    return TaskSucceeded({"StatusCode": 200, "StatusText": "OK", "Headers": {}, "ResponseBody": body})


def world_for(document: dict, answer, **options) -> tuple[World, ScriptedTasks]:
    tasks = ScriptedTasks(answer)
    return World(registry(("m", document)), tasks, **options), tasks


def run(document: dict, answer, input_value=None, **options) -> tuple[World, ScriptedTasks, str]:
    world, tasks = world_for(document, answer, **options)
    world.start("m", "e1", {} if input_value is None else input_value)
    world.run()
    return world, tasks, "m:e1"


def events(world: World, execution_id: str, kind: str | None = None) -> list:
    return [e for e in world.store.history(execution_id, 0, 10_000) if kind is None or e.type == kind]


def retry_delays_ms(world: World, execution_id: str) -> list[int]:
    return [e.detail["delay_ms"] for e in events(world, execution_id, "TaskRetryScheduled")]


# --- start -------------------------------------------------------------------------------------


def test_starting_the_same_name_with_the_same_input_returns_the_first_execution_even_when_finished():
    world, _, execution_id = run(machine(A={"Type": "Pass", "End": True}), ok, {"b": 1, "a": [1, 2]})

    again = world.engine.start("m", "e1", {"a": [1, 2], "b": 1})

    assert not again.created and again.execution.status is Status.SUCCEEDED
    assert again.execution.execution_id == execution_id


def test_the_same_name_with_another_input_is_refused():
    world, _, _ = run(machine(A={"Type": "Pass", "End": True}), ok, {"amount_minor": 1})

    with pytest.raises(engine.ExecutionAlreadyExists):
        world.engine.start("m", "e1", {"amount_minor": 2})


@pytest.mark.parametrize(
    ("machine_name", "name", "input_value", "error"),
    [
        ("nope", "e1", {}, engine.StateMachineNotFound),
        ("m", "has space", {}, engine.InvalidExecutionName),
        ("m", "x" * 81, {}, engine.InvalidExecutionName),
        ("m", "e1", {"blob": "x" * 70_000}, engine.InvalidExecutionInput),
    ],
)
def test_bad_starts_are_refused_before_anything_is_written(machine_name, name, input_value, error):
    world, _ = world_for(machine(A={"Type": "Pass", "End": True}), ok)

    with pytest.raises(error):
        world.engine.start(machine_name, name, input_value)

    assert world.store.calls.get("create", 0) == 0


def test_a_start_that_died_before_its_wake_up_is_found_by_the_sweeper():
    # GIVEN a start whose process died right after writing the execution, and no client retry
    world, tasks = world_for(machine(A=task()), lambda call: ok({"done": True}), crash=CrashAt(1))
    with pytest.raises(SimulatedCrash):
        world.engine.start("m", "e1", {})
    world.engine = world._new_process()

    # WHEN the sweeper comes round
    world.run()

    # THEN the execution ran anyway
    assert world.status("m:e1") is Status.SUCCEEDED and len(tasks.calls) == 1


# --- tasks, Retry and Catch ---------------------------------------------------------------------


def test_a_task_result_goes_through_result_selector_result_path_and_output_path():
    document = machine(
        A=task(
            ResultSelector={"id.$": "$.ResponseBody.id", "status.$": "$.StatusCode"},
            ResultPath="$.debit",
            OutputPath="$.debit",
        )
    )

    world, tasks, execution_id = run(document, lambda call: ok({"id": "d-1"}), {"amount_minor": 5})

    assert tasks.calls[0].parameters["RequestBody"] == {"amount_minor": 5}
    assert world.store.get(execution_id).output == {"id": "d-1", "status": 200}


def test_retries_back_off_and_keep_the_idempotency_key():
    answers = iter([TaskFailed("States.Http.StatusCode.503", "busy")] * 2 + [ok({"n": 1})])
    document = machine(
        A=task(Retry=[retrier("States.Http.StatusCode.503", IntervalSeconds=2, BackoffRate=3, MaxAttempts=2)])
    )

    world, tasks, execution_id = run(document, lambda call: next(answers))

    assert world.status(execution_id) is Status.SUCCEEDED
    assert retry_delays_ms(world, execution_id) == [2000, 6000]
    assert {call.idempotency_key for call in tasks.calls} == {"m:e1#A#1"}
    assert [call.attempt for call in tasks.calls] == [1, 2, 3]


def test_full_jitter_draws_below_the_backoff_and_max_delay_caps_it():
    answers = iter([TaskFailed("E", "x")] * 3 + [ok({})])
    full_jitter = retrier("E", IntervalSeconds=4, BackoffRate=10, MaxDelaySeconds=30, MaxAttempts=3,
                          JitterStrategy="FULL")
    document = machine(A=task(Retry=[full_jitter]))

    world, _, execution_id = run(document, lambda call: next(answers))

    # unit_random is 0.5 in these tests: half of 4, 40->30 and 400->30 seconds
    assert retry_delays_ms(world, execution_id) == [2000, 15000, 15000]


def test_when_the_first_matching_retrier_is_spent_catch_decides_not_a_later_retrier():
    document = machine(
        A=task(
            "Done",
            Retry=[
                retrier("E", MaxAttempts=1, IntervalSeconds=1),
                retrier("States.ALL", MaxAttempts=5),
            ],
            Catch=[{"ErrorEquals": ["E"], "ResultPath": "$.error", "Next": "Compensate"}],
        ),
        Compensate={"Type": "Pass", "End": True},
        Done={"Type": "Succeed"},
    )

    world, tasks, execution_id = run(document, lambda call: TaskFailed("E", "refused"), {"keep": True})

    assert len(tasks.calls) == 2
    assert world.path(execution_id) == ["A", "Compensate"]
    assert world.store.get(execution_id).output == {"keep": True, "error": {"Error": "E", "Cause": "refused"}}


def test_task_failed_matches_every_error_but_a_timeout():
    document = machine(
        A=task("Done", Catch=[{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}]),
        Caught={"Type": "Succeed"},
        Done={"Type": "Succeed"},
    )

    caught, _, caught_id = run(document, lambda call: TaskFailed("States.Http.StatusCode.422", "no"))
    timed_out, _, timed_out_id = run(document, lambda call: TaskFailed("States.Timeout", "slow"))

    assert caught.path(caught_id)[-1] == "Caught" and caught.status(caught_id) is Status.SUCCEEDED
    stopped = timed_out.store.get(timed_out_id)
    assert (stopped.status, stopped.error, stopped.cause) == (Status.FAILED, "States.Timeout", "slow")


def test_a_parameter_path_failure_is_a_catchable_task_error_and_nothing_is_called():
    document = machine(
        A=task(
            "Done",
            Parameters={"ApiEndpoint": ENDPOINT, "Method": "POST", "RequestBody": {"x.$": "$.missing"}},
            Catch=[{"ErrorEquals": ["States.ParameterPathFailure"], "Next": "Caught"}],
        ),
        Caught={"Type": "Succeed"},
        Done={"Type": "Succeed"},
    )

    world, tasks, execution_id = run(document, ok)

    assert tasks.calls == [] and world.path(execution_id)[-1] == "Caught"


def test_a_busy_resource_is_asked_again_without_using_a_retry():
    answers = iter([TaskBusy(2.0), TaskBusy(2.0), ok({"n": 1})])
    document = machine(A=task(Retry=[retrier("States.ALL", MaxAttempts=0)]))

    world, tasks, execution_id = run(document, lambda call: next(answers))

    assert world.status(execution_id) is Status.SUCCEEDED
    assert [call.attempt for call in tasks.calls] == [1, 1, 1]
    assert len(events(world, execution_id, "TaskBusy")) == 2


def test_an_attempt_that_keeps_killing_its_process_times_out_after_the_redrive_limit():
    class AlwaysCrash(CrashAt):
        def __call__(self, point: str) -> None:
            if point == "task:before_call":
                raise SimulatedCrash(point)

    document = machine(
        A=task("Done", Catch=[{"ErrorEquals": ["States.Timeout"], "Next": "GaveUp"}]),
        GaveUp={"Type": "Succeed"},
        Done={"Type": "Succeed"},
    )
    limits = engine.EngineLimits(redrives_max=2)

    world, _, execution_id = run(document, ok, crash=AlwaysCrash(), limits=limits)

    assert world.path(execution_id) == ["A", "GaveUp"]
    assert len(events(world, execution_id, "TaskRedriven")) == 2


def test_a_loop_gives_each_visit_its_own_key():
    document = machine(
        Charge=task("Again?", ResultPath="$.last"),
        **{
            "Again?": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.last.ResponseBody.more", "BooleanEquals": True, "Next": "Charge"}
                ],
                "Default": "Done",
            }
        },
        Done={"Type": "Succeed"},
    )
    answers = iter([ok({"more": True}), ok({"more": True}), ok({"more": False})])

    world, tasks, execution_id = run(document, lambda call: next(answers))

    assert [call.idempotency_key for call in tasks.calls] == [
        "m:e1#Charge#1",
        "m:e1#Charge#2",
        "m:e1#Charge#3",
    ]


# --- pure states --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"Variable": "$.s", "StringEquals": "abc"}, True),
        ({"Variable": "$.s", "StringMatches": "a*c"}, True),
        ({"Variable": "$.star", "StringMatches": "a\\*c"}, True),
        ({"Variable": "$.s", "StringMatches": "a\\*c"}, False),
        ({"Variable": "$.n", "NumericLessThanEquals": 12.5}, True),
        ({"Variable": "$.n", "NumericGreaterThanPath": "$.m"}, True),
        ({"Variable": "$.s", "NumericEquals": 3}, False),  # another type never matches
        ({"Variable": "$.t", "TimestampLessThan": "2026-06-01T00:00:00+02:00"}, True),
        ({"Variable": "$.b", "BooleanEquals": False}, True),
        ({"Variable": "$.nothing", "IsPresent": False}, True),
        ({"Variable": "$.z", "IsNull": True}, True),
        ({"Not": {"Variable": "$.s", "IsString": True}}, False),
        ({"Or": [{"Variable": "$.n", "IsNumeric": False}, {"Variable": "$.t", "IsTimestamp": True}]}, True),
    ],
)
def test_choice_rules(rule, expected):
    data = {"s": "abc", "star": "a*c", "n": 12.5, "m": 3, "t": "2026-01-01T00:00:00Z", "b": False, "z": None}
    document = machine(
        C={"Type": "Choice", "Choices": [{**rule, "Next": "Yes"}], "Default": "No"},
        Yes={"Type": "Succeed"},
        No={"Type": "Succeed"},
    )

    world, _, execution_id = run(document, ok, data)

    assert world.path(execution_id)[-1] == ("Yes" if expected else "No")


def test_no_matching_choice_and_no_default_fails_the_execution():
    document = machine(
        C={"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": 1, "Next": "D"}]},
        D={"Type": "Succeed"},
    )

    world, _, execution_id = run(document, ok, {"a": 2})

    assert world.store.get(execution_id).error == "States.NoChoiceMatched"


def test_pass_parameters_result_and_paths():
    document = machine(
        P1={
            "Type": "Pass",
            "InputPath": "$.order",
            "Parameters": {"id.$": "$.id", "who.$": "$$.Execution.Name"},
            "ResultPath": "$.copy",
            "Next": "P2",
        },
        P2={
            "Type": "Pass",
            "Result": {"fixed": 1},
            "ResultPath": "$.fixed",
            "OutputPath": "$.copy",
            "Next": "P3",
        },
        P3={"Type": "Pass", "ResultPath": None, "End": True},
    )

    world, _, execution_id = run(document, ok, {"order": {"id": 7}})

    assert world.store.get(execution_id).output == {"id": 7, "who": "e1"}


def test_fail_takes_error_and_cause_from_the_input():
    document = machine(F={"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"})

    world, _, execution_id = run(document, ok, {"e": "Custom.Error", "c": "because"})

    stopped = world.store.get(execution_id)
    assert (stopped.status, stopped.error, stopped.cause) == (Status.FAILED, "Custom.Error", "because")


def test_an_output_over_the_size_limit_fails_the_execution_uncaught():
    document = machine(
        A=task("Done", Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]),
        Caught={"Type": "Succeed"},
        Done={"Type": "Succeed"},
    )

    world, _, execution_id = run(document, lambda call: ok({"blob": "x" * 70_000}))

    assert world.store.get(execution_id).error == "States.DataLimitExceeded"


def test_a_loop_without_tasks_stops_at_the_history_limit():
    document = machine(A={"Type": "Pass", "Next": "B"}, B={"Type": "Pass", "Next": "A"})

    world, _, execution_id = run(document, ok, limits=engine.EngineLimits(history_events_max=500))

    stopped = world.store.get(execution_id)
    assert (stopped.status, stopped.error) == (Status.FAILED, "States.Runtime")


# --- time ---------------------------------------------------------------------------------------


def test_a_long_wait_hops_through_the_queue_and_ends_on_time():
    document = machine(W={"Type": "Wait", "Seconds": 3600, "Next": "Done"}, Done={"Type": "Succeed"})
    world, _ = world_for(document, ok)
    world.start("m", "e1", {})
    started = world.clock.now

    world.run()

    stopped = world.store.get("m:e1")
    assert stopped.status is Status.SUCCEEDED
    assert stopped.next_run_at_ms / 1000 - started == pytest.approx(3600, abs=1)


def test_a_wait_until_a_timestamp():
    document = machine(W={"Type": "Wait", "TimestampPath": "$.at", "Next": "Done"}, Done={"Type": "Succeed"})
    world, _ = world_for(document, ok)
    world.start("m", "e1", {"at": "2026-01-01T00:10:00Z"})

    world.run()

    assert world.store.get("m:e1").next_run_at_ms == 1_767_226_200_000


def test_the_execution_timeout_stops_a_waiting_execution():
    document = {
        **machine(W={"Type": "Wait", "Seconds": 600, "Next": "Done"}, Done={"Type": "Succeed"}),
        "TimeoutSeconds": 60,
    }

    world, _, execution_id = run(document, ok)

    stopped = world.store.get(execution_id)
    assert (stopped.status, stopped.error) == (Status.TIMED_OUT, "States.Timeout")


# --- callbacks ----------------------------------------------------------------------------------

CALLBACK = machine(
    Ask={
        "Type": "Task",
        "Resource": SQS_SEND_WAIT,
        "TimeoutSeconds": 300,
        "HeartbeatSeconds": 60,
        "Parameters": {
            "QueueUrl": "https://sqs.us-east-1.amazonaws.com/000000000000/approvals",
            "MessageBody": {"token.$": "$$.Task.Token"},
        },
        "ResultPath": "$.answer",
        "Next": "Done",
        "Catch": [
            {
                "ErrorEquals": ["States.HeartbeatTimeout", "States.Timeout"],
                "ResultPath": "$.error",
                "Next": "Expired",
            },
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Refused"},
        ],
    },
    Done={"Type": "Succeed"},
    Expired={"Type": "Succeed"},
    Refused={"Type": "Succeed"},
)


def waiting_callback() -> tuple[World, ScriptedTasks, str]:
    world, tasks = world_for(CALLBACK, lambda call: TaskSubmitted())
    world.start("m", "e1", {"amount_minor": 3})
    world.settle()
    return world, tasks, engine.task_token("m:e1", world.store.get("m:e1").task_token)


def test_a_callback_task_waits_then_continues_with_the_reported_output():
    world, tasks, token = waiting_callback()
    assert world.store.get("m:e1").phase is Phase.CALLBACK
    assert tasks.calls[0].parameters["MessageBody"] == {"token": token}

    assert world.engine.report(token, TaskResult(True, {"approved": True})) == "accepted"
    world.run()

    stopped = world.store.get("m:e1")
    assert stopped.status is Status.SUCCEEDED and stopped.output["answer"] == {"approved": True}


def test_a_repeated_report_is_harmless_and_a_different_one_is_refused():
    world, _, token = waiting_callback()
    world.engine.report(token, TaskResult(True, {"approved": True}))

    assert world.engine.report(token, TaskResult(True, {"approved": True})) == "duplicate"
    with pytest.raises(engine.TaskTokenUsed):
        world.engine.report(token, TaskResult(False, error="Rejected", cause="no"))
    world.run()
    assert world.engine.report(token, TaskResult(True, {"approved": True})) == "duplicate"


def test_a_reported_failure_goes_to_catch():
    world, _, token = waiting_callback()

    world.engine.report(token, TaskResult(False, error="Approval.Rejected", cause="over limit"))
    world.run()

    assert world.path("m:e1")[-1] == "Refused"
    assert world.store.get("m:e1").output["error"] == {"Error": "Approval.Rejected", "Cause": "over limit"}


@pytest.mark.parametrize("token", ["garbage", "", "bm9wZQ.secret", "bTplMQ.wrong-secret"])
def test_unknown_or_forged_tokens_are_refused(token):
    world, _, _ = waiting_callback()

    with pytest.raises((engine.InvalidTaskToken, engine.TaskNotFound)):
        world.engine.report(token, TaskResult(True, {}))

    assert world.store.get("m:e1").phase is Phase.CALLBACK


def test_heartbeats_keep_a_callback_alive_and_their_absence_times_it_out():
    world, _, token = waiting_callback()
    for _ in range(3):
        world.clock.sleep(50)
        world.engine.heartbeat(token)
        world.settle()
    assert world.store.get("m:e1").phase is Phase.CALLBACK  # 150 s in, past one HeartbeatSeconds

    world.run()  # no more heartbeats

    assert world.path("m:e1")[-1] == "Expired"
    assert world.store.get("m:e1").output["error"]["Error"] == "States.HeartbeatTimeout"
    with pytest.raises(engine.TaskNotFound):
        world.engine.heartbeat(token)


# --- the sweeper --------------------------------------------------------------------------------


def test_the_tick_chain_runs_while_executions_run_and_stops_after():
    world, _ = world_for(
        machine(W={"Type": "Wait", "Seconds": 300, "Next": "Done"}, Done={"Type": "Succeed"}), ok
    )
    world.start("m", "e1", {})
    world.sweeper.ensure_armed()
    assert sum(1 for q in world.waker.queued if q.wakeup.kind == "sweep") == 1

    world.run()

    assert world.status("m:e1") is Status.SUCCEEDED
    assert not world.waker.queued  # the chain ended with the last running execution
    assert world.store.next_sweep_ms() == 0


def test_duplicate_ticks_sweep_once():
    world, _ = world_for(
        machine(W={"Type": "Wait", "Seconds": 300, "Next": "Done"}, Done={"Type": "Succeed"}), ok
    )
    world.start("m", "e1", {})

    first, second = world.sweeper.tick(), world.sweeper.tick()

    assert first.claimed and first.next_tick and not second.claimed


def test_history_records_the_path_and_what_happened_in_each_state():
    answers = iter([TaskFailed("E", "x"), ok({})])
    document = machine(
        A=task("B", Retry=[retrier("E", IntervalSeconds=1)]), B={"Type": "Succeed"}
    )

    world, _, execution_id = run(document, lambda call: next(answers))

    assert [(e.type, e.state) for e in events(world, execution_id)] == [
        ("ExecutionStarted", None),
        ("StateEntered", "A"),
        ("TaskScheduled", "A"),
        ("TaskFailed", "A"),
        ("TaskRetryScheduled", "A"),
        ("TaskScheduled", "A"),
        ("TaskSucceeded", "A"),
        ("StateExited", "A"),
        ("StateEntered", "B"),
        ("ExecutionSucceeded", "B"),
    ]
    failed = json.loads(json.dumps(events(world, execution_id)[3].detail))
    assert {name: failed[name] for name in ("attempt", "error", "cause")} == {
        "attempt": 1,
        "error": "E",
        "cause": "x",
    }


def test_each_state_exit_keeps_its_output_and_only_the_size_of_a_large_one():
    # GIVEN a Pass whose output is small and a Task whose answer is larger than the history keeps
    from finfaas.workflow.interpreter import exited_output_bytes_max

    large = {"blob": "x" * exited_output_bytes_max}
    document = machine(P={"Type": "Pass", "Result": {"n": 1}, "ResultPath": "$.p", "Next": "T"},
                       T=task(ResultSelector={"body.$": "$.ResponseBody"}))

    world, _, execution_id = run(document, lambda call: ok(large), {"order": "o-1"})

    # THEN the operator reads the Pass's output (the Task's input) and the Task's output by its size
    exits = events(world, execution_id, "StateExited")
    assert exits[0].detail == {"next": "T", "output": {"order": "o-1", "p": {"n": 1}}}
    assert "output" not in exits[1].detail and exits[1].detail["output_bytes"] > exited_output_bytes_max


def test_a_task_event_keeps_how_long_the_call_took_and_the_functions_part_when_reported():
    def answer(call):
        time.sleep(0.02)
        if call.attempt == 1:
            return TaskFailed("E", "x")
        return TaskSucceeded(ok({}).output, function_ms=12.5)

    document = machine(A=task(Retry=[retrier("E", IntervalSeconds=1)]))

    world, _, execution_id = run(document, answer)

    [failed] = events(world, execution_id, "TaskFailed")
    [succeeded] = events(world, execution_id, "TaskSucceeded")
    assert failed.detail["call_ms"] >= 20 and "function_ms" not in failed.detail
    assert succeeded.detail["call_ms"] >= 20 and succeeded.detail["function_ms"] == 12.5


# --- drives in the orchestrator's own process ----------------------------------------------------


def test_a_callback_report_drives_the_execution_on_in_process_and_leaves_only_a_delayed_backup():
    # GIVEN an execution waiting for a callback, in a process that drives in process
    world, tasks = world_for(CALLBACK, lambda call: TaskSubmitted(), inline=True)
    world.start("m", "e1", {"amount_minor": 3})
    world.waker.queued.clear()  # the start's backup wake-up; its delivery would find the callback parked
    token = engine.task_token("m:e1", world.store.get("m:e1").task_token)

    # WHEN the party reports
    assert world.engine.report(token, TaskResult(True, {"approved": True})) == "accepted"

    # THEN the execution finished within the report; the queue holds only the backup, due later
    stopped = world.store.get("m:e1")
    assert stopped.status is Status.SUCCEEDED and stopped.output["answer"] == {"approved": True}
    backup_ms = world.engine.limits.inline_backup_wake_seconds * 1000
    assert [q.deliver_at_ms for q in world.waker.queued] == [world.clock.ms() + backup_ms]
    world.run()
    assert world.store.get("m:e1").version == stopped.version  # the backup found nothing to do


def test_a_process_without_room_for_another_drive_wakes_the_execution_through_the_queue_at_once():
    world, tasks = world_for(machine(Only=task()), lambda call: ok({}), inline=True)
    world.inline.room = False

    world.start("m", "e1", {})

    assert world.store.get("m:e1").status is Status.RUNNING and not tasks.calls
    assert [q.deliver_at_ms for q in world.waker.queued] == [world.clock.ms()]
    world.run()
    assert world.store.get("m:e1").status is Status.SUCCEEDED and world.inline.run == 0


def test_a_backup_wake_up_that_cannot_be_sent_still_lets_the_process_drive():
    # GIVEN a queue that refuses sends (the sweeper is then the backstop)
    world, tasks = world_for(machine(Only=task()), lambda call: ok({}), inline=True)
    world.waker.fail_sends = True

    world.start("m", "e1", {})

    assert world.store.get("m:e1").status is Status.SUCCEEDED and len(tasks.calls) == 1
    assert world.inline.run == 1 and world.inline.released == 0
