"""`finfaas business-date show|advance`: the market's business date, through the gateway (ledger function).

`advance` moves it forward (`--days N` or `--to YYYY-MM-DD`) on a stage in manual mode; in clock mode
the function refuses. Without `--token` the command signs in as the demo client of the running suite,
which holds the ops scope. Each advance sends a fresh Idempotency-Key unless `--idempotency-key` is
given: repeat that key to retry an advance whose answer was lost without moving the date twice.

Exit status: 0 done, 1 the function refused the request (its problem is printed), 2 no answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from finfaas_dev.transfers import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    GATEWAY_URL_DEFAULT,
    TOKEN_ENV,
    Unreachable,
    demo_ops_token,
    send,
)

PATH = "/function/ledger/_/ops/business-date"

# (method, query pairs, JSON body or None, headers) -> (HTTP status, parsed JSON body)
Call = Callable[[str, list[tuple[str, str]], dict[str, Any] | None, dict[str, str]], tuple[int, Any]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    for name, help_text in (("show", "the market's business date and its mode"),
                            ("advance", "move the business date forward (manual mode only)")):
        action = sub.add_parser(name, help=help_text)
        action.add_argument("--market", default="CN")
        action.add_argument("--token", help=f"an ops bearer token; default ${TOKEN_ENV} or the demo client")
        action.add_argument("--gateway", help="default $FINFAAS_GATEWAY_URL or " + GATEWAY_URL_DEFAULT)
        action.add_argument("--json", action="store_true", help="print the answer as JSON")
        if name == "advance":
            target = action.add_mutually_exclusive_group()
            target.add_argument("--days", type=int, help="calendar days forward (default 1)")
            target.add_argument("--to", help="the new business date, YYYY-MM-DD, after the current one")
            action.add_argument("--idempotency-key", help="default: a fresh one per run")


def run(args: argparse.Namespace, call: Call | None = None, out: Callable[[str], None] = print) -> int:
    try:
        call = call or _gateway_call(args)
        if args.action == "show":
            status, body = call("GET", [("market", args.market)], None, {})
        else:
            advance: dict[str, Any] = {"market": args.market}
            if args.to:
                advance["to"] = args.to
            else:
                advance["days"] = 1 if args.days is None else args.days
            key = args.idempotency_key or f"business-date-{uuid.uuid4()}"
            status, body = call("POST", [], advance, {"Idempotency-Key": key})
    except Unreachable as error:
        print(f"business-date: no answer from the gateway: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if status != 200:
        return _refused(status, body)
    out(json.dumps(body, indent=2) if args.json
        else f"{body['market']} {body['business_date']} ({body['mode']}, {body['time_zone']})")
    return EXIT_OK


def _refused(status: int, body: Any) -> int:
    problem = body if isinstance(body, dict) else {"detail": body}
    fields = [f"{e.get('field')}: {e.get('message')}" for e in problem.get("errors", [])]
    print(f"business-date: {status} {problem.get('code', '')} {problem.get('detail')}"
          + "".join(f"\n  {f}" for f in fields), file=sys.stderr)
    return EXIT_REFUSED


def _gateway_call(args: argparse.Namespace) -> Call:
    base = (args.gateway or os.environ.get("FINFAAS_GATEWAY_URL") or GATEWAY_URL_DEFAULT).rstrip("/")
    token = args.token or os.environ.get(TOKEN_ENV) or demo_ops_token(base)

    def call(method: str, query: list[tuple[str, str]], body: dict[str, Any] | None,
             headers: dict[str, str]) -> tuple[int, Any]:
        url = f"{base}{PATH}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        sent = {"Authorization": f"Bearer {token}", **headers}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        return send(urllib.request.Request(url, data=data, method=method, headers=sent))  # noqa: S310

    return call
