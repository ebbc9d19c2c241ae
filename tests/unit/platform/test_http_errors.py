"""How failures become answers: the error table, HTTP errors, unexpected exceptions, readiness."""

from __future__ import annotations

import pytest
from finfaas.platform.errors import Conflict, ErrorSpec, ErrorTable, TooManyRequests
from finfaas.platform.http import FunctionApp, Request, Response
from finfaas.platform.problems import FieldError, Problem
from finfaas_dev.testing.platform import call, captured_logs


class InsufficientFunds(Exception):
    """Domain error: the debit would overdraw the account."""


class OverdraftOnFrozenAccount(InsufficientFunds):
    """A more specific domain error; inherits its mapping."""


class CurrencyMismatch(Exception):
    """Domain error carrying field errors as plain pairs (the domain does not import the platform)."""

    def __init__(self) -> None:
        super().__init__("Both accounts must hold the same currency.")
        self.errors = (("to_account_id", "holds EUR, not USD"),)


class SecretLeak(Exception):
    """An unexpected failure whose message must never reach a client."""


def build_app() -> FunctionApp:
    errors = {
        InsufficientFunds: ErrorSpec(409, "insufficient_funds", "Insufficient funds"),
        CurrencyMismatch: ErrorSpec(422, "currency_mismatch", "Currency mismatch"),
    }
    app = FunctionApp("payments", errors=errors)

    @app.route("POST", "/debit/{kind}", auth=False)
    def debit(req: Request, kind: str) -> dict:
        """Fail in the requested way."""
        failures = {
            "funds": InsufficientFunds("Balance 100 is below 250."),
            "frozen": OverdraftOnFrozenAccount("Account is frozen."),
            "currency": CurrencyMismatch(),
            "conflict": Conflict("Transfer t-1 exists with a different amount."),
            "rate": TooManyRequests(retry_after_seconds=7),
            "bug": SecretLeak("password=hunter2 at db-host-7"),
        }
        raise failures[kind]

    @app.route("GET", "/mapped-message", auth=False)
    def mapped(req: Request) -> dict:
        """The table decides, not the message."""
        raise KeyError("insufficient_funds")

    return app


@pytest.fixture(scope="module")
def app() -> FunctionApp:
    return build_app()


def test_a_domain_error_is_mapped_through_the_table(app):
    reply = call(app.handle, "POST", "/debit/funds")

    assert reply.status == 409
    body = reply.json()
    assert body["type"] == "urn:finfaas:problem:insufficient_funds"
    assert body["code"] == "insufficient_funds"
    assert body["title"] == "Insufficient funds"
    assert body["detail"] == "Balance 100 is below 250."


def test_a_subclass_inherits_its_parents_mapping(app):
    reply = call(app.handle, "POST", "/debit/frozen")

    assert reply.status == 409 and reply.json()["code"] == "insufficient_funds"


def test_field_errors_carried_by_a_domain_error_are_listed(app):
    reply = call(app.handle, "POST", "/debit/currency")

    assert reply.status == 422
    assert reply.json()["errors"] == [{"field": "to_account_id", "message": "holds EUR, not USD"}]


def test_http_errors_raised_by_handlers_keep_their_status(app):
    reply = call(app.handle, "POST", "/debit/conflict")

    assert reply.status == 409
    assert reply.json()["code"] == "conflict"


def test_rate_limit_answers_429_with_retry_after(app):
    reply = call(app.handle, "POST", "/debit/rate")

    assert reply.status == 429
    assert reply.header("Retry-After") == "7"


def test_an_exception_whose_message_names_a_code_is_still_unmapped(app):
    assert call(app.handle, "GET", "/mapped-message").status == 500


def test_an_unexpected_exception_is_a_500_without_its_details(app):
    with captured_logs() as logs:
        reply = call(app.handle, "POST", "/debit/bug", headers={"X-Request-Id": "r-500"})

    assert reply.status == 500
    assert reply.json()["code"] == "internal_error"
    assert "hunter2" not in reply.body and "Traceback" not in reply.body and "SecretLeak" not in reply.body
    # ...but the logs have the stack trace, tied to the request id
    failure = next(line for line in logs.lines if line["msg"] == "unhandled exception")
    assert failure["request_id"] == "r-500"
    assert "SecretLeak" in failure["stack"] and "Traceback" in failure["stack"]


def test_a_failing_custom_renderer_still_answers_with_a_problem():
    app = FunctionApp("renderer")

    @app.exception_handler(ValueError)
    def render(error, req):
        raise RuntimeError("renderer bug")

    @app.route("GET", "/x", auth=False)
    def x(req):
        raise ValueError("boom")

    reply = call(app.handle, "GET", "/x")

    assert reply.status == 500 and reply.json()["code"] == "internal_error"


def test_custom_renderers_answer_in_their_own_format():
    app = FunctionApp("oauthish")

    @app.exception_handler(PermissionError)
    def render(error, req):
        return Response({"error": "access_denied"}, 400)

    @app.route("GET", "/x", auth=False)
    def x(req):
        raise PermissionError("no")

    reply = call(app.handle, "GET", "/x")

    assert reply.status == 400 and reply.json() == {"error": "access_denied"}


def test_readiness_is_503_naming_the_failed_check_without_its_error():
    app = FunctionApp("ledger")

    @app.readiness_check("config")
    def config_ok() -> None:
        return None

    @app.readiness_check("ledger-table")
    def table_reachable() -> None:
        raise ConnectionError("could not connect to http://10.0.0.7:8000 with key AKIA...")

    reply = call(app.handle, "GET", "/_/ready")

    assert reply.status == 503
    body = reply.json()
    assert body["code"] == "not_ready"
    assert body["errors"] == [{"field": "ledger-table", "message": "unavailable"}]
    assert "10.0.0.7" not in reply.body


def test_readiness_is_200_when_every_check_passes():
    app = FunctionApp("ledger")
    app.readiness_check("config")(lambda: None)

    reply = call(app.handle, "GET", "/_/ready")

    assert reply.status == 200 and reply.json() == {"status": "ready", "checks": ["config"]}


def test_liveness_answers_without_any_check():
    app = FunctionApp("ledger")

    @app.readiness_check("down")
    def down() -> None:
        raise ConnectionError("down")

    assert call(app.handle, "GET", "/_/health").json() == {"status": "ok"}


def test_http_errors_cannot_be_remapped_by_the_table():
    with pytest.raises(TypeError):
        ErrorTable({Conflict: ErrorSpec(400, "other", "Other")})


@pytest.mark.parametrize("status, code", [(200, "ok_code"), (409, "Bad Code"), (700, "x_y")])
def test_error_specs_must_be_error_statuses_and_snake_case_codes(status, code):
    with pytest.raises(ValueError):
        ErrorSpec(status, code, "Title")


def test_a_problem_body_has_every_rfc9457_member_and_extensions():
    problem = Problem(
        422, "validation_failed", "Validation failed", "Bad.", "/x", (FieldError("a", "b"),), {"k": 1}
    )

    assert problem.to_dict() == {
        "type": "urn:finfaas:problem:validation_failed",
        "title": "Validation failed",
        "status": 422,
        "detail": "Bad.",
        "instance": "/x",
        "code": "validation_failed",
        "errors": [{"field": "a", "message": "b"}],
        "k": 1,
    }


def test_problem_extensions_cannot_shadow_standard_members():
    with pytest.raises(ValueError):
        Problem(400, "bad_request", "Bad request", "x", extensions={"status": 200})
