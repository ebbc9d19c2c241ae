"""Every function's served OpenAPI document, fuzzed with schemathesis through the gateway.

Each function of stack.yml runs as a process behind the local gateway on the embedded emulators.
For every operation its document declares, schemathesis sends generated requests, valid and
invalid, and checks each answer: no 5xx, and status code, content type and body as declared.
A bounded, derandomized run: the same requests every time, a few minutes at most.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import hypothesis
import pytest
import requests
import schemathesis
from finfaas.local import stackfile
from finfaas.local.bench.transfers import write_suite_secrets
from fixtures.gateway_harness import free_port, http, wait_for
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
STACK_PATH = REPOSITORY_ROOT / "stack.yml"
FUNCTIONS = sorted(stackfile.load_stack(STACK_PATH).functions)
OPENAPI_PATH = "/_/openapi.json"
GATEWAY_READY_SECONDS_MAX = 30
STOP_SECONDS_MAX = 20
DOCUMENT_SECONDS_MAX = 30  # the first request to a function includes its cold start
REQUEST_TIMEOUT_SECONDS = 20
TOKEN_LIFETIME_SECONDS = 3600
# Bounds of the run: each operation gets at most this many generated requests per mode
# (valid and invalid data), and a share of the whole run's time.
EXAMPLES_PER_MODE_MAX = 15
FUZZ_SECONDS_MAX = 120
RELAY_RUN_SECONDS = 1  # POST / on the relay relays for this long (50 s when deployed)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FAILURE_CHARS_MAX = 600  # of one failure's message in the report


@dataclass
class Suite:
    """The running gateway, the documents it serves and the tokens the fuzzer sends."""

    base_url: str
    customer_token: str
    client_token: str
    documents: dict[str, dict] = field(default_factory=dict)


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


def _tokens() -> tuple[str, str]:
    """A customer's token with every customer scope, and an app's with every scope the suite checks."""
    from finfaas.platform import config
    from finfaas.platform.keys import load_keyring
    from finfaas.platform.testing import TokenMinter
    from finfaas.services.auth_customers import CUSTOMER_SCOPES

    settings = config.auth_settings()
    minter = TokenMinter(load_keyring(), settings.issuer, settings.audience)

    def token(sub: str, scopes, kind: str) -> str:
        claims = minter.claims(sub, sorted(scopes), kind, lifetime_seconds=TOKEN_LIFETIME_SECONDS)
        return minter.sign(claims)

    return token("fuzz-customer", CUSTOMER_SCOPES, "customer"), token("fuzz-app", _all_scopes(), "client")


def _all_scopes() -> set[str]:
    from finfaas.platform.keys import DEMO_CLIENT_SCOPES, SERVICE_CLIENTS

    scopes = set(DEMO_CLIENT_SCOPES)
    for client_scopes in SERVICE_CLIENTS.values():
        scopes.update(client_scopes)
    return scopes


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
    log = (folder / "gateway.log").open("wb")
    command = [sys.executable, "-m", "finfaas.local.gateway", "--stack", str(STACK_PATH),
               "--port", str(port), "--logs-dir", str(folder / "functions")]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPOSITORY_ROOT)
    try:
        wait_for(lambda: _answers(base_url + "/healthz"), GATEWAY_READY_SECONDS_MAX, "the gateway")
        customer_token, client_token = _tokens()
        yield Suite(base_url, customer_token, client_token)
    finally:
        process.terminate()
        process.wait(STOP_SECONDS_MAX)
        log.close()


def _answers(url: str) -> bool:
    try:
        return http("GET", url, timeout=1).status == 200
    except OSError:
        return False


def _document(suite: Suite, function: str) -> dict:
    reply = wait_for(
        lambda: (r := http("GET", f"{suite.base_url}/function/{function}{OPENAPI_PATH}",
                           timeout=DOCUMENT_SECONDS_MAX)).status == 200 and r,
        DOCUMENT_SECONDS_MAX,
        f"{function}'s OpenAPI document",
    )
    return reply.json()


def _auth_headers(suite: Suite, operation) -> dict[str, str]:
    """A customer's token where a customer may call the operation; otherwise the app's."""
    from finfaas.services.auth_customers import CUSTOMER_SCOPES

    security = operation.definition.raw.get("security") or []
    if not security:
        return {}
    scopes = {scope for requirement in security for scopes in requirement.values() for scope in scopes}
    token = suite.customer_token if scopes <= CUSTOMER_SCOPES else suite.client_token
    return {"Authorization": f"Bearer {token}"}


def _fuzz_operation(suite: Suite, function: str, operation, seconds_max: float) -> list[Finding]:
    """Up to EXAMPLES_PER_MODE_MAX requests per mode within seconds_max; the checks that failed."""
    base_url = f"{suite.base_url}/function/{function}"
    headers = _auth_headers(suite, operation)
    session = requests.Session()
    findings: dict[tuple[str, str], Finding] = {}
    deadline = time.monotonic() + seconds_max
    sent = 0

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_MODE_MAX * 2,
        derandomize=True,
        deadline=None,
        database=None,
        # Failures are collected, not raised, so there is nothing to shrink.
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    ).filter(_reaches_the_function))
    def fuzz(case) -> None:
        nonlocal sent
        # The first request always goes out, so every operation is exercised however loaded the machine.
        if sent and time.monotonic() > deadline:
            return
        sent += 1
        try:
            case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=CHECKS,
                                   timeout=REQUEST_TIMEOUT_SECONDS)
        except FailureGroup as group:
            for failure in group.exceptions:
                _keep(findings, function, operation.label, failure, case, base_url, headers)
        except AssertionError as failure:
            _keep(findings, function, operation.label, failure, case, base_url, headers)

    fuzz()
    return list(findings.values())


def _reaches_the_function(case) -> bool:
    """Whether the template's Flask route can match the path: its `<path:path>` never spans a newline.

    Such a request is answered by Flask itself (a text/html 404) before any function code runs, in the
    OpenFaaS container as here; it says nothing about the function or its document.
    """
    # schemathesis keeps path parameters percent-encoded, as they are sent
    values = (case.path_parameters or {}).values()
    return not any("\n" in unquote(str(value)) for value in values)


def _keep(findings, function, label, failure, case, base_url, headers) -> None:
    check = getattr(failure, "title", None) or type(failure).__name__
    if (label, check) not in findings:
        shown = {**headers, "Authorization": "Bearer <token>"} if headers else None
        reproduce = case.as_curl_command(headers=shown, base_url=base_url)
        message = getattr(failure, "message", None) or str(failure)
        findings[(label, check)] = Finding(function, label, check, message, reproduce)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_operation_answers_as_its_document_declares(suite, function):
    # GIVEN the document the function serves
    document = _document(suite, function)
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"{function} declares no operation"
    # WHEN each operation gets its share of the run's time (the whole run is split across functions)
    seconds_max = FUZZ_SECONDS_MAX / len(FUNCTIONS) / len(operations)
    findings: list[Finding] = []
    for operation in operations:
        findings += _fuzz_operation(suite, function, operation, seconds_max)
    # THEN no answer was a server error or differed from what the document declares
    assert not findings, (
        f"{len(findings)} failed check(s) on {function}:\n" + "\n".join(str(f) for f in findings)
    )
