"""The served OpenAPI document: valid 3.1, complete for every route, and true to real responses."""

from __future__ import annotations

import jsonschema
import pytest
from finfaas.platform.http import FunctionApp, Request, StrictModel, path_param_chars_max
from finfaas_dev.testing.platform import call
from openapi_spec_validator import validate as validate_spec
from pydantic import BaseModel, Field


class OpenAccount(StrictModel):
    currency: str = Field(pattern="^[A-Z]{3}$")


class Account(BaseModel):
    account_id: str
    currency: str
    balance_minor: int


class AccountPage(BaseModel):
    data: list[Account]
    has_more: bool


class ListQuery(BaseModel):
    limit: int = Field(20, ge=1, le=100)
    starting_after: str | None = None


@pytest.fixture(scope="module")
def app(minter) -> FunctionApp:
    app = FunctionApp("accounts", verifier=minter.verifier())

    @app.route("POST", "/accounts", body=OpenAccount, scopes=["accounts:write"], status=201)
    def open_account(req: Request, body: OpenAccount) -> Account:
        """Open an account."""
        return Account(account_id="a-1", currency=body.currency, balance_minor=0)

    @app.route("GET", "/accounts", query=ListQuery, scopes=["accounts:read"])
    def list_accounts(req: Request, query: ListQuery) -> AccountPage:
        """List the caller's accounts."""
        return AccountPage(data=[Account(account_id="a-1", currency="EUR", balance_minor=5)], has_more=False)

    @app.route("GET", "/accounts/{account_id}", scopes=["accounts:read"])
    def get_account(req: Request, account_id: str) -> Account:
        """Read one account."""
        return Account(account_id=account_id, currency="EUR", balance_minor=5)

    return app


@pytest.fixture(scope="module")
def document(app) -> dict:
    return call(app.handle, "GET", "/_/openapi.json").json()


def conforms(document: dict, schema: dict, instance: object) -> None:
    """Validate instance against a schema whose $refs point into the document."""
    root = {**document, **schema}
    jsonschema.Draft202012Validator(root).validate(instance)


def test_the_served_document_is_valid_openapi_31(document):
    validate_spec(document)
    assert document["openapi"].startswith("3.1")


def test_every_route_is_described(app, document):
    described = {(path, method.upper()) for path, item in document["paths"].items() for method in item}

    assert described == {(route.path, route.method) for route in app.routes}


def test_bodies_are_closed_schemas_so_clients_see_mass_assignment_is_refused(document):
    operation = document["paths"]["/accounts"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["currency"]


def test_path_and_query_parameters_are_listed(document):
    get_one = document["paths"]["/accounts/{account_id}"]["get"]
    listing = document["paths"]["/accounts"]["get"]

    assert [(p["name"], p["in"], p["required"]) for p in get_one["parameters"]] == [
        ("account_id", "path", True)
    ]
    assert get_one["parameters"][0]["schema"]["maxLength"] == path_param_chars_max
    assert {(p["name"], p["in"], p["required"]) for p in listing["parameters"]} == {
        ("limit", "query", False),
        ("starting_after", "query", False),
    }


def test_scopes_and_error_responses_are_part_of_the_contract(document):
    operation = document["paths"]["/accounts"]["post"]

    assert operation["security"] == [{"bearerAuth": ["accounts:write"]}]
    assert {"201", "400", "401", "403", "413", "415", "422", "default"} <= set(operation["responses"])
    assert document["paths"]["/_/health"]["get"]["security"] == []


def test_real_responses_conform_to_the_document(app, document, minter):
    token = minter.mint(scopes=["accounts:read", "accounts:write"])
    cases = [
        ("POST", "/accounts", {"currency": "EUR"}, "201"),
        ("GET", "/accounts", None, "200"),
        ("GET", "/accounts/a-9", None, "200"),
    ]
    for method, path, body, status in cases:
        reply = call(app.handle, method, path, json_body=body, token=token)
        template = "/accounts/{account_id}" if path.startswith("/accounts/") else path
        response = document["paths"][template][method.lower()]["responses"][status]

        assert str(reply.status) == status
        conforms(document, response["content"]["application/json"]["schema"], reply.json())


def test_problem_responses_conform_to_the_problem_schema(app, document):
    reply = call(app.handle, "GET", "/accounts/a-1")

    conforms(document, {"$ref": "#/components/schemas/Problem"}, reply.json())


def test_a_nonconforming_body_is_caught_by_the_check(document):
    with pytest.raises(jsonschema.ValidationError):
        conforms(document, {"$ref": "#/components/schemas/Problem"}, {"title": "no type or status"})


def test_a_route_declares_its_own_responses_besides_the_generated_ones():
    app = FunctionApp("tokens")
    plain_error = {"description": "RFC 6749 error",
                   "content": {"application/json": {"schema": {"type": "object"}}}}

    @app.route("POST", "/token", auth=False, openapi={"responses": {"400": plain_error}, "description": "d"})
    def token(req: Request) -> dict:
        """Issue a token."""
        return {}

    document = call(app.handle, "GET", "/_/openapi.json").json()

    operation = document["paths"]["/token"]["post"]
    assert operation["responses"]["400"] == plain_error
    assert {"200", "413", "415", "500", "default"} <= set(operation["responses"])
    assert operation["description"] == "d"
