"""The orchestrator function: runs the state machines of infra/statemachines durably (docs/workflows.md).

Queue-triggered (stack.yml annotation `topic: orchestrator`): the connector POSTs each wake-up as a
binary CloudEvent to `/`; a wake-up is sealed with the events key, so `/` refuses anyone else (401).
Apps start executions and read their history over HTTP; callback parties report task tokens to /tasks/*.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from finfaas.platform.cursors import CursorCodec, InvalidCursor, binding
from finfaas.platform.errors import BadRequest
from finfaas.platform.events import event_mac_from_config
from finfaas.platform.http import FunctionApp, Request
from finfaas.platform.logging import get_logger
from finfaas.platform.queue_proof import QueueMessageProof
from finfaas.platform.wiring import Lazy, ReplaceableVerifier
from finfaas.services.orchestrator.api import (
    ERRORS,
    CallbackAnswer,
    EventList,
    ExecutionList,
    ExecutionView,
    HistoryQuery,
    ListQuery,
    StartBody,
    StopBody,
    TaskFailureBody,
    TaskHeartbeatBody,
    TaskSuccessBody,
    event_view,
    execution_view,
)
from finfaas.workflow.engine import Engine
from finfaas.workflow.model import Execution, TaskResult
from finfaas.workflow.sweeper import Sweeper
from finfaas.workflow.wakeups import SWEEP, Wakeup, execution_id_chars_max

READ, START, CALLBACK = "orchestrator:read", "orchestrator:start", "orchestrator:callback"
CLOUDEVENT_SPECVERSION_HEADER = "ce-specversion"
LIST_ROUTE = "GET /executions"
_log = get_logger("orchestrator")


@dataclass
class OrchestratorServices:
    """What the routes need; built from configuration on first use, or given by tests."""

    engine: Engine
    sweeper: Sweeper
    # Production passes the stage's keyed codec; a fresh key suits one process (tests).
    cursors: CursorCodec = field(default_factory=CursorCodec.generate)


def build_services() -> OrchestratorServices:
    """The engine on this stage's tables and queue, calling the suite through the gateway (lazy imports)."""
    from finfaas.platform.config import function_addresses
    from finfaas.platform.credentials import LazyServiceTokens
    from finfaas.store.executions_store import ExecutionsStore
    from finfaas.workflow.asl import DefinitionRegistry, definitions_dir
    from finfaas.workflow.inline import ThreadDrives
    from finfaas.workflow.tasks import HttpTasks, ResourceRunner, SqsTasks
    from finfaas.workflow.wakeups import SqsWaker

    addresses = function_addresses()  # the gateway, or each function's own address
    store = ExecutionsStore()
    waker = SqsWaker()
    runner = ResourceRunner(HttpTasks(addresses, LazyServiceTokens(addresses)), SqsTasks())
    # Starts, callbacks and queue wake-ups are driven on threads of this process (workflow/inline.py),
    # so no request thread is held by a drive.
    engine = Engine(
        DefinitionRegistry.from_folder(definitions_dir()), store, runner, waker, inline=ThreadDrives()
    )
    sweeper = Sweeper(store, waker, drive=lambda execution_id: engine.wake(execution_id, "sweep"))
    return OrchestratorServices(engine, sweeper, CursorCodec.from_config())


services = Lazy(build_services)
queue_proof = QueueMessageProof(event_mac_from_config)
verifier = ReplaceableVerifier()
app = FunctionApp("orchestrator", errors=ERRORS, verifier=verifier)


# --- the queue --------------------------------------------------------------------------------


@app.route("POST", "/", auth=False, trigger=queue_proof)
def deliver(req: Request) -> dict[str, Any]:
    """A wake-up from the orchestrator queue (binary CloudEvent); a hint, never an instruction."""
    # No token (connectors send none): the wake-up is sealed by the waker that queued it, so anyone
    # else's POST is a 401 before a sweep or a drive could start.
    document = queue_proof.message(req)
    if not req.header(CLOUDEVENT_SPECVERSION_HEADER):
        raise BadRequest("Send a binary-mode CloudEvent (ce-specversion header).")
    try:
        wakeup = Wakeup.from_json(json.dumps(document))
    except ValueError as error:
        raise BadRequest(f"Not an orchestrator wake-up: {error}.") from None
    current = services.get()
    _arm_sweeper(current.sweeper)
    if wakeup.kind == SWEEP:
        report = current.sweeper.tick()
        return {"kind": SWEEP, "claimed": report.claimed, "woken": report.woken}
    outcome = current.engine.wake(wakeup.execution_id, wakeup.reason, wakeup.due_at_ms)
    return {"kind": wakeup.kind, "execution_id": wakeup.execution_id, "outcome": outcome}


def _arm_sweeper(sweeper: Sweeper) -> None:
    try:
        sweeper.ensure_armed()
    except Exception:  # the sweeper is a backstop; its trouble must not fail the request
        _log.exception("sweeper not armed")


# --- executions -------------------------------------------------------------------------------


@app.route("POST", "/executions", scopes=[START], body=StartBody, response=ExecutionView)
def start_execution(req: Request, body: StartBody) -> Any:
    """Start an execution; the same name and input again returns it (200), another input is 409."""
    from finfaas.platform.http import Response

    current = services.get()
    started = current.engine.start(body.state_machine, body.name, body.input, body.reference)
    _arm_sweeper(current.sweeper)
    status = 201 if started.created else 200
    location = {"Location": f"/executions/{started.execution.execution_id}"}
    return Response(execution_view(started.execution).model_dump(mode="json"), status, location)


@app.route("GET", "/executions", scopes=[READ], query=ListQuery)
def list_executions(req: Request, query: ListQuery) -> ExecutionList:
    """Executions by status (default RUNNING), state machine, business reference and start time, newest
    first; cursor pagination (next_cursor)."""
    current = services.get()
    status = query.listed_status()
    bound = binding(LIST_ROUTE, req.principal.sub, status=status.value if status else None,
                    state_machine=query.state_machine, reference=query.reference,
                    started_after=query.started_after.isoformat() if query.started_after else None,
                    started_before=query.started_before.isoformat() if query.started_before else None)
    after_id = None
    if query.starting_after is not None:
        after_id = current.cursors.open(query.starting_after, bound)
        if not isinstance(after_id, str) or not 0 < len(after_id) <= execution_id_chars_max:
            raise InvalidCursor("not a cursor of this list")
    page = current.engine.store.list(status, query.limit, after_id, query.state_machine, where=query.where())
    last = page.last_examined if page.has_more else None
    return ExecutionList(data=[execution_view(e) for e in page.executions], has_more=page.has_more,
                         next_cursor=current.cursors.seal(last, bound) if last else None)


@app.route("GET", "/executions/{execution_id}", scopes=[READ])
def describe_execution(req: Request, execution_id: str) -> ExecutionView:
    """One execution: status, current state, input, output or error."""
    return execution_view(_execution(execution_id))


@app.route("GET", "/executions/{execution_id}/history", scopes=[READ], query=HistoryQuery)
def execution_history(req: Request, execution_id: str, query: HistoryQuery) -> EventList:
    """The execution's events in order: states entered and exited, task attempts, retries, failures."""
    _execution(execution_id)
    events = services.get().engine.store.history(execution_id, query.starting_after, query.limit + 1)
    return EventList(data=[event_view(e) for e in events[: query.limit]], has_more=len(events) > query.limit)


def _execution(execution_id: str) -> Execution:
    from finfaas.platform.errors import NotFound

    execution = services.get().engine.store.get(execution_id)
    if execution is None:
        raise NotFound(f"No execution {execution_id}.")
    return execution


# --- callbacks --------------------------------------------------------------------------------


@app.route("POST", "/tasks/success", scopes=[CALLBACK], body=TaskSuccessBody)
def task_success(req: Request, body: TaskSuccessBody) -> CallbackAnswer:
    """Report a callback task's output; repeating the same report is harmless."""
    return CallbackAnswer(status=services.get().engine.report(body.task_token, TaskResult(True, body.output)))


@app.route("POST", "/tasks/failure", scopes=[CALLBACK], body=TaskFailureBody)
def task_failure(req: Request, body: TaskFailureBody) -> CallbackAnswer:
    """Report a callback task's failure; its Retry and Catch decide what follows."""
    result = TaskResult(False, error=body.error, cause=body.cause)
    return CallbackAnswer(status=services.get().engine.report(body.task_token, result))


@app.route("POST", "/tasks/heartbeat", scopes=[CALLBACK], body=TaskHeartbeatBody)
def task_heartbeat(req: Request, body: TaskHeartbeatBody) -> CallbackAnswer:
    """Keep a callback task with HeartbeatSeconds alive."""
    services.get().engine.heartbeat(body.task_token)
    return CallbackAnswer(status="recorded")


# --- operators --------------------------------------------------------------------------------


@app.route("POST", "/_/ops/executions/{execution_id}/redrive", response=ExecutionView)
def redrive_execution(req: Request, execution_id: str) -> ExecutionView:
    """Resume a FAILED, TIMED_OUT or ABORTED execution from the state where it stopped (ops scope)."""
    _known(execution_id)
    return execution_view(services.get().engine.redrive(execution_id))


@app.route("POST", "/_/ops/executions/{execution_id}/stop", body=StopBody, response=ExecutionView)
def stop_execution(req: Request, execution_id: str, body: StopBody) -> ExecutionView:
    """Stop a RUNNING execution with a reason: its Task's Catch compensates, else it ends ABORTED."""
    _known(execution_id)
    return execution_view(services.get().engine.stop(execution_id, body.reason))


def _known(execution_id: str) -> None:
    """An id that cannot name an execution is unknown without asking the store."""
    from finfaas.workflow.engine import ExecutionNotFound
    from finfaas.workflow.model import is_execution_id

    if not is_execution_id(execution_id):
        no_such = (("execution_id", "no such execution"),)
        raise ExecutionNotFound(f"no execution {execution_id}", errors=no_such)


@app.route("POST", "/_/ops/sweep")
def sweep(req: Request) -> dict[str, int]:
    """Wake every overdue execution now (ops scope)."""
    return {"woken": services.get().sweeper.sweep()}


@app.readiness_check("executions-table")
def executions_reachable() -> None:
    services.get().engine.store.get("readiness-probe")


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
