"""Operators' controls: redrive a stopped execution from where it stopped, stop a running one."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from finfaas.workflow import engine
from finfaas.workflow.asl import HTTP_INVOKE, SQS_SEND_WAIT
from finfaas.workflow.model import Phase, Status, TaskResult
from finfaas.workflow.tasks import TaskCall, TaskFailed, TaskSubmitted, TaskSucceeded
from support.workflow_testing import SimulatedCrash, World, registry

EXECUTION = "m:e1"
INPUT = {"account": "bob", "amount_minor": 500}
REFUSED_422 = TaskFailed("States.Http.StatusCode.422", '{"StatusCode":422}')


def task(route: str, next_state: str | None = None, **fields) -> dict:
    flow = {"Next": next_state} if next_state else {"End": True}
    endpoint = f"https://gateway.finfaas/function/bank/{route}"
    return {"Type": "Task", "Resource": HTTP_INVOKE, **flow,
            "Parameters": {"ApiEndpoint": endpoint, "Method": "POST", "RequestBody.$": "$"}, **fields}


def machine(**states) -> dict:
    return {"StartAt": next(iter(states)), "States": states}


TRANSFER = machine(Debit=task("debit", "Credit"), Credit=task("credit", "Done"), Done={"Type": "Succeed"})


@dataclass
class Bank:
    """Honours Idempotency-Key as the suite's functions do: a 2xx or 4xx answer is kept for its key and
    replayed; a 5xx or a lost answer is not, so the same key runs again."""

    refuse: set[str] = field(default_factory=set)  # routes answering 422 (nothing applied)
    lose_answer: set[str] = field(default_factory=set)  # routes that apply, then the answer is lost
    kept: dict[str, TaskSucceeded | TaskFailed] = field(default_factory=dict)
    applied: Counter = field(default_factory=Counter)
    calls: list[TaskCall] = field(default_factory=list)

    def run(self, call: TaskCall) -> TaskSucceeded | TaskFailed | TaskSubmitted:
        self.calls.append(call)
        if call.resource == SQS_SEND_WAIT:
            return TaskSubmitted()
        if call.idempotency_key in self.kept:
            return self.kept[call.idempotency_key]
        route = call.parameters["ApiEndpoint"].rsplit("/", 1)[-1]
        if route in self.refuse:
            self.kept[call.idempotency_key] = REFUSED_422
            return REFUSED_422
        self.applied[route] += 1
        answer = TaskSucceeded({"StatusCode": 201, "ResponseBody": {"route": route}})
        self.kept[call.idempotency_key] = answer
        if route in self.lose_answer:
            return TaskFailed("States.Timeout", "no answer within TimeoutSeconds")
        return answer

    def keys(self, route: str) -> list[str]:
        return [c.idempotency_key for c in self.calls if c.parameters["ApiEndpoint"].endswith("/" + route)]


def started(document: dict, bank: Bank, *, waits: bool = False, **options) -> World:
    """An execution run as far as it goes; waits: only as far as it goes without time passing."""
    world = World(registry(("m", document)), bank, **options)
    world.start("m", "e1", INPUT)
    world.settle() if waits else world.run()
    return world


def events(world: World, kind: str) -> list:
    return [e for e in world.store.history(EXECUTION, 0, 10_000) if e.type == kind]


# --- redrive -----------------------------------------------------------------------------------


@pytest.mark.parametrize("inline", [False, True])
def test_a_refused_task_is_redriven_with_a_new_key_and_the_steps_before_it_are_not_run_again(inline):
    # GIVEN a transfer that failed because the credit was refused (the account was closed)
    bank = Bank(refuse={"credit"})
    world = started(TRANSFER, bank, inline=inline)
    failed = world.store.get(EXECUTION)
    assert failed.status is Status.FAILED and failed.state == "Credit"

    # WHEN the cause is fixed and an operator redrives it
    bank.refuse.clear()
    redriven = world.engine.redrive(EXECUTION)
    world.run()

    # THEN it resumes at Credit under the same id and input, with a key that does not replay the refusal
    done = world.store.get(EXECUTION)
    assert done.status is Status.SUCCEEDED and done.input == INPUT and done.redrive_count == 1
    assert redriven.status is Status.RUNNING and redriven.redrive_count == 1
    assert bank.keys("debit") == ["m:e1#Debit#1"]
    assert bank.keys("credit") == ["m:e1#Credit#1", "m:e1#Credit#2"]
    assert bank.applied == Counter({"debit": 1, "credit": 1})
    assert world.path(EXECUTION) == ["Debit", "Credit", "Credit", "Done"]
    [event] = events(world, "ExecutionRedriven")
    assert event.detail["redrive_count"] == 1 and event.detail["same_key"] is False
    assert event.detail["status"] == "FAILED" and event.state == "Credit"


def test_a_task_whose_answer_was_lost_is_redriven_with_its_key_so_its_effect_is_replayed_not_repeated():
    # GIVEN a credit that was applied but whose answer never came (States.Timeout, no Retry): FAILED
    bank = Bank(lose_answer={"credit"})
    world = started(TRANSFER, bank)
    assert world.status(EXECUTION) is Status.FAILED

    # WHEN it is redriven
    bank.lose_answer.clear()
    world.engine.redrive(EXECUTION)
    world.run()

    # THEN the same key is asked again: the kept answer is replayed and the credit applied once
    assert world.status(EXECUTION) is Status.SUCCEEDED
    assert bank.keys("credit") == ["m:e1#Credit#1", "m:e1#Credit#1"]
    assert bank.applied == Counter({"debit": 1, "credit": 1})
    assert events(world, "ExecutionRedriven")[0].detail["same_key"] is True


@pytest.mark.parametrize("point", ["operator:before_save", "operator:after_save", "wake:before_send",
                                   "wake:after_send"])
@pytest.mark.parametrize("inline", [False, True])
def test_a_redrive_whose_process_dies_still_completes_with_each_effect_applied_once(point, inline):
    bank = Bank(refuse={"credit"})
    world = started(TRANSFER, bank, inline=inline)
    bank.refuse.clear()

    # WHEN the process dies at this point of the redrive, and the operator retries it
    world.crash.point = point
    for _ in range(2):
        try:
            world.engine.redrive(EXECUTION)
        except SimulatedCrash:
            world._restart()
        except engine.ExecutionNotRedrivable:
            break  # the first one was written: the execution is running again
    world.run()

    # THEN it completes (the sweeper finds a redrive whose wake-up died) and nothing runs twice
    assert world.crash.crashed_at == point
    assert world.status(EXECUTION) is Status.SUCCEEDED
    assert bank.applied == Counter({"debit": 1, "credit": 1})
    assert len(events(world, "ExecutionRedriven")) == 1


@pytest.mark.parametrize("status", [Status.RUNNING, Status.SUCCEEDED])
def test_a_running_or_succeeded_execution_is_not_redriven(status):
    document = TRANSFER if status is Status.SUCCEEDED else machine(Wait={"Type": "Wait", "Seconds": 60,
                                                                         "End": True})
    world = World(registry(("m", document)), Bank())
    world.start("m", "e1", INPUT)
    world.settle()
    if status is Status.SUCCEEDED:
        world.run()
    assert world.status(EXECUTION) is status
    version = world.store.get(EXECUTION).version

    with pytest.raises(engine.ExecutionNotRedrivable, match=status.value):
        world.engine.redrive(EXECUTION)
    assert world.store.get(EXECUTION).version == version


def test_an_unknown_execution_is_neither_redriven_nor_stopped():
    world = World(registry(("m", TRANSFER)), Bank())
    with pytest.raises(engine.ExecutionNotFound):
        world.engine.redrive("m:nope")
    with pytest.raises(engine.ExecutionNotFound):
        world.engine.stop("m:nope", "why")


# --- stop --------------------------------------------------------------------------------------

AWAITING = machine(
    Reserve=task("reserve", "Await"),
    Await={
        "Type": "Task",
        "Resource": SQS_SEND_WAIT,
        "Parameters": {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/000000000000/reviews",
                       "MessageBody": {"token.$": "$$.Task.Token"}},
        "TimeoutSeconds": 3600,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Void"}],
        "Next": "Done",
    },
    Void=task("void", "Compensated", ResultPath=None),
    Compensated={"Type": "Fail", "Error": "Transfer.Compensated"},
    Done={"Type": "Succeed"},
)


def test_a_stop_taken_by_a_catch_runs_the_compensation_and_refuses_the_late_callback():
    # GIVEN a saga waiting for a reviewer, with a Catch that voids its hold
    bank = Bank()
    world = started(AWAITING, bank, waits=True)
    waiting = world.store.get(EXECUTION)
    assert waiting.phase is Phase.CALLBACK
    token = engine.task_token(EXECUTION, waiting.task_token)

    # WHEN an operator stops it
    stopping = world.engine.stop(EXECUTION, "customer withdrew the order")
    world.run()

    # THEN the compensation ran once, the end says why, and the reviewer's late answer is refused
    stopped = world.store.get(EXECUTION)
    assert stopping.status is Status.RUNNING and stopping.stop_reason == "customer withdrew the order"
    assert stopped.status is Status.FAILED and stopped.error == "Transfer.Compensated"
    assert bank.applied == Counter({"reserve": 1, "void": 1})
    assert world.path(EXECUTION) == ["Reserve", "Await", "Void", "Compensated"]
    caught = [e for e in events(world, "StateExited") if e.detail.get("caught")]
    assert (caught[0].detail["next"], caught[0].detail["caught"]) == ("Void", "Execution.Stopped")
    # the state's output, the next state's input, is in the history: the caught error under its ResultPath
    assert caught[0].detail["output"]["error"] == {"Error": "Execution.Stopped",
                                                   "Cause": "customer withdrew the order"}
    assert events(world, "ExecutionStopRequested")[0].detail == {"reason": "customer withdrew the order"}
    with pytest.raises(engine.TaskNotFound):
        world.engine.report(token, TaskResult(True, {"decision": "approve"}))


def test_a_repeated_stop_while_compensating_changes_nothing():
    world = started(AWAITING, Bank(), waits=True)
    first = world.engine.stop(EXECUTION, "withdrawn")

    again = world.engine.stop(EXECUTION, "withdrawn")

    assert again.version == first.version
    assert len(events(world, "ExecutionStopRequested")) == 1


def test_a_stop_no_catch_takes_aborts_the_execution_and_a_redrive_resumes_it():
    # GIVEN an execution in a Wait (no Catch there)
    document = machine(Hold={"Type": "Wait", "Seconds": 600, "Next": "Credit"}, Credit=task("credit"))
    bank = Bank()
    world = World(registry(("m", document)), bank)
    world.start("m", "e1", INPUT)
    world.settle()

    # WHEN it is stopped
    aborted = world.engine.stop(EXECUTION, "held by compliance")

    # THEN it ends ABORTED with the reason; a second stop is a conflict; nothing was called
    assert aborted.status is Status.ABORTED
    assert (aborted.error, aborted.cause) == ("Execution.Stopped", "held by compliance")
    assert events(world, "ExecutionAborted")
    with pytest.raises(engine.ExecutionNotRunning, match="ABORTED"):
        world.engine.stop(EXECUTION, "again")
    world.run()
    assert bank.calls == []

    # AND a redrive resumes it from the Wait to the end
    world.engine.redrive(EXECUTION)
    world.run()
    assert world.status(EXECUTION) is Status.SUCCEEDED and bank.applied == Counter({"credit": 1})


def test_a_stop_during_a_task_call_wins_over_the_call_and_compensates_its_effect():
    # GIVEN a reserve whose call is in flight when the operator stops the execution
    document = machine(
        Reserve=task("reserve", "Done", Catch=[{"ErrorEquals": ["Execution.Stopped"], "ResultPath": None,
                                                 "Next": "Void"}]),
        Void=task("void", "Stopped", ResultPath=None),
        Stopped={"Type": "Fail", "Error": "Transfer.Stopped"},
        Done={"Type": "Succeed"},
    )
    bank = Bank()
    world = World(registry(("m", document)), bank)

    def reserve_then_stop(call: TaskCall):
        answer = Bank.run(bank, call)
        if call.parameters["ApiEndpoint"].endswith("/reserve"):
            world.engine.stop(EXECUTION, "operator")
        return answer

    bank.run = reserve_then_stop  # type: ignore[method-assign]
    world.start("m", "e1", INPUT)
    world.run()

    # THEN the call's late result is not applied (the stop moved the version): the compensation runs
    assert world.status(EXECUTION) is Status.FAILED
    assert world.path(EXECUTION) == ["Reserve", "Void", "Stopped"]
    assert bank.applied == Counter({"reserve": 1, "void": 1})
    assert [e.state for e in events(world, "TaskSucceeded")] == ["Void"]
