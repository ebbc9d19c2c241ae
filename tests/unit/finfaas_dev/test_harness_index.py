"""The template's index.py as a handler sees it: Event, Context and response formatting."""

from __future__ import annotations

import importlib
import sys

import pytest
from finfaas_dev.harness import install_function_package

HANDLER = """
import json

def handle(event, context):
    kind = event.path.strip("/")
    if kind == "none":
        return None
    if kind == "text":
        return {"statusCode": 201, "body": "plain", "headers": {"X-Kind": "text"}}
    if kind == "list-headers":
        return {"body": "x", "headers": [("X-A", "1"), ("X-A", "2")]}
    if kind == "bytes":
        return {"body": b"raw"}
    if kind == "tuple":
        return ("as is", 202)
    return {"statusCode": 200, "body": {
        "method": event.method, "path": event.path, "query": event.query.to_dict(flat=False),
        "header": event.headers.get("X-Test"), "body": event.body.decode(), "hostname": context.hostname,
    }}
"""


@pytest.fixture
def client(tmp_path, monkeypatch):
    function_dir = tmp_path / "fn"
    function_dir.mkdir()
    (function_dir / "handler.py").write_text(HANDLER)
    monkeypatch.setenv("HOSTNAME", "fn-host")
    install_function_package(function_dir)
    index = importlib.import_module("finfaas_dev.harness.index")
    try:
        yield index.app.test_client()
    finally:
        for name in ("finfaas_dev.harness.index", "function.handler", "function"):
            sys.modules.pop(name, None)


@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "PATCH", "DELETE"])
def test_every_method_reaches_the_handler_with_the_event_fields(client, method):
    response = client.open("/a/b?x=1&x=2", method=method, data=b"payload", headers={"X-Test": "t"})

    assert response.status_code == 200
    assert response.get_json() == {
        "method": method,
        "path": "/a/b",
        "query": {"x": ["1", "2"]},
        "header": "t",
        "body": "payload",
        "hostname": "fn-host",
    }


def test_string_body_status_and_dict_headers(client):
    response = client.get("/text")

    assert (response.status_code, response.data, response.headers["X-Kind"]) == (201, b"plain", "text")


def test_none_is_an_empty_200(client):
    response = client.get("/none")

    assert (response.status_code, response.data) == (200, b"")


def test_header_lists_may_repeat_a_name(client):
    assert client.get("/list-headers").headers.getlist("X-A") == ["1", "2"]


def test_bytes_bodies_go_through_str_exactly_as_the_template_does(client):
    assert client.get("/bytes").data == b"b'raw'"


def test_other_return_values_go_to_flask_unchanged(client):
    response = client.get("/tuple")

    assert (response.status_code, response.data) == (202, b"as is")


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "HEAD", "PROPFIND"])
def test_methods_flask_would_answer_itself_reach_the_handler(client, method):
    # Upstream, Flask answers these with its own text/html (OPTIONS: 200 listing its methods).
    response = client.open("/_/ops/thing", method=method)

    assert response.status_code == 200
    if method != "HEAD":
        assert response.get_json()["method"] == method


@pytest.mark.parametrize("path", ["/accounts/a%0Ab", "/a%0A", "/%0D%0Ax"])
def test_paths_werkzeug_cannot_route_reach_the_handler(client, path):
    response = client.get(path)

    assert response.status_code == 200
    assert response.get_json()["method"] == "GET"


@pytest.fixture
def index_for(tmp_path):
    """The template's index.py loaded over a handler of the given text."""
    loaded = []

    def load(handler_text: str):
        function_dir = tmp_path / f"fn{len(loaded)}"
        function_dir.mkdir()
        (function_dir / "handler.py").write_text(handler_text)
        for name in ("finfaas_dev.harness.index", "function.handler", "function"):
            sys.modules.pop(name, None)
        install_function_package(function_dir)
        loaded.append(importlib.import_module("finfaas_dev.harness.index"))
        return loaded[-1]

    try:
        yield load
    finally:
        for name in ("finfaas_dev.harness.index", "function.handler", "function"):
            sys.modules.pop(name, None)


def test_a_handler_sizes_waitress_but_never_moves_its_listener(index_for):
    options = '{"threads": 260, "connection_limit": "356", "host": "0.0.0.0"}'
    sized = index_for(f"{HANDLER}\nSERVER_OPTIONS = {options}\n")
    plain = index_for(HANDLER)

    assert sized.server_options() == {"threads": 260, "connection_limit": 356}
    assert plain.server_options() == {}  # the template's 4 threads and 100 connections
