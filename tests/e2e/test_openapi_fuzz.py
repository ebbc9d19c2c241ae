"""Every function's served OpenAPI document, fuzzed with schemathesis through the gateway.

Each function of stack.yml runs as a process behind the local gateway on the embedded emulators.
For every operation its document declares, schemathesis sends generated requests, valid and
invalid, and checks each answer: no 5xx, and status code, content type, headers and body as declared.
A bounded, derandomized run: the same requests every time, a few minutes at most.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
from finfaas_dev import stackfile
from finfaas_dev.bench.transfers import write_suite_secrets
from finfaas_dev.net import free_port, wait_for
from finfaas_dev.testing.platform import REPOSITORY_ROOT
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.gateway_harness import GatewayProcess, http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

STACK_PATH = REPOSITORY_ROOT / "stack.yml"
FUNCTIONS = sorted(stackfile.load_stack(STACK_PATH).functions)
OPENAPI_PATH = "/_/openapi.json"
DOCUMENT_SECONDS_MAX = 30  # the first request to a function includes its cold start
REQUEST_TIMEOUT_SECONDS = 20
TOKEN_LIFETIME_SECONDS = 3600
# Bounds of the run: each operation gets at most this many generated requests per mode (valid and
# invalid data), and an equal share of what is left of the whole run's time when its turn comes.
EXAMPLES_PER_MODE_MAX = 15
FUZZ_SECONDS_MAX = 60
RELAY_RUN_SECONDS = 1  # POST / on the relay relays for this long (50 s when deployed)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FAILURE_CHARS_MAX = 600  # of one failure's message in the report
ANSWER_CHARS_MAX = 300  # of the answer's body shown with a failure
REFUSED_BY_AUTH = frozenset({401, 403})
# Tokens stay out of the report; everything else shows as sent, so a failure can be replayed.
SCHEMATHESIS_CONFIG = schemathesis.Config.from_dict(
    {"output": {"sanitization": {"keys-to-sanitize": ["authorization"]}}}
)


@dataclass
class Suite:
    """The running gateway, the documents it serves and the tokens the fuzzer sends."""

    base_url: str
    customer_token: str
    client_token: str
    documents: dict[str, dict]
    known_ids: dict[str, str]  # path parameter name -> the id of a resource that exists
    deadline: float  # time.monotonic() by which the run ends
    operations_left: int


@dataclass
class Finding:
    """One check that failed on one operation, with a request that reproduces it."""

    function: str
    operation: str
    check: str
    message: str
    reproduce: str

    def __str__(self) -> str:
        message = self.message.strip()[:FAILURE_CHARS_MAX]
        return f"{self.function} {self.operation}: {self.check}\n    {message}\n    {self.reproduce}"


def _tokens(documents: dict[str, dict]) -> tuple[str, str]:
    """A customer's token with every customer scope, and an app's with every scope the documents name."""
    from finfaas.platform import config
    from finfaas.platform.keys import load_keyring
    from finfaas.services.auth.service import CUSTOMER_SCOPES
    from finfaas_dev.testing.platform import TokenMinter

    settings = config.auth_settings()
    minter = TokenMinter(load_keyring(), settings.issuer, settings.audience)

    def token(sub: str, scopes, kind: str) -> str:
        claims = minter.claims(sub, sorted(scopes), kind, lifetime_seconds=TOKEN_LIFETIME_SECONDS)
        return minter.sign(claims)

    every_scope = {scope for document in documents.values() for operation in _operations(document)
                   for scope in _scopes(operation)}
    return token("fuzz-customer", CUSTOMER_SCOPES, "customer"), token("fuzz-app", every_scope, "client")


def _operations(document: dict) -> list[dict]:
    return [operation for item in document.get("paths", {}).values() for operation in item.values()]


def _scopes(operation: dict) -> set[str]:
    return {scope for requirement in operation.get("security") or [] for scopes in requirement.values()
            for scope in scopes}


@pytest.fixture(scope="module")
def suite(embedded_aws, tmp_path_factory):
    """Every function of stack.yml behind the gateway, on this session's emulators."""
    from finfaas.platform import keys

    folder = tmp_path_factory.mktemp("openapi-fuzz")
    secrets_dir = Path(os.environ["FINFAAS_SECRETS_DIR"])
    write_suite_secrets(secrets_dir)
    keys.ensure_service_clients(secrets_dir, out=lambda line: None)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **embedded_aws.env(),
        "FINFAAS_GATEWAY_URL": base_url,
        "FINFAAS_JWKS_URL": f"{base_url}/function/auth/.well-known/jwks.json",
        "FINFAAS_WEBHOOK_TARGETS": "loopback",
        "FINFAAS_RELAY_RUN_SECONDS": str(RELAY_RUN_SECONDS),
    }
    gateway = GatewayProcess(folder, ["--logs-dir", str(folder / "functions")], env=env, stack=STACK_PATH,
                             port=port, cwd=REPOSITORY_ROOT)
    try:
        # Fetching every document first also takes every function's cold start out of the fuzzing time.
        documents = {function: _document(base_url, function) for function in FUNCTIONS}
        customer_token, client_token = _tokens(documents)
        known_ids = _funded_account(base_url, customer_token, client_token)
        operations = sum(len(_operations(document)) for document in documents.values())
        yield Suite(base_url, customer_token, client_token, documents, known_ids,
                    time.monotonic() + FUZZ_SECONDS_MAX, operations)
    finally:
        gateway.stop()


def _funded_account(base_url: str, customer_token: str, client_token: str) -> dict[str, str]:
    """The fuzzing customer's account with a deposit on it, so reads of it go past "not found"."""
    def post(path: str, token: str, body: dict) -> dict:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "Idempotency-Key": f"fuzz-{path.rsplit('/', 1)[-1]}"}
        reply = http("POST", base_url + path, json.dumps(body).encode(), headers,
                     timeout=REQUEST_TIMEOUT_SECONDS)
        assert reply.status in (200, 201), (path, reply.status, reply.body)
        return reply.json()

    account_id = post("/function/accounts/accounts", customer_token, {"currency": "USD"})["account_id"]
    post("/function/ledger/_/ops/system-accounts", client_token, {"currency": "USD"})
    deposit = {"transfer_id": "fuzz-deposit", "debit_account_id": "sys-funding-USD",
               "credit_account_id": account_id, "amount": 10_000, "currency": "USD"}
    transfer_id = post("/function/ledger/transfers", client_token, deposit)["transfer_id"]
    return {"account_id": account_id, "transfer_id": transfer_id}


def _document(base_url: str, function: str) -> dict:
    reply = wait_for(
        lambda: (r := http("GET", f"{base_url}/function/{function}{OPENAPI_PATH}",
                           timeout=DOCUMENT_SECONDS_MAX)).status == 200 and r,
        DOCUMENT_SECONDS_MAX,
        f"{function}'s OpenAPI document",
    )
    return reply.json()


def _auth_headers(suite: Suite, operation) -> dict[str, str]:
    """A customer's token where a customer may call the operation; otherwise the app's."""
    from finfaas.services.auth.service import CUSTOMER_SCOPES

    if not operation.definition.raw.get("security"):
        return {}
    scopes = _scopes(operation.definition.raw)
    token = suite.customer_token if scopes <= CUSTOMER_SCOPES else suite.client_token
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Outcome:
    """What one operation's requests met: the statuses answered and the checks that failed."""

    authenticated: bool  # the requests carried a token
    statuses: Counter[int] = field(default_factory=Counter)
    findings: dict[str, Finding] = field(default_factory=dict)  # by check: the first request that failed it


def _fuzz_operation(suite: Suite, function: str, operation) -> Outcome:
    """Up to EXAMPLES_PER_MODE_MAX requests per mode, within this operation's share of the time left."""
    base_url = f"{suite.base_url}/function/{function}"
    headers = _auth_headers(suite, operation)
    session = requests.Session()
    outcome = Outcome(authenticated=bool(headers))
    deadline = time.monotonic() + max(0.0, suite.deadline - time.monotonic()) / suite.operations_left
    suite.operations_left -= 1

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_MODE_MAX * 2,
        derandomize=True,
        deadline=None,
        database=None,
        # Failures are collected, not raised, so there is nothing to shrink.
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=st.one_of(*_strategies(suite, operation)))
    def fuzz(case) -> None:
        # The first request always goes out, so every operation is exercised however loaded the machine.
        if outcome.statuses and time.monotonic() > deadline:
            return
        response = case.call(base_url=base_url, session=session, headers=headers,
                             timeout=REQUEST_TIMEOUT_SECONDS)
        outcome.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                _keep(outcome, function, failure, case, response, base_url)
        except AssertionError as failure:
            _keep(outcome, function, failure, case, response, base_url)

    fuzz()
    return outcome


def _strategies(suite: Suite, operation) -> list:
    """Valid and invalid requests; where a path names a resource the suite has, also valid ones for it."""
    strategies = [operation.as_strategy(mode) for mode in schemathesis.GenerationMode]
    names = {parameter["name"] for parameter in operation.definition.raw.get("parameters", [])
             if parameter["in"] == "path"}
    if names and names <= set(suite.known_ids):
        known = {name: suite.known_ids[name] for name in names}
        strategies.append(operation.as_strategy(schemathesis.GenerationMode.POSITIVE, path_parameters=known))
    return strategies


def _keep(outcome: Outcome, function: str, failure: AssertionError, case, response, base_url: str) -> None:
    check = getattr(failure, "title", None) or type(failure).__name__
    if check in outcome.findings:
        return
    message = getattr(failure, "message", None) or str(failure)
    answer = response.content[:ANSWER_CHARS_MAX].decode("utf-8", "replace")
    outcome.findings[check] = Finding(
        function,
        case.operation.label,
        check,
        f"{message}\n    answered {response.status_code}: {answer}",
        case.as_curl_command(base_url=base_url),
    )


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_operation_answers_as_its_document_declares(suite, function):
    # GIVEN the document the function serves
    schema = schemathesis.openapi.from_dict(suite.documents[function], config=SCHEMATHESIS_CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"{function} declares no operation"
    # WHEN each operation is sent generated requests, valid and invalid, with a token where it needs one
    outcomes = {operation.label: _fuzz_operation(suite, function, operation) for operation in operations}
    # THEN no answer was a server error or differed from what the document declares
    findings = [finding for outcome in outcomes.values() for finding in outcome.findings.values()]
    assert not findings, (
        f"{len(findings)} failed check(s) on {function}:\n" + "\n".join(str(f) for f in findings)
    )
    # AND the tokens were accepted, so the requests reached what lies behind authentication
    refused = [label for label, outcome in outcomes.items()
               if outcome.authenticated and set(outcome.statuses) <= REFUSED_BY_AUTH]
    assert not refused, f"every request refused (401/403) on {function}: {refused}"
