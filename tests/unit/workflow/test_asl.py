"""The ASL loader: the subset is compiled, everything else is refused naming the state and field."""

from __future__ import annotations

import copy

import pytest
from finfaas.workflow.asl import HTTP_INVOKE, SQS_SEND_WAIT, parse_definition
from finfaas.workflow.errors import DefinitionError

HTTP_PARAMETERS = {"ApiEndpoint": "https://gateway.finfaas/function/demo-bank/debits", "Method": "POST"}


def _machine(**states) -> dict:
    return {"StartAt": next(iter(states)), "States": states}


def _task(**fields) -> dict:
    return {
        "Type": "Task",
        "Resource": HTTP_INVOKE,
        "Parameters": dict(HTTP_PARAMETERS),
        "End": True,
        **fields,
    }


_PROCESSOR = {"StartAt": "Each", "States": {"Each": {"Type": "Pass", "End": True}}}


_CATCH_ALL_TO_A = {"ErrorEquals": ["States.ALL"], "Next": "A"}  # A is outside the processor


def _processor(**states) -> dict:
    return {"StartAt": next(iter(states)), "States": states}


def _map(**fields) -> dict:
    return {"Type": "Map", "ItemProcessor": _PROCESSOR, "End": True, **fields}


VALID = _machine(
    Debit=_task(
        Next="Check",
        End=None,
        ResultPath="$.debit",
        Retry=[{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 2, "JitterStrategy": "FULL"}],
        Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Failed", "ResultPath": "$.error"}],
    ),
    Check={
        "Type": "Choice",
        "Default": "Done",
        "Choices": [
            {
                "And": [
                    {"Variable": "$.a", "IsPresent": True},
                    {"Variable": "$.a", "NumericGreaterThanPath": "$.b"},
                ],
                "Next": "Later",
            }
        ],
    },
    Later={"Type": "Wait", "Seconds": 5, "Next": "Done"},
    Done={"Type": "Pass", "Result": {"ok": True}, "ResultPath": "$.result", "End": True},
    Failed={"Type": "Fail", "Error": "Demo.Failed", "CausePath": "$.error.Cause"},
)


def _without_none(document: dict) -> dict:
    clean = copy.deepcopy(document)
    for state in clean["States"].values():
        for key in [k for k, v in state.items() if v is None]:
            del state[key]
    return clean


def test_a_definition_in_the_subset_compiles():
    definition = parse_definition("demo", _without_none(VALID))

    assert definition.start_at == "Debit"
    assert set(definition.states) == {"Debit", "Check", "Later", "Done", "Failed"}
    assert definition.states["Debit"].retry[0].max_attempts == 2
    assert len(definition.digest) == 64


@pytest.mark.parametrize(
    ("document", "state", "field"),
    [
        (_machine(A={"Type": "Parallel", "Branches": [], "End": True}), "A", "Branches"),
        (_machine(A={"Type": "Map", "End": True}), "A", "ItemProcessor"),
        (_machine(A=_map(ItemReader={})), "A", "ItemReader"),
        (_machine(A=_map(ResultWriter={})), "A", "ResultWriter"),
        (_machine(A=_map(ItemBatcher={})), "A", "ItemBatcher"),
        (_machine(A=_map(Parameters={})), "A", "Parameters"),
        (_machine(A=_map(Iterator={})), "A", "Iterator"),
        (_machine(A=_map(MaxConcurrencyPath="$.n")), "A", "MaxConcurrencyPath"),
        (_machine(A=_map(ToleratedFailureCount=-1)), "A", "ToleratedFailureCount"),
        (_machine(A=_map(ToleratedFailurePercentage=101)), "A", "ToleratedFailurePercentage"),
        (_machine(A=_map(ItemsPath="$..x")), "A", "ItemsPath"),
        (
            _machine(A=_map(ItemProcessor={"ProcessorConfig": {"Mode": "DISTRIBUTED"}, **_PROCESSOR})),
            "A",
            "ItemProcessor.ProcessorConfig",
        ),
        (_machine(A=_map(ItemProcessor=_processor(W={"Type": "Wait", "Seconds": 1, "End": True}))),
         "W", "Type"),
        (_machine(A=_map(ItemProcessor=_processor(M=_map()))), "M", "Type"),
        (_machine(A=_map(ItemProcessor=_processor(T=_task(Resource=SQS_SEND_WAIT, Parameters={
            "QueueUrl": "https://sqs.us-east-1.amazonaws.com/000000000000/demo-approvals",
            "MessageBody": {"token.$": "$$.Task.Token"}})))), "T", "Resource"),
        (_machine(A=_map(ItemProcessor=_processor(T={**_task(Next="Gone"), "End": False}))), "T", "End"),
        (_machine(A=_map(ItemProcessor=_processor(T=_task(Catch=[_CATCH_ALL_TO_A])))), "T", "Catch.Next"),
        (_machine(A={"Type": "Parallel", "Branches": [{"StartAt": "B", "States": {}}], "End": True}),
         "A", "Branches.States"),
        (_machine(A={"Type": "Parallel", "Branches": [{**_PROCESSOR, "ProcessorConfig": {}}], "End": True}),
         "A", "Branches.ProcessorConfig"),
        (_machine(A={"Type": "Parallel", "Branches": [_PROCESSOR], "TimeoutSeconds": 5, "End": True}),
         "A", "TimeoutSeconds"),
        (_machine(A=_task(ResultWriter={})), "A", "ResultWriter"),
        (_machine(A=_task(TimeoutSecondsPath="$.t")), "A", "TimeoutSecondsPath"),
        (_machine(A=_task(Resource="function:transfers")), "A", "Resource"),
        (_machine(A=_task(Resource="arn:aws:states:::lambda:invoke")), "A", "Resource"),
        (
            _machine(A=_task(Parameters={"ApiEndpoint": "https://example.com/api", "Method": "POST"})),
            "A",
            "Parameters.ApiEndpoint",
        ),
        (_machine(A=_task(Parameters={**HTTP_PARAMETERS, "Method": "TRACE"})), "A", "Parameters.Method"),
        (
            _machine(A=_task(Parameters={**HTTP_PARAMETERS, "Headers": {"Idempotency-Key": "x"}})),
            "A",
            "Parameters.Headers",
        ),
        (_machine(A=_task(Parameters={**HTTP_PARAMETERS, "Body": {}})), "A", "Parameters.Body"),
        (
            _machine(A=_task(Parameters={**HTTP_PARAMETERS, "RequestBody": {"n.$": "$$.State.RetryCount"}})),
            "A",
            "Parameters",
        ),
        (_machine(A=_task(TimeoutSeconds=61)), "A", "TimeoutSeconds"),
        (_machine(A=_task(HeartbeatSeconds=5)), "A", "HeartbeatSeconds"),
        (_machine(A=_task(Retry=[{"ErrorEquals": ["States.ALL", "X"]}])), "A", "Retry.ErrorEquals"),
        (
            _machine(A=_task(Retry=[{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}])),
            "A",
            "Retry.ErrorEquals",
        ),
        (_machine(A=_task(Retry=[{"ErrorEquals": ["States.Bogus"]}])), "A", "Retry.ErrorEquals"),
        (_machine(A=_task(Retry=[{"ErrorEquals": ["X"], "BackoffRate": 0.5}])), "A", "Retry.BackoffRate"),
        (
            _machine(A=_task(Retry=[{"ErrorEquals": ["X"], "JitterStrategy": "HALF"}])),
            "A",
            "Retry.JitterStrategy",
        ),
        (
            _machine(A=_task(Retry=[{"ErrorEquals": ["X"], "IntervalSeconds": 0}])),
            "A",
            "Retry.IntervalSeconds",
        ),
        (_machine(A=_task(Catch=[{"ErrorEquals": ["X"], "Next": "Nowhere"}])), "A", "Catch.Next"),
        (_machine(A=_task(InputPath="$..a")), "A", "InputPath"),
        (_machine(A=_task(ResultPath="$.a[0]")), "A", "ResultPath"),
        (
            _machine(A=_task(Parameters={**HTTP_PARAMETERS, "RequestBody": {"x.$": "$.items[*]"}})),
            "A",
            "Parameters",
        ),
        (
            _machine(A=_task(Parameters={**HTTP_PARAMETERS, "RequestBody": {"x.$": "States.UUID()"}})),
            "A",
            "Parameters",
        ),
        (_machine(A=_task(Next="B")), "A", "Next"),
        (_machine(A={"Type": "Pass", "Next": "B"}), "A", "Next"),
        (_machine(A={"Type": "Pass", "End": True}, B={"Type": "Succeed"}), "B", None),
        (
            _machine(
                A={"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": "1", "Next": "A"}]}
            ),
            "A",
            "Choices.NumericEquals",
        ),
        (
            _machine(A={"Type": "Choice", "Choices": [{"Variable": "$.a", "Resembles": 1, "Next": "A"}]}),
            "A",
            "Choices.Resembles",
        ),
        (
            _machine(A={"Type": "Wait", "Seconds": 1, "Timestamp": "2026-01-01T00:00:00Z", "End": True}),
            "A",
            "Seconds",
        ),
        (_machine(A={"Type": "Wait", "Timestamp": "tomorrow", "End": True}), "A", "Timestamp"),
        (_machine(A={"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}), "A", "ErrorPath"),
        (
            _machine(
                A={
                    "Type": "Task",
                    "Resource": SQS_SEND_WAIT,
                    "End": True,
                    "Parameters": {"QueueUrl": "https://sqs/000/rail", "MessageBody": {"a": 1}},
                }
            ),
            "A",
            "Parameters",
        ),
    ],
)
def test_anything_outside_the_subset_is_refused_naming_the_state_and_field(document, state, field):
    with pytest.raises(DefinitionError) as refused:
        parse_definition("demo", _without_none(document))

    assert (refused.value.state, refused.value.field) == (state, field)
    assert state is None or repr(state) in str(refused.value)


def test_the_top_level_is_checked_too():
    with pytest.raises(DefinitionError, match="StartAt"):
        parse_definition("demo", {"StartAt": "Missing", "States": {"A": {"Type": "Succeed"}}})
    with pytest.raises(DefinitionError) as refused:
        parse_definition("demo", {**_without_none(VALID), "QueryLanguage": "JSONata"})
    assert refused.value.field == "QueryLanguage"
    with pytest.raises(DefinitionError, match="name"):
        parse_definition("Demo Machine", _without_none(VALID))


def test_a_callback_task_must_hand_out_its_token():
    parameters = {
        "QueueUrl": "https://sqs.us-east-1.amazonaws.com/000000000000/rail",
        "MessageBody": {"token.$": "$$.Task.Token"},
    }
    definition = parse_definition(
        "demo",
        _machine(
            A={
                "Type": "Task",
                "Resource": SQS_SEND_WAIT,
                "Parameters": parameters,
                "HeartbeatSeconds": 5,
                "TimeoutSeconds": 60,
                "End": True,
            }
        ),
    )

    assert definition.states["A"].is_callback


def test_map_and_parallel_compile_with_their_processors_retry_and_catch():
    definition = parse_definition(
        "demo",
        _without_none(_machine(
            Each=_map(
                ItemsPath="$.items",
                ItemSelector={"item.$": "$$.Map.Item.Value"},
                MaxConcurrency=4,
                ToleratedFailurePercentage=10,
                ItemProcessor={"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Pay",
                               "States": {"Pay": _task()}},
                Retry=[{"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "MaxAttempts": 1}],
                Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Both"}],
                Next="Both",
                End=None,
            ),
            Both={"Type": "Parallel", "Branches": [_PROCESSOR, _PROCESSOR], "ResultPath": "$.x", "End": True},
        )),
    )

    each, both = definition.states["Each"], definition.states["Both"]
    assert (each.max_concurrency, each.tolerated_failure_percentage) == (4, 10.0)
    assert each.processor.start_at == "Pay" and each.catch[0].next == "Both"
    assert len(both.branches) == 2
