"""Routing, responses and request ids of the HTTP adapter, driven through handle(event, context)."""

from __future__ import annotations

import pytest
from finfaas.platform.http import FunctionApp, Request, Response, StrictModel
from finfaas_dev.testing.platform import Event, call
from pydantic import BaseModel


class Account(BaseModel):
    account_id: str
    currency: str


def build_app() -> FunctionApp:
    app = FunctionApp("accounts")

    @app.route("GET", "/accounts/{account_id}", auth=False)
    def get_account(req: Request, account_id: str) -> Account:
        """Read one account."""
        return Account(account_id=account_id, currency="USD")

    @app.route("GET", "/accounts/search", auth=False)
    def search_accounts(req: Request) -> dict:
        """Search accounts."""
        return {"route": req.route}

    @app.route("DELETE", "/accounts/{account_id}", auth=False)
    def close_account(req: Request, account_id: str) -> None:
        """Close an account."""
        return None

    @app.route("POST", "/accounts/{account_id}/freeze", auth=False, status=202)
    def freeze(req: Request, account_id: str) -> dict:
        """Freeze an account."""
        return {"frozen": account_id}

    @app.route("GET", "/teapot", auth=False)
    def teapot(req: Request) -> Response:
        """A custom response."""
        return Response(
            {"short": "stout"}, status=418, headers={"X-Extra": "1", "cache-control": "max-age=5"}
        )

    @app.route("GET", "/broken-contract", auth=False, response=Account)
    def broken(req: Request) -> dict:
        """Answers outside its declared model."""
        return {"account_id": "a1"}

    return app


@pytest.fixture(scope="module")
def app() -> FunctionApp:
    return build_app()


def test_path_parameters_reach_the_handler_and_the_model_is_serialised(app):
    reply = call(app.handle, "GET", "/accounts/acc-42")

    assert reply.status == 200
    assert reply.json() == {"account_id": "acc-42", "currency": "USD"}
    assert reply.header("Content-Type") == "application/json"


def test_a_literal_segment_wins_over_a_parameter(app):
    assert call(app.handle, "GET", "/accounts/search").json() == {"route": "/accounts/search"}


def test_trailing_slash_reaches_the_same_route(app):
    assert call(app.handle, "GET", "/accounts/acc-1/").json()["account_id"] == "acc-1"


def test_unknown_path_is_a_404_problem(app):
    reply = call(app.handle, "GET", "/nowhere")

    assert reply.status == 404
    assert reply.header("Content-Type") == "application/problem+json"
    body = reply.json()
    assert body["type"] == "urn:finfaas:problem:not_found"
    assert body["code"] == "not_found" and body["status"] == 404 and body["instance"] == "/nowhere"


def test_wrong_method_is_a_405_with_allow(app):
    reply = call(app.handle, "PATCH", "/accounts/acc-1")

    assert reply.status == 405
    assert reply.header("Allow") == "DELETE, GET, HEAD"
    assert reply.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "CONNECT", "PROPFIND"])
def test_methods_no_route_takes_are_a_405_listing_only_the_real_ones(app, method):
    reply = call(app.handle, method, "/accounts/acc-1")

    assert reply.status == 405
    assert reply.header("Allow") == "DELETE, GET, HEAD"
    assert reply.header("Content-Type") == "application/problem+json"


def test_head_answers_as_get_without_the_body(app):
    reply = call(app.handle, "HEAD", "/accounts/acc-42")

    assert reply.status == 200
    assert reply.body == ""
    assert reply.header("Content-Type") == "application/json"


def test_head_where_no_get_is_a_405(app):
    reply = call(app.handle, "HEAD", "/accounts/acc-1/freeze")

    assert reply.status == 405
    assert reply.header("Allow") == "POST"


@pytest.mark.parametrize("path", ["/accounts/a-1\n", "/accounts/a\nb", "/accounts/a\x00b", "/accounts/a\x7f"])
def test_control_characters_in_a_path_are_a_404_problem(app, path):
    reply = call(app.handle, "GET", path)

    assert reply.status == 404
    assert reply.json()["code"] == "not_found"


def test_returning_none_is_204_with_an_empty_body(app):
    reply = call(app.handle, "DELETE", "/accounts/acc-1")

    assert reply.status == 204
    assert reply.body == ""
    assert reply.header("Content-Type") is None


def test_route_status_applies_to_plain_results(app):
    assert call(app.handle, "POST", "/accounts/acc-1/freeze").status == 202


def test_explicit_response_keeps_status_and_headers_and_overrides_defaults(app):
    reply = call(app.handle, "GET", "/teapot")

    assert reply.status == 418
    assert reply.header("X-Extra") == "1"
    assert reply.header("Cache-Control") == "max-age=5"
    assert [k for k in reply.headers if k.lower() == "cache-control"] == ["cache-control"]


def test_api_responses_are_not_cacheable_by_default(app):
    reply = call(app.handle, "GET", "/accounts/acc-1")

    assert reply.header("Cache-Control") == "no-store"
    assert reply.header("X-Content-Type-Options") == "nosniff"


def test_a_result_outside_the_declared_model_is_a_500_not_a_silent_leak(app):
    reply = call(app.handle, "GET", "/broken-contract")

    assert reply.status == 500
    assert reply.json()["code"] == "internal_error"


def test_request_id_is_echoed_when_valid(app):
    reply = call(app.handle, "GET", "/accounts/a", headers={"X-Request-Id": "req-123.abc"})

    assert reply.header("X-Request-Id") == "req-123.abc"


def test_gateway_call_id_serves_as_request_id(app):
    reply = call(
        app.handle, "GET", "/accounts/a", headers={"X-Call-Id": "2b7c1a3e-5f1d-4a9b-8a43-1c1b1f3a5e77"}
    )

    assert reply.header("X-Request-Id") == "2b7c1a3e-5f1d-4a9b-8a43-1c1b1f3a5e77"


def test_unsafe_request_id_is_replaced_by_a_generated_one(app):
    reply = call(app.handle, "GET", "/accounts/a", headers={"X-Request-Id": "<script>alert(1)</script>"})

    request_id = reply.header("X-Request-Id")
    assert request_id and "<" not in request_id and len(request_id) == 32


def test_each_request_gets_its_own_generated_id(app):
    first = call(app.handle, "GET", "/accounts/a").header("X-Request-Id")
    second = call(app.handle, "GET", "/accounts/a").header("X-Request-Id")

    assert first != second


def test_problem_bodies_are_also_tagged_with_the_request_id_header(app):
    reply = call(app.handle, "GET", "/nowhere", headers={"X-Request-Id": "r-1"})

    assert reply.header("X-Request-Id") == "r-1"


def test_plain_dict_headers_and_query_from_other_runtimes_work(app):
    class DictEvent:
        method, path, body = "GET", "/accounts/x", b""
        headers = {"x-request-id": "plain-1"}
        query = {}

    result = app.handle(DictEvent(), None)

    assert result["statusCode"] == 200
    assert result["headers"]["X-Request-Id"] == "plain-1"


def test_body_is_always_text_for_the_template(app):
    result = app.handle(Event("GET", "/accounts/a"), None)

    assert isinstance(result["body"], str)


def test_registering_the_same_route_twice_fails_at_import():
    app = FunctionApp("dup")

    @app.route("GET", "/x/{a}", auth=False)
    def first(req, a): ...

    with pytest.raises(ValueError, match="already registered"):

        @app.route("GET", "/x/{b}", auth=False)
        def second(req, b): ...


def test_a_handler_missing_a_path_parameter_fails_at_import():
    app = FunctionApp("sig")

    with pytest.raises(TypeError, match="account_id"):

        @app.route("GET", "/accounts/{account_id}", auth=False)
        def get_account(req): ...


def test_a_body_model_that_allows_extra_fields_is_refused_at_import():
    class Loose(BaseModel):
        amount_minor: int

    app = FunctionApp("loose")

    with pytest.raises(TypeError, match="extra='forbid'"):

        @app.route("POST", "/payments", auth=False, body=Loose)
        def pay(req, body): ...


def test_a_nested_model_that_allows_extra_fields_is_refused_at_import():
    class Leg(BaseModel):
        amount_minor: int

    class Split(StrictModel):
        legs: list[Leg]
        fee: Leg | None = None

    app = FunctionApp("loose")

    with pytest.raises(TypeError, match="Leg"):

        @app.route("POST", "/splits", auth=False, body=Split)
        def split(req, body): ...


def test_ops_routes_cannot_be_public():
    app = FunctionApp("ops")

    with pytest.raises(ValueError, match="ops routes"):

        @app.route("POST", "/_/ops/replay", auth=False)
        def replay(req): ...


def test_ops_routes_always_require_the_ops_scope_and_acting_ones_ops_act():
    app = FunctionApp("ops")

    @app.route("POST", "/_/ops/replay", scopes=["payments:write"])
    def replay(req): ...

    @app.route("GET", "/_/ops/replays")
    def replays(req): ...

    scopes = {r.path: r.scopes for r in app.routes}
    assert scopes["/_/ops/replay"] == ("payments:write", "ops", "ops:act")
    assert scopes["/_/ops/replays"] == ("ops",)


def test_options_on_an_ops_route_is_a_405_before_any_token_is_asked_for():
    ops_app = FunctionApp("ops")

    @ops_app.route("POST", "/_/ops/sweep")
    def sweep(req: Request) -> dict:
        """Sweep."""
        return {}

    reply = call(ops_app.handle, "OPTIONS", "/_/ops/sweep")

    assert reply.status == 405
    assert reply.header("Allow") == "POST"
    assert reply.header("Content-Type") == "application/problem+json"
