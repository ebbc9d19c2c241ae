"""The one JSON parser for documents from outside: depth bounded without recursion, no NaN/Infinity."""

from __future__ import annotations

import sys

import pytest
from finfaas.platform import jsonio
from finfaas.platform.http import FunctionApp, Request
from finfaas_dev.testing.platform import call


def nested(levels: int, open_: str = "[", close: str = "]") -> str:
    return open_ * levels + close * levels


@pytest.mark.parametrize("text", [
    nested(2_000), nested(100_000), '{"a":' * 5_000 + "1" + "}" * 5_000,
    "[" * 100_000,  # never closed: refused before the parser could recurse
])
def test_a_document_nested_past_the_bound_is_refused_as_a_value_error(text):
    with pytest.raises(jsonio.JsonTooDeep) as refused:
        jsonio.loads(text)

    assert isinstance(refused.value, ValueError)


def test_a_document_at_the_bound_parses_and_one_level_more_does_not():
    assert jsonio.loads(nested(jsonio.json_depth_max)) is not None
    with pytest.raises(jsonio.JsonTooDeep):
        jsonio.loads(nested(jsonio.json_depth_max + 1))


def test_the_bound_holds_even_with_a_recursion_limit_the_parser_would_exceed():
    # GIVEN a recursion limit lower than the document's depth: json.loads alone would raise RecursionError
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        with pytest.raises(jsonio.JsonTooDeep):
            jsonio.loads(nested(500).encode())
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize("text, depth", [
    ('"[[[[[[[["', 0),                       # brackets inside a string do not count
    ('["\\"[[[[", {"k": ["]]]"]}]', 3),     # nor after an escaped quote
    ('{"a": [1, {"b": []}], "c": {}}', 4),
    ("7", 0),
])
def test_depth_counts_only_structure(text, depth):
    assert jsonio.nesting_depth(text) == depth


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"x": -Infinity}', "1e999", "[-1e400]"])
def test_non_finite_numbers_are_refused(text):
    with pytest.raises(jsonio.JsonRejected):
        jsonio.loads(text)


def test_bytes_in_any_json_encoding_and_a_custom_depth_are_accepted():
    assert jsonio.loads('{"a": [1]}'.encode("utf-16")) == {"a": [1]}
    assert jsonio.loads(nested(100), depth_max=jsonio.stored_json_depth_max) is not None


def test_a_request_body_nested_too_deep_is_a_400_naming_the_body():
    app = FunctionApp("probe")

    @app.route("POST", "/things", auth=False)
    def things(req: Request) -> dict:
        """Echo."""
        return {"parsed": req.json() is not None}

    reply = call(app.handle, "POST", "/things", body=nested(2_000).encode(),
                 headers={"Content-Type": "application/json"})

    assert reply.status == 400 and reply.header("Content-Type") == "application/problem+json"
    assert reply.json()["code"] == "malformed_json"
    assert [e["field"] for e in reply.json()["errors"]] == ["(body)"]


def test_queue_consumers_refuse_a_deep_message_as_malformed_not_with_a_crash():
    from finfaas.platform.events import EventMac, EventRejected
    from finfaas.workflow.wakeups import Wakeup

    with pytest.raises(ValueError):
        Wakeup.from_json(nested(2_000))
    with pytest.raises(EventRejected):
        EventMac.generate().open(nested(100_000).encode())
