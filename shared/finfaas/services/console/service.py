"""The console's use cases: sign-in, executions, the work queues, the ledger explorer; each a call to
another function's API."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from finfaas.services.console.errors import FunctionDown, RoleRefused, SignInRefused
from finfaas.services.console.model import Role, Session, role_of
from finfaas.services.console.ports import Suite
from finfaas.services.console.session import SessionCodec

ORCHESTRATOR, TRANSFERS, AUTH, LEDGER, ACCOUNTS = "orchestrator", "transfers", "auth", "ledger", "accounts"
LOANS = "loans"
PAYMENTS, WEALTH = "payments", "wealth"
AWAITING_REVIEW, NEEDS_ATTENTION = "AWAITING_REVIEW", "NEEDS_ATTENTION"
# The work queues: the transfers' status each lists and the decisions the transfers function takes there.
QUEUES = {"reviews": (AWAITING_REVIEW, ("approve", "reject")),
          "attention": (NEEDS_ATTENTION, ("post", "void"))}
executions_page_size = 25
history_events_max = 500  # one page of the orchestrator's history; the rest is a link away
review_page_size = 50
reason_chars_max = 500
statement_page_size = 50
holds_shown_max = 20  # each hold shown costs one more ledger read (its state and expiry)
open_holds_shown_max = 100  # one ledger page (its page size limit) of an account's open holds, oldest first
# A transfer's page shows these links of the ledger's record, each one more read.
LINKS = ("batch_id", "pending_id", "resolved_by", "reversal_of", "reversed_by")
ledger_id_chars_max = 128
operator_id_chars_max = 128
secret_chars_max = 512
LIST_FILTERS = ("status", "state_machine", "reference", "started_after", "started_before", "starting_after")


@dataclass
class Problem:
    """A refusal another function answered with, to show as it said it."""

    status: int
    body: Any

    def text(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body.get("title") or self.body.get("code"))
        return str(self.body)


def object_or_problem(suite: Suite, function: str, method: str, path: str, token: str,
                      body: Any = None) -> tuple[dict[str, Any] | None, Problem | None]:
    """One call answered by a JSON object: the object, or any other answer as a Problem for the page
    (FunctionDown passes through, for the page to name the function that is down)."""
    status, answer = suite.call(function, method, path, token, body)
    if status != 200 or not isinstance(answer, dict):
        return None, Problem(status, answer)
    return answer, None


@dataclass(frozen=True)
class Decided:
    """A decision the transfers function took; `pending` when it waits for a second operator's approval."""

    pending: bool


@dataclass
class ExecutionPage:
    execution: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    definition: dict[str, Any] | None = None


@dataclass
class AccountPage:
    account_id: str
    account: dict[str, Any] | None = None
    balance: dict[str, Any] | None = None
    statement: dict[str, Any] | None = None
    holds: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    down: list[str] = field(default_factory=list)
    open_holds: list[dict[str, Any]] = field(default_factory=list)  # every open hold, oldest first
    open_holds_more: bool = False  # more open holds than one page shows


@dataclass
class TransferPage:
    transfer_id: str
    transfer: dict[str, Any] | None = None
    linked: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    down: list[str] = field(default_factory=list)
    legs: list[dict[str, Any]] = field(default_factory=list)  # its linked batch's every leg, in order


@dataclass
class ChecksPage:
    """The ledger function's two checks: its ledger check and its verification of the audit chains."""

    ledger: dict[str, Any] | None = None
    audit: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)
    down: list[str] = field(default_factory=list)


class ConsoleService:
    """Every call made with the signed-in operator's own token: the functions check its scopes again."""

    def __init__(self, suite: Suite, codec: SessionCodec, definitions_dir: Path,
                 clock: Callable[[], float]) -> None:
        self._suite = suite
        self._codec = codec
        self._definitions_dir = definitions_dir
        self._clock = clock

    @property
    def suite(self) -> Suite:
        """The functions this service calls, for the console's other page groups (operations.py)."""
        return self._suite

    # --- sign-in ------------------------------------------------------------------------------------

    def sign_in(self, operator: str, secret: str) -> Session:
        """An operator account is an auth client holding the ops scope (and ops:act to act)."""
        if not 0 < len(operator) <= operator_id_chars_max or not 0 < len(secret) <= secret_chars_max:
            raise SignInRefused("Enter your operator id and secret.")
        status, answer = self._suite.token(operator, secret)
        if status != 200 or not isinstance(answer, dict) or "access_token" not in answer:
            raise SignInRefused("The auth function did not accept this operator id and secret.")
        role = role_of(str(answer.get("scope", "")).split())
        if role is None:
            raise SignInRefused("This account carries no ops scope: it is not an operator account.")
        expires_at = int(self._clock()) + int(answer.get("expires_in", 0))
        return self._codec.new_session(operator, role, str(answer["access_token"]), expires_at)

    # --- executions ---------------------------------------------------------------------------------

    def executions(
        self, session: Session, filters: dict[str, str]
    ) -> tuple[dict[str, Any] | None, Problem | None]:
        query = {name: value for name, value in filters.items() if name in LIST_FILTERS and value}
        query["limit"] = str(executions_page_size)
        status, body = self._suite.call(ORCHESTRATOR, "GET", f"/executions?{urlencode(query)}", session.token)
        return (body, None) if status == 200 else (None, Problem(status, body))

    def execution(self, session: Session, execution_id: str) -> ExecutionPage | Problem:
        path = f"/executions/{quote(execution_id, safe='')}"
        status, body = self._suite.call(ORCHESTRATOR, "GET", path, session.token)
        if status != 200:
            return Problem(status, body)
        page = ExecutionPage(body, definition=self._definition(str(body.get("state_machine", ""))))
        status, history = self._suite.call(ORCHESTRATOR, "GET", f"{path}/history?limit={history_events_max}",
                                           session.token)
        if status == 200 and isinstance(history, dict):
            page.events = list(history.get("data") or [])
        return page

    def stop(self, session: Session, execution_id: str, reason: str) -> Problem | None:
        self._acting(session)
        if not 0 < len(reason.strip()) <= reason_chars_max:
            return Problem(422, {"detail": f"A reason of 1 to {reason_chars_max} characters is required."})
        path = f"/_/ops/executions/{quote(execution_id, safe='')}/stop"
        status, body = self._suite.call(ORCHESTRATOR, "POST", path, session.token, {"reason": reason.strip()})
        return None if status == 200 else Problem(status, body)

    def redrive(self, session: Session, execution_id: str) -> Problem | None:
        self._acting(session)
        path = f"/_/ops/executions/{quote(execution_id, safe='')}/redrive"
        status, body = self._suite.call(ORCHESTRATOR, "POST", path, session.token)
        return None if status == 200 else Problem(status, body)

    def _definition(self, state_machine: str) -> dict[str, Any] | None:
        """The definition the image carries (infra/statemachines): the console reads no table."""
        if not state_machine.replace("-", "").replace("_", "").isalnum():
            return None
        path = self._definitions_dir / f"{state_machine}.asl.json"
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None

    # --- the work queues ----------------------------------------------------------------------------

    def review_queue(self, session: Session,
                     queue: str = "reviews") -> tuple[list[dict[str, Any]], Problem | None]:
        """Transfers in a queue's status (awaiting review, or needing attention), oldest first."""
        path = "/_/ops/transfers?" + urlencode({"status": QUEUES[queue][0], "limit": review_page_size})
        body, problem = object_or_problem(self._suite, TRANSFERS, "GET", path, session.token)
        return list((body or {}).get("data") or []), problem

    def decide(self, session: Session, transfer_id: str, decision: str, reason: str,
               queue: str = "reviews") -> Problem | Decided:
        """Approve or reject a transfer under review, or post or void the hold of one needing attention,
        with the operator's reason (the transfers function audits it with the operator). Above its
        second-approval amount the transfers function only records a first approval (maker-checker)."""
        self._acting(session)
        allowed = QUEUES[queue][1]
        if decision not in allowed:
            return Problem(422, {"detail": f"The decision is {' or '.join(allowed)}."})
        if not 0 < len(reason.strip()) <= reason_chars_max:
            return Problem(422, {"detail": f"A reason of 1 to {reason_chars_max} characters is required."})
        # A fresh key per decision: the transfers function refuses a second, different decision itself.
        headers = {"Idempotency-Key": secrets.token_hex(16)}
        path = f"/_/ops/transfers/{quote(transfer_id, safe='')}/decision"
        status, body = self._suite.call(TRANSFERS, "POST", path, session.token,
                                        {"decision": decision, "note": reason.strip()}, headers)
        if status != 200:
            return Problem(status, body)
        return Decided(pending=isinstance(body, dict) and bool(body.get("pending_approval")))

    # --- the ledger explorer -------------------------------------------------------------------------

    def account(self, session: Session, account_id: str, starting_after: str = "") -> AccountPage:
        """An account, its balances, a page of its statement and the holds on that page, and its every open
        hold (however old), with their expiry; each part from its own function, so one that is down leaves
        the others."""
        page = AccountPage(account_id)
        if not 0 < len(account_id) <= ledger_id_chars_max:
            page.problems.append(Problem(422, {"detail": "Enter an account id."}))
            return page
        quoted = quote(account_id, safe="")
        page.account = self._part(page, ACCOUNTS, f"/_/ops/accounts/{quoted}", session)
        page.balance = self._part(page, LEDGER, f"/accounts/{quoted}/balance", session)
        query = {"limit": str(statement_page_size)}
        if starting_after:
            query["starting_after"] = starting_after
        page.statement = self._part(page, ACCOUNTS, f"/_/ops/accounts/{quoted}/statement?{urlencode(query)}",
                                    session)
        entries = (page.statement or {}).get("data") or []
        held = [entry["transfer_id"] for entry in entries if entry.get("kind") == "PENDING"]
        if LEDGER in page.down:
            return page
        # Every open hold, however old, from the ledger's own list (not only the statement page shown).
        holds_query = urlencode({"state": "PENDING", "limit": str(open_holds_shown_max)})
        found = self._part(page, LEDGER, f"/accounts/{quoted}/holds?{holds_query}", session) or {}
        page.open_holds = [hold for hold in found.get("data") or [] if isinstance(hold, dict)]
        page.open_holds_more = bool(found.get("has_more"))
        # A hold still open is in that list already (the same view, read consistently): read the others only.
        open_by_id = {hold.get("transfer_id"): hold for hold in page.open_holds}
        for transfer_id in held[:holds_shown_max]:
            if LEDGER in page.down:
                break
            hold = open_by_id.get(transfer_id) or self._part(
                page, LEDGER, f"/transfers/{quote(str(transfer_id), safe='')}", session)
            if hold is not None:
                page.holds.append(hold)
        return page

    def transfer(self, session: Session, transfer_id: str) -> TransferPage:
        """A ledger transfer and the transfers its record links to: its batch's every leg, the hold it
        resolves, what resolved it, what it reverses and what reversed it."""
        page = TransferPage(transfer_id)
        if not 0 < len(transfer_id) <= ledger_id_chars_max:
            page.problems.append(Problem(422, {"detail": "Enter a transfer id."}))
            return page
        page.transfer = self._part(page, LEDGER, f"/transfers/{quote(transfer_id, safe='')}", session)
        record = page.transfer or {}
        batch_id = record.get("batch_id")
        if batch_id and LEDGER not in page.down:
            batch = self._part(page, LEDGER, f"/transfers?{urlencode({'batch_id': batch_id})}", session)
            page.legs = [leg for leg in (batch or {}).get("transfers") or [] if isinstance(leg, dict)]
        # A linked transfer among the batch's legs (its first leg, at least) is not read a second time.
        legs_by_id = {leg.get("transfer_id"): leg for leg in page.legs}
        for link in LINKS:
            linked = record.get(link)
            if linked and linked != transfer_id and LEDGER not in page.down:
                found = legs_by_id.get(linked) or self._part(
                    page, LEDGER, f"/transfers/{quote(str(linked), safe='')}", session)
                if found is not None:
                    page.linked.append((link, found))
        return page

    def checks(self, session: Session) -> ChecksPage:
        """`ledger check` and `audit verify` as the ledger function runs them online, each within its
        budget (a ledger larger than that answers `too_large`: the page says to run the command line)."""
        page = ChecksPage()
        page.ledger = self._part(page, LEDGER, "/_/ops/ledger-check", session)
        if LEDGER not in page.down:
            page.audit = self._part(page, LEDGER, "/_/ops/audit-verify", session)
        return page

    def _part(self, page: AccountPage | TransferPage | ChecksPage, function: str, path: str,
              session: Session) -> dict[str, Any] | None:
        """One part of a page: its body, or its refusal or the function's absence noted on the page."""
        try:
            status, body = self._suite.call(function, "GET", path, session.token)
        except FunctionDown as error:
            if error.function not in page.down:
                page.down.append(error.function)
            return None
        if status != 200 or not isinstance(body, dict):
            page.problems.append(Problem(status, body))
            return None
        return body

    # --- business lines ----------------------------------------------------------------------------

    def loan(self, session: Session, loan_id: str) -> tuple[dict[str, Any] | None, Problem | None]:
        """Any loan with its schedule, what was paid of each installment, its transactions and bucket."""
        if not 0 < len(loan_id) <= ledger_id_chars_max:
            return None, Problem(422, {"detail": "Enter a loan id."})
        path = f"/_/ops/loans/{quote(loan_id, safe='')}"
        return object_or_problem(self._suite, LOANS, "GET", path, session.token)

    def payment_intent(self, session: Session,
                       payment_id: str) -> tuple[dict[str, Any] | None, Problem | None]:
        """Any payment intent: its captures and refunds, disputes and the ledger transfers behind them."""
        if not 0 < len(payment_id) <= ledger_id_chars_max:
            return None, Problem(422, {"detail": "Enter a payment intent id."})
        path = f"/_/ops/payment_intents/{quote(payment_id, safe='')}"
        return object_or_problem(self._suite, PAYMENTS, "GET", path, session.token)

    def position(self, session: Session, customer_id: str,
                 product_id: str) -> tuple[dict[str, Any] | None, Problem | None]:
        """Any customer's wealth position: units, value, pending orders and income history."""
        if not 0 < len(customer_id) <= ledger_id_chars_max or not 0 < len(product_id) <= ledger_id_chars_max:
            return None, Problem(422, {"detail": "Enter a customer id and a product id."})
        path = f"/_/ops/positions/{quote(customer_id, safe='')}/{quote(product_id, safe='')}"
        return object_or_problem(self._suite, WEALTH, "GET", path, session.token)

    # --- health ------------------------------------------------------------------------------------

    def functions(self, session: Session) -> tuple[list[dict[str, Any]], Problem | None]:
        """Each function the gateway serves, with its replicas, invocations, cold starts and crashes."""
        status, body = self._suite.gateway_functions(session.token)
        if status != 200 or not isinstance(body, list):
            return [], Problem(status, body)
        return sorted((f for f in body if isinstance(f, dict)), key=lambda f: str(f.get("name"))), None

    @staticmethod
    def _acting(session: Session) -> None:
        if session.role is not Role.ACTOR:
            raise RoleRefused("Your role is read-only: acting (approve, reject, stop, redrive) needs the "
                              "ops:act scope. Nothing was done.")
