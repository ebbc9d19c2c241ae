"""`finfaas transfers list`: a customer's transfers, or (`--ops`) the operators' view, through the gateway.

Customer view: the token's own transfers, newest first (`--token`, or FINFAAS_TOKEN), with the filters of
GET /transfers. Operator view: the counts of transfers not yet final and of those in flight for longer
than `--in-flight-older-than-s`, then the transfers waiting in each `--status` (default: AWAITING_REVIEW
and NEEDS_ATTENTION), oldest first. Without `--token` the operator view signs in as the demo client of
the running suite (`.finfaas/secrets`), which holds the ops scope.

Exit status: 0 done, 1 the function refused the request (its problem is printed), 2 no answer.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 2
GATEWAY_URL_DEFAULT = "http://127.0.0.1:8080"
TOKEN_ENV = "FINFAAS_TOKEN"  # noqa: S105 - the variable's name, not a token
OPS_STATUSES_DEFAULT = ("AWAITING_REVIEW", "NEEDS_ATTENTION")
list_limit_default = 20
pages_max = 50  # --all follows next_cursor at most this many pages
request_timeout_seconds = 10
in_flight_older_than_s_default = 60

# (path, query pairs) -> (HTTP status, parsed JSON body)
Fetch = Callable[[str, list[tuple[str, str]]], tuple[int, Any]]


class Unreachable(Exception):
    """The gateway did not answer."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="a customer's transfers, or the operators' view (--ops)")
    listing.add_argument("--ops", action="store_true",
                         help="counts and the transfers waiting per status (an operator's token)")
    listing.add_argument("--token", help=f"bearer token; default ${TOKEN_ENV}, or the demo client with --ops")
    listing.add_argument("--gateway", help="default $FINFAAS_GATEWAY_URL or " + GATEWAY_URL_DEFAULT)
    listing.add_argument("--status", action="append",
                         help="repeatable; customer: any of these; --ops: one list per status")
    listing.add_argument("--account", help="customer: the debit account or the payee's account here")
    listing.add_argument("--created-after", help="RFC 3339, e.g. 2026-01-31T00:00:00Z")
    listing.add_argument("--created-before", help="RFC 3339")
    listing.add_argument("--limit", type=int, default=list_limit_default, help="per page")
    listing.add_argument("--all", action="store_true", help=f"follow next_cursor (at most {pages_max} pages)")
    listing.add_argument("--in-flight-older-than-s", type=int, default=in_flight_older_than_s_default,
                         help="--ops: count transfers in flight for longer than this")
    listing.add_argument("--json", action="store_true", help="print the answers as JSON")


def run(args: argparse.Namespace, fetch: Fetch | None = None, out: Callable[[str], None] = print) -> int:
    try:
        fetch = fetch or _gateway_fetch(args)
        if args.ops:
            return _ops(args, fetch, out)
        return _customer(args, fetch, out)
    except Unreachable as error:
        print(f"transfers: no answer from the gateway: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE


def _customer(args: argparse.Namespace, fetch: Fetch, out: Callable[[str], None]) -> int:
    query = [("status", s) for s in args.status or ()]
    filters = (("account", args.account), ("created_after", args.created_after),
               ("created_before", args.created_before))
    query += [(name, value) for name, value in filters if value]
    found = _pages("/function/transfers/transfers", query, args, fetch)
    if isinstance(found, int):
        return found
    if args.json:
        out(json.dumps(found, indent=2))
        return EXIT_OK
    _table([("TRANSFER", "STATUS", "AMOUNT", "DEBIT", "PAYEE", "CREATED")]
           + [_row(t) for t in found["data"]], out)
    if found["has_more"]:
        out("... more (--all, or --limit)")
    return EXIT_OK


def _ops(args: argparse.Namespace, fetch: Fetch, out: Callable[[str], None]) -> int:
    status, summary = fetch("/function/transfers/_/ops/transfers/summary",
                            [("in_flight_older_than_s", str(args.in_flight_older_than_s))])
    if status != 200:
        return _refused(status, summary)
    lists: dict[str, Any] = {}
    window = [(name, value) for name, value in (("created_after", args.created_after),
                                                ("created_before", args.created_before)) if value]
    for wanted in args.status or OPS_STATUSES_DEFAULT:
        found = _pages("/function/transfers/_/ops/transfers", [("status", wanted), *window], args, fetch)
        if isinstance(found, int):
            return found
        lists[wanted] = found
    if args.json:
        out(json.dumps({"summary": summary, "lists": lists}, indent=2))
        return EXIT_OK
    counts = "  ".join(f"{name} {count}" for name, count in summary["counts"].items())
    out(f"as of {summary['as_of']}: {counts}")
    older = f"in flight for longer than {summary['in_flight_older_than_s']} s: {summary['in_flight_older']}"
    out(older + ("" if summary["complete"] else "  (counting stopped at its bound: at least these)"))
    for wanted, found in lists.items():
        out("")
        out(f"{wanted} (oldest first)")
        _table([("TRANSFER", "OWNER", "AMOUNT", "DEBIT", "PAYEE", "CREATED")]
               + [_ops_row(t) for t in found["data"]], out)
        if found["has_more"]:
            out("... more (--all, or --limit)")
    return EXIT_OK


def _pages(path: str, query: list[tuple[str, str]], args: argparse.Namespace,
           fetch: Fetch) -> dict[str, Any] | int:
    """The first page, or with --all every page (bounded), as one answer; an exit code on a refusal."""
    data: list[Any] = []
    cursor = None
    for _ in range(pages_max if args.all else 1):
        page_query = [*query, ("limit", str(args.limit))] + ([("starting_after", cursor)] if cursor else [])
        status, body = fetch(path, page_query)
        if status != 200:
            return _refused(status, body)
        data += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    return {"data": data, "has_more": cursor is not None}


def _refused(status: int, body: Any) -> int:
    problem = body if isinstance(body, dict) else {"detail": body}
    detail = problem.get("detail")
    fields = [f"{e.get('field')}: {e.get('message')}" for e in problem.get("errors", [])]
    print(f"transfers: {status} {detail}" + "".join(f"\n  {f}" for f in fields), file=sys.stderr)
    return EXIT_REFUSED


def _amount(view: dict[str, Any]) -> str:
    exponent, minor = int(view["exponent"]), int(view["amount_minor"])
    whole, fraction = divmod(minor, 10**exponent)
    number = f"{whole}.{fraction:0{exponent}d}" if exponent else str(whole)
    return f"{number} {view['currency']}"


def _payee(view: dict[str, Any]) -> str:
    creditor = view.get("creditor")
    if creditor:
        return " ".join(str(v) for v in creditor.values() if v)
    return view.get("credit_account_id") or ""


def _row(view: dict[str, Any]) -> tuple[str, ...]:
    return (view["transfer_id"], view["status"], _amount(view), view["debit_account_id"], _payee(view),
            view["created_at"])


def _ops_row(view: dict[str, Any]) -> tuple[str, ...]:
    return (view["transfer_id"], view["owner_id"], _amount(view), view["debit_account_id"], _payee(view),
            view["created_at"])


def _table(rows: list[tuple[str, ...]], out: Callable[[str], None]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# --- the gateway ----------------------------------------------------------------------------------


def _gateway_fetch(args: argparse.Namespace) -> Fetch:
    base = (args.gateway or os.environ.get("FINFAAS_GATEWAY_URL") or GATEWAY_URL_DEFAULT).rstrip("/")
    token = args.token or os.environ.get(TOKEN_ENV) or (demo_ops_token(base) if args.ops else None)
    if token is None:
        raise SystemExit(f"transfers: give the customer's token (--token or ${TOKEN_ENV})")

    def fetch(path: str, query: list[tuple[str, str]]) -> tuple[int, Any]:
        url = f"{base}{path}?{urllib.parse.urlencode(query)}"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
        return send(request)

    return fetch


def demo_ops_token(base: str) -> str:
    """A client_credentials token of the running suite's demo client, with the ops scope."""
    from finfaas.platform import config, keys

    path = Path(config.settings().secrets_dir) / keys.DEMO_CREDENTIALS_FILE
    try:
        demo = json.loads(path.read_text())
    except (OSError, ValueError):
        raise SystemExit(f"no demo client at {path}: give an operator's token (--token)") from None
    basic = base64.b64encode(f"{demo['client_id']}:{demo['client_secret']}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - the suite's own gateway
        f"{base}/function/auth/oauth/token", data=b"grant_type=client_credentials&scope=ops", method="POST",
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"})
    status, body = send(request)
    if status != 200:
        raise SystemExit(f"the demo client was refused a token: {status} {body}")
    return str(body["access_token"])


def send(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=request_timeout_seconds) as reply:  # noqa: S310
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read())
        except ValueError:
            return error.code, error.reason
    except (urllib.error.URLError, OSError) as error:
        raise Unreachable(str(error)) from None
