"""Request logs: one JSON line per request with its context; personal data and credentials redacted."""

from __future__ import annotations

import pytest
from finfaas.platform.http import FunctionApp, Request
from finfaas.platform.logging import REDACTED, get_logger, is_sensitive_key, redact, scrub_text
from finfaas_dev.testing.platform import call, captured_logs

TRACE_ROOT = "1-5759e988-bd862e3fe1be46a994272793"


@pytest.fixture(scope="module")
def app(minter) -> FunctionApp:
    app = FunctionApp("customers", verifier=minter.verifier())
    log = get_logger("customers")

    @app.route("GET", "/customers/{customer_id}", scopes=["customers:read"])
    def get_customer(req: Request, customer_id: str) -> dict:
        """Read a customer."""
        log.info("customer read", customer_id=customer_id, name="Ada Lovelace", national_id="AB123456C")
        return {"customer_id": customer_id}

    return app


def test_one_json_line_per_request_with_its_context(app, minter):
    token = minter.mint(sub="cust-9", scopes=["customers:read"])
    headers = {
        "X-Request-Id": "req-77",
        "X-Amzn-Trace-Id": f"Root={TRACE_ROOT};Parent=53995c3f42cd8ad8;Sampled=1",
    }

    with captured_logs() as logs:
        call(app.handle, "GET", "/customers/c-1", token=token, headers=headers)

    [line] = logs.requests()
    assert line["level"] == "info"
    assert line["ts"].endswith("Z")
    assert line["function"] == "customers"
    assert line["method"] == "GET"
    assert line["route"] == "/customers/{customer_id}"
    assert line["path"] == "/customers/c-1"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["request_id"] == "req-77"
    assert line["trace_id"] == TRACE_ROOT
    assert line["sub"] == "cust-9"


def test_failed_requests_are_logged_too_with_their_problem_code(app):
    with captured_logs() as logs:
        call(app.handle, "GET", "/customers/c-1")

    [line] = logs.requests()
    assert line["status"] == 401 and line["error_code"] == "unauthorized" and "sub" not in line


def test_a_trace_id_is_made_up_when_none_arrives(app):
    with captured_logs() as logs:
        call(app.handle, "GET", "/_/health")

    assert logs.requests()[0]["trace_id"].startswith("1-")


def test_lines_written_by_handlers_carry_the_request_context_and_no_pii(app, minter):
    token = minter.mint(sub="cust-9", scopes=["customers:read"])

    with captured_logs() as logs:
        call(app.handle, "GET", "/customers/c-1", token=token, headers={"X-Request-Id": "req-78"})

    line = next(line for line in logs.lines if line["msg"] == "customer read")
    assert line["request_id"] == "req-78" and line["sub"] == "cust-9"
    assert line["customer_id"] == "c-1"
    assert line["name"] == REDACTED and line["national_id"] == REDACTED
    assert "Ada Lovelace" not in logs.text and "AB123456C" not in logs.text


def test_the_bearer_token_never_reaches_the_logs(app, minter):
    token = minter.mint(scopes=["customers:read"])

    with captured_logs() as logs:
        call(app.handle, "GET", "/customers/c-1", token=token)

    assert token not in logs.text and token.split(".")[1] not in logs.text


@pytest.mark.parametrize(
    "key",
    [
        "name", "first_name", "customerName", "national_id", "nationalId", "phone", "phone_number",
        "password", "token", "access_token", "refreshToken", "authorization", "Authorization",
        "X-Authorization", "client_secret", "email", "iban",
    ],
)  # fmt: skip
def test_sensitive_keys_are_recognised_in_any_spelling(key):
    assert is_sensitive_key(key)


@pytest.mark.parametrize(
    "key",
    ["customer_id", "amount_minor", "currency", "status", "route", "table_name", "state_name", "token_type"],
)
def test_operational_keys_are_kept(key):
    assert not is_sensitive_key(key)


def test_redaction_reaches_nested_structures():
    record = {
        "transfer_id": "t-1",
        "payer": {"name": "Ada", "accounts": [{"iban": "GB33BUKB20201555555555", "id": "a-1"}]},
        "headers": {"Authorization": "Bearer abc"},
    }

    assert redact(record) == {
        "transfer_id": "t-1",
        "payer": {"name": REDACTED, "accounts": [{"iban": REDACTED, "id": "a-1"}]},
        "headers": {"Authorization": REDACTED},
    }


def test_free_text_loses_tokens_and_credential_assignments():
    jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjdXN0In0.c2lnbmF0dXJl"
    text = f"login failed password=hunter2 header Bearer {jwt_like} and token: 'abc123'"

    scrubbed = scrub_text(text)

    assert "hunter2" not in scrubbed and jwt_like not in scrubbed and "abc123" not in scrubbed
    assert "login failed" in scrubbed


def test_exception_stacks_are_scrubbed_too():
    log = get_logger("test")

    with captured_logs() as logs:
        try:
            raise RuntimeError("connect failed password=hunter2")
        except RuntimeError:
            log.exception("store call failed")

    [line] = logs.lines
    assert "RuntimeError" in line["stack"] and "hunter2" not in logs.text
