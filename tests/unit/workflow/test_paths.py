"""Paths, ResultPath, payload templates and intrinsic functions."""

from __future__ import annotations

import pytest
from finfaas.workflow.errors import PathSyntaxError, StatesError
from finfaas.workflow.paths import compile_template, parse_path, parse_result_path, write_result

DATA = {"a": {"b": [10, {"c": "x"}]}, "odd key": 1, "items": [1, 2, 3], "name": "tr-1"}
CONTEXT = {"Execution": {"Id": "demo:tr-1"}, "Task": {"Token": "tok"}}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$", DATA),
        ("$.a.b[0]", 10),
        ("$.a.b[1].c", "x"),
        ("$['odd key']", 1),
        ('$["a"]["b"][1]["c"]', "x"),
        ("$$.Execution.Id", "demo:tr-1"),
    ],
)
def test_reference_paths_read_what_they_name(path, value):
    assert parse_path(path).read(DATA, CONTEXT) == value


@pytest.mark.parametrize(
    "path", ["$..a", "$.items[*]", "$.items[0:2]", "$.items[0,1]", "$.a[?(@.b)]", "a.b", "$.a[-1]"]
)
def test_paths_outside_the_subset_are_refused(path):
    with pytest.raises(PathSyntaxError):
        parse_path(path)


def test_a_missing_field_is_an_error_naming_the_path():
    with pytest.raises(StatesError) as missing:
        parse_path("$.a.nope").read(DATA)

    assert missing.value.error == "States.ParameterPathFailure" and "$.a.nope" in missing.value.cause


def test_result_path_builds_the_objects_it_names_and_leaves_the_input_alone():
    original = {"keep": 1}

    updated = write_result(original, parse_result_path("$.debit.result"), {"id": "d-1"})

    assert updated == {"keep": 1, "debit": {"result": {"id": "d-1"}}}
    assert original == {"keep": 1}


def test_result_path_into_a_non_object_fails_with_result_path_match_failure():
    with pytest.raises(StatesError) as failed:
        write_result({"a": 5}, parse_result_path("$.a.b"), 1)

    assert failed.value.error == "States.ResultPathMatchFailure"


def test_templates_fill_dot_dollar_fields_from_input_context_and_intrinsics():
    template = compile_template(
        {
            "static": {"nested": [1, "two"]},
            "from_input.$": "$.a.b[1].c",
            "token.$": "$$.Task.Token",
            "label.$": "States.Format('transfer {} of {} (\\{literal\\})', $.name, $.items[2])",
            "parsed.$": "States.StringToJson('{\"n\": 1}')",
            "count.$": "States.ArrayLength($.items)",
            "sum.$": "States.MathAdd($.items[0], 41)",
            "parts.$": "States.StringSplit('a,b,,c', ',')",
            "pair.$": "States.Array($.name, States.ArrayGetItem($.items, 1))",
            "has.$": "States.ArrayContains($.items, 3)",
            "text.$": "States.JsonToString($.a.b[1])",
        }
    )

    result = template.evaluate(DATA, CONTEXT)

    assert result == {
        "static": {"nested": [1, "two"]},
        "from_input": "x",
        "token": "tok",
        "label": "transfer tr-1 of 3 ({literal})",
        "parsed": {"n": 1},
        "count": 3,
        "sum": 42,
        "parts": ["a", "b", "c"],
        "pair": ["tr-1", 2],
        "has": True,
        "text": '{"c":"x"}',
    }
    assert template.uses_context("$$.Task.Token")


@pytest.mark.parametrize(
    "expression",
    [
        "States.UUID()",
        "States.Format('a {}')(",
        "States.MathAdd(1)",
        "States.Nope(1)",
        "States.Format('unterminated)",
    ],
)
def test_unsupported_or_malformed_intrinsics_are_refused_at_compile_time(expression):
    with pytest.raises(PathSyntaxError):
        compile_template({"x.$": expression})


def test_an_intrinsic_failing_at_run_time_is_an_intrinsic_failure():
    template = compile_template({"x.$": "States.ArrayGetItem($.items, 9)"})

    with pytest.raises(StatesError) as failed:
        template.evaluate(DATA, CONTEXT)

    assert failed.value.error == "States.IntrinsicFailure"
