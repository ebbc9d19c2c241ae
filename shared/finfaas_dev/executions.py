"""`finfaas executions list|describe|redrive|stop`: the orchestrator's executions.

`list` and `describe` read DynamoDB directly; `describe` prints the execution and the path it took:
each state entered, with its task attempts, retries, failures and how it was left. `redrive <id>` and
`stop <id> --reason` ask the orchestrator through the gateway (POST /_/ops/executions/{id}/redrive|stop)
with an operator's token (`--token`, $FINFAAS_TOKEN, or the running suite's demo client).

Exit status: 0 done, 1 no such execution (or, for redrive and stop, the orchestrator refused: its
problem is printed), 2 the store (or the gateway) did not answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from finfaas.workflow.model import Execution, HistoryEvent, Status

from finfaas_dev.transfers import GATEWAY_URL_DEFAULT, TOKEN_ENV, Unreachable, demo_ops_token, send

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_STORE_UNAVAILABLE = 2
list_limit_default = 20
history_page_events = 1000
detail_chars_max = 160


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="executions by status, newest first")
    listing.add_argument(
        "--status",
        choices=[s.value for s in Status],
        action="append",
        help="repeatable; default: every status",
    )
    listing.add_argument("--state-machine", help="only this state machine")
    listing.add_argument("--reference", help="only executions of this business reference (a transfer id)")
    listing.add_argument("--started-after", type=_moment, help="RFC 3339, inclusive (2026-01-31T00:00:00Z)")
    listing.add_argument("--started-before", type=_moment, help="RFC 3339, exclusive")
    listing.add_argument("--limit", type=int, default=list_limit_default, help="per status")
    describe = sub.add_parser("describe", help="one execution and the path it took")
    describe.add_argument("execution_id", help="<state_machine>:<name>")
    describe.add_argument("--json", action="store_true", help="print the execution and history as JSON")
    for command in (listing, describe):
        command.add_argument("--executions-table", help="default finfaas-<stage>-executions")
        command.add_argument("--history-table", help="default finfaas-<stage>-history")
    redrive = sub.add_parser("redrive", help="resume a FAILED, TIMED_OUT or ABORTED execution")
    stop = sub.add_parser("stop", help="stop a RUNNING execution (its Catch compensates, else ABORTED)")
    stop.add_argument("--reason", required=True, help="why; kept in the history and the execution")
    for command in (redrive, stop):
        command.add_argument("execution_id", help="<state_machine>:<name>")
        command.add_argument("--token", help=f"an operator's token; default ${TOKEN_ENV} or the demo client")
        command.add_argument("--gateway", help="default $FINFAAS_GATEWAY_URL or " + GATEWAY_URL_DEFAULT)


# (path, JSON body) -> (HTTP status, parsed JSON body)
Post = Callable[[str, dict[str, Any]], tuple[int, Any]]


def run(
    args: argparse.Namespace, store: Any = None, out: Callable[[str], None] = print, post: Post | None = None
) -> int:
    if args.action in ("redrive", "stop"):
        return _operate(args, post, out)
    from finfaas.workflow.store import ExecutionStoreError

    if store is None:
        from finfaas.store.executions_store import ExecutionsStore  # boto3 and pynamodb load only when used

        store = ExecutionsStore(args.executions_table, args.history_table)
    try:
        if args.action == "list":
            return _list(store, args, out)
        return _describe(store, args, out)
    except ExecutionStoreError as error:
        print(f"executions: cannot read the store: {error.__cause__ or error}", file=sys.stderr)
        return EXIT_STORE_UNAVAILABLE


def _operate(args: argparse.Namespace, post: Post | None, out: Callable[[str], None]) -> int:
    """POST the redrive or stop to the orchestrator; print the execution it answers with, or its problem."""
    body = {"reason": args.reason} if args.action == "stop" else {}
    quoted = urllib.parse.quote(args.execution_id, safe=":")
    path = f"/function/orchestrator/_/ops/executions/{quoted}/{args.action}"
    try:
        status, answer = (post or _gateway_post(args))(path, body)
    except Unreachable as error:
        print(f"executions: no answer from the gateway: {error}", file=sys.stderr)
        return EXIT_STORE_UNAVAILABLE
    if status != 200:
        detail = answer.get("detail") if isinstance(answer, dict) else answer
        code = answer.get("code") if isinstance(answer, dict) else status
        print(f"executions: {args.action} refused ({status} {code}): {detail}", file=sys.stderr)
        return EXIT_NOT_FOUND
    where = answer.get("current_state") or answer.get("error") or ""
    out(f"{answer['execution_id']}  {answer['status']}  {where}  redrives {answer.get('redrive_count', 0)}")
    return EXIT_OK


def _gateway_post(args: argparse.Namespace) -> Post:
    base = (args.gateway or os.environ.get("FINFAAS_GATEWAY_URL") or GATEWAY_URL_DEFAULT).rstrip("/")
    token = args.token or os.environ.get(TOKEN_ENV) or demo_ops_token(base)

    def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        request = urllib.request.Request(  # noqa: S310 - the suite's own gateway
            f"{base}{path}", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        return send(request)

    return post


def _list(store: Any, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    from finfaas.workflow.store import ExecutionFilter

    where = ExecutionFilter(args.reference, args.started_after, args.started_before)
    # A reference's executions are few and indexed across statuses: one list of them all.
    statuses: list[Status | None] = (
        [Status(s) for s in args.status] if args.status else [None] if args.reference else list(Status)
    )
    rows = [("EXECUTION", "STATUS", "STATE", "STARTED", "STOPPED / NEXT")]
    for status in statuses:
        page = store.list(status, args.limit, state_machine=args.state_machine, where=where)
        rows += [_row(execution) for execution in page.executions]
        if page.has_more:
            which = f"{status.value} " if status else ""
            rows.append((f"... more {which}executions (--limit)", "", "", "", ""))
    _table(rows, out)
    return EXIT_OK


def _moment(text: str) -> int:
    """An RFC 3339 time as epoch ms."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. Z): {text!r}")
    return int(moment.timestamp() * 1000)


def _row(execution: Execution) -> tuple[str, ...]:
    running = execution.status is Status.RUNNING
    where = f"{execution.state} ({execution.phase.value})" if running else (execution.error or "")
    return (
        execution.execution_id,
        execution.status.value,
        where,
        _time(execution.started_at_ms),
        _time(execution.next_run_at_ms),
    )


def _describe(store: Any, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    execution = store.get(args.execution_id)
    if execution is None:
        print(f"executions: no execution {args.execution_id}", file=sys.stderr)
        return EXIT_NOT_FOUND
    events = list(_all_events(store, execution.execution_id))
    if args.json:
        out(
            json.dumps(
                {"execution": _execution_json(execution), "history": [e.__dict__ for e in events]},
                indent=2,
                default=str,
            )
        )
        return EXIT_OK
    for line in describe_lines(execution, events):
        out(line)
    return EXIT_OK


def _all_events(store: Any, execution_id: str) -> Iterable[HistoryEvent]:
    after = 0
    while True:
        page = store.history(execution_id, after, history_page_events)
        yield from page
        if len(page) < history_page_events:
            return
        after = page[-1].seq


def describe_lines(execution: Execution, events: list[HistoryEvent]) -> list[str]:
    """The execution's summary, then its path: one line per state entered, indented lines for what
    happened inside it."""
    lines = [
        f"execution   {execution.execution_id}",
        f"status      {execution.status.value}"
        + (f" in {execution.state} ({execution.phase.value})" if execution.status is Status.RUNNING else ""),
        f"started     {_time(execution.started_at_ms)}",
        ("next look   " if execution.status is Status.RUNNING else "stopped     ")
        + _time(execution.next_run_at_ms),
        f"input       {_short(execution.input)}",
    ]
    if execution.output is not None:
        lines.append(f"output      {_short(execution.output)}")
    if execution.error:
        lines.append(f"error       {execution.error}: {_short(execution.cause)}")
    if execution.reference:
        lines.append(f"reference   {execution.reference}")
    if execution.redrive_count:
        lines.append(f"redriven    {execution.redrive_count} time(s)")
    if execution.stop_reason:
        lines.append(f"stopping    {_short(execution.stop_reason)} (its Catch runs the compensation)")
    lines += ["", "path:"]
    step = 0
    for event in events:
        if event.type == "StateEntered":
            step += 1
            lines.append(f"{step:3d}. {event.state} ({event.detail.get('type')})  {_time(event.at_ms)}")
        elif event.type not in ("ExecutionStarted", "StateExited") or event.detail.get("caught"):
            lines.append(f"       {_event_text(event)}")
    return lines


def _event_text(event: HistoryEvent) -> str:
    detail = event.detail
    if event.type == "TaskScheduled":
        return f"attempt {detail.get('attempt')}  key {detail.get('idempotency_key')}"
    if event.type == "TaskSucceeded":
        return f"succeeded{_took(detail)}"
    if event.type == "TaskFailed":
        return f"failed{_took(detail)}: {detail.get('error')}  {_short(detail.get('cause'))}"
    if event.type == "TaskRetryScheduled":
        return f"retry {detail.get('retry')} at {detail.get('until')}"
    if event.type == "StateExited":
        return f"caught {detail.get('caught')} -> {detail.get('next')}"
    if event.type == "WaitStarted":
        return f"waiting until {detail.get('until')}"
    if event.type in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
        return f"{event.type}: {detail.get('error')}  {_short(detail.get('cause'))}"
    return event.type + (f"  {_short(detail)}" if detail else "")


def _took(detail: dict[str, Any]) -> str:
    """' in 23.4 ms (function 21.0 ms)': the call as the orchestrator timed it, then the function's
    own time behind the gateway when the gateway reported it."""
    if "call_ms" not in detail:
        return ""
    function = f" (function {detail['function_ms']} ms)" if "function_ms" in detail else ""
    return f" in {detail['call_ms']} ms{function}"


def _execution_json(execution: Execution) -> dict[str, Any]:
    data = dict(execution.__dict__)
    data["status"], data["phase"] = execution.status.value, execution.phase.value
    data["task_result"] = execution.task_result.to_json() if execution.task_result else None
    data.pop("task_token", None)  # a live callback secret is not for terminals
    return data


def _time(ms: int) -> str:
    if ms >= 253_402_300_799_000:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= detail_chars_max else text[: detail_chars_max - 3] + "..."


def _table(rows: list[tuple[str, ...]], out: Callable[[str], None]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
