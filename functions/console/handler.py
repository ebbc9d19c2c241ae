"""The console function: the operators' pages, server-rendered, over the other functions' APIs.

Operators (an auth client holding `ops`; `ops:act` as well to act), signed in by a session cookie:
  GET  /                                  to the executions
  GET  /sign-in, POST /sign-in            the operator's id and secret, exchanged at the auth function
  POST /sign-out                          ends the session
  GET  /executions                        filtered by status, state machine, start time and reference
  GET  /executions/{execution_id}         the graph, the events and the definition
  POST /executions/{execution_id}/stop    with a reason (acting role)
  POST /executions/{execution_id}/redrive (acting role)
  GET  /reviews                           transfers awaiting review
  POST /reviews/{transfer_id}             approve or reject, with a reason (acting role); above the
                                          transfers function's second-approval amount an approval
                                          waits for a second, different operator
  GET  /attention                         transfers needing attention (funds on hold)
  POST /attention/{transfer_id}           post or void the hold, with a reason (acting role)
  GET  /ledger                            find an account or a ledger transfer by id
  GET  /ledger/checks                     the ledger check and the audit chains' verification, run again
  GET  /ledger/accounts/{account_id}      balances, statement, holds and their expiry
  GET  /ledger/transfers/{transfer_id}    a transfer and the transfers it links to
  GET  /loans/{loan_id}                   a loan: its schedule, payments, days past due and bucket
  GET  /payments/{payment_id}             a payment intent: captures, refunds, disputes, ledger transfers
  GET  /wealth/{customer_id}/{product_id} a wealth position: units, value, income, pending orders
  GET  /health                            each function's replicas, invocations, cold starts, crashes;
                                          queue depths, dead letters' age, breakers, rate-limit refusals
  GET  /dead-letters                      each queue's dead letters: how many, the oldest's age
  GET  /dead-letters/{queue}              the letters, attributes and body redacted by the relay
  POST /dead-letters/{queue}/redrive      one letter (message_id) or all back to the queue (acting role)
Every form action carries the session's CSRF token; every call to another function carries the
operator's own token, so each function checks the operator's scopes again and audits the operator.
"""

import hmac
import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from finfaas.domain.money import currency_exponent
from finfaas.platform import config
from finfaas.platform.http import FORM_MEDIA_TYPE, FunctionApp, Request, Response
from finfaas.platform.logging import redact
from finfaas.platform.problems import PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA_REF
from finfaas.platform.wiring import Lazy
from finfaas.services.console import graph
from finfaas.services.console.errors import ConsoleRefusal, CsrfRefused, FunctionDown, SignedOut
from finfaas.services.console.model import Session
from finfaas.services.console.operations import OperationsPages
from finfaas.services.console.service import QUEUES, ConsoleService, Problem
from finfaas.services.console.session import COOKIE_NAME, SESSION_KEY_SECRET_NAME, SessionCodec, check_csrf

FUNCTION_NAME = "console"
HTML = "text/html; charset=utf-8"
# Where the gateway serves this function: the pages' links and the cookie's Path.
BASE_PATH_ENV = "FINFAAS_CONSOLE_BASE_PATH"
BASE_PATH_DEFAULT = "/function/console"
# "true" where TLS ends before the gateway without X-Forwarded-Proto: the cookie is then always Secure.
SECURE_COOKIE_ENV = "FINFAAS_CONSOLE_SECURE_COOKIE"
GATEWAY_URL_DEFAULT = "http://127.0.0.1:8080"
# The sign-in form's CSRF token, in a cookie of its own until the operator is signed in.
SIGN_IN_COOKIE = "finfaas_console_sign_in"
SIGN_IN_SECONDS_MAX = 600
SIGN_IN_NONCE_BYTES = 24
STATUSES = ("", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
REDRIVABLE = ("FAILED", "TIMED_OUT", "ABORTED")
# The pages run no script of their own and load nothing from elsewhere.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class Console:
    """The service, the session codec and the page templates; built from configuration on first use."""

    def __init__(self, service: ConsoleService, codec: SessionCodec, base_path: str) -> None:
        import finfaas.services.console as package
        from jinja2 import Environment, FileSystemLoader, select_autoescape

        self.service = service
        self.codec = codec
        self.base = base_path.rstrip("/")
        folder = Path(package.__file__).resolve().parent / "templates"
        self.templates = Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"]))


def build_console(suite: Any = None, clock: Any = time.time) -> Console:
    """The console on this stage's gateway and session key; `suite` replaces the gateway (tests)."""
    from finfaas.services.console.gateway import GatewaySuite
    from finfaas.workflow.asl import definitions_dir

    key_text = config.read_secret(SESSION_KEY_SECRET_NAME)
    assert key_text is not None
    codec = SessionCodec(key_text, clock)
    if suite is None:
        suite = GatewaySuite(os.environ.get("FINFAAS_GATEWAY_URL") or GATEWAY_URL_DEFAULT)
    service = ConsoleService(suite, codec, definitions_dir(), clock)
    return Console(service, codec, os.environ.get(BASE_PATH_ENV) or BASE_PATH_DEFAULT)


def _answer(description: str, html: bool = True, problem: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if html:
        content["text/html"] = {"schema": {"type": "string"}}
    if problem:  # what the platform answers before the page's handler runs
        content[PROBLEM_MEDIA_TYPE] = {"schema": PROBLEM_SCHEMA_REF}
    return {"description": description, "content": content}


# Pages answer HTML, refusals included; an action answers 303 to the page that shows its result, or the
# page of the refusal another function answered (its status kept).
REFUSALS = {
    "400": _answer("refused by the function the page asks, or a body the console cannot read", problem=True),
    "401": _answer("signed out, or a forged or expired session: a page that says why"),
    "403": _answer("a form without its CSRF token, or an action the role does not carry"),
    "404": _answer("not found (by the function the page asks, or a path too long)", problem=True),
    "409": _answer("refused by the function that would act (e.g. a decision already recorded)"),
    "422": _answer("refused: a reason or decision missing, or a filter the function refused", problem=True),
    "502": _answer("another function answered what the console did not expect"),
    "503": _answer("a function the page needs is not answering: the page names it"),
}
PAGE_OPENAPI = {"responses": {"200": _answer("the page"), "303": {"description": "to the page"}, **REFUSALS}}
ACTION_OPENAPI = {"responses": {
    "303": {"description": "done: to the page that shows it"},
    **REFUSALS,
}}
# Another function's refusal keeps its status on the console's page; any other answer is a 502.
SHOWN_STATUSES = frozenset({400, 401, 403, 404, 409, 422})
console = Lazy(build_console)


def operations() -> OperationsPages:
    """The dead-letter and health figures' calls, over the console's own suite client."""
    return OperationsPages(console.get().service.suite)


T = TypeVar("T")


def fetched(find: Callable[[], tuple[T, Problem | None]], empty: T) -> tuple[T, Problem | None, list[str]]:
    """A page's lookup: what it found and its refusal, or `empty` and the function that is down."""
    try:
        found, problem = find()
    except FunctionDown as error:
        return empty, None, [error.function]
    return found, problem, []


app = FunctionApp(FUNCTION_NAME, errors={})
PAGE: dict[str, Any] = {"auth": False, "openapi": PAGE_OPENAPI}
FORM: dict[str, Any] = {"auth": False, "media_types": (FORM_MEDIA_TYPE,), "openapi": ACTION_OPENAPI}


# --- rendering --------------------------------------------------------------------------------------


def page(template: str, status: int = 200, headers: dict[str, str] | None = None, **values: Any) -> Response:
    current = console.get()
    values.setdefault("down", [])
    html = current.templates.get_template(template).render(base=current.base, money=_money, **values)
    return Response(html, status, {**PAGE_HEADERS, **(headers or {})}, HTML)


def redirect(path: str, headers: dict[str, str] | None = None) -> Response:
    """303: the browser follows with a GET, so a reload never repeats an action."""
    return Response(None, 303, {"Location": console.get().base + path, **(headers or {})}, HTML)


def _shown(status: int) -> int:
    return status if status in SHOWN_STATUSES else 502


def _money(amount_minor: int, exponent: int) -> str:
    if exponent <= 0:
        return str(amount_minor)
    sign, digits = ("-" if amount_minor < 0 else ""), str(abs(amount_minor)).rjust(exponent + 1, "0")
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"


def _cookie(req: Request, name: str = COOKIE_NAME) -> str | None:
    try:
        jar = SimpleCookie(req.header("cookie") or "")
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


def _set_cookie(req: Request, value: str, max_age_seconds: int) -> dict[str, str]:
    secure = (req.header("x-forwarded-proto") or "").lower() == "https" or config.env_flag(SECURE_COOKIE_ENV)
    attributes = f"Path={console.get().base or '/'}; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}"
    return {"Set-Cookie": f"{COOKIE_NAME}={value}; {attributes}" + ("; Secure" if secure else "")}


def _session(req: Request) -> Session:
    return console.get().codec.open(_cookie(req))


def _acting_session(req: Request) -> tuple[Session, dict[str, str]]:
    """The session and the form of a POST action, refused before anything is done without its CSRF token."""
    session = _session(req)
    form = req.form()
    check_csrf(session, form.get("csrf"))
    return session, form


def _query(req: Request) -> dict[str, str]:
    return {name: values[0] for name, values in req.query.items() if values}


@app.exception_handler(ConsoleRefusal)
def refused(error: ConsoleRefusal, req: Request) -> Response:
    """A page that says why; a stale or forged cookie is cleared so the next page offers the sign-in."""
    signed_out = error.status == 401
    headers = _set_cookie(req, "", 0) if signed_out else {}
    session = None
    if not signed_out:
        try:
            session = _session(req)
        except ConsoleRefusal:
            session = None
    return page("refused.html", error.status, headers, reason=str(error), code=error.code,
                signed_out=signed_out, session=session)


@app.exception_handler(FunctionDown)
def function_down(error: FunctionDown, req: Request) -> Response:
    """The page of a function that does not answer says which; the other pages keep working."""
    try:
        session: Session | None = _session(req)
    except ConsoleRefusal:
        session = None
    reason = (f"The {error.function} function is not answering ({error.detail}); nothing was done. "
              "The rest of the console works.")
    return page("refused.html", 503, reason=reason, code="function_down",
                signed_out=session is None, session=session, down=[error.function])


# --- sign-in ----------------------------------------------------------------------------------------


@app.route("GET", "/", **PAGE)
def home(req: Request) -> Response:
    return redirect("/executions")


@app.route("GET", "/sign-in", **PAGE)
def sign_in_page(req: Request) -> Response:
    """The sign-in form, its CSRF token also in a short-lived cookie that only this site's pages send."""
    nonce = secrets.token_urlsafe(SIGN_IN_NONCE_BYTES)
    attributes = f"Path={console.get().base or '/'}; HttpOnly; SameSite=Strict; Max-Age={SIGN_IN_SECONDS_MAX}"
    return page("sign_in.html", headers={"Set-Cookie": f"{SIGN_IN_COOKIE}={nonce}; {attributes}"},
                session=None, reason=None, csrf=nonce)


@app.route("POST", "/sign-in", **FORM)
def sign_in(req: Request) -> Response:
    """Exchange the operator's id and secret at the auth function; the session holds the token it gives.

    The form's token must match the sign-in cookie, so another site cannot sign a browser in as someone."""
    form = req.form()
    expected = _cookie(req, SIGN_IN_COOKIE)
    sent = form.get("csrf") or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused("This sign-in form was sent without its CSRF token: nothing was done. "
                          "Open the sign-in page again.")
    current = console.get()
    session = current.service.sign_in(form.get("operator", ""), form.get("secret", ""))
    lifetime = max(0, session.expires_at - int(time.time()))
    return redirect("/executions", _set_cookie(req, current.codec.seal(session), lifetime))


@app.route("POST", "/sign-out", **FORM)
def sign_out(req: Request) -> Response:
    try:
        _acting_session(req)
    except SignedOut:
        pass
    return redirect("/sign-in", _set_cookie(req, "", 0))


# --- executions -------------------------------------------------------------------------------------


@app.route("GET", "/executions", **PAGE)
def executions(req: Request) -> Response:
    session = _session(req)
    filters = _query(req)
    sent = dict(filters)
    for name in ("started_after", "started_before"):  # the browser's local-time field, taken as UTC
        if sent.get(name):
            filters[f"{name}_local"] = sent[name]
            sent[name] = _utc(sent[name])
    listing, problem, down = fetched(lambda: console.get().service.executions(session, sent), None)
    next_query = ""
    if listing and listing.get("next_cursor"):
        kept = {name: value for name, value in sent.items() if value}
        next_query = urlencode({**kept, "starting_after": listing["next_cursor"]})
    return page("executions.html", session=session, listing=listing, problem=problem, down=down,
                filters=filters, statuses=STATUSES, next_query=next_query)


def _utc(local: str) -> str:
    """A datetime-local value (no zone) as RFC 3339 UTC; anything else is passed on for the API to judge."""
    try:
        return datetime.fromisoformat(local).replace(tzinfo=UTC).isoformat()
    except ValueError:
        return local


@app.route("GET", "/executions/{execution_id}", **PAGE)
def execution(req: Request, execution_id: str) -> Response:
    session = _session(req)
    found = console.get().service.execution(session, execution_id)
    done = {"stopped": "Stop requested.", "redriven": "Redriven."}.get(_query(req).get("done", ""))
    if isinstance(found, Problem):
        return page("refused.html", _shown(found.status), session=session,
                    reason=found.text(), code="execution", signed_out=False)
    drawing = graph.svg(found.definition, found.events) if found.definition else None
    # Personal data (names, accounts, tokens) never reaches the page: the logs' redaction, applied here.
    events = [{**event, "detail": redact(event.get("detail"))} for event in found.events]
    data = {"input": redact(found.execution.get("input")), "output": redact(found.execution.get("output"))}
    states = graph.state_inputs_and_outputs(events, data["input"])
    return page("execution.html", session=session, execution=found.execution, events=events, data=data,
                states=states, definition=found.definition, graph=drawing, redrivable=REDRIVABLE, done=done)


@app.route("POST", "/executions/{execution_id}/stop", **FORM)
def stop(req: Request, execution_id: str) -> Response:
    session, form = _acting_session(req)
    problem = console.get().service.stop(session, execution_id, form.get("reason", ""))
    return _after(session, problem, f"/executions/{execution_id}?done=stopped")


@app.route("POST", "/executions/{execution_id}/redrive", **FORM)
def redrive(req: Request, execution_id: str) -> Response:
    session, _ = _acting_session(req)
    problem = console.get().service.redrive(session, execution_id)
    return _after(session, problem, f"/executions/{execution_id}?done=redriven")


def _after(session: Session, problem: Problem | None, then: str) -> Response:
    if problem is None:
        return redirect(then)
    return page("refused.html", _shown(problem.status), session=session,
                reason=problem.text(), code="refused_by_function", signed_out=False)


# --- the work queues: review and attention ---------------------------------------------------------

QUEUE_PAGES = {
    "reviews": ("Transfers awaiting review", "No transfer awaits a review."),
    "attention": ("Transfers needing attention", "No transfer needs attention."),
}
DONE_VERBS = {"approve": "approved", "reject": "rejected", "post": "posted", "void": "voided",
              "proposed": "awaits a second, different operator's approval"}


def _queue_page(req: Request, queue: str) -> Response:
    session = _session(req)
    transfers, problem, down = fetched(lambda: console.get().service.review_queue(session, queue), [])
    query = _query(req)
    done = None
    if query.get("done") in DONE_VERBS and query.get("transfer"):
        done = f"Transfer {query['transfer']} {DONE_VERBS[query['done']]}."
    title, empty = QUEUE_PAGES[queue]
    return page("reviews.html", session=session, transfers=transfers, problem=problem, down=down, done=done,
                queue=queue, title=title, empty=empty, decisions=QUEUES[queue][1])


def _decide(req: Request, queue: str, transfer_id: str) -> Response:
    session, form = _acting_session(req)
    decision = form.get("decision", "")
    outcome = console.get().service.decide(session, transfer_id, decision, form.get("reason", ""), queue)
    if isinstance(outcome, Problem):
        return _after(session, outcome, "")
    done = "proposed" if outcome.pending else decision
    return redirect(f"/{queue}?" + urlencode({"done": done, "transfer": transfer_id}))


@app.route("GET", "/reviews", **PAGE)
def reviews(req: Request) -> Response:
    return _queue_page(req, "reviews")


@app.route("POST", "/reviews/{transfer_id}", **FORM)
def decide(req: Request, transfer_id: str) -> Response:
    return _decide(req, "reviews", transfer_id)


@app.route("GET", "/attention", **PAGE)
def attention(req: Request) -> Response:
    """Transfers whose saga could not finish on its own: the funds are on hold until an operator posts
    or voids them."""
    return _queue_page(req, "attention")


@app.route("POST", "/attention/{transfer_id}", **FORM)
def resolve(req: Request, transfer_id: str) -> Response:
    return _decide(req, "attention", transfer_id)


# --- the ledger explorer ----------------------------------------------------------------------------


@app.route("GET", "/ledger", **PAGE)
def ledger(req: Request) -> Response:
    """The search form; an id sent goes to its page."""
    session = _session(req)
    query = _query(req)
    if query.get("account"):
        return redirect(f"/ledger/accounts/{quote(query['account'].strip(), safe='')}")
    if query.get("transfer"):
        return redirect(f"/ledger/transfers/{quote(query['transfer'].strip(), safe='')}")
    if query.get("loan"):
        return redirect(f"/loans/{quote(query['loan'].strip(), safe='')}")
    if query.get("payment"):
        return redirect(f"/payments/{quote(query['payment'].strip(), safe='')}")
    if query.get("customer") and query.get("product"):
        customer_id, product_id = (quote(query[name].strip(), safe="") for name in ("customer", "product"))
        return redirect(f"/wealth/{customer_id}/{product_id}")
    return page("ledger.html", session=session)


@app.route("GET", "/ledger/checks", **PAGE)
def ledger_checks(req: Request) -> Response:
    """Both checks, run on every load: the page's "Run again" is a reload."""
    session = _session(req)
    found = console.get().service.checks(session)
    return page("ledger_checks.html", session=session, found=found, down=found.down)


@app.route("GET", "/ledger/accounts/{account_id}", **PAGE)
def ledger_account(req: Request, account_id: str) -> Response:
    session = _session(req)
    found = console.get().service.account(session, account_id, _query(req).get("starting_after", ""))
    return page("ledger_account.html", session=session, found=found, down=found.down)


@app.route("GET", "/ledger/transfers/{transfer_id}", **PAGE)
def ledger_transfer(req: Request, transfer_id: str) -> Response:
    session = _session(req)
    found = console.get().service.transfer(session, transfer_id)
    return page("ledger_transfer.html", session=session, found=found, down=found.down)


# --- business lines ---------------------------------------------------------------------------------


@app.route("GET", "/loans/{loan_id}", **PAGE)
def loan(req: Request, loan_id: str) -> Response:
    session = _session(req)
    found, problem, down = fetched(lambda: console.get().service.loan(session, loan_id), None)
    exponent = currency_exponent(found["currency"]) if found and found.get("currency") else 0
    return page("loan.html", session=session, loan_id=loan_id, loan=found, exponent=exponent,
                problem=problem, down=down)


@app.route("GET", "/payments/{payment_id}", **PAGE)
def payment_intent(req: Request, payment_id: str) -> Response:
    session = _session(req)
    found, problem, down = fetched(lambda: console.get().service.payment_intent(session, payment_id), None)
    exponent = currency_exponent(found["currency"]) if found and found.get("currency") else 0
    return page("payment_intent.html", _shown(problem.status) if problem else 200, session=session,
                payment_id=payment_id, intent=found, exponent=exponent, problem=problem, down=down)


@app.route("GET", "/wealth/{customer_id}/{product_id}", **PAGE)
def wealth_position(req: Request, customer_id: str, product_id: str) -> Response:
    session = _session(req)
    found, problem, down = fetched(lambda: console.get().service.position(session, customer_id, product_id),
                                   None)
    return page("position.html", _shown(problem.status) if problem else 200, session=session,
                customer_id=customer_id, product_id=product_id, position=found, problem=problem, down=down)


# --- health -----------------------------------------------------------------------------------------


@app.route("GET", "/health", **PAGE)
def health(req: Request) -> Response:
    """What the gateway tells of each function; what no API serves yet is named on the page."""
    session = _session(req)
    functions, problem, down = fetched(lambda: console.get().service.functions(session), [])
    figures = operations().health(session, functions)
    return page("health.html", session=session, functions=functions, problem=problem,
                down=down + figures.down, figures=figures)


# --- dead letters -----------------------------------------------------------------------------------


@app.route("GET", "/dead-letters", **PAGE)
def dead_letters(req: Request) -> Response:
    """Each queue of the suite with a dead-letter queue: its letters' count and the oldest's age."""
    session = _session(req)
    queues, problem, down = fetched(lambda: operations().queues(session), [])
    return page("dead_letters.html", session=session, queues=queues, problem=problem, down=down)


@app.route("GET", "/dead-letters/{queue}", **PAGE)
def dead_letter_queue(req: Request, queue: str) -> Response:
    session = _session(req)
    found, problem, down = fetched(lambda: operations().letters(session, queue), None)
    query = _query(req)
    done = None
    if query.get("moved", "").isdigit():
        done = f"{query['moved']} letter(s) sent back to the {queue} queue."
        if query.get("more") == "1":
            done += " More are left: redrive again."
    return page("dead_letter_queue.html", session=session, queue=queue, found=found, problem=problem,
                down=down, done=done)


@app.route("POST", "/dead-letters/{queue}/redrive", **FORM)
def redrive_dead_letters(req: Request, queue: str) -> Response:
    """Send one letter (the form's message_id) or all of them back to their queue; the relay audits it."""
    session, form = _acting_session(req)
    answer, problem = operations().redrive(session, queue, form.get("message_id", "").strip())
    if problem is not None or answer is None:
        return _after(session, problem, "")
    moved = len(answer.get("moved") or [])
    more = "1" if answer.get("has_more") else "0"
    return redirect(f"/dead-letters/{quote(queue, safe='')}?" + urlencode({"moved": moved, "more": more}))


@app.readiness_check("console-session-key")
def session_key_readable() -> None:
    console.get()


def handle(event: Any, context: Any) -> dict[str, Any]:
    return app.handle(event, context)
