"""boto3 clients for the local tooling's three targets: embedded emulators, LocalStack, AWS.

Function code never needs this: botocore already resolves AWS_ENDPOINT_URL*. The command line
does, because a user may run `finfaas infra deploy` in a shell where nothing is exported yet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import boto3
from botocore.config import Config

TARGETS = ("embedded", "localstack", "aws")
EMBEDDED_DYNAMODB_ENDPOINT = "http://127.0.0.1:8000"
EMBEDDED_MOTO_ENDPOINT = "http://127.0.0.1:4566"
EMBEDDED_REGION = "us-east-1"
EMBEDDED_CREDENTIAL = "test"

CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 30
RETRY_ATTEMPTS_MAX = 3

CLIENT_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
    retries={"mode": "standard", "total_max_attempts": RETRY_ATTEMPTS_MAX},
)


def embedded_endpoint(service: str, environ: Mapping[str, str] | None = None) -> str:
    """The endpoint botocore would use for service, falling back to the embedded defaults."""
    environ = os.environ if environ is None else environ
    service_variable = f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}"
    if service == "dynamodb":
        return environ.get(service_variable) or EMBEDDED_DYNAMODB_ENDPOINT
    return environ.get(service_variable) or environ.get("AWS_ENDPOINT_URL") or EMBEDDED_MOTO_ENDPOINT


def region(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or EMBEDDED_REGION


def client(service: str, target: str = "embedded", environ: Mapping[str, str] | None = None):
    """A boto3 client for service on target, with explicit timeouts and bounded retries."""
    environ = os.environ if environ is None else environ
    if target == "embedded":
        return boto3.session.Session(
            aws_access_key_id=environ.get("AWS_ACCESS_KEY_ID") or EMBEDDED_CREDENTIAL,
            aws_secret_access_key=environ.get("AWS_SECRET_ACCESS_KEY") or EMBEDDED_CREDENTIAL,
            region_name=region(environ),
        ).client(service, endpoint_url=embedded_endpoint(service, environ), config=CLIENT_CONFIG)
    if target == "localstack":
        # localstack-client knows LocalStack's edge port and honours LOCALSTACK_HOST.
        from localstack_client.session import Session

        return Session(region_name=region(environ)).client(service, config=CLIENT_CONFIG)
    if target == "aws":
        return boto3.session.Session(region_name=region(environ)).client(service, config=CLIENT_CONFIG)
    raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
