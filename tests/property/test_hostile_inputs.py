"""Every route of the functions that page (accounts, webhooks, orchestrator), fed hostile cursors,
queries, path ids and bodies through handle(event, context) on the embedded emulators.

Whatever arrives (deep nesting, huge or non-finite numbers, wrong types, huge strings, another
caller's cursor, an edited or expired one), the answer is a 4xx problem+json and no business table
gains or loses an item. Routes are read from each function's own table, so a new route is covered
the day it is added.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.emulator

EXAMPLES_PER_FUNCTION = 40  # each example is one request; a principal's rate limit is 300 a minute
# Tables a refused request may touch for its own bookkeeping; every other one must stay as it was.
BOOKKEEPING_TABLES = ("ratelimits", "idempotency", "audit")
SCOPES = {
    "accounts": ("accounts:read", "accounts:write"),
    "webhooks": ("webhooks:read", "webhooks:write"),
    "orchestrator": ("orchestrator:read", "orchestrator:start", "orchestrator:callback"),
}
CLOUDEVENT_HEADERS = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-type": "finfaas.probe",
                      "ce-source": "probe", "Content-Type": "application/json"}

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
    token: str
    path_ids: list[str]  # ids the caller does not own, or that do not exist
    cursors: list[str]  # not valid for this caller and query: foreign, stale, unsealed
    own_ids: tuple[str, ...] = ()  # the caller's own, used only where a hostile cursor comes along
    own_cursors: tuple[str, ...] = ()  # valid: sent only edited

    def routes(self) -> list[Any]:
        # Health, readiness and the OpenAPI document take no input at all.
        return [r for r in self.handler.app.routes if r.auth or r.method != "GET"]


def business_item_counts() -> dict[str, int]:
    from finfaas_dev.awsclients import client

    dynamodb = client("dynamodb")
    prefix = f"finfaas-{os.environ['FINFAAS_STAGE']}-"
    counts: dict[str, int] = {}
    for name in dynamodb.list_tables(Limit=100)["TableNames"]:
        if not name.startswith(prefix) or name.removeprefix(prefix) in BOOKKEEPING_TABLES:
            continue
        total, start = 0, None
        while True:
            page = dynamodb.scan(TableName=name, Select="COUNT", ConsistentRead=True,
                                 **({"ExclusiveStartKey": start} if start else {}))
            total += page["Count"]
            start = page.get("LastEvaluatedKey")
            if start is None:
                break
        counts[name] = total
    return counts


@pytest.fixture(scope="module")
def functions(embedded_aws) -> dict[str, Function]:
    """The three functions wired as in production (their own secrets, tables and queues), with a
    caller who owns an account with a statement, and sealed cursors of that caller and of others."""
    from finfaas.platform.config import read_secret
    from finfaas.platform.config import settings as config_settings
    from finfaas.platform.cursors import CURSOR_KEY_SECRET_NAME, CursorCodec, binding, cursor_keys_from_text
    from finfaas.platform.events import EVENTS_MAC_KEY_SECRET_NAME, new_mac_key_text
    from finfaas.services.ledger import LedgerService
    from finfaas.store.ledger_store import ledger_store_from_config
    from finfaas.store.models import format_time
    from finfaas_dev.testing.platform import TokenMinter, call, load_function_handler

    events_key = config_settings().secrets_dir / EVENTS_MAC_KEY_SECRET_NAME
    if not events_key.exists():
        events_key.write_text(new_mac_key_text() + "\n")
    minter = TokenMinter.generate()
    ledger = LedgerService(ledger_store_from_config())
    ledger.ensure_system_accounts("USD")
    owner, other = f"probe-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    keys = cursor_keys_from_text(read_secret(CURSOR_KEY_SECRET_NAME) or "")
    codec, stale = CursorCodec(keys), CursorCodec(keys, clock=lambda: 1_000_000_000.0)  # stale: long expired

    built: dict[str, Function] = {}
    for name, scopes in SCOPES.items():
        handler = load_function_handler(name)
        handler.verifier.use(minter.verifier())
        built[name] = Function(name, handler, minter.mint(owner, scopes, kind="client"), [], [])

    accounts = built["accounts"]
    other_token = minter.mint(other, SCOPES["accounts"], kind="client")
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
    built["webhooks"].path_ids = ["sub_" + "a" * 24]
    built["webhooks"].cursors = [codec.seal("sub_" + "a" * 24, binding("GET /subscriptions", other)),
                                 stale.seal("sub_" + "a" * 24, binding("GET /subscriptions", owner))]
    built["orchestrator"].path_ids = ["demo-transfer:none"]
    listing = "GET /executions"
    built["orchestrator"].cursors = [
        codec.seal("demo-transfer:x", binding(listing, other, status="RUNNING", state_machine=None)),
        codec.seal("demo-transfer:x", binding(listing, owner, status="FAILED", state_machine=None)),
        stale.seal("demo-transfer:x", binding(listing, owner, status="RUNNING", state_machine=None))]
    return built


# --- requests ---------------------------------------------------------------------------------------


@st.composite
def requests(draw: Callable[..., Any], function: Function) -> tuple[str, str, dict, bytes, dict]:
    """(method, path, query, body, headers) for one of the function's routes, every input hostile."""
    route = draw(st.sampled_from(function.routes()))
    pages = route.query_model is not None and "starting_after" in route.query_model.model_fields
    ids = [*function.path_ids, *(function.own_ids if pages else ())]
    path = route.path
    for param in route.param_names:
        value = draw(st.one_of(st.sampled_from(ids), query_texts(function)))
        path = path.replace("{" + param + "}", value.replace("/", "%2F") or "x")
    query: dict[str, str] = {}
    if route.query_model is not None:
        for field in route.query_model.model_fields:
            if draw(st.booleans()):
                query[field] = draw(query_texts(function))
        if pages:
            query["starting_after"] = draw(query_texts(function))
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    if route.auth is False:
        headers.update(CLOUDEVENT_HEADERS)
    else:
        headers["Authorization"] = f"Bearer {function.token}"
    body = b""
    if route.method in ("POST", "PUT", "PATCH"):
        headers.setdefault("Content-Type", "application/json")
        if route.body_model is not None and draw(st.booleans()):
            fields = {name: draw(HOSTILE_VALUES) for name in route.body_model.model_fields}
            body = json.dumps(fields).encode()
        else:
            body = draw(RAW_BYTES)
    return route.method, path, query, body, headers


# Known attacks, each sent to every route's cursor, query and body before the random search.
CURSOR_ATTACKS = [nested(2_000), b64(nested(2_000)), b64('{"a": 1, "a": 2}'), "1e999", "NaN", "x" * 5_000,
                  "c1.e30.AAAA", b64("[Infinity]")]
BODY_ATTACKS = [nested(2_000).encode(), nested(100_000).encode(), b'{"a": NaN}', b"[1e999]",
                b'{"a": 1, "a": 2}', b"\xff\xfe", b'"' + b"x" * 300_000 + b'"']
FIELD_ATTACKS = [nested(70), 10**40, 1e308, None, "x" * 5_000, ["wrong", "type"], {"deep": {"er": [{}]}}]


def known_attacks(function: Function) -> list[tuple[str, str, dict, bytes, dict]]:
    """Every route with each known attack in each of its inputs, the other inputs left plain."""
    made = []
    for route in function.routes():
        pages = route.query_model is not None and "starting_after" in route.query_model.model_fields
        ids = [*function.path_ids, *(function.own_ids if pages else ())]
        paths = [route.path.replace("{" + p + "}", ids[0]) for p in route.param_names[:1]] or [route.path]
        headers = ({**CLOUDEVENT_HEADERS} if not route.auth else
                   {"Authorization": f"Bearer {function.token}", "Content-Type": "application/json"})
        for path in {route.path.replace("{" + p + "}", i) for p in route.param_names for i in ids} or paths:
            if pages:
                own_edited = [c[:len(c) // 2] + ("A" if c[len(c) // 2] != "A" else "B") + c[len(c) // 2 + 1:]
                              for c in function.own_cursors]
                for cursor in [*function.cursors, *own_edited, *CURSOR_ATTACKS]:
                    made.append((route.method, path, {"starting_after": cursor}, b"", headers))
            if route.method == "POST":
                bodies = list(BODY_ATTACKS)
                if route.body_model is not None:
                    bodies += [json.dumps({name: value for name in route.body_model.model_fields}).encode()
                               for value in FIELD_ATTACKS]
                made += [(route.method, path, {}, body, {**headers, "Idempotency-Key": uuid.uuid4().hex})
                         for body in bodies]
    return made


def answer(function: Function, request: tuple[str, str, dict, bytes, dict]) -> int:
    """The status of one request, after checking it is a 4xx problem."""
    from finfaas_dev.testing.platform import Context, Event

    method, path, query, body, headers = request
    result = function.handler.handle(Event(method, path, body, headers, query), Context())
    status, text = result["statusCode"], result["body"]
    assert 400 <= status < 500, f"{method} {path} {str(query)[:200]} -> {status}: {text[:300]}"
    assert dict(result["headers"]).get("Content-Type") == "application/problem+json"
    problem = json.loads(text)
    assert problem["status"] == status and problem["code"]
    return status


def assert_refused_without_writes(function: Function) -> None:
    before = business_item_counts()
    seen = {answer(function, request) for request in known_attacks(function)}

    @settings(max_examples=EXAMPLES_PER_FUNCTION, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(requests(function))
    def probe(request: tuple[str, str, dict, bytes, dict]) -> None:
        seen.add(answer(function, request))

    probe()
    assert business_item_counts() == before
    assert {400, 422} <= seen, f"the probes never reached validation: {sorted(seen)}"


@pytest.mark.parametrize("name", sorted(SCOPES))
def test_hostile_inputs_get_a_4xx_problem_and_write_nothing(functions, name):
    assert_refused_without_writes(functions[name])
