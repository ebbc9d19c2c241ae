"""Request bodies and query strings: media types, size, JSON safety, typed validation."""

from __future__ import annotations

import pytest
from finfaas.platform.http import FORM_MEDIA_TYPE, FunctionApp, Request, StrictModel
from finfaas_dev.testing.platform import call
from pydantic import BaseModel, Field

JSON = {"Content-Type": "application/json"}


class OpenAccount(StrictModel):
    currency: str = Field(pattern="^[A-Z]{3}$")
    overdraft_limit_minor: int = Field(0, ge=0)


class ListQuery(BaseModel):
    limit: int = Field(20, ge=1, le=100)
    status: list[str] = []


def build_app(body_bytes_max: int = 1024 * 1024) -> FunctionApp:
    app = FunctionApp("accounts", body_bytes_max=body_bytes_max)

    @app.route("POST", "/accounts", auth=False, body=OpenAccount, status=201)
    def open_account(req: Request, body: OpenAccount) -> dict:
        """Open an account."""
        return body.model_dump()

    @app.route("GET", "/accounts", auth=False, query=ListQuery)
    def list_accounts(req: Request, query: ListQuery) -> dict:
        """List accounts."""
        return query.model_dump()

    @app.route("POST", "/form", auth=False, media_types=(FORM_MEDIA_TYPE,))
    def form(req: Request) -> dict:
        """Echo a form."""
        return req.form()

    @app.route("POST", "/form-model", auth=False, body=OpenAccount, media_types=(FORM_MEDIA_TYPE,))
    def form_model(req: Request, body: OpenAccount) -> dict:
        """A model from a form."""
        return body.model_dump()

    return app


@pytest.fixture(scope="module")
def app() -> FunctionApp:
    return build_app()


def post(app: FunctionApp, raw: bytes, headers: dict | None = None):
    return call(app.handle, "POST", "/accounts", body=raw, headers=JSON if headers is None else headers)


def test_a_valid_body_reaches_the_handler_as_a_model(app):
    reply = call(app.handle, "POST", "/accounts", json_body={"currency": "EUR"})

    assert reply.status == 201
    assert reply.json() == {"currency": "EUR", "overdraft_limit_minor": 0}


def test_an_unknown_field_is_refused_and_named(app):
    # GIVEN a client trying to set a field it does not own
    reply = call(app.handle, "POST", "/accounts", json_body={"currency": "EUR", "owner_id": "someone-else"})

    # THEN nothing is assigned and the answer says which field was refused
    assert reply.status == 422
    body = reply.json()
    assert body["code"] == "validation_failed"
    assert body["errors"] == [{"field": "owner_id", "message": "Extra inputs are not permitted"}]


def test_each_invalid_field_is_listed(app):
    reply = call(app.handle, "POST", "/accounts", json_body={"currency": "euro", "overdraft_limit_minor": -1})

    fields = sorted(error["field"] for error in reply.json()["errors"])
    assert reply.status == 422 and fields == ["currency", "overdraft_limit_minor"]


def test_a_fractional_amount_is_refused_for_an_integer_field(app):
    reply = call(
        app.handle, "POST", "/accounts", json_body={"currency": "EUR", "overdraft_limit_minor": 10.5}
    )

    assert reply.status == 422
    assert reply.json()["errors"][0]["field"] == "overdraft_limit_minor"


def test_a_json_array_instead_of_an_object_is_a_validation_error(app):
    reply = post(app, b'["EUR"]')

    assert reply.status == 422


@pytest.mark.parametrize(
    "raw",
    [
        b'{"currency": "EUR"',
        b'{"currency": "EUR", "currency": "USD"}',
        b'{"currency": "EUR", "overdraft_limit_minor": NaN}',
        b'{"currency": "EUR", "overdraft_limit_minor": Infinity}',
        b"",
        b"   ",
        b'{"currency": "\xff\xfe"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["truncated", "duplicate-key", "nan", "infinity", "empty", "blank", "not-utf8", "deeply-nested"],
)
def test_malformed_json_is_a_400_problem(app, raw):
    reply = post(app, raw)

    assert reply.status == 400
    assert reply.json()["code"] == "malformed_json"
    assert reply.header("Content-Type") == "application/problem+json"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", FORM_MEDIA_TYPE, "application/json; charset=latin-1", None],
)
def test_a_body_that_is_not_utf8_json_is_a_415(app, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}

    reply = post(app, b'{"currency": "EUR"}', headers)

    assert reply.status == 415
    assert reply.json()["code"] == "unsupported_media_type"


def test_json_with_an_explicit_utf8_charset_is_accepted(app):
    reply = post(app, b'{"currency": "EUR"}', {"Content-Type": "Application/JSON; charset=UTF-8"})

    assert reply.status == 201


def test_a_body_over_the_limit_is_a_413_before_parsing():
    app = build_app(body_bytes_max=64)

    reply = post(app, b'{"currency": "EUR", "pad": "' + b"x" * 100 + b'"}')

    assert reply.status == 413
    assert reply.json()["code"] == "payload_too_large"


def test_the_default_limit_is_one_mebibyte(app):
    just_over = b'{"currency": "EUR", "pad": "' + b"x" * (1024 * 1024) + b'"}'

    assert post(app, just_over).status == 413


def test_query_parameters_are_validated_into_the_model(app):
    reply = call(app.handle, "GET", "/accounts", query={"limit": "5", "status": ["open", "frozen"]})

    assert reply.status == 200
    assert reply.json() == {"limit": 5, "status": ["open", "frozen"]}


def test_query_defaults_apply_when_absent(app):
    assert call(app.handle, "GET", "/accounts").json() == {"limit": 20, "status": []}


def test_an_out_of_range_query_parameter_is_a_422_naming_it(app):
    reply = call(app.handle, "GET", "/accounts", query={"limit": "1000"})

    assert reply.status == 422
    assert reply.json()["errors"][0]["field"] == "limit"


def test_a_form_body_is_read_on_routes_that_accept_forms(app):
    reply = call(app.handle, "POST", "/form", body=b"a=1&b=x+y", headers={"Content-Type": FORM_MEDIA_TYPE})

    assert reply.json() == {"a": "1", "b": "x y"}


def test_a_form_parameter_sent_twice_is_a_400(app):
    reply = call(app.handle, "POST", "/form", body=b"a=1&a=2", headers={"Content-Type": FORM_MEDIA_TYPE})

    assert reply.status == 400


def test_json_sent_to_a_form_route_is_a_415(app):
    reply = call(app.handle, "POST", "/form", json_body={"a": 1})

    assert reply.status == 415


def test_a_form_can_fill_a_strict_model(app):
    headers = {"Content-Type": FORM_MEDIA_TYPE}

    ok = call(app.handle, "POST", "/form-model", body=b"currency=JPY", headers=headers)
    extra = call(app.handle, "POST", "/form-model", body=b"currency=JPY&role=admin", headers=headers)

    assert ok.json()["currency"] == "JPY"
    assert extra.status == 422 and extra.json()["errors"][0]["field"] == "role"
