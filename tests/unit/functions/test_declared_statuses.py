"""Routes that answer 204 No Content say so in their function's OpenAPI document, as clients read it."""

from __future__ import annotations

import pytest
from finfaas_dev.testing.platform import call, load_function_handler


@pytest.mark.parametrize(("function", "method", "path"), [
    ("transfers", "put", "/_/ops/customers/{customer_id}/tier"),
    ("risk", "delete", "/_/ops/blocklist/{kind}/{value}"),
    ("webhooks", "delete", "/subscriptions/{subscription_id}"),
])
def test_a_route_answering_no_content_declares_204_and_no_200(function, method, path):
    handler = load_function_handler(function)

    responses = call(handler.handle, "GET", "/_/openapi.json").json()["paths"][path][method]["responses"]

    assert "204" in responses and "content" not in responses["204"]
    assert "200" not in responses
