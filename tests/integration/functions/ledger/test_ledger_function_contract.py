"""The ledger function's OpenAPI document: valid, complete, and true to what the function answers."""

from __future__ import annotations

import jsonschema
from finfaas_dev.testing.platform import call
from openapi_spec_validator import validate as validate_spec
from support.ledger_function_testing import CURRENCY


def document(ledger_function) -> dict:
    return call(ledger_function.module.handle, "GET", "/_/openapi.json").json()


def conforms(doc: dict, schema: dict, instance: object) -> None:
    jsonschema.Draft202012Validator({**doc, **schema}).validate(instance)


def test_the_document_is_valid_and_describes_every_route(ledger_function):
    doc = document(ledger_function)

    validate_spec(doc)
    described = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    assert described == {(r.path, r.method) for r in ledger_function.module.app.routes}


def test_money_routes_declare_the_key_and_their_refusals(ledger_function):
    doc = document(ledger_function)

    for path in ("/transfers", "/transfers/linked", "/pending", "/pending/{pending_id}/post",
                 "/pending/{pending_id}/void", "/transfers/{transfer_id}/reverse"):
        operation = doc["paths"][path]["post"]
        headers = [p for p in operation["parameters"] if p["in"] == "header"]
        assert [(h["name"], h["required"]) for h in headers] == [("Idempotency-Key", True)], path
        assert {"201", "400", "401", "403", "409", "422", "429"} <= set(operation["responses"]), path


def test_real_answers_conform_to_the_document(ledger_function, open_account, ids):
    doc = document(ledger_function)
    alice, bob = open_account("alice", funded_minor=1_000), open_account("bob")
    body = {"transfer_id": ids("t1"), "debit_account_id": alice, "credit_account_id": bob, "amount": 10,
            "currency": CURRENCY}

    created = ledger_function.post("/transfers", body, key=ids("k1"))
    read = ledger_function.get(f"/transfers/{ids('t1')}")
    balance = ledger_function.get(f"/accounts/{bob}/balance")
    refused = ledger_function.post("/transfers", {**body, "amount": 10**6, "transfer_id": ids("t2")},
                                   key=ids("k2"))

    paths = doc["paths"]
    conforms(doc, paths["/transfers"]["post"]["responses"]["201"]["content"]["application/json"]["schema"],
             created.json())
    conforms(doc, paths["/transfers/{transfer_id}"]["get"]["responses"]["200"]["content"]["application/json"]
             ["schema"], read.json())
    conforms(doc, paths["/accounts/{account_id}/balance"]["get"]["responses"]["200"]["content"]
             ["application/json"]["schema"], balance.json())
    assert refused.status == 409
    conforms(doc, {"$ref": "#/components/schemas/Problem"}, refused.json())
