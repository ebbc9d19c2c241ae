"""Every route of every function, fed hostile cursors, queries, path ids, bodies and forms through
handle(event, context) on the embedded emulators.

Whatever arrives (deep nesting, huge or non-finite numbers, wrong types, huge strings, another
caller's cursor, an edited or expired one, an unsealed or a sealed but malformed queue message), the
answer is never a 5xx, every 4xx is in the media type the function's OpenAPI document declares for it
(problem+json, or an RFC 6749 error on the OAuth endpoints), and no business table gains, loses or
changes an item. Functions are read from functions/ and routes from each FunctionApp, so a new function or
route is covered the day it is added, and a route this test cannot send input to fails it.

Scheduled routes run a stock scheduler's unsigned tick once per period, whoever sends it: each gets one
such tick before the tables are counted (the period's run, as the scheduler's own), and every unsigned
tick after it, hostile body or not, must answer without changing a business table.

A second pass sends each body route a body its model accepts but for one hostile member, so the value
reaches the service behind the model: never a 5xx there either.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import urllib.parse
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from finfaas_dev.testing.platform import REPOSITORY_ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.loans_testing import wire_loans
from support.payments_testing import wire_payments, wire_rail_disputes
from support.wealth_testing import wire_wealth

pytestmark = pytest.mark.emulator

# The console serves HTML pages to a browser session (a sealed cookie and CSRF, no bearer token and no
# problem+json): its refusals are tested in tests/unit/services/console and the browser test instead.
BROWSER_FUNCTIONS = ("console",)
FUNCTION_NAMES = sorted(path.parent.name for path in (REPOSITORY_ROOT / "functions").glob("*/handler.py")
                        if path.parent.name not in BROWSER_FUNCTIONS)
# Each example is one request (a principal's rate limit is 300 a minute) and two snapshots of every
# business table, which grow with the rest of the suite: 10 per function keeps the module to a few
# minutes in the full run on a 2-core machine (derandomized, so every run sends the same requests).
EXAMPLES_PER_FUNCTION = 10
# Tables a refused request may touch for its own bookkeeping; every other one must stay as it was.
BOOKKEEPING_TABLES = ("ratelimits", "idempotency", "audit")
# Bounds of the before/after snapshot of the business tables (a stage holds a few thousand items).
TABLES_MAX = 100
SCAN_PAGES_MAX = 200
OPS_SCOPE = "ops"
OPS_ACT_SCOPE = "ops:act"
JSON_TYPE, PROBLEM_TYPE = "application/json", "application/problem+json"
FORM_TYPE = "application/x-www-form-urlencoded"
# Media types this test can write a hostile body in; a route taking any other fails the test.
WRITABLE_MEDIA_TYPES = (JSON_TYPE, FORM_TYPE, "text/plain", "application/cloudevents+json")
# RFC 6749 5.2 and RFC 7009 2.2.1: the token and revoke endpoints answer these as plain JSON (what the
# platform refuses before them stays problem+json); taken there whatever media type the document lists.
OAUTH_ROUTES = {("auth", "POST", "/oauth/token"), ("auth", "POST", "/oauth/revoke")}
OAUTH_ERRORS = {"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                "unsupported_grant_type", "invalid_scope", "unsupported_token_type"}
CLOUDEVENT_HEADERS = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-type": "finfaas.probe",
                      "ce-source": "probe", "Content-Type": "application/json"}
SCHEDULE_HEADER = "X-Finfaas-Schedule"
PING_HEADERS = {"ce-specversion": "1.0", "ce-id": "ping-1", "ce-source": "probe",
                "ce-type": "dev.knative.sources.ping"}
# The minute every scheduled route's clock is pinned to: one period for the whole module, and one no
# other test claims (claims are per job and minute, in the stage's rate-limit table).
SCHEDULED_MINUTE = 60.0 * (2_000_000_000 // 60 + uuid.uuid4().int % 1_000_000)
RELAY_RUN_SECONDS = "0.2"  # the relay's one run in this module (50 s when deployed)
NOWHERE_ID = "zz_" + "0" * 32  # well formed, and nothing has it


def records_any_payment_id(payment_id: str) -> bool:
    from finfaas.services.rail.api import well_formed_payment_id

    return well_formed_payment_id(payment_id)


# Routes that by design record a well-formed path id they have never seen (a recall before the payment
# arrives is kept, so the late hand-off is refused): there, only ill-formed ids are hostile.
RECORDS_ANY_WELL_FORMED_ID = {("rail", "POST", "/payments/{payment_id}/recall"): records_any_payment_id}

# --- hostile values ---------------------------------------------------------------------------------


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


RAW_JSON = st.sampled_from([
    nested(65), nested(2_000), nested(100_000), '{"a":' * 3_000 + "1" + "}" * 3_000,
    "NaN", "[Infinity]", '{"x": -Infinity}', "1e999", "-1e999", "9" * 5_000, "[" + "1," * 20_000 + "1]",
    '{"a": 1, "a": 2}', "", "   ", "null", "true", "[]", '"' + "x" * 300_000 + '"',
])
RAW_BYTES = st.one_of(RAW_JSON.map(str.encode), st.sampled_from([b"\xff\xfe\x00", b'{"a": "\xc3"}']),
                      st.binary(max_size=64))
HOSTILE_SCALARS = st.one_of(
    st.sampled_from([10**40, -(10**40), 2**63, 1e308, -0.0, 0.5, True, False, None, "", "\x00",
                     "NaN", "Infinity", "1e999", "-1", "9" * 60, "x" * 5_000, "\u202e" * 300]),
    st.integers(min_value=10**30, max_value=10**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(min_size=300, max_size=600),
)
HOSTILE_VALUES = st.recursive(HOSTILE_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)


def query_texts(function: Function) -> st.SearchStrategy[str]:
    """Hostile query values: forged, foreign, edited and expired cursors, numbers, nesting, junk."""
    b64 = RAW_JSON.map(lambda text: base64.urlsafe_b64encode(text.encode()[:600]).decode())
    sealed = st.sampled_from([*function.cursors, *function.own_cursors])
    return st.one_of(
        st.sampled_from(function.cursors), sealed.flatmap(edited), b64,
        RAW_JSON.map(lambda text: text[:2_000]),
        st.sampled_from(["0", "-1", "101", "1e999", "NaN", "Infinity", "9" * 400, "x" * 5_000,
                         "2030-13-45T99:99:99Z", "c1..", "c1.e30.AAAA", "\x00"]),
        st.text(max_size=40),
    )


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def edited(cursor: str) -> st.SearchStrategy[str]:
    """The cursor with one character changed, or cut short, as a client might tamper with it."""
    return st.integers(0, len(cursor) - 1).flatmap(lambda i: st.sampled_from([
        cursor[:i] + ("A" if cursor[i] != "A" else "B") + cursor[i + 1:], cursor[:i], cursor + "x"]))


# --- the world --------------------------------------------------------------------------------------


@dataclass
class Function:
    name: str
    handler: Any
    token: str = ""  # every scope the function's routes name, ops aside
    ops_token: str = ""  # every scope, ops too
    reader_token: str = ""  # a read-only operator's: every scope but ops:act
    path_ids: list[str] = field(default_factory=list)  # ids the caller does not own, or that do not exist
    cursors: list[str] = field(default_factory=list)  # not valid for this caller and query: foreign, stale
    own_ids: tuple[str, ...] = ()  # the caller's own, used only where a hostile cursor comes along
    own_cursors: tuple[str, ...] = ()  # valid: sent only edited
    seal: Callable[[dict[str, Any]], bytes] | None = None  # seals a queue message as the suite's senders do

    def routes(self) -> list[Any]:
        return [route for route in self.handler.app.routes if way_in(self.name, route) != "none"]


def way_in(function: str, route: Any) -> str:
    """How hostile input reaches a route: "ops" or "token" (a bearer token), "queue" or "schedule" (a
    trigger's proof), "form" or "open" (token-less bodies); "none" for a GET that takes no input at all
    (health, readiness, the OpenAPI document, the JWKS). Fails for a route it cannot send input to."""
    from finfaas.platform.http import BODY_METHODS, OPS_PATH_PREFIX
    from finfaas.platform.queue_proof import QueueMessageProof, QueueOrScheduleProof
    from finfaas.platform.schedule import ScheduleProof

    where = f"{function} {route.method} {route.path}"
    unwritable = set(route.media_types) - set(WRITABLE_MEDIA_TYPES)
    assert route.method not in BODY_METHODS or not unwritable, f"{where}: no hostile body in {unwritable}"
    if route.path.startswith(OPS_PATH_PREFIX) or OPS_SCOPE in route.scopes:
        return "ops"
    if route.auth:
        return "token"
    if isinstance(route.trigger, QueueMessageProof):
        return "queue"
    # A POST / fed by a queue and a schedule: what carries no events MAC member is a tick.
    if isinstance(route.trigger, ScheduleProof | QueueOrScheduleProof):
        return "schedule"
    assert route.trigger is None, f"{where}: a trigger proof this test does not know ({route.trigger!r})"
    if FORM_TYPE in route.media_types:
        return "form"
    if route.method == "GET" and not route.param_names and route.query_model is None:
        return "none"
    assert route.method in BODY_METHODS, f"{where}: token-less and takes no body, query or path id"
    return "open"


# Executions other modules of the session left in the stage: the in-process orchestrator's sweeper may
# drive them on (their leases are seconds long) whatever the probes do. No probe names one (the
# orchestrator's probes use ids that do not exist), so their rows and history are left out of snapshots.
EARLIER_EXECUTIONS: set[str] = set()


def business_table_contents() -> dict[str, list[str]]:
    """Every item of every business table of the stage, each as canonical JSON, sorted: a row added,
    removed or changed in any attribute makes a different snapshot."""
    from finfaas.store.executions_store import SWEEPER_ITEM_ID
    from finfaas_dev.awsclients import client

    dynamodb = client("dynamodb")
    prefix = f"finfaas-{os.environ['FINFAAS_STAGE']}-"
    # The orchestrator's sweeper moves its one bookkeeping item every few seconds, whatever the requests.
    sweeper_item = {"execution_id": {"S": SWEEPER_ITEM_ID}}
    contents: dict[str, list[str]] = {}
    for name in dynamodb.list_tables(Limit=TABLES_MAX)["TableNames"]:
        if not name.startswith(prefix) or name.removeprefix(prefix) in BOOKKEEPING_TABLES:
            continue
        items, start = [], None
        for _ in range(SCAN_PAGES_MAX):
            page = dynamodb.scan(TableName=name, ConsistentRead=True,
                                 **({"ExclusiveStartKey": start} if start else {}))
            items += [json.dumps(item, sort_keys=True) for item in page["Items"]
                      if item.get("execution_id") != sweeper_item["execution_id"]
                      and item.get("execution_id", {}).get("S") not in EARLIER_EXECUTIONS]
            start = page.get("LastEvaluatedKey")
            if start is None:
                break
        else:
            raise AssertionError(f"{name}: more than {SCAN_PAGES_MAX} pages to compare")
        contents[name] = sorted(items)
    return contents


def _execution_ids() -> set[str]:
    """The ids of every execution in the stage (bounded like the snapshots)."""
    from finfaas.platform.config import resource_name
    from finfaas_dev.awsclients import client

    dynamodb, ids, start = client("dynamodb"), set(), None
    for _ in range(SCAN_PAGES_MAX):
        page = dynamodb.scan(TableName=resource_name("executions"), ProjectionExpression="execution_id",
                             **({"ExclusiveStartKey": start} if start else {}))
        ids |= {item["execution_id"]["S"] for item in page["Items"]}
        start = page.get("LastEvaluatedKey")
        if start is None:
            return ids
    raise AssertionError(f"executions: more than {SCAN_PAGES_MAX} pages")


def route_scopes(handler: Any) -> list[str]:
    granted = {scope for route in handler.app.routes for scope in route.scopes}
    return sorted(granted - {OPS_SCOPE, OPS_ACT_SCOPE})


def token_minter(handler: Any, shared: Any) -> Any:
    """Who signs this function's tokens: the shared test key where its verifier is replaceable, the
    function's own keyring where it verifies its own tokens (auth)."""
    from finfaas.platform.config import auth_settings
    from finfaas_dev.testing.platform import TokenMinter

    if hasattr(getattr(handler, "verifier", None), "use"):
        handler.verifier.use(shared.verifier())
        return shared
    if hasattr(handler, "auth_secrets"):
        settings = auth_settings()
        return TokenMinter(handler.auth_secrets.keyring(), settings.issuer, settings.audience)
    return None


@pytest.fixture(scope="module")
def local_secrets(tmp_path_factory) -> Any:
    """Every secret `finfaas up` writes, in a copy of the session's folder, so other modules keep
    theirs exactly as they were (some test what happens without a key)."""
    from finfaas.platform import config
    from finfaas_dev.up import ensure_local_secrets

    folder = tmp_path_factory.mktemp("secrets")
    shutil.copytree(config.settings().secrets_dir, folder, dirs_exist_ok=True)
    ensure_local_secrets(folder, out=lambda _: None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINFAAS_SECRETS_DIR", str(folder))
        config.settings.cache_clear()
        yield folder
    config.settings.cache_clear()


@pytest.fixture(scope="module")
def functions(embedded_aws, local_secrets) -> dict[str, Function]:
    """Every function wired as in production (the local secrets, its own tables and queues), with a
    caller who owns accounts with statements, and sealed cursors of that caller and of others."""
    from finfaas.platform.cursors import CURSOR_KEY_SECRET_NAME, CursorCodec, binding
    from finfaas.platform.events import event_mac_from_config
    from finfaas.platform.mac_keys import mac_keys_from_config
    from finfaas.services.ledger.service import LedgerService
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.models import format_time
    from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler

    minter = TokenMinter.generate()
    ledger = LedgerService(ledger_store_from_config())
    ledger.ensure_system_accounts("USD")
    owner, other = f"probe-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    keys = mac_keys_from_config(CURSOR_KEY_SECRET_NAME)
    codec, stale = CursorCodec(keys), CursorCodec(keys, clock=lambda: 1_000_000_000.0)  # stale: long expired
    mac = event_mac_from_config()

    built: dict[str, Function] = {}
    for name in FUNCTION_NAMES:
        handler = load_function_handler(name)
        function = Function(name, handler, seal=mac.seal)
        signer = token_minter(handler, minter)
        if signer is not None:
            scopes = route_scopes(handler)
            function.token = signer.mint(owner, scopes, kind="client")
            ops_scopes = [*scopes, OPS_SCOPE, OPS_ACT_SCOPE]
            function.ops_token = signer.mint(f"ops-{owner}", ops_scopes, kind="client")
            function.reader_token = signer.mint(f"reader-{owner}", [*scopes, OPS_SCOPE], kind="client")
        assert signer is not None or all(not route.auth for route in handler.app.routes), (
            f"{name}: no way to sign a token its routes accept")
        function.path_ids = [f"{name[:3]}_" + "0" * 32, "sys-funding-USD", "\u202e0000.json"]
        function.cursors = [codec.seal("x", binding("GET /elsewhere", other)),
                            stale.seal("x", binding("GET /elsewhere", owner)), b64('{"x": 1}')]
        if hasattr(handler, "schedule_proof"):
            handler.schedule_proof.use(clock=lambda: SCHEDULED_MINUTE)
        built[name] = function

    accounts = built["accounts"]
    other_token = minter.mint(other, route_scopes(accounts.handler), kind="client")
    opened = []
    for token in (accounts.token, accounts.token, other_token, other_token):
        reply = call(accounts.handler.handle, "POST", "/accounts", token=token,
                     headers={"Idempotency-Key": uuid.uuid4().hex}, json_body={"currency": "USD"})
        assert reply.status == 201, reply.body
        opened.append(reply.json()["account_id"])
    for account_id in opened:
        for amount in (100, 200, 300):
            ledger.deposit(account_id, amount, "USD")

    def page_cursor(token: str, path: str) -> str:
        reply = call(accounts.handler.handle, "GET", path, token=token, query={"limit": "1"})
        assert reply.status == 200 and reply.json()["next_cursor"], reply.body
        return reply.json()["next_cursor"]

    accounts.path_ids, accounts.own_ids = [opened[2], "acc_" + "0" * 32], (opened[0], opened[1])
    statements = [f"/accounts/{account_id}/statement" for account_id in opened]
    accounts.own_cursors = (page_cursor(accounts.token, "/accounts"),
                            page_cursor(accounts.token, statements[0]))
    accounts.cursors = [page_cursor(other_token, "/accounts"), page_cursor(other_token, statements[2])]
    accounts.cursors.append(stale.seal("x", binding("GET /accounts", owner)))
    # Unsealed cursors as the ledger once read them: a key of another owner's account, a statement
    # balance that overflows or that the client raised.
    foreign_key = {"account_id": {"S": opened[2]}, "owner_id": {"S": other},
                   "opened_at": {"S": format_time(ledger.get_account(opened[2]).opened_at)}}
    accounts.cursors += [b64(json.dumps(foreign_key)), b64('{"x": 1}')] + [
        b64(json.dumps([opened[0], "9999999999999999#000#t#C", balance]))
        for balance in ("999999999999", float("inf"), "1e999")]
    # The ledger's own accounts: another owner's and the funding account exist, so only the input refuses.
    built["ledger"].path_ids = [opened[2], "sys-funding-USD", "trf_" + "0" * 32]
    built["webhooks"].path_ids = ["sub_" + "a" * 24]
    built["webhooks"].cursors = [codec.seal("sub_" + "a" * 24, binding("GET /subscriptions", other)),
                                 stale.seal("sub_" + "a" * 24, binding("GET /subscriptions", owner))]
    built["orchestrator"].path_ids = ["demo-transfer:none"]
    # The first authentic wake-up of a stage arms the sweeper (its schedule record in the executions
    # table); one is sent here, as the queue would, so the probes find the stage already armed.
    EARLIER_EXECUTIONS.update(_execution_ids())
    wakeup = call(built["orchestrator"].handler.handle, "POST", "/", body=mac.seal({"kind": "sweep"}),
                  headers=CLOUDEVENT_HEADERS)
    assert wakeup.status == 200, wakeup.body
    listing = "GET /executions"
    built["orchestrator"].cursors = [
        codec.seal("demo-transfer:x", binding(listing, other, status="RUNNING", state_machine=None)),
        codec.seal("demo-transfer:x", binding(listing, owner, status="FAILED", state_machine=None)),
        stale.seal("demo-transfer:x", binding(listing, owner, status="RUNNING", state_machine=None))]
    # Payments opens merchants' accounts through the ledger function: here in process, not by a gateway.
    wire_payments(built["payments"].handler, built["ledger"].handler, minter)
    wire_rail_disputes(built["rail"].handler, built["payments"].handler)
    # Loans asks risk and the bureau for each application: here in process too.
    wire_loans(built["loans"].handler, built["risk"].handler, built["bureau"].handler, minter)
    # Wealth's schedule starts the ended day's batch on the orchestrator: here one that records it.
    wire_wealth(built["wealth"].handler, minter)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINFAAS_RELAY_RUN_SECONDS", RELAY_RUN_SECONDS)
        yield built


# --- requests ---------------------------------------------------------------------------------------


@dataclass
class Probe:
    """One request to one route; `status` when the answer is known whatever the input (a forged proof)."""

    route: Any
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    already_ran: bool = False  # an unsigned schedule tick after the period's run: must say it did nothing


# Member names and values of the suite's queue messages (wake-ups, callback tasks, hand-offs, webhook
# deliveries, structured events), so a sealed hostile message gets past their first check.
MESSAGE_KEYS = ("kind", "reason", "execution_id", "due_at_ms", "task_token", "transfer_id", "payment_id",
                "amount_minor", "currency", "creditor", "subscription_id", "event", "attempt", "not_before",
                "v", "id", "type", "source", "specversion", "time", "subject", "data")
MESSAGE_WORDS = ["wake", "sweep", "start", "timer", "callback", "review", "attention", "USD", 1, 0, -1,
                 "1.0", "2026-01-01T00:00:00Z", NOWHERE_ID, "demo-transfer:none"]
MESSAGE_VALUES = st.one_of(st.sampled_from(MESSAGE_WORDS), HOSTILE_VALUES)


def cloudevent_types() -> list[str]:
    """The ce-type of every message the queue routes tell apart, and one they do not know."""
    from finfaas.services.rail.api import SETTLE_EVENT_TYPE
    from finfaas.services.webhooks.api import DELIVERY_TYPE
    from finfaas.workflow.tasks import TASK_EVENT_TYPE
    from finfaas.workflow.wakeups import SWEEP_EVENT_TYPE, WAKE_EVENT_TYPE

    return ["finfaas.probe", SETTLE_EVENT_TYPE, DELIVERY_TYPE, TASK_EVENT_TYPE, WAKE_EVENT_TYPE,
            SWEEP_EVENT_TYPE]


def form_fields(function: Function, route: Any) -> dict[str, list[str]]:
    """The form parameters the function's OpenAPI document declares for the route, with their enums."""
    operation = function.handler.app.openapi()["paths"][route.path][route.method.lower()]
    schema = operation.get("requestBody", {}).get("content", {}).get(FORM_TYPE, {}).get("schema", {})
    fields = {name: list(spec.get("enum", [])) for name, spec in schema.get("properties", {}).items()}
    assert fields, f"{function.name} {route.method} {route.path}: its document declares no form parameters"
    return fields


def form_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def headers_for(function: Function, route: Any, kind: str) -> dict[str, str]:
    if kind in ("ops", "token"):
        token = function.ops_token if kind == "ops" else function.token
        return {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex,
                "Content-Type": route.media_types[0]}
    if kind == "queue":
        return {**CLOUDEVENT_HEADERS, "Content-Type": route.media_types[0]}
    return {"Content-Type": FORM_TYPE if kind == "form" else route.media_types[0]}


def path_ids(function: Function, route: Any, kind: str) -> list[str]:
    """Ids for the route's path: others' and missing ones, the caller's own where a hostile cursor comes
    along; for operators (who may act on any object) only missing ones."""
    pages = route.query_model is not None and "starting_after" in route.query_model.model_fields
    ids = [NOWHERE_ID] if kind == "ops" else [*function.path_ids, *(function.own_ids if pages else ())]
    return [value for value in ids if not is_recorded(function, route, value)]


def is_recorded(function: Function, route: Any, value: str) -> bool:
    records = RECORDS_ANY_WELL_FORMED_ID.get((function.name, route.method, route.path))
    return records is not None and records(value)


@st.composite
def requests(draw: Callable[..., Any], function: Function) -> Probe:
    """One request to one of the function's routes, every input hostile."""
    route = draw(st.sampled_from([r for r in function.routes() if not housekeeping(function, r)]))
    kind = way_in(function.name, route)
    pages = route.query_model is not None and "starting_after" in route.query_model.model_fields
    ids = path_ids(function, route, kind)
    path = route.path
    for param in route.param_names:
        values = query_texts(function).map(lambda text: text.replace("/", "%2F") or "%20")
        value = draw(st.one_of(st.sampled_from(ids), values).filter(
            lambda text: not is_recorded(function, route, text)))
        path = path.replace("{" + param + "}", value)
    query: dict[str, str] = {}
    if route.query_model is not None:
        for name in route.query_model.model_fields:
            if draw(st.booleans()):
                query[name] = draw(query_texts(function))
        if pages:
            query["starting_after"] = draw(query_texts(function))
    headers = headers_for(function, route, kind)
    status = None
    body = b""
    if kind == "form":
        fields = form_fields(function, route)
        chosen = {name: draw(st.one_of(st.sampled_from(enum), HOSTILE_SCALARS) if enum else HOSTILE_SCALARS)
                  for name, enum in fields.items() if draw(st.booleans())}
        body = draw(st.one_of(st.just(urllib.parse.urlencode({k: form_text(v) for k, v in chosen.items()})
                                      .encode()), RAW_BYTES))
        basic = draw(st.one_of(st.none(), HOSTILE_SCALARS.map(lambda v: "Basic " + b64(form_text(v) + ":x")),
                               st.sampled_from(["Basic !!!", "Basic " + b64("\xff:"), "Bearer x.y.z"])))
        if basic is not None:
            headers["Authorization"] = basic
    elif kind == "queue" and draw(st.booleans()):
        assert function.seal is not None
        body = function.seal(draw(st.dictionaries(st.sampled_from(MESSAGE_KEYS), MESSAGE_VALUES, max_size=6)))
        headers["ce-type"] = draw(st.sampled_from(cloudevent_types()))
    elif route.method in ("POST", "PUT", "PATCH", "DELETE"):
        if route.body_model is not None and draw(st.booleans()):
            body = json.dumps({name: draw(HOSTILE_VALUES) for name in route.body_model.model_fields}).encode()
        else:
            body = draw(RAW_BYTES)
        if kind == "queue":
            status = 401  # unsealed
    if kind == "schedule" and draw(st.booleans()):
        # A header value cannot carry a line break on the wire (HTTP/1.1 or the event), so none is drawn.
        tick = st.one_of(query_texts(function), st.just("t=1,v1=" + "A" * 43))
        headers[SCHEDULE_HEADER] = draw(tick.filter(lambda value: not any(c in value for c in "\r\n")))
        status = 401
    elif kind == "schedule":
        headers.update(draw(st.sampled_from([{}, PING_HEADERS])))  # unsigned: this period already ran
        return Probe(route, route.method, path, query, body, headers, 200, already_ran=True)
    return Probe(route, route.method, path, query, body, headers, status)


# Known attacks, each sent to every route's cursor, query and body before the random search.
CURSOR_ATTACKS = [nested(2_000), b64(nested(2_000)), b64('{"a": 1, "a": 2}'), "1e999", "NaN", "x" * 5_000,
                  "c1.e30.AAAA", b64("[Infinity]")]
BODY_ATTACKS = [nested(2_000).encode(), nested(100_000).encode(), b'{"a": NaN}', b"[1e999]",
                b'{"a": 1, "a": 2}', b"\xff\xfe", b'"' + b"x" * 300_000 + b'"']
FIELD_ATTACKS = [nested(70), 10**40, 1e308, None, "x" * 5_000, ["wrong", "type"], {"deep": {"er": [{}]}}]
FORM_ATTACKS = [b"grant_type=password&grant_type=password", b"%ff%fe=1&grant_type=%ff", b"a=1&" * 3_000,
                b"grant_type=" + b"x" * 5_000, b"grant_type=password&password=y&username=" + b"x" * 5_000,
                b"grant_type=refresh_token&refresh_token=" + nested(70).encode(), b"token=a.b.c",
                b"token=" + b"x" * 5_000, b"\xff\xfe", b"grant_type=client_credentials&client_id=%00"]
BASIC_ATTACKS = ["Basic !!!", "Basic " + b64("\x00:\x00"), "Basic " + b64("x" * 5_000 + ":y"),
                 "Basic " + b64("no-colon")]
TICK_ATTACKS = ["", "t=1,v1=" + "A" * 43, "x" * 5_000, nested(70)]


def known_attacks(function: Function) -> list[Probe]:
    """Every route with each known attack in each of its inputs, the other inputs left plain."""
    made = []
    for route in function.routes():
        kind = way_in(function.name, route)
        ids = path_ids(function, route, kind)
        assert ids or not route.param_names, f"{function.name} {route.method} {route.path}: no hostile id"
        paths = sorted({route.path.replace("{" + p + "}", i) for p in route.param_names for i in ids})
        for path in paths or [route.path]:
            made += route_attacks(function, route, kind, path)
    return made


def route_attacks(function: Function, route: Any, kind: str, path: str) -> list[Probe]:
    """The known attacks on one route at one path: cursors, bodies, forms, fields, proofs."""
    def probe(query: dict[str, str], body: bytes, status: int | None = None, already_ran: bool = False,
              **extra: str) -> Probe:
        return Probe(route, route.method, path, query, body, {**headers_for(function, route, kind), **extra},
                     status, already_ran)

    made = []
    if route.query_model is not None and "starting_after" in route.query_model.model_fields:
        own_edited = [c[:len(c) // 2] + ("A" if c[len(c) // 2] != "A" else "B") + c[len(c) // 2 + 1:]
                      for c in function.own_cursors]
        made += [probe({"starting_after": cursor}, b"")
                 for cursor in [*function.cursors, *own_edited, *CURSOR_ATTACKS]]
    if route.method == "GET":
        return [*made, probe({}, b"")]
    if kind == "form":
        names = form_fields(function, route)
        made += [probe({}, body) for body in FORM_ATTACKS]
        made += [probe({}, b"grant_type=client_credentials", Authorization=basic) for basic in BASIC_ATTACKS]
        made += [probe({}, urllib.parse.urlencode({name: form_text(value) for name in names}).encode())
                 for value in FIELD_ATTACKS]
        return made
    if kind == "schedule":
        unsigned = [probe({}, body, 200, True, **headers) for body in [b"", *BODY_ATTACKS[:3]]
                    for headers in ({}, PING_HEADERS)]
        return unsigned + [probe({}, body, 401, **{SCHEDULE_HEADER: tick})
                           for body in BODY_ATTACKS[:3] for tick in TICK_ATTACKS]
    made += [probe({}, body, 401 if kind == "queue" else None) for body in BODY_ATTACKS]
    if route.body_model is not None:
        made += [probe({}, json.dumps(dict.fromkeys(route.body_model.model_fields, value)).encode())
                 for value in FIELD_ATTACKS]
    if kind == "queue":
        assert function.seal is not None
        sealed = [function.seal({})]
        sealed += [function.seal(dict.fromkeys(MESSAGE_KEYS, value)) for value in FIELD_ATTACKS]
        # A wake-up, its other members hostile in turn.
        sealed += [function.seal({"kind": "wake", "execution_id": NOWHERE_ID, key: value})
                   for key in ("due_at_ms", "reason") for value in FIELD_ATTACKS]
        made += [probe({}, body, **{"ce-type": ce_type}) for body in sealed for ce_type in cloudevent_types()]
    return made


# --- one hostile member in an otherwise valid body ---------------------------------------------------

# Candidates for a string member of a minimal valid body, tried in order against its pattern and length.
VALID_STRINGS = ["USD", NOWHERE_ID, "abc", "2026-01-01T00:00:00Z", "00000000", "x" * 12]
MEMBER_ATTACKS = [*FIELD_ATTACKS, 0, -1, 2**63, "", True, "\x00"]


def minimal_instance(schema: dict[str, Any], definitions: dict[str, Any]) -> Any:
    """A small document for a JSON schema: first enum value, lowest bound, a fitting string."""
    if "$ref" in schema:
        return minimal_instance(definitions[schema["$ref"].rsplit("/", 1)[1]], definitions)
    options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
    if options:
        return minimal_instance(options[0], definitions)
    if "enum" in schema or "const" in schema:
        return schema["enum"][0] if "enum" in schema else schema["const"]
    kind = schema.get("type")
    if kind == "object":
        members = schema.get("properties", {})
        return {name: minimal_instance(member, definitions) for name, member in members.items()}
    if kind == "array":
        return [minimal_instance(schema.get("items", {}), definitions)] * max(1, schema.get("minItems", 1))
    if kind in ("integer", "number"):
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return False
    fitting = [text for text in VALID_STRINGS
               if schema.get("minLength", 0) <= len(text) <= schema.get("maxLength", len(text))
               and re.search(schema.get("pattern", ""), text)]
    return fitting[0] if fitting else "a" * max(1, schema.get("minLength", 1))


def valid_body(model: Any) -> dict[str, Any] | None:
    """A body the route's model accepts, built from its schema; None when the guess is refused."""
    from pydantic import ValidationError

    schema = model.model_json_schema()
    body = minimal_instance(schema, schema.get("$defs", {}))
    try:
        model.model_validate(body)
    except ValidationError:
        return None
    return body


def with_one_hostile_member(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The body with each member (and each member of a nested object or first list item) made hostile."""
    made = []
    for name, member in body.items():
        made += [{**body, name: value} for value in MEMBER_ATTACKS]
        if isinstance(member, dict):
            made += [{**body, name: inner} for inner in with_one_hostile_member(member)]
        if isinstance(member, list) and member and isinstance(member[0], dict):
            made += [{**body, name: [inner, *member[1:]]} for inner in with_one_hostile_member(member[0])]
    return made


def member_attacks(function: Function) -> list[Probe]:
    """Every route with a body model, sent a valid body but for one member, at a missing id (routes
    whose model refuses the schema's minimal instance keep only the other probes)."""
    made = []
    for route in function.routes():
        body = valid_body(route.body_model) if route.body_model is not None else None
        if body is None:
            continue
        kind = way_in(function.name, route)
        path = route.path
        for param in route.param_names:
            path = path.replace("{" + param + "}", NOWHERE_ID)
        made += [Probe(route, route.method, path, {}, json.dumps(hostile).encode(),
                       headers_for(function, route, kind)) for hostile in with_one_hostile_member(body)]
    return made


def declared_media_types(function: Function, route: Any, status: int) -> set[str]:
    """The media types the function's OpenAPI document declares for the route's answer with status."""
    document = function.handler.app.openapi()
    responses = document["paths"][route.path][route.method.lower()]["responses"]
    declared = (responses.get(str(status)) or responses.get(f"{status // 100}XX")
                or responses.get("default", {}))
    while "$ref" in declared:
        declared = document["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
    return set(declared.get("content", {}))


def answer(function: Function, probe: Probe) -> int:
    """The status of one request, after checking it is no 5xx and every 4xx is a declared error."""
    from finfaas_dev.testing.platform import Context, Event

    result = function.handler.handle(Event(probe.method, probe.path, probe.body, probe.headers, probe.query),
                                     Context())
    status, text = result["statusCode"], result["body"]
    where = (f"{function.name} {probe.method} {probe.path[:100]} {str(probe.query)[:200]} "
             f"-> {status}: {text[:300]}")
    assert status < 500, where
    assert probe.status in (None, status), where
    if probe.already_ran:
        assert json.loads(text)["ran"] is False, where
    if status < 400:
        return status
    media_type = dict(result["headers"]).get("Content-Type")
    body = json.loads(text)
    assert media_type in declared_media_types(function, probe.route, status), where
    if media_type == JSON_TYPE and (function.name, probe.method, probe.route.path) in OAUTH_ROUTES:
        assert body["error"] in OAUTH_ERRORS and body["error_description"], where
        return status
    assert media_type == PROBLEM_TYPE, where
    assert body["status"] == status and body["code"], where
    return status


# Housekeeping routes: an accepted call changes the stage whatever its input (expiring the holds that
# earlier tests left due), so their attacks are answered before the tables are counted, and the
# random search leaves them out.
HOUSEKEEPING_ROUTES = {("ledger", "POST", "/_/ops/expire-holds")}


def housekeeping(function: Function, route: Any) -> bool:
    return (function.name, route.method, route.path) in HOUSEKEEPING_ROUTES


def assert_refused_without_writes(function: Function) -> None:
    seen: dict[tuple[str, str], set[int]] = defaultdict(set)
    attacks = known_attacks(function)
    for probe in [p for p in attacks if housekeeping(function, p.route)]:
        seen[probe.method, probe.route.path].add(answer(function, probe))
    for route in function.routes():
        if way_in(function.name, route) == "schedule":  # the period's one run, as the scheduler's own
            first = Probe(route, route.method, route.path, {}, b"", {}, 200)
            seen[route.method, route.path].add(answer(function, first))
    before = business_table_contents()
    for probe in [p for p in attacks if not housekeeping(function, p.route)]:
        seen[probe.method, probe.route.path].add(answer(function, probe))

    @settings(max_examples=EXAMPLES_PER_FUNCTION, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(requests(function))
    def search(probe: Probe) -> None:
        seen[probe.method, probe.route.path].add(answer(function, probe))

    search()
    assert business_table_contents() == before
    unreached = [f"{route.method} {route.path}" for route in function.routes()
                 if (route.method, route.path) not in seen]
    assert not unreached, f"{function.name}: routes never probed: {unreached}"
    statuses = set().union(*seen.values())
    if any(way_in(function.name, route) not in ("queue", "schedule") for route in function.routes()):
        assert statuses & {400, 413, 415, 422}, f"{function.name}: no probe reached validation: {statuses}"


def assert_one_hostile_member_is_answered(function: Function) -> None:
    # A member the model happens to accept (None for an optional one) makes a valid request, which may
    # write as it should: here only the answer is checked, never the tables.
    for probe in member_attacks(function):
        answer(function, probe)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_hostile_inputs_get_a_4xx_problem_and_write_nothing(functions, name):
    assert_refused_without_writes(functions[name])


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_a_body_valid_but_for_one_member_never_gets_a_5xx(functions, name):
    assert_one_hostile_member_is_answered(functions[name])


# Functions whose operators change something through /_/ops: a walk that finds none of one fails.
ACTING_OPS_FUNCTIONS = ("accounts", "auth", "ledger", "loans", "orchestrator", "payments", "rail", "relay",
                        "risk", "transfers", "wallet", "wealth")


def test_every_mutating_ops_route_refuses_a_read_only_operator_and_writes_nothing(functions):
    from finfaas.platform.http import OPS_PATH_PREFIX
    from finfaas.platform.http.routes import STATE_CHANGING_METHODS
    from finfaas_dev.testing.platform import Context, Event

    # GIVEN a read-only operator (ops and every other scope, not ops:act) and a valid body for each route
    before = business_table_contents()
    walked: dict[str, list[str]] = defaultdict(list)
    for name, function in sorted(functions.items()):
        for route in function.handler.app.routes:
            if not route.path.startswith(OPS_PATH_PREFIX) or route.method not in STATE_CHANGING_METHODS:
                continue
            path = route.path
            for param in route.param_names:
                path = path.replace("{" + param + "}", NOWHERE_ID)
            body = valid_body(route.body_model) if route.body_model is not None else {}
            headers = {"Authorization": f"Bearer {function.reader_token}",
                       "Idempotency-Key": uuid.uuid4().hex, "Content-Type": JSON_TYPE}

            # WHEN it calls the route
            event = Event(route.method, path, json.dumps(body).encode(), headers, {})
            result = function.handler.handle(event, Context())

            # THEN it is refused for the missing acting scope
            where = f"{name} {route.method} {route.path} -> {result['statusCode']}: {result['body'][:200]}"
            problem = json.loads(result["body"])
            assert (result["statusCode"], problem["code"]) == (403, "insufficient_scope"), where
            assert "ops:act" in problem["detail"], where
            walked[name].append(f"{route.method} {route.path}")
    # ... nothing was written, and every function that has acting ops routes was walked
    assert business_table_contents() == before
    assert sorted(walked) == sorted(ACTING_OPS_FUNCTIONS), dict(walked)


def test_a_row_changed_in_place_changes_the_snapshot_of_the_business_tables(functions):
    from finfaas_dev.awsclients import client

    # GIVEN a stage whose business tables hold rows (the caller's accounts, at least)
    before = business_table_contents()
    table = next(name for name, items in before.items() if items)
    original = json.loads(before[table][0])
    dynamodb = client("dynamodb")
    try:
        # WHEN one attribute of one row changes, every table keeping its number of rows
        dynamodb.put_item(TableName=table, Item={**original, "probe": {"S": "changed"}})
        after = business_table_contents()
    finally:
        dynamodb.put_item(TableName=table, Item=original)

    # THEN the snapshots differ, though no table gained or lost a row
    assert {name: len(items) for name, items in after.items()} == {
        name: len(items) for name, items in before.items()}
    assert after != before
    assert business_table_contents() == before


def test_a_route_this_test_cannot_send_input_to_fails_it():
    from finfaas.platform.http import FunctionApp

    app = FunctionApp("probe")

    @app.route("POST", "/uploads", auth=False, media_types=("application/xml",))
    def upload(req: Any) -> None:
        """Takes a body this test cannot write."""

    route = next(route for route in app.routes if route.path == "/uploads")
    with pytest.raises(AssertionError, match="no hostile body"):
        way_in("probe", route)
