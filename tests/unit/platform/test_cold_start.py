"""Cold start: answering /_/health must not pull in the AWS SDK, pynamodb, X-Ray or the JWT stack."""

from __future__ import annotations

import textwrap

from support.cold_start import cold_start_report

HEAVY_MODULES = ("boto3", "botocore", "pynamodb", "aws_xray_sdk", "jwt", "requests", "argon2", "flask")

CHILD = textwrap.dedent(
    """
    import io, json, sys
    from finfaas.platform import logging as finfaas_logging
    finfaas_logging.configure(stream=io.StringIO())
    from finfaas.platform.http import FunctionApp
    from finfaas_dev.testing.platform import Event

    app = FunctionApp("accounts")

    @app.route("GET", "/accounts/{account_id}", scopes=["accounts:read"])
    def get_account(req, account_id):
        return {}

    result = app.handle(Event("GET", "/_/health"), None)
    heavy = sorted(m for m in sys.argv[1].split(",") if m in sys.modules)
    print(json.dumps({"status": result["statusCode"], "heavy": heavy}))
    """
)


def test_health_needs_none_of_the_heavy_imports():
    report = cold_start_report(CHILD, HEAVY_MODULES)

    assert report == {"status": 200, "heavy": []}
